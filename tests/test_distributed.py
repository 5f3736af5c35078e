"""Data-parallel training on the CPU with gloo: two processes, stand-in data, the page's own commands and diff."""

import json
import os
import re
import shlex
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

import cnnlesson.device
from benchmarks.distributed import cpu_command, page_argv, page_commands, page_fences, python_argv
from cnnlesson import distributed
from cnnlesson.checkpoint import load_checkpoint
from cnnlesson.cli import build_parser
from cnnlesson.data import TensorLoader
from cnnlesson.models import MNISTNet
from cnnlesson.standin import write_standin_mnist
from cnnlesson.train import SEED_MAX, train

REPO = Path(__file__).resolve().parents[1]
BATCH, STEPS, SEED = 8, 4, 3
gloo = pytest.mark.skipif(
    sys.platform == "win32", reason="torchrun and gloo process groups are not dependable on Windows"
)


def _run(argv: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        python_argv(argv),
        cwd=kwargs.pop("cwd", REPO),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _spawn(fn, args: tuple, nprocs: int = 2, timeout: float = 300) -> None:
    """`mp.spawn`, but ranks left waiting on each other fail the test after `timeout` s instead of hanging it."""
    # On Linux without CUDA the ranks fork from this process, which has imported torch already;
    # spawning fresh interpreters costs each rank that import again. Where CUDA is, this process
    # may have run autograd's GPU threads, which a forked child cannot use: the ranks are spawned.
    method = "fork" if sys.platform.startswith("linux") and not torch.cuda.is_available() else "spawn"
    context = mp.start_processes(fn, args=args, nprocs=nprocs, join=False, start_method=method)
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1):  # raises when a rank raised
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {nprocs} ranks were still running after {timeout} s: waiting on each other?")


# --- equivalence: 2 processes with batch B/2 == 1 process with batch B ------------------------


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(BATCH * STEPS, 1, 28, 28, generator=g, dtype=torch.float64), torch.randint(
        0, 10, (BATCH * STEPS,), generator=g
    )


def _loader() -> TensorLoader:
    """The single-process shuffling loader that `distributed.train` splits between ranks."""
    return TensorLoader(*_data(), batch_size=BATCH, shuffle=True)


def _model() -> MNISTNet:
    torch.manual_seed(SEED)
    return MNISTNet().double()  # no dropout; float64 so rounding stays far below the tolerance


def _torchrun_env(rank: int, world: int, port: int) -> dict:
    """The environment torchrun gives a rank, for a job on this machine."""
    return dict(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), TORCHELASTIC_RUN_ID="test")  # fmt: skip


def _join(rank: int, world: int, port: int) -> None:
    os.environ.update(_torchrun_env(rank, world, port))


def _rank(rank: int, world: int, port: int, out: str) -> None:
    _join(rank, world, port)
    torch.set_num_threads(1)
    net = _model()
    history = distributed.train(net, _loader(), device="cpu", num_epochs=1, seed=SEED, progress=False)
    if rank == 0:
        torch.save({"weights": net.state_dict(), "history": history}, out)


def _single(batch: int = BATCH, grad_scale: float = 1.0) -> dict:
    """One process, one epoch, on the order DistributedSampler draws in epoch 0 (randperm seeded SEED)."""
    net = _model()
    for p in net.parameters():
        p.register_hook(lambda g: g * grad_scale)
    X, y = _data()
    train(
        net,
        TensorLoader(X, y, batch_size=batch, shuffle=True, seed=SEED),
        device="cpu",
        num_epochs=1,
        seed=SEED,
        progress=False,
    )
    return net.state_dict()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_weights(a: dict, b: dict, rtol: float) -> None:
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=rtol, atol=1e-12, msg=lambda m, name=name: f"{name}: {m}")


@gloo
def test_two_processes_with_half_batches_take_the_steps_of_one_process(tmp_path):
    out = tmp_path / "rank0.pt"
    _spawn(_rank, (2, _free_port(), str(out)))
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


def _largest_seed_rank(rank: int, world: int, port: int, out: str) -> None:
    _join(rank, world, port)
    torch.set_num_threads(1)
    history = distributed.train(_model(), _loader(), device="cpu", num_epochs=2, seed=SEED_MAX, progress=False)
    if rank == 0:
        torch.save(history, out)


@gloo
def test_the_largest_seed_the_cli_takes_trains_two_epochs_on_two_ranks(tmp_path):
    """Each rank's seed for epoch 1, (SEED_MAX + 1) * 2 + rank, is past what torch.manual_seed takes: it must wrap, not raise."""
    assert build_parser().parse_args(["train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", "d",
                                      "--epochs", "2", "--seed", str(SEED_MAX), "--out", "o"]).seed == SEED_MAX  # fmt: skip
    _spawn(_largest_seed_rank, (2, _free_port(), str(tmp_path / "history.pt")))
    assert [r["epoch"] for r in torch.load(tmp_path / "history.pt", weights_only=True)] == [1, 2]


# --- resuming: rank 0 alone has the checkpoint ----------------------------------------------


