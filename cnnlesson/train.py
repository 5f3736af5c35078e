"""The lesson's training loop, with what a real trainer needs.

`train` is section 5's loop (Adam, cross-entropy, `zero_grad`, `backward`,
`step`) plus: a device chosen for you, seeded epochs, a tqdm bar, a
per-epoch history, and atomic checkpoints that a run can resume from. The
same loop runs one process and, through `cnnlesson.distributed`, each
process of a torchrun job.
"""

import json
import math
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn as nn
from tqdm.auto import tqdm

import cnnlesson.device
from cnnlesson._checks import check_int
from cnnlesson.checkpoint import apply_checkpoint, load_checkpoint, save_checkpoint
from cnnlesson.files import write_text_atomic
from cnnlesson.models import MODELS

__all__ = [
    "DivergedError",
    "EPOCHS_MAX",
    "SEED_MAX",
    "evaluate",
    "print_epoch",
    "train",
    "train_epoch",
    "write_history",
]

# torch.manual_seed takes 0 .. 2**64 - 1, and epoch e of a run seeded s uses s + e:
# with these limits that always fits.
SEED_MAX = 2**63 - 1
EPOCHS_MAX = 1_000_000

# Meta entries a resumed run must share with its checkpoint (data_root may move).
_RESUME_KEYS = ("model", "dataset", "pad", "seed", "standin")


class DivergedError(RuntimeError):
    """Training produced a non-finite loss or weights; the last good checkpoint is kept."""


def _model_device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


