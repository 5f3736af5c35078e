"""Data-parallel training under torchrun: PyTorch's DistributedDataParallel around the lesson's loop.

`torchrun --nproc-per-node N -m cnnlesson train ...` starts N copies of the
command; each is one *rank*. `train` then takes the steps of PyTorch's DDP
tutorial, in this order:

1. `init_process_group` from torchrun's environment (`RANK`, `WORLD_SIZE`,
   `MASTER_ADDR`, ...): NCCL on CUDA, gloo on the CPU;
2. give every rank its own share of the training images with a
   `DistributedSampler`, reshuffled each epoch by `set_epoch`;
3. wrap the model in `DistributedDataParallel`, whose `backward` averages the
   gradients of all ranks, so every rank takes the same optimizer step;
4. all-reduce the epoch's loss, accuracy and speed; rank 0 alone evaluates,
   prints and saves (and, to resume, reads the checkpoint and broadcasts it).

`--batch-size` stays the *global* batch: the images behind one optimizer step,
as in a single process. Each rank takes `batch_size // world_size` of them.
"""

import math
import os
import signal
import threading
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from cnnlesson.data import TensorLoader
from cnnlesson.device import get_device
from cnnlesson.train import (
    DivergedError, _check_seed, _check_train_arguments, _default_meta, _diverged, apply_checkpoint, evaluate, print_epoch,
    resume_from, save_checkpoint, train_epoch, write_history,
)


class ProcessLostError(RuntimeError):
    """Another process of the torchrun job stopped; the run can go on with `--resume`."""


def launched() -> bool:
    """True in a process that torchrun started (it sets `WORLD_SIZE`)."""
    return "WORLD_SIZE" in os.environ


def rank() -> int:
    """This process's rank: 0 outside torchrun."""
    return int(os.environ.get("RANK", 0))


def local_device(device: torch.device) -> torch.device:
    """Under torchrun each rank on a machine takes its own GPU, `cuda:LOCAL_RANK`.

    Raises:
        ValueError: on CUDA, `LOCAL_RANK` is not set (torchrun sets it).
    """
    if device.type != "cuda" or not launched():
        return device
    if "LOCAL_RANK" not in os.environ:
        raise ValueError("LOCAL_RANK: not set; it names this process's GPU on its machine (torchrun sets it)")
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    torch.cuda.set_device(device)
    return device


