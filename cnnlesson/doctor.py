"""`cnnlesson doctor`: why a page's code fails here, one line a check, and what to do about each mismatch.

It compares the software with the versions the pages last ran with (package
data `ran_with.json`, written from docs/results/runs.json by `python -m
benchmarks.runs`), says which device `get_device()` picks and why, runs a
small tensor operation there, and checks that the data folder holds MNIST
and CIFAR-10 complete (torchvision's own md5 sums) and can be written to.
"""

from __future__ import annotations

import json
import os
import platform
import re
from importlib import import_module, resources
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torchvision import datasets

import cnnlesson.device
from cnnlesson import _formats
from cnnlesson.files import check_can_create

__all__ = ["Check", "PACKAGES", "ran_with", "installed_versions", "describe_device", "diagnose", "report"]

# What the pages import, whose versions are recorded with each run and compared here.
PACKAGES = ("torch", "torchvision", "numpy", "matplotlib")
OK, FIX, NOTE = "ok", "fix", "note"


class Check(NamedTuple):
    """One line of the diagnosis: its status (ok, fix or note), what was found, and what to do (for fix)."""

    status: str
    what: str
    todo: str = ""


def ran_with() -> dict | None:
    """The versions the pages last ran with on the CPU (this package's `ran_with.json`), or None."""
    try:
        text = resources.files("cnnlesson").joinpath("ran_with.json").read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return None
    return json.loads(text)


def python_version() -> str:
    """The running Python's version, such as 3.11.2."""
    return platform.python_version()


def installed_versions() -> dict[str, str | None]:
    """Python's version and each of PACKAGES' `__version__` (None when it is not installed)."""
    found: dict[str, str | None] = {"python": python_version()}
    for name in PACKAGES:
        try:
            found[name] = str(import_module(name).__version__)
        except ImportError:
            found[name] = None
    return found


def describe_device(device: torch.device) -> str:
    """`cpu`, `mps`, or `cuda: <the GPU's name>`."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return device.type


def _release(version: str) -> tuple[int, ...]:
    """(major, minor) of a version such as 2.14.1+cu121 or 2.0.0rc1."""
    parts = []
    for piece in version.split("+")[0].split(".")[:2]:
        digits = re.match(r"\d*", piece).group()  # type: ignore[union-attr]
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_versions(recorded: dict | None, installed: dict[str, str | None]) -> list[Check]:
    """Each of Python and PACKAGES against the version the pages last ran with (major.minor)."""
    if recorded is None:
        return [Check(NOTE, "this install carries no record of the versions the pages ran with")]
    checks = []
    for name in ("python", *PACKAGES):
        have, had = installed.get(name), recorded.get(name)
        label = {"python": "Python", "numpy": "NumPy"}.get(name, name)
        if have is None:
            checks.append(Check(FIX, f"{label} is not installed", f"pip install '{name}>={had}'"))
        elif had is None:
            checks.append(Check(NOTE, f"{label} {have} (no record of the version the pages ran with)"))
        elif _release(have) < _release(had):
            todo = (
                f"use Python {'.'.join(map(str, _release(had)))} or newer (a new virtual environment)"
                if name == "python"
                else f"pip install --upgrade '{name}>={'.'.join(map(str, _release(had)))}'"
            )
            checks.append(Check(FIX, f"{label} {have} is older than the {had} the pages last ran with", todo))
        elif _release(have) > _release(had):
            checks.append(
                Check(
                    NOTE,
                    f"{label} {have} is newer than the {had} the pages last ran with; "
                    f"if a block fails on it, pip install '{name}=={had}'",
                )
            )
        else:
            checks.append(Check(OK, f"{label} {have} (the pages last ran with {had})"))
    return checks


def _why_auto() -> str:
    """Why "auto" picks what it picks on this machine."""
    if torch.cuda.is_available():
        return f"CUDA {torch.version.cuda} sees {torch.cuda.device_count()} GPU(s)"
    if cnnlesson.device._mps_available():
        return "no CUDA GPU; Apple's MPS is available"
    build = (
        f"this torch is built for CUDA {torch.version.cuda} but sees no GPU (a driver? CUDA_VISIBLE_DEVICES?)"
        if torch.version.cuda
        else "this torch is a CPU-only build"
    )
    return f"no CUDA GPU: {build}; no MPS"


def check_device() -> tuple[list[Check], torch.device]:
    """What get_device() picks and why; the device to try a tensor operation on."""
    env = os.environ.get(cnnlesson.device.DEVICE_ENV)
    auto = cnnlesson.device.get_device("auto")
    if not env:
        return [Check(OK, f"get_device() picks {describe_device(auto)}: {_why_auto()}")], auto
    try:
        device = cnnlesson.device.get_device()
    except ValueError as err:
        todo = (
            f"unset {cnnlesson.device.DEVICE_ENV} (then get_device() picks {describe_device(auto)}) "
            f"or set it to a device this machine has"
        )
        return [Check(FIX, f"get_device() fails: {err}", todo)], auto
    return [
        Check(OK, f"get_device() picks {describe_device(device)}: {cnnlesson.device.DEVICE_ENV}={env} is set"),
        Check(NOTE, f"without {cnnlesson.device.DEVICE_ENV} it would pick {describe_device(auto)}: {_why_auto()}"),
    ], device


def check_tensor(device: torch.device) -> Check:
    """A small convolution and matrix product on `device`, compared with the CPU's."""
    try:
        x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8) / 100
        w = torch.linspace(-1, 1, 4 * 3 * 3 * 3).reshape(4, 3, 3, 3)
        expected = F.conv2d(x, w).flatten(1) @ torch.ones(4 * 6 * 6, 5)
        got = (F.conv2d(x.to(device), w.to(device)).flatten(1) @ torch.ones(4 * 6 * 6, 5, device=device)).cpu()
    except Exception as err:  # a broken driver or build fails in many ways
        return Check(
            FIX,
            f"a tensor operation on {device} failed: {type(err).__name__}: {err}",
            f"set {cnnlesson.device.DEVICE_ENV}=cpu to run the pages on the CPU, and reinstall torch for this machine",
        )
    if not torch.allclose(got, expected, rtol=1e-3, atol=1e-2):
        return Check(
            FIX, f"a tensor operation on {device} gave wrong numbers", f"set {cnnlesson.device.DEVICE_ENV}=cpu"
        )
    return Check(OK, f"a convolution and a matrix product on {device} match the CPU's")


