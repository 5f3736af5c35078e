"""Data-parallel training under torchrun: PyTorch's DistributedDataParallel around the lesson's loop.

`torchrun --nproc-per-node N -m cnnlesson train ...` starts N copies of the
command; each is one *rank*. `train` runs `cnnlesson.train.train`'s loop in
each of them, adding the steps of PyTorch's DDP tutorial, in this order:

1. `init_process_group` from torchrun's environment (`RANK`, `WORLD_SIZE`,
   `MASTER_ADDR`, ...): NCCL on CUDA, gloo on the CPU; each process waits
   for the others up to `JOIN_TIMEOUT` seconds (`CNNLESSON_JOIN_TIMEOUT`);
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
import sys
import threading
from collections.abc import Iterable
from datetime import timedelta
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import cnnlesson.device
import cnnlesson.train

__all__ = ["JOIN_TIMEOUT", "JoinError", "Launch", "ProcessLostError", "torchrun_launch", "train"]

# What torchrun sets in every process it starts: all of them, or it did not start this one.
_TORCHRUN_VARIABLES = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_RUN_ID",
)
# How long a process waits for the others of its job, in seconds (NCCL's own default; it also bounds
# each later wait of one process for the others); the environment variable sets another.
JOIN_TIMEOUT = 600.0
TIMEOUT_VARIABLE = "CNNLESSON_JOIN_TIMEOUT"


class ProcessLostError(RuntimeError):
    """Another process of the torchrun job stopped; the run can go on with `--resume`."""


class JoinError(RuntimeError):
    """The processes of the torchrun job did not all meet (one was never started, or the address is taken)."""


class Launch(NamedTuple):
    """Where this process stands in a torchrun job, and how long it waits for the others (seconds)."""

    rank: int
    local_rank: int
    world_size: int
    timeout: float = JOIN_TIMEOUT

    def device(self, device: torch.device) -> torch.device:
        """This rank's device: on CUDA its own GPU, `cuda:LOCAL_RANK`, made the current one."""
        if device.type != "cuda":
            return device
        device = torch.device("cuda", self.local_rank)
        torch.cuda.set_device(device)
        return device