def _resume_rank(rank: int, world: int, ports: list[int], folder: str) -> None:
    """Train 2 epochs straight, then 1 epoch + a resume to 2, each rank with its own OUT (as on two machines)."""
    _join(rank, world, ports[0])
    torch.set_num_threads(1)
    straight = _model()
    distributed.train(straight, _loader(), device="cpu", num_epochs=2, seed=SEED, progress=False)
    checkpoint = Path(folder) / f"machine{rank}" / "checkpoint.pt"  # only rank 0 writes, so rank 1's never exists
    os.environ["MASTER_PORT"] = str(ports[1])
    distributed.train(_model(), _loader(), device="cpu", num_epochs=1, seed=SEED, checkpoint=checkpoint, progress=False)
    os.environ["MASTER_PORT"] = str(ports[2])
    torch.manual_seed(100 + rank)  # other weights on each rank: the resume must bring rank 0's
    resumed = MNISTNet().double()
    # No seed: the run goes on with the checkpoint's, which rank 1 can only learn from rank 0.
    history = distributed.train(
        resumed, _loader(), device="cpu", num_epochs=2, checkpoint=checkpoint, resume=True, progress=False
    )
    torch.save(
        {"straight": straight.state_dict(), "resumed": resumed.state_dict(), "history": history},
        Path(folder) / f"rank{rank}.pt",
    )


@gloo
def test_resume_reads_the_checkpoint_on_rank_0_and_sends_it_to_the_others(tmp_path):
    _spawn(_resume_rank, (2, [_free_port() for _ in range(3)], str(tmp_path)))
    assert (tmp_path / "machine0" / "checkpoint.pt").exists() and not (tmp_path / "machine1").exists()
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["epoch"] for r in ranks[0]["history"]] == [1, 2] and ranks[0]["history"] == ranks[1]["history"]
    for rank in ranks:  # both resumed from epoch 1 with the same weights, Adam state and seed as the straight run
        _assert_weights(rank["resumed"], ranks[0]["straight"], rtol=1e-7)


@gloo
def test_resume_without_seed_shuffles_with_the_checkpoints_seed(tmp_path, monkeypatch, capsys):
    """One rank, in this process: 1 epoch + a resume without --seed == 2 epochs with the seed."""
    checkpoint = tmp_path / "checkpoint.pt"

    def run(net, **kwargs):
        monkeypatch.setenv("MASTER_PORT", str(_free_port()))
        return distributed.train(net, _loader(), device="cpu", progress=False, **kwargs)

    for name, value in _torchrun_env(0, 1, 0).items():
        monkeypatch.setenv(name, value)
    straight = _model()
    run(straight, num_epochs=2, seed=SEED)
    run(_model(), num_epochs=1, seed=SEED, checkpoint=checkpoint)
    resumed = _model()
    run(resumed, num_epochs=2, checkpoint=checkpoint, resume=True)
    assert f"resume: with the checkpoint's seed {SEED}" in capsys.readouterr().err
    _assert_weights(resumed.state_dict(), straight.state_dict(), rtol=1e-7)


def test_train_puts_each_rank_on_its_own_gpu(monkeypatch):
    """`train(device="cuda")` from Python: rank 1 takes cuda:1 before the process group starts (no GPU needed)."""
    for name, value in _torchrun_env(1, 2, 0).items():
        monkeypatch.setenv(name, value)
    chosen = []
    monkeypatch.setattr(cnnlesson.device, "get_device", torch.device)  # this machine may have no CUDA
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)

    class Started(Exception):
        pass

    def init_process_group(backend, timeout):
        assert timeout.total_seconds() == distributed.JOIN_TIMEOUT  # never torch's 30 minutes of silence
        raise Started(backend)

    monkeypatch.setattr(distributed.dist, "init_process_group", init_process_group)
    with pytest.raises(Started, match="nccl"):
        distributed.train(_model(), _loader(), device="cuda")
    assert chosen == [torch.device("cuda", 1)]
    monkeypatch.delenv("LOCAL_RANK")
    with pytest.raises(ValueError, match="set without LOCAL_RANK: torchrun sets all of them"):
        distributed.train(_model(), _loader(), device="cuda")


# --- sharding, without processes -------------------------------------------------------------


def test_shard_splits_dataloader_and_in_memory_loader_alike():
    X, y = _data()
    lesson = DataLoader(TensorDataset(X, y), batch_size=BATCH, shuffle=True)
    memory = TensorLoader(X, y, batch_size=BATCH, shuffle=True)
    seen = []
    for rank in (0, 1):
        (a, sampler_a), (b, sampler_b) = (distributed._shard(loader, rank, 2, seed=5) for loader in (lesson, memory))
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
        distributed._shard(TensorLoader(X, y, batch_size=9, shuffle=True), 0, 2)
    with pytest.raises(TypeError, match="train_loader: expected a DataLoader or a TensorLoader, got list"):
        distributed._shard([(X, y)], 0, 2)


# --- the page's commands -----------------------------------------------------------------------


