"""The lesson's training loop, with what a real trainer needs.

`train` is section 5's loop (Adam, cross-entropy, `zero_grad`, `backward`,
`step`) plus: a device chosen for you, seeded epochs, a tqdm bar, a
per-epoch history, and atomic checkpoints that a run can resume from.
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

from cnnlesson.device import DEVICE_ENV, get_device  # noqa: F401 - re-exported: the pages import it from here
from cnnlesson.files import atomic_path, write_text_atomic
from cnnlesson.models import MODELS

_CHECKPOINT_KEYS = {"model_state", "optimizer_state", "history", "meta"}
# torch.manual_seed takes at most 2**64 - 1; epoch e uses seed + e.
_SEED_LIMIT = 2**64 - 1
# Meta entries a resumed run must share with its checkpoint (data_root may move).
RESUME_KEYS = ("model", "dataset", "pad", "seed", "standin")
# The types of the meta entries the CLI writes (the library writes model and seed).
# Exact types: bool is an int to isinstance, but True is no padding.
_META_TYPES = {"model": (str,), "dataset": (str,), "data_root": (str,), "pad": (int,), "seed": (int, type(None)), "standin": (bool,)}


class DivergedError(RuntimeError):
    """Training produced a non-finite loss or weights; the last good checkpoint is kept."""


def _model_device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


def train_epoch(net: nn.Module, loader: Iterable, loss_fn, optimizer, device: torch.device, progress: str | None = None) -> dict:
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
    total_loss, correct = total_loss.item(), correct.item()  # waits for the last step
    seconds = time.perf_counter() - start
    if seen == 0:
        raise ValueError("train_loader: expected at least one batch, got none")
    return {
        "train_loss": total_loss / seen,
        "train_accuracy": correct / seen,
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
    device = get_device(device) if device is not None else home
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


def save_checkpoint(path: str | os.PathLike, net: nn.Module, optimizer=None, history: list | None = None, meta: dict | None = None) -> Path:
    """Save weights, optimizer state, history and metadata atomically to `path`."""
    state = {
        "model_state": net.state_dict(),
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
        "history": list(history or []),
        "meta": dict(meta or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, net: nn.Module | None = None, optimizer=None, map_location="cpu") -> dict:
    """Load a checkpoint with `weights_only=True`; fill `net` and `optimizer` when given.

    Raises:
        FileNotFoundError: there is no file at `path`.
        ValueError: the file is not a cnnlesson checkpoint, an entry has the
            wrong type (history=5, meta['model']=['x']), or its weights do
            not fit `net`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no file at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]  # weights_only errors run to many lines
        raise ValueError(f"checkpoint: {path} is not a readable torch checkpoint ({first})") from None
    if not isinstance(state, dict) or not _CHECKPOINT_KEYS <= state.keys():
        raise ValueError(f"checkpoint: {path} was not written by cnnlesson.train.save_checkpoint")
    problem = _type_problem(state)
    if problem is not None:
        raise ValueError(f"checkpoint: {path} has a bad {problem}")
    apply_checkpoint(state, net, optimizer, path)
    return state


def _type_problem(state: dict) -> str | None:
    """Which entry of `state` has another type than save_checkpoint writes, and why; None if none.

    weights_only keeps code out of a checkpoint, not wrong values: a crafted
    file could hold history=5, and every reader would fail with a TypeError.
    """
    kind = {key: type(value).__name__ for key, value in state.items()}
    if not isinstance(state["model_state"], dict):
        return f"model_state: expected a dict, got {kind['model_state']}"
    if not isinstance(state["optimizer_state"], (dict, type(None))):
        return f"optimizer_state: expected a dict or None, got {kind['optimizer_state']}"
    if not isinstance(state["history"], list) or not all(isinstance(r, dict) for r in state["history"]):
        return f"history: expected a list of dicts, got {kind['history']}"
    if not isinstance(state["meta"], dict):
        return f"meta: expected a dict, got {kind['meta']}"
    for key, types in _META_TYPES.items():
        if key in state["meta"] and type(state["meta"][key]) not in types:
            expected = " or ".join("None" if t is type(None) else t.__name__ for t in types)
            return f"meta['{key}']: expected {expected}, got {type(state['meta'][key]).__name__}"
    return None