def torchrun_launch(environ=os.environ) -> Launch | None:
    """This process's place in its torchrun job, from the variables torchrun sets; None outside torchrun.

    Raises:
        ValueError: some of torchrun's variables are set but not all, or they
            contradict each other (a stray `RANK` would otherwise pass for a
            second rank, which writes nothing).
    """
    present = [name for name in _TORCHRUN_VARIABLES if name in environ]
    if not present:
        return None
    if len(present) < len(_TORCHRUN_VARIABLES):
        missing = [name for name in _TORCHRUN_VARIABLES if name not in environ]
        raise ValueError(
            f"{', '.join(present)} set without {', '.join(missing)}: torchrun sets all of them; "
            "unset the stray variables to train in one process, or start the command with torchrun"
        )
    numbers = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_PORT"):
        text = environ[name]
        if not (text.isascii() and text.isdigit()):
            raise ValueError(f"{name}: expected an int >= 0 (torchrun sets it), got {text!r}")
        numbers[name] = int(text)
    rank, world, local, local_world = (numbers[n] for n in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"))
    if not (0 <= rank < world and 0 <= local < local_world <= world):
        raise ValueError(
            f"torchrun's variables contradict each other: RANK={rank}, WORLD_SIZE={world}, "
            f"LOCAL_RANK={local}, LOCAL_WORLD_SIZE={local_world}"
        )
    return Launch(rank, local, world, _join_timeout(environ))


def _join_timeout(environ) -> float:
    """The seconds `TIMEOUT_VARIABLE` sets, or `JOIN_TIMEOUT`."""
    text = environ.get(TIMEOUT_VARIABLE)
    if text is None:
        return JOIN_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:  # also refuses nan
        raise ValueError(f"{TIMEOUT_VARIABLE}: expected a positive finite number of seconds, got {text!r}")
    return seconds


def _join(launch: Launch, backend: str) -> None:
    """`init_process_group` from torchrun's variables, waiting at most `launch.timeout` s for the other processes.

    torch's wait returns to Python only when it ends, so it runs in a thread
    of its own: a Ctrl-C meanwhile stops the run at once, not after the
    timeout. A wait of more than a second says on stderr what it waits for.

    Raises:
        JoinError: the job did not meet: one line naming the address and the timeout.
    """
    where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    outcome: list[BaseException | None] = []

    def join() -> None:
        try:
            dist.init_process_group(backend, timeout=timedelta(seconds=launch.timeout))
        except BaseException as err:  # handed to the waiting thread, which raises it
            outcome.append(err)
        else:
            outcome.append(None)

    thread = threading.Thread(target=join, name="cnnlesson-join", daemon=True)
    thread.start()
    thread.join(1.0)
    if thread.is_alive():
        print(
            f"torchrun: rank {launch.rank} of {launch.world_size} is waiting for the job's other processes at "
            f"{where} (MASTER_ADDR:MASTER_PORT), for up to {launch.timeout:g} s ({TIMEOUT_VARIABLE} sets it)",
            file=sys.stderr,
            flush=True,
        )
    thread.join()
    error = outcome[0] if outcome else RuntimeError("init_process_group ended without a result")
    if isinstance(error, dist.DistError):
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise JoinError(
            f"torchrun: rank {launch.rank} of {launch.world_size} could not join the job at {where} ({first}); "
            f"start all {launch.world_size} processes with one torchrun command, "
            f"or give them longer with {TIMEOUT_VARIABLE} (now {launch.timeout:g} s)"
        ) from None
    if error is not None:
        raise error


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


def _shard(loader, rank: int, world_size: int, seed: int = 0) -> tuple[Iterable, DistributedSampler]:
    """Split a shuffling training loader between ranks; return this rank's loader and its sampler.

    The loader's batch size is the global one; each rank gets `batch_size //
    world_size` images a step. The DataLoader and the in-memory loader are
    split alike, by a `DistributedSampler` (call its `set_epoch` every epoch).

    Raises:
        ValueError: the batch size is not a multiple of `world_size`.
        TypeError: `loader` is neither a DataLoader nor a TensorLoader.
    """
    from cnnlesson.data import TensorLoader  # torchvision: only once a job is running

    if not isinstance(loader, (DataLoader, TensorLoader)):
        raise TypeError(f"train_loader: expected a DataLoader or a TensorLoader, got {type(loader).__name__}")
    batch = loader.batch_size
    if batch is None or batch % world_size:
        raise ValueError(
            f"batch_size: the global batch ({batch}) must be a multiple of the "
            f"{world_size} processes, so that each takes the same share; got {batch}"
        )
    per_rank = batch // world_size
    dataset = (
        loader.dataset if isinstance(loader, DataLoader) else TensorDataset(loader.X)
    )  # the sampler needs only its length
    sampler: DistributedSampler = DistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed
    )
    if isinstance(loader, DataLoader):
        return DataLoader(loader.dataset, batch_size=per_rank, sampler=sampler), sampler
    return _ShardedTensorLoader(loader.X, loader.y, per_rank, sampler), sampler