def test_every_torchrun_command_on_the_page_parses():
    commands = page_commands()
    assert len(commands) >= 3  # one machine's CPU, one machine's GPUs, two machines
    for command in commands:
        launcher = get_args_parser().parse_args(shlex.split(command)[1:])
        assert launcher.module and launcher.training_script == "cnnlesson", command
        args = build_parser().parse_args(launcher.training_script_args)
        assert args.command == "train" and args.batch_size % int(launcher.nproc_per_node) == 0, command


# The lesson's imports and transform (docs/mnist.md), which the page's diff leaves as they are.
LESSON = """\
import torch
import torch.nn as nn
from torchvision import datasets, transforms
from torch.utils.data import DataLoader
from cnnlesson.models import MNISTNet
transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
"""
# What the page says changes on the CPU; each must be on the page exactly once.
ON_CPU = {
    "torch.cuda.set_device(local_rank)\n": "",
    'torch.device("cuda", local_rank)': 'torch.device("cpu")',
    'dist.init_process_group("nccl")': 'dist.init_process_group("gloo")',
    ", device_ids=[local_rank]": "",
}


def _diff_loop(gpus: int) -> str:
    """The new side of the page's diff after the lesson's imports; on the CPU (`gpus` 0) as the page says to change it."""
    [diff] = page_fences("diff")
    script = LESSON + "\n".join(line[1:] for line in diff if not line.startswith("-"))
    for old, new in ({} if gpus else ON_CPU).items():
        assert script.count(old) == 1, f"the page's diff should hold {old!r} once"
        script = script.replace(old, new)
    return script


@gloo
def test_the_pages_diff_trains_under_torchrun(tmp_path):
    """The diff's loop, under torchrun: on this machine's GPUs (up to 2) when it has them, else 2 processes on the CPU."""
    gpus = min(torch.cuda.device_count(), 2)
    write_standin_mnist(tmp_path / "data", num_train=256, num_test=16)
    (tmp_path / "loop.py").write_text(_diff_loop(gpus), encoding="utf-8")
    job = _run(["torchrun", "--standalone", "--nproc-per-node", str(gpus or 2), "loop.py"], cwd=tmp_path)
    _, stderr = job.communicate(timeout=300)
    assert job.returncode == 0, stderr[-3000:]
    MNISTNet().load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=True))  # rank 0 saved the model


def test_the_benchmark_changes_only_the_flags_it_names():
    """benchmarks/distributed.py runs the page's command with fewer epochs and other process counts."""
    page = shlex.split(cpu_command())
    argv = page_argv(Path("r"), None, nproc_per_node=1, epochs=1)
    assert [i for i, (a, b) in enumerate(zip(page, argv)) if a != b] == [
        page.index("--nproc-per-node") + 1,
        page.index("ROOT"),
        page.index("--epochs") + 1,
    ]
    assert argv[page.index("ROOT")] == "r" and argv[-1] == "OUT"
    with pytest.raises(ValueError, match="lr: the page's command has no --lr to replace"):
        page_argv(lr=0.1)


@gloo
def test_page_command_survives_a_killed_rank_and_resumes(tmp_path):
    root, out = tmp_path / "data", tmp_path / "out"
    write_standin_mnist(root, num_train=768, num_test=64)
    job = _run(page_argv(root, out))
    checkpoint = out / "checkpoint.pt"
    while not checkpoint.exists() and job.poll() is None:
        time.sleep(0.02)
    assert job.poll() is None, job.communicate()
    time.sleep(0.2)  # into the next epoch's steps
    [rank1] = [p for p in psutil.Process(job.pid).children(recursive=True) if p.environ().get("RANK") == "1"]
    rank1.kill()  # SIGKILL: no chance to say goodbye
    _, stderr = job.communicate(timeout=300)
    assert job.returncode != 0
    # torchrun names the rank that failed and why; rank 0 says how to go on.
    assert re.search(r"rank\s*:\s*1", stderr) and "SIGKILL" in stderr, stderr[-3000:]
    assert "cnnlesson train: error: rank 0: another process of the job stopped" in stderr, stderr[-3000:]
    assert f"the last checkpoint is {checkpoint}, run the same command with --resume" in stderr
    state = load_checkpoint(checkpoint, MNISTNet())
    assert 1 <= len(state["history"]) < 3

    resumed = _run(page_argv(root, out) + ["--resume"])
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[: len(state["history"])] == state["history"]  # continued, not restarted
    assert "test accuracy" in stdout and stdout.count("wrote ") == 1  # rank 0 alone reports


def test_without_torchrun_the_same_command_trains_in_one_process(tmp_path):
    root, out = tmp_path / "data", tmp_path / "out"
    write_standin_mnist(root, num_train=128, num_test=32)
    argv = page_argv(root, out)
    argv = [sys.executable] + argv[argv.index("-m") :]
    job = _run(argv)
    stdout, stderr = job.communicate(timeout=300)
    assert job.returncode == 0, stderr[-3000:]
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1, 2, 3]