def apply_checkpoint(state: dict, net: nn.Module | None = None, optimizer=None, path: str | os.PathLike = "checkpoint") -> None:
    """Fill `net` and `optimizer` from a state that `load_checkpoint` returned (named `path` in errors).

    Raises:
        ValueError: the weights do not fit `net`.
    """
    if net is not None:
        try:
            net.load_state_dict(state["model_state"])
        except RuntimeError as err:
            first = str(err).splitlines()[0]
            raise ValueError(f"checkpoint: weights in {path} do not fit {type(net).__name__} ({first})") from None
    if optimizer is not None and state["optimizer_state"] is not None:
        optimizer.load_state_dict(state["optimizer_state"])


def print_epoch(record: dict) -> None:
    """Print one line of an epoch's history record (through tqdm, so a bar stays intact)."""
    shown = "-" if record["test_accuracy"] is None else f"{record['test_accuracy']:.4f}"
    tqdm.write(
        f"epoch {record['epoch']}: loss {record['train_loss']:.4f}, "
        f"train acc {record['train_accuracy']:.4f}, test acc {shown}, "
        f"{record['images_per_second']:.0f} images/s"
    )


def _check_positive(**values) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise ValueError(f"{name}: expected a positive finite number, got {value!r}")


def _check_seed(seed, num_epochs: int) -> None:
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int or None, got {type(seed).__name__}")
    if not 0 <= seed <= _SEED_LIMIT - (num_epochs - 1):
        raise ValueError(f"seed: expected an int from 0 to {_SEED_LIMIT - (num_epochs - 1)} (seed + epoch must fit torch.manual_seed), got {seed}")


def _default_meta(net: nn.Module, seed: int | None, meta: dict | None) -> dict:
    """`meta` with the seed, and the model's name when it is one of the lesson's models, filled in."""
    names = {cls: name for name, cls in MODELS.items()}
    return {**({"model": names[type(net)]} if type(net) in names else {}), "seed": seed, **(meta or {})}


def _check_resume_meta(checkpoint, saved: dict, meta: dict) -> None:
    for key in RESUME_KEYS:
        if key in saved and key in meta and saved[key] != meta[key]:
            raise ValueError(
                f"resume: {checkpoint} was trained with {key}={saved[key]!r}, this run has {key}={meta[key]!r}; "
                f"use the same {key}, or start a fresh run in another folder"
            )


def _diverged(record: dict, net: nn.Module) -> str | None:
    """Why this epoch's result cannot be kept, or None."""
    if not math.isfinite(record["train_loss"]):
        return f"the training loss is {record['train_loss']}"
    # One check for all weights: one wait for the GPU per epoch, not one per tensor.
    if torch.stack([(~torch.isfinite(p)).sum() for p in net.parameters()]).sum().item() > 0:
        return "some weights are not finite"
    return None


def write_history(path: str | os.PathLike, history: list[dict]) -> Path:
    """Write `history` to `path` as strict JSON (no NaN or Infinity), atomically."""
    return write_text_atomic(path, json.dumps(history, indent=2, allow_nan=False) + "\n")


def _check_train_arguments(net, num_epochs, lr, resume, checkpoint) -> None:
    """The checks `train` (and `cnnlesson.distributed.train`) make before any work."""
    if not isinstance(net, nn.Module):
        raise TypeError(f"net: expected a torch.nn.Module, got {type(net).__name__}")
    if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 1:
        raise ValueError(f"num_epochs: expected a positive int, got {num_epochs!r}")
    _check_positive(lr=lr)
    if resume and checkpoint is None:
        raise ValueError("resume: resume=True needs checkpoint=PATH to resume from")


