"""Benchmark: images per second of data-parallel training with one and two processes.

Each run is the CPU command of the "Training on several GPUs or machines"
page (docs/distributed.md), read from the page itself, with only
`--nproc-per-node`, `--epochs` and `--device` changed (global batch 64,
digits in memory); tests/test_distributed.py runs the same command from the
same reader. The speed is the all-reduced images/s of the last epoch in its
`history.json` (the first epoch pays for warm-up). On the CPU both runs get
the same cores: one process with all of them, or each of P processes with
`cores // P` threads.
"""

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks.realdata import REPO, timing_digits

PAGE = REPO / "docs" / "distributed.md"
WINDOWS = "skipped on Windows: torchrun's multi-process gloo runs are not dependable there (the page's commands are for Linux)"


def page_fences(language: str) -> list[list[str]]:
    """The lines of each ```language fence of the page, read by docs/hooks/fences.py as the tests read pages."""
    # The hooks are not a package: load fences.py by its path, as mkdocs and tests/conftest.py do.
    spec = importlib.util.spec_from_file_location("docs_hook_fences", REPO / "docs" / "hooks" / "fences.py")
    fences = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fences)
    found, _ = fences.page_fences(PAGE.read_text(encoding="utf-8"))
    return [fence.lines for fence in found if fence.language == language]


def page_commands() -> list[str]:
    """Every `$ torchrun ...` line in the page's console fences."""
    return [line[2:] for lines in page_fences("console") for line in lines if line.startswith("$ torchrun ")]


def cpu_command() -> str:
    """The page's command for one machine without GPUs (the one the tests and this benchmark run)."""
    [command] = [c for c in page_commands() if "--device cpu" in c]
    return command


def page_argv(root: Path | None = None, out: Path | None = None, **flags) -> list[str]:
    """The page's CPU command as argv: ROOT and OUT filled in when given, each `flag=value` replacing that flag's value.

    `nproc_per_node=1` replaces `--nproc-per-node`'s value.

    Raises:
        ValueError: a flag in `flags` is not in the page's command.
    """
    argv = shlex.split(cpu_command())
    for name, value in flags.items():
        flag = "--" + name.replace("_", "-")
        if flag not in argv:
            raise ValueError(f"{name}: the page's command has no {flag} to replace: {cpu_command()}")
        argv[argv.index(flag) + 1] = str(value)
    places = {"ROOT": root, "OUT": out}
    return [str(places[word]) if places.get(word) is not None else word for word in argv]


def python_argv(argv: list[str]) -> list[str]:
    """`torchrun ...` as `python -m torch.distributed.run ...` under this Python (torchrun is its console script)."""
    return [sys.executable, "-m", "torch.distributed.run", *argv[1:]] if argv[0] == "torchrun" else argv


def images_per_second(argv: list[str], out: Path, threads: int) -> float:
    """Run the page's command `argv` (OUT = `out`); return the last epoch's global images/s."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    done = subprocess.run(python_argv(argv), cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{shlex.join(argv)} failed with status {done.returncode}:\n{done.stderr[-2000:]}")
    history = json.loads((out / "history.json").read_text(encoding="utf-8"))
    return history[-1]["images_per_second"]


def run(out_dir: Path, quick: bool = False, work: Path | None = None, device: str = "cpu") -> dict:
    """Time 1 and 2 processes on `device` (2 only where there are two GPUs); return images/s and the speed-up."""
    if sys.platform == "win32":
        return {"skipped": WINDOWS}
    work = Path(work or out_dir)
    root, data = timing_digits(work, quick, "standin-distributed", num_train=256)
    cores = os.cpu_count() or 1
    counts = [1, 2] if device == "cpu" or torch.cuda.device_count() >= 2 else [1]
    runs = []
    for processes in counts:
        threads = max(1, cores // processes) if device == "cpu" else 1
        # The page's command with fewer epochs, for time (the last epoch is the one timed).
        flags = {"nproc_per_node": processes, "epochs": 1 if quick else 2, "device": device}
        out = work / f"distributed-{device}-{processes}"
        ips = images_per_second(page_argv(root, out, **flags), out, threads)
        runs.append(
            {
                "processes": processes,
                "threads_per_process": threads,
                "images_per_second": round(ips, 1),
                "command": shlex.join(page_argv(**flags)),
            }
        )  # as the page writes it: ROOT and OUT
    return {
        "device": device,
        "data": data,
        "batch_size": 64,
        "runs": runs,
        "speedup": round(runs[-1]["images_per_second"] / runs[0]["images_per_second"], 3) if len(runs) > 1 else None,
    }
