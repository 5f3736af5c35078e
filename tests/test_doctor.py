"""`cnnlesson doctor`: each diagnosis, in the environment that triggers it; and the CLI's help lines.

The doctor runs in this process (cli.main), except one run of the installed
console script.
"""

import argparse
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from torchvision import datasets

from cnnlesson import _formats, doctor
from cnnlesson.cli import build_parser, main


@pytest.fixture
def recorded(monkeypatch):
    """The pages' recorded versions, set to what is installed here: the version checks pass."""
    versions = doctor.installed_versions()
    monkeypatch.setattr(doctor, "ran_with", lambda: {"run": "test", "date": "2026-01-01", "os": "Linux", **versions})
    return versions


@pytest.fixture
def data_root(tmp_path, mnist_root):
    """A data folder holding stand-in MNIST (unpacked IDX files, as torchvision leaves them)."""
    root = tmp_path / "data"
    shutil.copytree(mnist_root / "MNIST", root / "MNIST")
    return root


def doctor_lines(capsys, *argv) -> tuple[int, list[str]]:
    status = main(["doctor", *argv])
    return status, capsys.readouterr().out.splitlines()


def fixes(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("fix ")]


def test_nothing_to_do_exits_0(capsys, recorded, data_root):
    status, lines = doctor_lines(capsys, "--data-root", str(data_root))
    assert status == 0, lines
    assert fixes(lines) == [] and lines[-1] == "nothing needs doing"
    assert f"ok   torch {recorded['torch']} (the pages last ran with {recorded['torch']})" in lines
    assert any(line.startswith("ok   get_device() picks ") for line in lines)
    assert any("a convolution and a matrix product on" in line and line.startswith("ok ") for line in lines)
    assert any(line.startswith(f"ok   MNIST in {data_root / 'MNIST' / 'raw'} is complete") for line in lines)
    assert f"ok   {data_root} can be written to" in lines


def test_an_older_torch_is_a_fix(capsys, monkeypatch, recorded, data_root):
    # What importing torch gives the doctor, as an older install would: a module with an older __version__.
    # (Only the doctor's imports see it: torch looks itself up in sys.modules while it computes.)
    fake = types.ModuleType("torch")
    fake.__version__ = "1.13.1+cpu"
    real_import = doctor.import_module
    monkeypatch.setattr(doctor, "import_module", lambda name: fake if name == "torch" else real_import(name))
    status, lines = doctor_lines(capsys, "--data-root", str(data_root))
    major, minor = doctor._release(recorded["torch"])
    assert status == 1
    assert fixes(lines) == [f"fix  torch 1.13.1+cpu is older than the {recorded['torch']} the pages last ran with"]
    assert lines[lines.index(fixes(lines)[0]) + 1] == f"     -> pip install --upgrade 'torch>={major}.{minor}'"


def test_a_newer_or_missing_package(monkeypatch, recorded):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails: not installed
    monkeypatch.setattr(doctor, "python_version", lambda: "99.0.0")
    checks = doctor.check_versions(doctor.ran_with(), doctor.installed_versions())
    by_name = {check.what.split()[0]: check for check in checks}
    assert by_name["matplotlib"].status == "fix" and by_name["matplotlib"].what == "matplotlib is not installed"
    assert by_name["Python"].status == "note" and "newer than" in by_name["Python"].what


def test_no_record_of_versions_is_a_note():
    assert doctor.check_versions(None, doctor.installed_versions()) == [
        doctor.Check("note", "this install carries no record of the versions the pages ran with")
    ]


def test_a_truncated_mnist_file_is_a_fix(capsys, recorded, data_root):
    images = data_root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    status, lines = doctor_lines(capsys, "--data-root", str(data_root))
    assert status == 1
    (line,) = fixes(lines)
    assert str(images) in line and "the file has" in line
    assert lines[lines.index(line) + 1] == f"     -> delete {data_root / 'MNIST'} and download it again"


def test_a_missing_or_damaged_download_is_a_fix(recorded, data_root):
    raw = data_root / "MNIST" / "raw"
    (raw / "t10k-labels-idx1-ubyte").unlink()
    damaged = b"\x1f\x8b not the real file"
    (raw / "train-images-idx3-ubyte.gz").write_bytes(damaged)
    check = doctor.check_mnist(data_root)
    assert check.status == "fix"
    assert "t10k-labels-idx1-ubyte is missing" in check.what
    assert (
        f"train-images-idx3-ubyte.gz is damaged or truncated ({len(damaged)} bytes; its md5 is not torchvision's)"
        in check.what
    )


def test_cifar10_is_checked_against_torchvisions_md5(monkeypatch, tmp_path, cifar_root):
    folder = tmp_path / "cifar-10-batches-py"
    shutil.copytree(cifar_root / "cifar-10-batches-py", folder)
    check = doctor.check_cifar10(tmp_path)  # stand-in files: not the real md5s
    assert check.status == "fix" and "data_batch_1 is damaged or truncated" in check.what
    assert "it says it is stand-in data" in check.what
    # With torchvision's table naming these files' own md5s, they pass; then one truncated file fails.
    cls = datasets.CIFAR10
    md5 = {
        name: _formats._md5(folder / name) for name, _ in [*cls.train_list, *cls.test_list, (cls.meta["filename"], "")]
    }
    monkeypatch.setattr(cls, "train_list", [[name, md5[name]] for name, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[name, md5[name]] for name, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5[cls.meta["filename"]]})
    assert doctor.check_cifar10(tmp_path).status == "ok"
    (folder / "test_batch").write_bytes((folder / "test_batch").read_bytes()[:1000])
    check = doctor.check_cifar10(tmp_path)
    assert check.status == "fix" and "test_batch is damaged or truncated (1,000 bytes" in check.what