def train_epoch(
    net: nn.Module, loader: Iterable, loss_fn, optimizer, device: torch.device, progress: str | None = None
) -> dict:
    """Run one epoch of the lesson's loop; return its loss, accuracy and speed."""
    net.train()
    # Sums stay on the device: reading a value with .item() every batch would
    # make the CPU wait for the GPU each step.
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    start = time.perf_counter()
    batches = tqdm(loader, desc=progress, leave=False, disable=progress is None, unit="batch")
    for step, (images, labels) in enumerate(batches):
        images, labels = images.to(device), labels.to(device)
        outputs = net(images)
        loss = loss_fn(outputs, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total_loss += loss.detach() * len(labels)
        correct += (outputs.argmax(1) == labels).sum()
        seen += len(labels)
        if progress is not None and step % 20 == 0:
            batches.set_postfix(loss=f"{loss.item():.4f}")
    loss_sum, right = total_loss.item(), correct.item()  # waits for the last step
    seconds = time.perf_counter() - start
    if seen == 0:
        raise ValueError("train_loader: expected at least one batch, got none")
    return {
        "train_loss": loss_sum / seen,
        "train_accuracy": right / seen,
        "seconds": seconds,
        "images_per_second": seen / seconds,
    }


@torch.no_grad()
def evaluate(net: nn.Module, loader: Iterable, device: str | torch.device | None = None) -> float:
    """Return the accuracy (0..1) of `net` on `loader`, on `net`'s device unless given.

    With a `device` other than the net's, the net is moved there for the
    count and moved back afterwards; its train/eval mode is put back too.
    """
    home, was_training = _model_device(net), net.training
    device = cnnlesson.device.get_device(device) if device is not None else home
    net.to(device).eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    try:
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            correct += (net(images).argmax(1) == labels).sum()
            seen += len(labels)
    finally:
        net.to(home).train(was_training)
    if seen == 0:
        raise ValueError("loader: expected at least one batch, got none")
    return correct.item() / seen  # one wait for the device, not one per batch


# --- the loop ------------------------------------------------------------------


def print_epoch(record: dict) -> None:
    """Print one line of an epoch's history record (through tqdm, so a bar stays intact)."""
    shown = "-" if record["test_accuracy"] is None else f"{record['test_accuracy']:.4f}"
    tqdm.write(
        f"epoch {record['epoch']}: loss {record['train_loss']:.4f}, "
        f"train acc {record['train_accuracy']:.4f}, test acc {shown}, "
        f"{record['images_per_second']:.0f} images/s"
    )


def write_history(path: str | os.PathLike, history: list[dict]) -> Path:
    """Write `history` to `path` as strict JSON (no NaN or Infinity), atomically."""
    return write_text_atomic(path, json.dumps(history, indent=2, allow_nan=False) + "\n")


class OneProcess:
    """How `train` runs in one process: the steps `cnnlesson.distributed` replaces to run it in many.

    Each method is what a single process does at that point of the loop.
    """

    rank = 0  # the process that prints and writes files

    def prepare(self, net: nn.Module, device: torch.device) -> nn.Module:
        """The net, on `device`, whose parameters the optimizer steps."""
        return net.to(device)

    def wrap(self, net: nn.Module) -> nn.Module:
        """The module that runs the training steps."""
        return net

    def batches(self, loader: Iterable, seed: int | None) -> Iterable:
        """This process's training batches."""
        return loader

    def start_epoch(self, epoch: int, seed: int | None) -> None:
        """Fix the epoch's shuffling and dropout by (seed, epoch)."""
        if seed is not None:
            torch.manual_seed(seed + epoch)

    def combine(self, record: dict) -> dict:
        """The whole run's numbers for the epoch."""
        return record

    def share(self, value):
        """Rank 0's `value`, on every process."""
        return value


def _check_train_arguments(net, num_epochs, lr, seed, resume, checkpoint) -> None:
    """The checks `train` makes before any work."""
    if not isinstance(net, nn.Module):
        raise TypeError(f"net: expected a torch.nn.Module, got {type(net).__name__}")
    check_int("num_epochs", num_epochs, 1, EPOCHS_MAX)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
        raise ValueError(f"lr: expected a positive finite number, got {lr!r}")
    if seed is not None:
        check_int("seed", seed, 0, SEED_MAX)
    if resume and checkpoint is None:
        raise ValueError("resume: resume=True needs checkpoint=PATH to resume from")


def _default_meta(net: nn.Module, seed: int | None, meta: dict | None) -> dict:
    """`meta` with the seed, and the model's name when it is one of the lesson's models, filled in."""
    names: dict[type[nn.Module], str] = {cls: name for name, cls in MODELS.items()}
    return {**({"model": names[type(net)]} if type(net) in names else {}), "seed": seed, **(meta or {})}


def _read_for_resume(checkpoint, seed: int | None, meta: dict) -> dict:
    """Load and check `checkpoint` for a run with `seed` and `meta`; it must agree with `meta` on `_RESUME_KEYS`."""
    # Load to the CPU: load_state_dict copies the weights to the net's device, and
    # the optimizer puts each state where it belongs (Adam keeps its step
    # counters on the CPU; on the GPU, reading them would wait every step).
    state = load_checkpoint(checkpoint, map_location="cpu")
    saved = state["meta"]
    if saved.get("seed") is not None and not 0 <= saved["seed"] <= SEED_MAX:
        raise ValueError(
            f"checkpoint: {checkpoint} has a bad meta['seed']: expected an int from 0 to {SEED_MAX}, got {saved['seed']}"
        )
    if seed is None and saved.get("seed") is not None:
        # No seed given: continue the seeded run as it began, not unseeded.
        print(f"resume: with the checkpoint's seed {saved['seed']}", file=sys.stderr)
        meta = {**meta, "seed": saved["seed"]}
    for key in _RESUME_KEYS:
        if key in saved and key in meta and saved[key] != meta[key]:
            raise ValueError(
                f"resume: {checkpoint} was trained with {key}={saved[key]!r}, this run has {key}={meta[key]!r}; "
                f"use the same {key}, or start a fresh run in another folder"
            )
    return state


def _resume(checkpoint, net: nn.Module, optimizer, lr: float, seed: int | None, meta: dict, process: OneProcess):
    """Fill `net` and `optimizer` from `checkpoint`, read by rank 0; return (history, seed).

    With no `seed` the checkpoint's is used (and written into `meta`); this
    run's `lr` replaces the one in the restored optimizer state, and its
    `meta['batch_size']` (the CLI records it) the checkpoint's. Each is said
    on stderr when it differs. No checkpoint yet: the run starts afresh.
    """
    state: dict | Exception | None = None
    if process.rank == 0 and Path(checkpoint).exists():
        try:
            state = _read_for_resume(checkpoint, seed, meta)
        except (OSError, ValueError) as err:
            state = err  # every process stops with the same error instead of waiting
    state = process.share(state)
    if isinstance(state, Exception):
        raise state
    if state is None:
        return [], seed
    apply_checkpoint(state, net, optimizer, checkpoint)
    if seed is None:
        seed = meta["seed"] = state["meta"].get("seed")
    # The restored Adam state carries the old lr; this call's lr wins, and says so.
    old_lr = optimizer.param_groups[0]["lr"]
    for group in optimizer.param_groups:
        group["lr"] = lr
    if old_lr != lr and process.rank == 0:
        print(f"resume: learning rate changed from {old_lr:g} to {lr:g}", file=sys.stderr)
    # The batch size lives in the loader; the CLI records it in meta, and a change is said like lr's.
    old_batch, batch = state["meta"].get("batch_size"), meta.get("batch_size")
    if None not in (old_batch, batch) and old_batch != batch and process.rank == 0:
        print(f"resume: batch size changed from {old_batch} to {batch}", file=sys.stderr)
    return state["history"], seed


def _diverged(record: dict, net: nn.Module) -> str | None:
    """Why this epoch's result cannot be kept, or None."""
    if not math.isfinite(record["train_loss"]):
        return f"the training loss is {record['train_loss']}"
    # One check for all weights: one wait for the GPU per epoch, not one per tensor.
    if torch.stack([(~torch.isfinite(p)).sum() for p in net.parameters()]).sum().item() > 0:
        return "some weights are not finite"
    return None


def train(
    net: nn.Module,
    train_loader: Iterable,
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
    process: OneProcess | None = None,
) -> list[dict]:
    """Train `net` with Adam and cross-entropy; return one dict per epoch.

    Each dict holds `epoch`, `train_loss`, `train_accuracy`, `test_accuracy`
    (None without a `test_loader`), `seconds` and `images_per_second`.

    With `seed` (0 to `SEED_MAX`), epoch `e` starts from
    `torch.manual_seed(seed + e)`, so the shuffling and dropout of every
    epoch are fixed: a seeded CPU run is reproducible, and a run resumed from
    its checkpoint ends with the same weights as one that never stopped. On
    CUDA that holds only after `cnnlesson.device.set_deterministic()` (the
    CLI's `--deterministic`): by default cuDNN picks nondeterministic
    algorithms and TF32 rounding.

    With `checkpoint`, the state is saved atomically after every epoch, with
    `meta` (the seed, and the name of one of the lesson's models, are
    added), and `history_file` gets the history as strict JSON right after.
    `resume=True` continues from the checkpoint (or starts afresh when the
    file does not exist yet) with this call's `lr` (and loaders: a
    `meta['batch_size']` other than the checkpoint's is said, as a new lr is),
    and with the checkpoint's seed when `seed` is None; its `meta` must agree
    with the checkpoint's on the model, data set, padding, seed and stand-in
    flag. The optimizer state must be what this function's Adam writes (lr
    aside): a crafted maximize, eps or betas is refused before any step.

    `process` is for `cnnlesson.distributed.train`, which runs this loop in
    each process of a torchrun job; leave it out.

    Raises:
        DivergedError: an epoch ended with a non-finite loss or weights; that
            epoch is not saved, so the checkpoint keeps the last good one.
    """
    _check_train_arguments(net, num_epochs, lr, seed, resume, checkpoint)
    process = process or OneProcess()
    device = cnnlesson.device.get_device(device)
    meta = _default_meta(net, seed, meta)
    net = process.prepare(net, device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    history: list[dict] = []
    if resume:
        history, seed = _resume(checkpoint, net, optimizer, lr, seed, meta, process)
    # After resuming: a run resumed without a seed shuffles with the checkpoint's.
    model, batches = process.wrap(net), process.batches(train_loader, seed)
    main = process.rank == 0
    for epoch in range(len(history), num_epochs):
        process.start_epoch(epoch, seed)
        label = f"epoch {epoch + 1}/{num_epochs}" if progress and main else None
        record = {"epoch": epoch + 1, **process.combine(train_epoch(model, batches, loss_fn, optimizer, device, label))}
        problem = _diverged(record, net)  # the same in every process: the numbers are combined, the weights equal
        if problem is not None:
            kept = f"; {checkpoint} keeps epoch {len(history)}" if checkpoint is not None and history else ""
            raise DivergedError(
                f"training diverged in epoch {epoch + 1}: {problem}{kept}; try a smaller lr (now {lr:g})"
            )
        accuracy = evaluate(net, test_loader, device) if main and test_loader is not None else None
        record["test_accuracy"] = process.share(accuracy)
        history.append(record)
        if main and progress:
            print_epoch(record)
        if main and checkpoint is not None:
            save_checkpoint(checkpoint, net, optimizer, history, meta)
        if main and history_file is not None:
            write_history(history_file, history)
    return history
