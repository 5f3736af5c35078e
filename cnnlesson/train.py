"""The lesson's training loop, with what a real trainer needs.

`train` is section 5's loop (Adam, cross-entropy, `zero_grad`, `backward`,
`step`) plus: a device chosen for you, seeded epochs, a tqdm bar, a
per-epoch history, and atomic checkpoints that a run can resume from.
"""

import os
import time
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from cnnlesson.device import DEVICE_ENV, get_device  # noqa: F401 - re-exported: the pages import it from here
from cnnlesson.files import atomic_path

_CHECKPOINT_KEYS = {"model_state", "optimizer_state", "history", "meta"}


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
        ValueError: the file is not a cnnlesson checkpoint, or its weights
            do not fit `net`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no file at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise ValueError(f"checkpoint: {path} is not a readable torch checkpoint ({err})") from None
    if not isinstance(state, dict) or not _CHECKPOINT_KEYS <= state.keys():
        raise ValueError(f"checkpoint: {path} was not written by cnnlesson.train.save_checkpoint")
    if net is not None:
        try:
            net.load_state_dict(state["model_state"])
        except RuntimeError as err:
            first = str(err).splitlines()[0]
            raise ValueError(f"checkpoint: weights in {path} do not fit {type(net).__name__} ({first})") from None
    if optimizer is not None and state["optimizer_state"] is not None:
        optimizer.load_state_dict(state["optimizer_state"])
    return state


def _check_positive(**values) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{name}: expected a positive number, got {value!r}")


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
) -> list[dict]:
    """Train `net` with Adam and cross-entropy; return one dict per epoch.

    Each dict holds `epoch`, `train_loss`, `train_accuracy`, `test_accuracy`
    (None without a `test_loader`), `seconds` and `images_per_second`.

    With `seed`, epoch `e` starts from `torch.manual_seed(seed + e)`, so the
    shuffling and dropout of every epoch are fixed: a seeded CPU run is
    reproducible, and a run resumed from its checkpoint ends with the same
    weights as one that never stopped. On CUDA that holds only after
    `cnnlesson.device.set_deterministic()` (the CLI's `--deterministic`):
    by default cuDNN picks nondeterministic algorithms and TF32 rounding. With `checkpoint`, the state is saved
    atomically after every epoch; `resume=True` continues from it (or starts
    afresh when the file does not exist yet).
    """
    if not isinstance(net, nn.Module):
        raise TypeError(f"net: expected a torch.nn.Module, got {type(net).__name__}")
    if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 1:
        raise ValueError(f"num_epochs: expected a positive int, got {num_epochs!r}")
    _check_positive(lr=lr)
    if resume and checkpoint is None:
        raise ValueError("resume: resume=True needs checkpoint=PATH to resume from")
    device = get_device(device)
    net.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    history: list[dict] = []
    if resume and Path(checkpoint).exists():
        # Load to the CPU: load_state_dict copies the weights to the net's device, and
        # the optimizer puts each state where it belongs (Adam keeps its step
        # counters on the CPU; on the GPU, reading them would wait every step).
        history = load_checkpoint(checkpoint, net, optimizer, map_location="cpu")["history"]
    for epoch in range(len(history), num_epochs):
        if seed is not None:
            torch.manual_seed(seed + epoch)
        label = f"epoch {epoch + 1}/{num_epochs}" if progress else None
        record = {"epoch": epoch + 1, **train_epoch(net, train_loader, loss_fn, optimizer, device, label)}
        record["test_accuracy"] = evaluate(net, test_loader, device) if test_loader is not None else None
        history.append(record)
        if progress:
            shown = "-" if record["test_accuracy"] is None else f"{record['test_accuracy']:.4f}"
            tqdm.write(
                f"epoch {record['epoch']}: loss {record['train_loss']:.4f}, "
                f"train acc {record['train_accuracy']:.4f}, test acc {shown}, "
                f"{record['images_per_second']:.0f} images/s"
            )
        if checkpoint is not None:
            save_checkpoint(checkpoint, net, optimizer, history, meta)
    return history