class _Ranks(cnnlesson.train.OneProcess):
    """What DDP changes in the loop: the wrap, each rank's share of the data, all-reduced numbers, rank 0's values."""

    def __init__(self, device: torch.device):
        self.device, self.rank, self.world = device, dist.get_rank(), dist.get_world_size()

    def prepare(self, net: nn.Module, device: torch.device) -> nn.Module:
        if device.type == "cuda":  # batch statistics over the global batch; torch has no SyncBatchNorm on the CPU
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        return net.to(device)

    def wrap(self, net: nn.Module) -> nn.Module:
        return DistributedDataParallel(net, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def batches(self, loader: Iterable, seed: int | None) -> Iterable:
        loader, self.sampler = _shard(loader, self.rank, self.world, seed=0 if seed is None else seed)
        return loader

    def start_epoch(self, epoch: int, seed: int | None) -> None:
        self.sampler.set_epoch(epoch)  # a new shuffle each epoch, the same on every rank
        if seed is not None:
            # Dropout differs between ranks but is fixed per (seed, epoch, rank); one rank seeds as one process.
            # Modulo 2**64: for the largest seeds the product would overflow torch.manual_seed.
            torch.manual_seed(((seed + epoch) * self.world + self.rank) % 2**64)

    def combine(self, record: dict) -> dict:
        """The whole job's numbers from one rank's epoch: sums over ranks, the slowest rank's time."""
        images = len(self.sampler)
        sums = torch.tensor(
            [record["train_loss"] * images, record["train_accuracy"] * images, images],
            dtype=torch.float64,
            device=self.device,
        )
        dist.all_reduce(sums)
        seconds = torch.tensor([record["seconds"]], dtype=torch.float64, device=self.device)
        dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
        loss, correct, seen = sums.tolist()
        return {
            "train_loss": loss / seen,
            "train_accuracy": correct / seen,
            "seconds": seconds.item(),
            "images_per_second": seen / seconds.item(),
        }

    def share(self, value):
        sent = [value]
        dist.broadcast_object_list(sent, src=0)
        return sent[0]


def train(
    net: nn.Module,
    train_loader,
    test_loader: Iterable | None = None,
    *,
    device: str | torch.device | None = None,
    **kwargs,
) -> list[dict]:
    """`cnnlesson.train.train` for one rank of a torchrun job: same arguments, same history.

    `train_loader` is the shuffling DataLoader or TensorLoader of a single
    process, with the global batch size; each rank trains on its share.
    Every rank returns the same history: all-reduced training numbers and
    rank 0's test accuracy on the whole test set. Rank 0 alone prints and
    writes the checkpoint; with `resume`, rank 0 alone reads it and sends it
    to the other ranks, which need not see it. On CUDA each rank trains on
    `cuda:LOCAL_RANK`, and BatchNorm layers become `SyncBatchNorm`
    (statistics over the global batch); on the CPU, where torch has no
    SyncBatchNorm, each rank normalises with its own share of the batch.

    Raises:
        JoinError: the job's processes did not all meet within the timeout.
        ProcessLostError: another rank stopped during the run.
        ValueError: the process was not started by torchrun (see
            `torchrun_launch`); or, on every rank, the checkpoint cannot be resumed.
    """
    launch = torchrun_launch()
    if launch is None:
        raise ValueError(
            "cnnlesson.distributed.train: not started by torchrun (no RANK, WORLD_SIZE, ...); use cnnlesson.train.train"
        )
    device = launch.device(cnnlesson.device.get_device(device))  # each rank its own GPU, also when called from Python
    _join(launch, "nccl" if device.type == "cuda" else "gloo")
    previous = None
    if threading.current_thread() is threading.main_thread():
        # When one rank fails, torchrun ends the others with SIGTERM: say so instead of vanishing.
        previous = signal.signal(signal.SIGTERM, _stopped_by_torchrun)
    try:
        return cnnlesson.train.train(net, train_loader, test_loader, device=device, process=_Ranks(device), **kwargs)
    except RuntimeError as err:  # gloo reports a lost peer as a plain RuntimeError, NCCL as a DistError
        if not isinstance(err, (dist.DistError, ProcessLostError)) and "gloo" not in str(err):
            raise
        if previous is not None:  # this rank's part is over: let it exit with its message, not be cut short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            previous = None
        checkpoint = kwargs.get("checkpoint")
        where = f"; the last checkpoint is {checkpoint}, run the same command with --resume" if checkpoint else ""
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ProcessLostError(f"rank {dist.get_rank()}: another process of the job stopped ({first}){where}") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        dist.destroy_process_group()


def _stopped_by_torchrun(signum, frame):
    raise ProcessLostError("torchrun sent SIGTERM")