def _check_file(path: Path, md5: str | None, what: str) -> str | None:
    """None when `path` is a whole data file; else what is wrong with it."""
    try:
        if not _formats.check_regular_file(path, what):
            return f"{path.name} is missing"
        if md5 is not None and _formats._md5(path) != md5:
            return f"{path.name} is damaged or truncated ({path.stat().st_size:,} bytes; its md5 is not torchvision's)"
        if md5 is None:  # an unpacked MNIST file: its size must match its header
            _formats.check_idx(path, "images" if "images" in path.name else "labels")
    except (_formats.DataCorruptError, OSError) as err:
        return str(err)
    return None


def check_mnist(root: Path) -> Check:
    """MNIST/raw holds the four files: each .gz against torchvision's md5, each unpacked file against its header."""
    raw = root / "MNIST" / "raw"
    if not raw.exists():
        return Check(NOTE, f"MNIST is not in {raw} yet: the pages download it (download=True)")
    problems, checked = [], 0
    for gz, md5 in datasets.MNIST.resources:
        unpacked = raw / gz.removesuffix(".gz")
        if (raw / gz).exists():
            problems.append(_check_file(raw / gz, md5, "MNIST"))
            checked += 1
        problems.append(_check_file(unpacked, None, "MNIST"))
    wrong = [p for p in problems if p]
    if wrong:
        return Check(FIX, f"MNIST in {raw}: {'; '.join(wrong)}", f"delete {raw.parent} and download it again")
    how = "the .gz files' md5 and" if checked == 4 else "no .gz files to check the md5 of;"
    return Check(
        OK, f"MNIST in {raw} is complete ({how} each file's size matches its header)" + _standin_note(raw.parent)
    )


def check_cifar10(root: Path) -> Check:
    """cifar-10-batches-py holds every batch file and batches.meta, each with torchvision's md5."""
    folder = root / "cifar-10-batches-py"
    if not folder.exists():
        return Check(NOTE, f"CIFAR-10 is not in {folder} yet: the CIFAR-10 page downloads it (download=True)")
    cls = datasets.CIFAR10
    files = [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]
    wrong = [p for p in (_check_file(folder / name, md5, "CIFAR-10") for name, md5 in files) if p]
    if wrong:
        return Check(
            FIX,
            f"CIFAR-10 in {folder}: {'; '.join(wrong)}" + _standin_note(folder),
            f"delete {folder} and download it again",
        )
    return Check(OK, f"CIFAR-10 in {folder} is complete (md5 of each file)")


def _standin_note(folder: Path) -> str:
    return (
        f" (it says it is stand-in data: {_formats.STAND_IN_MARKER})"
        if (folder / _formats.STAND_IN_MARKER).exists()
        else ""
    )


def check_writable(root: Path) -> Check:
    """Whether files can be made in `root` (or, when it does not exist yet, in the folder that would hold it)."""
    if root.exists() and not root.is_dir():
        return Check(FIX, f"{root} is a file, not a folder", f"move {root} away, or pass --data-root with a folder")
    probe_in = root
    while not probe_in.exists():  # the nearest folder that exists: downloading creates the rest
        probe_in = probe_in.parent
    try:
        check_can_create(probe_in)  # the probe train and visualize use: a fresh name, never one that exists
    except OSError as err:
        return Check(
            FIX,
            f"cannot create files in {probe_in} ({err.strerror or err})",
            "run from a folder you can write to, or pass --data-root with one",
        )
    if probe_in != root:
        return Check(OK, f"{root} does not exist yet; it can be created in {probe_in}")
    return Check(OK, f"{root} can be written to")


def diagnose(data_root: str | os.PathLike = "data") -> list[Check]:
    """Every check, in order: versions, device, a tensor operation, the data folder."""
    root = Path(data_root)
    checks = check_versions(ran_with(), installed_versions())
    device_checks, device = check_device()
    checks += device_checks
    checks.append(check_tensor(device))
    checks += [check_mnist(root), check_cifar10(root), check_writable(root)]
    return checks


def report(checks: list[Check]) -> str:
    """One line a check (`ok`, `fix` or `note`, then what was found), and for each `fix` what to do."""
    lines = []
    for check in checks:
        lines.append(f"{check.status:<5}{check.what}")
        if check.todo:
            lines.append(f"     -> {check.todo}")
    needed = sum(check.status == FIX for check in checks)
    lines.append("nothing needs doing" if not needed else f"{needed} thing(s) to fix (the lines marked fix)")
    return "\n".join(lines)


def run(data_root: str | os.PathLike = "data") -> int:
    """Print the diagnosis; return 0 when nothing needs doing, 1 otherwise."""
    checks = diagnose(data_root)
    print(report(checks))
    return int(any(check.status == FIX for check in checks))