def resume_from(checkpoint, net: nn.Module, optimizer, lr: float, seed: int | None, meta: dict, num_epochs: int):
    """Fill `net` and `optimizer` from `checkpoint` for a resumed run; return (history, seed).

    The run's `meta` must agree with the checkpoint's on `RESUME_KEYS`; with
    no `seed` the checkpoint's is used (and written into `meta`); this run's
    `lr` replaces the one in the restored optimizer state. Both are said on stderr.
    """
    # Load to the CPU: load_state_dict copies the weights to the net's device, and
    # the optimizer puts each state where it belongs (Adam keeps its step
    # counters on the CPU; on the GPU, reading them would wait every step).
    state = load_checkpoint(checkpoint, map_location="cpu")
    if seed is None and state["meta"].get("seed") is not None:
        # No seed given: continue the seeded run as it began, not unseeded.
        seed = meta["seed"] = state["meta"]["seed"]
        _check_seed(seed, num_epochs)
        print(f"resume: with the checkpoint's seed {seed}", file=sys.stderr)
    _check_resume_meta(checkpoint, state["meta"], meta)
    apply_checkpoint(state, net, optimizer, checkpoint)
    # The restored Adam state carries the old lr; this call's lr wins, and says so.
    old_lr = optimizer.param_groups[0]["lr"]
    for group in optimizer.param_groups:
        group["lr"] = lr
    if old_lr != lr:
        print(f"resume: learning rate changed from {old_lr:g} to {lr:g}", file=sys.stderr)
    return state["history"], seed


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
) -> list[dict]:
    """Train `net` with Adam and cross-entropy; return one dict per epoch.

    Each dict holds `epoch`, `train_loss`, `train_accuracy`, `test_accuracy`
    (None without a `test_loader`), `seconds` and `images_per_second`.

    With `seed`, epoch `e` starts from `torch.manual_seed(seed + e)`, so the
    shuffling and dropout of every epoch are fixed: a seeded CPU run is
    reproducible, and a run resumed from its checkpoint ends with the same
    weights as one that never stopped. On CUDA that holds only after
    `cnnlesson.device.set_deterministic()` (the CLI's `--deterministic`):
    by default cuDNN picks nondeterministic algorithms and TF32 rounding.

    With `checkpoint`, the state is saved atomically after every epoch, with
    `meta` (the seed, and the name of one of the lesson's models, are
    added), and `history_file` gets the history as strict JSON right after.
    `resume=True` continues from the checkpoint (or starts afresh when the
    file does not exist yet) with this call's `lr`, and with the
    checkpoint's seed when `seed` is None; its `meta` must agree with the
    checkpoint's on `RESUME_KEYS`.

    Raises:
        DivergedError: an epoch ended with a non-finite loss or weights; that
            epoch is not saved, so the checkpoint keeps the last good one.
    """
    _check_train_arguments(net, num_epochs, lr, resume, checkpoint)
    _check_seed(seed, num_epochs)
    device = get_device(device)
    meta = _default_meta(net, seed, meta)
    net.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    history: list[dict] = []
    if resume and Path(checkpoint).exists():
        history, seed = resume_from(checkpoint, net, optimizer, lr, seed, meta, num_epochs)
    for epoch in range(len(history), num_epochs):
        if seed is not None:
            torch.manual_seed(seed + epoch)
        label = f"epoch {epoch + 1}/{num_epochs}" if progress else None
        record = {"epoch": epoch + 1, **train_epoch(net, train_loader, loss_fn, optimizer, device, label)}
        problem = _diverged(record, net)
        if problem is not None:
            kept = f"; {checkpoint} keeps epoch {len(history)}" if checkpoint is not None and history else ""
            raise DivergedError(f"training diverged in epoch {epoch + 1}: {problem}{kept}; try a smaller lr (now {lr:g})")
        record["test_accuracy"] = evaluate(net, test_loader, device) if test_loader is not None else None
        history.append(record)
        if progress:
            print_epoch(record)
        if checkpoint is not None:
            save_checkpoint(checkpoint, net, optimizer, history, meta)
        if history_file is not None:
            write_history(history_file, history)
    return history
