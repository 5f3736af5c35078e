"""Benchmark: images per second of data-parallel training with one and two processes.

Each run is the command of the "Training on several GPUs or machines" page:
`torchrun --standalone --nproc-per-node P -m cnnlesson train --model mnistnet
...` (global batch 64, digits in memory). The speed is the all-reduced
images/s of the last epoch in its `history.json` (the first epoch pays for
warm-up). On the CPU both runs get the same cores: one process with all of
them, or each of P processes with `cores // P` threads.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks.realdata import REPO, timing_digits


def images_per_second(processes: int, root: Path, out: Path, device: str, epochs: int, threads: int) -> float:
    """Train under torchrun with `processes` ranks; return the last epoch's global images/s."""
    argv = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
        "-m", "cnnlesson", "train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", str(root),
        "--epochs", str(epochs), "--device", device, "--seed", "0", "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed with status {done.returncode}:\n{done.stderr[-2000:]}")
    history = json.loads((out / "history.json").read_text(encoding="utf-8"))
    return history[-1]["images_per_second"]


def run(out_dir: Path, quick: bool = False, work: Path | None = None, device: str = "cpu") -> dict:
    """Time 1 and 2 processes on `device` (2 only where there are two GPUs); return images/s and the speed-up."""
    work = Path(work or out_dir)
    root, data = timing_digits(work, quick, "standin-distributed", num_train=256)
    cores = os.cpu_count() or 1
    counts = [1, 2] if device == "cpu" or torch.cuda.device_count() >= 2 else [1]
    runs = []
    for processes in counts:
        threads = max(1, cores // processes) if device == "cpu" else 1
        ips = images_per_second(processes, root, work / f"distributed-{device}-{processes}", device, 1 if quick else 2, threads)
        runs.append({"processes": processes, "threads_per_process": threads, "images_per_second": round(ips, 1)})
    return {
        "device": device,
        "data": data,
        "batch_size": 64,
        "runs": runs,
        "speedup": round(runs[-1]["images_per_second"] / runs[0]["images_per_second"], 3) if len(runs) > 1 else None,
    }