def test_absent_data_is_a_note_and_its_parent_is_probed(recorded, tmp_path):
    root = tmp_path / "new" / "data"
    assert doctor.check_mnist(root).status == "note" and doctor.check_cifar10(root).status == "note"
    assert doctor.check_writable(root) == doctor.Check(
        "ok", f"{root} does not exist yet; it can be created in {tmp_path}"
    )


def test_a_file_in_place_of_the_folder_is_a_fix(capsys, recorded, tmp_path):
    # As root, chmod would not stop a write; a file where the folder should be does.
    root = tmp_path / "data"
    root.write_text("not a folder")
    status, lines = doctor_lines(capsys, "--data-root", str(root))
    assert status == 1 and fixes(lines) == [f"fix  {root} is a file, not a folder"]


def test_an_unwritable_folder_is_a_fix(monkeypatch, data_root):
    """The probe's failure, mocked (this suite may run as root, whom chmod does not stop)."""

    def refuse(folder):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(doctor, "check_can_create", refuse)
    check = doctor.check_writable(data_root)
    assert check == doctor.Check(
        "fix",
        f"cannot create files in {data_root} (Permission denied)",
        "run from a folder you can write to, or pass --data-root with one",
    )


def test_the_write_probe_leaves_existing_files_alone(data_root):
    old_probe = data_root / ".cnnlesson-write-test"  # the fixed name an earlier probe used
    old_probe.write_text("someone's file")
    before = sorted(p.name for p in data_root.iterdir())
    assert doctor.check_writable(data_root).status == "ok"
    assert sorted(p.name for p in data_root.iterdir()) == before and old_probe.read_text() == "someone's file"


def test_a_device_the_machine_lacks_is_a_fix(capsys, monkeypatch, recorded, data_root):
    missing = "mps" if torch.cuda.is_available() else "cuda"  # conftest hides MPS unless asked for
    monkeypatch.setenv("CNNLESSON_DEVICE", missing)
    status, lines = doctor_lines(capsys, "--data-root", str(data_root))
    assert status == 1
    (line,) = fixes(lines)
    assert line.startswith(f"fix  get_device() fails: CNNLESSON_DEVICE: {missing!r} is not available on this machine")
    auto = doctor.describe_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    assert lines[lines.index(line) + 1] == (
        f"     -> unset CNNLESSON_DEVICE (then get_device() picks {auto}) or set it to a device this machine has"
    )
    # The tensor check still runs, on the device "auto" picks.
    assert any(line.startswith("ok   a convolution and a matrix product on") for line in lines)


def test_a_device_that_is_set_and_present_says_so(capsys, monkeypatch, recorded, data_root):
    monkeypatch.setenv("CNNLESSON_DEVICE", "cpu")
    status, lines = doctor_lines(capsys, "--data-root", str(data_root))
    assert status == 0 and "ok   get_device() picks cpu: CNNLESSON_DEVICE=cpu is set" in lines


def test_a_failing_tensor_operation_is_a_fix(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device")

    monkeypatch.setattr(doctor.F, "conv2d", broken)
    check = doctor.check_tensor(torch.device("cpu"))
    assert check.status == "fix" and "no kernel image" in check.what and "CNNLESSON_DEVICE=cpu" in check.todo


def test_auto_on_a_cuda_machine_says_which_gpu_and_cuda(monkeypatch):
    """A machine whose torch sees one CUDA GPU (mocked here: this test runs on any machine)."""
    monkeypatch.delenv("CNNLESSON_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    checks, device = doctor.check_device()
    assert device == torch.device("cuda")
    assert checks == [doctor.Check("ok", "get_device() picks cuda: NVIDIA H200: CUDA 12.8 sees 1 GPU(s)")]


def test_describe_device_names_the_gpu(monkeypatch):
    """What a run's record and the doctor call a CUDA device (`pytest --torch-device cuda` records it so)."""
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert doctor.describe_device(torch.device("cuda")) == "cuda: NVIDIA H200"
    assert doctor.describe_device(torch.device("cpu")) == "cpu"


def test_the_console_script_runs_the_doctor(data_root):
    """The installed `cnnlesson` program: its exit status says whether any line asks for a fix."""
    script = Path(sys.executable).with_name("cnnlesson")
    done = subprocess.run(
        [str(script), "doctor", "--data-root", str(data_root)], capture_output=True, text=True, timeout=300
    )
    lines = done.stdout.splitlines()
    assert done.returncode == (1 if fixes(lines) else 0), done.stdout + done.stderr
    assert f"ok   {data_root} can be written to" in lines
    assert lines[-1] in ("nothing needs doing", f"{len(fixes(lines))} thing(s) to fix (the lines marked fix)")


# --- The command line's help ---------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_option_has_a_help_line_and_its_default():
    """Each option of each subcommand says what it is, and its default or that it is required."""
    for name, sub in _subcommands(build_parser()).items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            option = f"{name} {action.option_strings[0]}"
            assert action.help, f"{option} has no help line"
            if action.nargs == 0:  # a flag: off unless given
                continue
            text = action.help % vars(action) if "%(" in action.help else action.help
            if action.required:
                assert "(required)" in text, option
            else:
                assert "default: " in text, option
                if action.default is not None:
                    assert f"default: {action.default}" in text, option