class _ShardedTensorLoader:
    """TensorLoader's in-memory batches, in the order a DistributedSampler gives this rank."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor, batch_size: int, sampler: DistributedSampler):
        self.X, self.y, self.batch_size, self.sampler = X, y, batch_size, sampler

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self):
        order = torch.tensor(list(self.sampler), device=self.X.device)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.X[idx], self.y[idx]


def shard(loader: DataLoader | TensorLoader, rank: int, world_size: int, seed: int = 0) -> tuple[Iterable, DistributedSampler]:
    """Split a shuffling training loader between ranks; return this rank's loader and its sampler.

    The loader's batch size is the global one; each rank gets `batch_size //
    world_size` images a step. The DataLoader and the in-memory loader are
    split alike, by a `DistributedSampler` (call its `set_epoch` every epoch).

    Raises:
        ValueError: the batch size is not a multiple of `world_size`.
        TypeError: `loader` is neither a DataLoader nor a TensorLoader.
    """
    if not isinstance(loader, (DataLoader, TensorLoader)):
        raise TypeError(f"train_loader: expected a DataLoader or a TensorLoader, got {type(loader).__name__}")
    if loader.batch_size % world_size:
        raise ValueError(
            f"batch_size: the global batch ({loader.batch_size}) must be a multiple of the "
            f"{world_size} processes, so that each takes the same share; got {loader.batch_size}"
        )
    per_rank = loader.batch_size // world_size
    dataset = loader.dataset if isinstance(loader, DataLoader) else loader.X
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    if isinstance(loader, DataLoader):
        return DataLoader(loader.dataset, batch_size=per_rank, sampler=sampler), sampler
    return _ShardedTensorLoader(loader.X, loader.y, per_rank, sampler), sampler


def _on_cpu(state):
    """A copy of a (nested) state dict with every tensor on the CPU, so that any rank can unpickle it."""
    if isinstance(state, torch.Tensor):
        return state.cpu()
    if isinstance(state, dict):
        return {key: _on_cpu(value) for key, value in state.items()}
    if isinstance(state, list):
        return [_on_cpu(value) for value in state]
    return state


def _resume_all_ranks(checkpoint, net: nn.Module, optimizer, lr: float, seed: int | None, meta: dict, num_epochs: int):
    """Rank 0 reads `checkpoint` and sends what it restored to every rank; return (history, seed).

    Only rank 0 writes OUT, so on a second machine there is no checkpoint to
    read. DDP would copy rank 0's weights, but not Adam's state, the history
    or the seed, so rank 0 broadcasts all of them. No checkpoint on rank 0:
    every rank starts afresh.
    """
    sent: list = [None]
    if dist.get_rank() == 0 and Path(checkpoint).exists():
        try:
            history, seed = resume_from(checkpoint, net, optimizer, lr, seed, meta, num_epochs)
            sent = [{"model_state": _on_cpu(net.state_dict()), "optimizer_state": _on_cpu(optimizer.state_dict()),
                     "history": history, "seed": seed}]
        except (OSError, ValueError) as err:
            sent = [{"error": err}]  # the other ranks stop with the same error instead of waiting
    dist.broadcast_object_list(sent, src=0)
    state = sent[0]
    if state is None:
        return [], seed
    if "error" in state:
        raise state["error"]
    if dist.get_rank() != 0:
        apply_checkpoint(state, net, optimizer, checkpoint)  # rank 0's optimizer already holds this run's lr
        meta["seed"] = state["seed"]
    return state["history"], state["seed"]


def _global_record(record: dict, images: int, device: torch.device) -> dict:
    """The whole job's numbers from one rank's epoch: sums over ranks, the slowest rank's time."""
    sums = torch.tensor([record["train_loss"] * images, record["train_accuracy"] * images, images], dtype=torch.float64, device=device)
    dist.all_reduce(sums)
    seconds = torch.tensor([record["seconds"]], dtype=torch.float64, device=device)
    dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
    loss, correct, seen = sums.tolist()
    return {
        "train_loss": loss / seen,
        "train_accuracy": correct / seen,
        "seconds": seconds.item(),
        "images_per_second": seen / seconds.item(),
    }


def train(
    net: nn.Module,
    train_loader: DataLoader | TensorLoader,
    test_loader: Iterable | None = None,
    num_epochs: int = 5,
    lr: float = 0.001,
    device: str | torch.device | None = None,
    seed: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    meta: dict | None = None,
    history_file: str | os.PathLike | None = None,
) -> list[dict]:
    """`cnnlesson.train.train` for one rank of a torchrun job: same arguments, same history.

    `train_loader` is the shuffling loader of a single process, with the
    global batch size; `shard` splits it. Every rank returns the same
    history: all-reduced training numbers and rank 0's test accuracy on
    the whole test set. Rank 0 alone prints and writes the checkpoint; with
    `resume`, rank 0 alone reads it and sends it to the other ranks, which
    need not see it. On CUDA each rank trains on `cuda:LOCAL_RANK`, and
    BatchNorm layers become `SyncBatchNorm` (statistics over the global
    batch); on the CPU, where torch has no SyncBatchNorm, each rank
    normalises with its own share of the batch.

    Raises:
        ProcessLostError: another rank stopped during the run.
        ValueError: on CUDA, `LOCAL_RANK` is not set; or, on every rank, the
            checkpoint cannot be resumed (see `cnnlesson.train.resume_from`).
    """
    _check_train_arguments(net, num_epochs, lr, resume, checkpoint)
    _check_seed(seed, num_epochs)
    device = local_device(get_device(device))  # each rank its own GPU, also when called from Python
    meta = _default_meta(net, seed, meta)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    me, world = dist.get_rank(), dist.get_world_size()
    previous = None
    if threading.current_thread() is threading.main_thread():
        # When one rank fails, torchrun ends the others with SIGTERM: say so instead of vanishing.
        previous = signal.signal(signal.SIGTERM, _stopped_by_torchrun)
    try:
        if device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        net.to(device)
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        history: list[dict] = []
        if resume:
            history, seed = _resume_all_ranks(checkpoint, net, optimizer, lr, seed, meta, num_epochs)
        # After resuming: a run resumed without a seed shuffles with the checkpoint's.
        loader, sampler = shard(train_loader, me, world, seed=0 if seed is None else seed)
        model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
        for epoch in range(len(history), num_epochs):
            sampler.set_epoch(epoch)  # a new shuffle each epoch, the same on every rank
            if seed is not None:
                # Dropout differs between ranks but is fixed per (seed, epoch, rank); one rank seeds as train.train.
                torch.manual_seed((seed + epoch) * world + me)
            label = f"epoch {epoch + 1}/{num_epochs}" if progress and me == 0 else None
            local = train_epoch(model, loader, nn.CrossEntropyLoss(), optimizer, device, label)
            record = {"epoch": epoch + 1, **_global_record(local, len(sampler), device)}
            problem = _diverged(record, net)  # the same on every rank: the numbers are all-reduced, the weights equal
            if problem is not None:
                kept = f"; {checkpoint} keeps epoch {len(history)}" if checkpoint is not None and history else ""
                raise DivergedError(f"training diverged in epoch {epoch + 1}: {problem}{kept}; try a smaller lr (now {lr:g})")
            accuracy = [evaluate(net, test_loader, device) if me == 0 and test_loader is not None else None]
            dist.broadcast_object_list(accuracy, src=0)
            record["test_accuracy"] = accuracy[0]
            history.append(record)
            if me == 0 and progress:
                print_epoch(record)
            if me == 0 and checkpoint is not None:
                save_checkpoint(checkpoint, net, optimizer, history, meta)
            if me == 0 and history_file is not None:
                write_history(history_file, history)
        return history
    except RuntimeError as err:  # gloo reports a lost peer as a plain RuntimeError, NCCL as a DistError
        if not isinstance(err, (dist.DistError, ProcessLostError)) and "gloo" not in str(err):
            raise
        if previous is not None:  # this rank's part is over: let it exit with its message, not be cut short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            previous = None
        where = f"; the last checkpoint is {checkpoint}, run the same command with --resume" if checkpoint else ""
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ProcessLostError(f"rank {me}: another process of the job stopped ({first}){where}") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        dist.destroy_process_group()


def _stopped_by_torchrun(signum, frame):
    raise ProcessLostError("torchrun sent SIGTERM")

