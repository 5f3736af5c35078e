"""Data-parallel training on the CPU with gloo: two processes, stand-in data, the page's own commands."""

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import torch.multiprocessing as mp
from torch.distributed.run import get_args_parser
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from cnnlesson import distributed
from cnnlesson.cli import build_parser
from cnnlesson.data import TensorLoader, write_standin_mnist
from cnnlesson.models import MNISTNet
from cnnlesson.train import load_checkpoint, train

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "distributed.md"
BATCH, STEPS, SEED = 8, 4, 3


def page_commands() -> list[str]:
    """Every `$ torchrun ...` line in the page's console fences."""
    fences = re.findall(r"```console\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S)
    lines = [line for fence in fences for line in fence.splitlines()]
    return [line[2:] for line in lines if line.startswith("$ torchrun ")]


def cpu_command() -> str:
    """The page's command for one machine without GPUs: the one these tests run."""
    [command] = [c for c in page_commands() if "--device cpu" in c]
    return command


def _run(argv: list[str], **kwargs) -> subprocess.Popen:
    # torchrun is the console script of torch.distributed.run; this runs it under the tests' Python.
    if argv[0] == "torchrun":
        argv = [sys.executable, "-m", "torch.distributed.run", *argv[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


# --- equivalence: 2 processes with batch B/2 == 1 process with batch B ------------------------


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(BATCH * STEPS, 1, 28, 28, generator=g, dtype=torch.float64), torch.randint(0, 10, (BATCH * STEPS,), generator=g)


def _model() -> MNISTNet:
    torch.manual_seed(SEED)
    return MNISTNet().double()  # no dropout; float64 so rounding stays far below the tolerance


def _rank(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    net = _model()
    history = distributed.train(net, TensorLoader(*_data(), batch_size=BATCH, shuffle=True), device="cpu", num_epochs=1, seed=SEED, progress=False)
    if rank == 0:
        torch.save({"weights": net.state_dict(), "history": history}, out)


def _single(batch: int = BATCH, grad_scale: float = 1.0) -> dict:
    """One process, one epoch, on the order DistributedSampler draws in epoch 0 (randperm seeded SEED)."""
    net = _model()
    for p in net.parameters():
        p.register_hook(lambda g: g * grad_scale)
    X, y = _data()
    train(net, TensorLoader(X, y, batch_size=batch, shuffle=True, seed=SEED), device="cpu", num_epochs=1, seed=SEED, progress=False)
    return net.state_dict()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_weights(a: dict, b: dict, rtol: float) -> None:
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=rtol, atol=1e-12, msg=lambda m: f"{name}: {m}")


def test_two_processes_with_half_batches_take_the_steps_of_one_process(tmp_path):
    out = tmp_path / "rank0.pt"
    mp.spawn(_rank, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)
    assert ddp["history"][0]["train_loss"] > 0
    reference = _single()
    rtol = 1e-7  # float64: the two runs differ only in summation order, ~1e-15
    _assert_weights(ddp["weights"], reference, rtol)
    start = _model().state_dict()
    # The tolerance can tell the wrong schemes apart: gradients summed over the
    # two ranks (twice as large; Adam is nearly scale-free, but not to 1e-7),
    # one rank's half batch alone, or no step at all.
    for wrong in (_single(grad_scale=2.0), _single(batch=BATCH // 2), start):
        with pytest.raises(AssertionError):
            _assert_weights(ddp["weights"], wrong, rtol)


# --- sharding, without processes -------------------------------------------------------------


def test_shard_splits_dataloader_and_in_memory_loader_alike():
    X, y = _data()
    lesson = DataLoader(TensorDataset(X, y), batch_size=BATCH, shuffle=True)
    memory = TensorLoader(X, y, batch_size=BATCH, shuffle=True)
    seen = []
    for rank in (0, 1):
        (a, sampler_a), (b, sampler_b) = (distributed.shard(loader, rank, 2, seed=5) for loader in (lesson, memory))
        for sampler in (sampler_a, sampler_b):
            sampler.set_epoch(1)
        batches_a, batches_b = list(a), list(b)
        assert len(batches_a) == len(a) == len(batches_b) == len(b) == STEPS
        for (xa, ya), (xb, yb) in zip(batches_a, batches_b):
            assert len(ya) == BATCH // 2
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
        seen += list(sampler_a)
        expected = DistributedSampler(X, num_replicas=2, rank=rank, seed=5)
        expected.set_epoch(1)
        assert list(sampler_a) == list(expected)
    assert sorted(seen) == list(range(len(X)))  # every image once per epoch, on one rank or the other


def test_global_batch_must_divide_between_processes():
    X, y = _data()
    with pytest.raises(ValueError, match=r"batch_size: the global batch \(9\) must be a multiple of the 2 processes"):
        distributed.shard(TensorLoader(X, y, batch_size=9, shuffle=True), 0, 2)
    with pytest.raises(TypeError, match="train_loader: expected a DataLoader or a TensorLoader, got list"):
        distributed.shard([(X, y)], 0, 2)


# --- the page's commands -----------------------------------------------------------------------


def test_every_torchrun_command_on_the_page_parses():
    commands = page_commands()
    assert len(commands) >= 3  # one machine's CPU, one machine's GPUs, two machines
    for command in commands:
        launcher = get_args_parser().parse_args(shlex.split(command)[1:])
        assert launcher.module and launcher.training_script == "cnnlesson", command
        args = build_parser().parse_args(launcher.training_script_args)
        assert args.command == "train" and args.batch_size % int(launcher.nproc_per_node) == 0, command


def _page_argv(root: Path, out: Path) -> list[str]:
    argv = shlex.split(cpu_command())
    return [{"ROOT": str(root), "OUT": str(out)}.get(word, word) for word in argv]


def test_page_command_survives_a_killed_rank_and_resumes(tmp_path):
    root, out = tmp_path / "data", tmp_path / "out"
    write_standin_mnist(root, num_train=768, num_test=64)
    job = _run(_page_argv(root, out))
    checkpoint = out / "checkpoint.pt"
    while not checkpoint.exists() and job.poll() is None:
        time.sleep(0.02)
    assert job.poll() is None, job.communicate()
    time.sleep(0.2)  # into the next epoch's steps
    [rank1] = [p for p in psutil.Process(job.pid).children(recursive=True) if p.environ().get("RANK") == "1"]
    rank1.send_signal(signal.SIGKILL)
    _, stderr = job.communicate(timeout=300)
    assert job.returncode != 0
    # torchrun names the rank that failed and why; rank 0 says how to go on.
    assert re.search(r"rank\s*:\s*1", stderr) and "SIGKILL" in stderr, stderr[-3000:]
    assert f"cnnlesson train: error: rank 0: another process of the job stopped" in stderr, stderr[-3000:]
    assert f"the last checkpoint is {checkpoint}, run the same command with --resume" in stderr
    state = load_checkpoint(checkpoint, MNISTNet())
    assert 1 <= len(state["history"]) < 3

    resumed = _run(_page_argv(root, out) + ["--resume"])
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[: len(state["history"])] == state["history"]  # continued, not restarted
    assert "test accuracy" in stdout and stdout.count("wrote ") == 1  # rank 0 alone reports


def test_without_torchrun_the_same_command_trains_in_one_process(tmp_path):
    root, out = tmp_path / "data", tmp_path / "out"
    write_standin_mnist(root, num_train=128, num_test=32)
    argv = _page_argv(root, out)
    argv = [sys.executable] + argv[argv.index("-m") :]
    job = _run(argv)
    stdout, stderr = job.communicate(timeout=300)
    assert job.returncode == 0, stderr[-3000:]
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1, 2, 3]
