"""The lesson's training loop, with what a real trainer needs.

`train` is section 5's loop (Adam, cross-entropy, `zero_grad`, `backward`,
`step`) plus: a device chosen for you, seeded epochs, a tqdm bar, a
per-epoch history, and atomic checkpoints that a run can resume from. The
same loop runs one process and, through `cnnlesson.distributed`, each
process of a torchrun job.
"""

import errno
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn as nn
from tqdm.auto import tqdm

import cnnlesson.device
from cnnlesson._checks import check_int, is_int
from cnnlesson.files import atomic_path, write_text_atomic
from cnnlesson.models import MODELS

__all__ = [
    "DivergedError", "EPOCHS_MAX", "SEED_MAX", "evaluate", "load_checkpoint", "load_model", "print_epoch",
    "save_checkpoint", "train", "train_epoch", "write_history",
]  # fmt: skip

# torch.manual_seed takes 0 .. 2**64 - 1, and epoch e of a run seeded s uses s + e:
# with these limits that always fits.
SEED_MAX = 2**63 - 1
EPOCHS_MAX = 1_000_000

_CHECKPOINT_KEYS = {"model_state", "optimizer_state", "history", "meta"}
# Meta entries a resumed run must share with its checkpoint (data_root may move).
_RESUME_KEYS = ("model", "dataset", "pad", "seed", "standin")
# The types of the meta entries the CLI writes (the library writes model and seed).
# Exact types: bool is an int to isinstance, but True is no padding.
_META_TYPES = {"model": (str,), "dataset": (str,), "data_root": (str,), "pad": (int,), "seed": (int, type(None)), "standin": (bool,)}
_RECORD_KEYS = ("epoch", "train_loss", "train_accuracy", "test_accuracy", "seconds", "images_per_second")


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


# --- checkpoints ---------------------------------------------------------------


def save_checkpoint(path: str | os.PathLike, net: nn.Module, optimizer=None, history: list | None = None, meta: dict | None = None) -> Path:
    """Save weights, optimizer state, history and metadata atomically to `path`.

    Raises:
        OSError: the file cannot be written (a full disk is said so).
    """
    state = {
        "model_state": net.state_dict(),
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
        "history": list(history or []),
        "meta": dict(meta or {}),
    }
    with atomic_path(path) as tmp:
        try:
            torch.save(state, tmp)
        except RuntimeError as err:
            # torch's zip writer reports a short write ("unexpected pos") where open() would say ENOSPC.
            if "unexpected pos" in str(err) or "file write failed" in str(err):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from None
            raise
    return Path(path)


def _first_line(err: Exception) -> str:
    """The part of a torch error worth one line: no advice to load with weights_only=False, no colour codes."""
    text = str(err)
    if "WeightsUnpickler error:" in text:  # the reason, after torch's advice to reload the file unsafely
        text = text.split("WeightsUnpickler error:", 1)[1].split(". ")[0]
    text = " ".join(text.replace("\x1b[1m", "").replace("\x1b[0m", "").split("\n")[0].split())
    return text or type(err).__name__


def load_checkpoint(path: str | os.PathLike, net: nn.Module | None = None, optimizer=None, map_location="cpu") -> dict:
    """Load a checkpoint with `weights_only=True`; fill `net` and `optimizer` when given.

    Every entry is checked before it is used: the weights are finite real
    numbers, the history holds one complete record per epoch, the optimizer
    state and `meta` have the types `save_checkpoint` writes.

    Raises:
        FileNotFoundError: there is no file at `path`.
        ValueError: the file is not a cnnlesson checkpoint, an entry is
            wrong (history=5, NaN weights, meta['model']=['x']), or its
            weights or optimizer state do not fit `net` and `optimizer`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no file at {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a refusal is one line, without torch's warnings
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        if "WeightsUnpickler error:" in str(err):
            raise ValueError(f"checkpoint: {path} holds objects other than tensors and plain data; refused ({_first_line(err)})") from None
        raise ValueError(f"checkpoint: {path} is not a readable torch checkpoint ({_first_line(err)})") from None
    if not isinstance(state, dict) or not _CHECKPOINT_KEYS <= state.keys():
        raise ValueError(f"checkpoint: {path} was not written by cnnlesson.train.save_checkpoint")
    problem = _type_problem(state)
    if problem is not None:
        raise ValueError(f"checkpoint: {path} has a bad {problem}")
    _apply_checkpoint(state, net, optimizer, path)
    return state


def load_model(path: str | os.PathLike, map_location="cpu") -> tuple[nn.Module, dict]:
    """Rebuild the lesson's model a checkpoint holds (named by its `meta['model']`); return it and the checkpoint.

    Raises:
        FileNotFoundError: there is no file at `path`.
        ValueError: as `load_checkpoint`, or the checkpoint names no model of `MODELS`.
    """
    state = load_checkpoint(path, map_location=map_location)
    name = state["meta"].get("model")
    if name is None:
        raise ValueError(
            f"checkpoint: {path} does not record meta['model'] (the model's name); "
            "save it with train(..., meta={'model': ..., 'dataset': ..., 'data_root': ...})"
        )
    if name not in MODELS:
        raise ValueError(f"checkpoint: {path} holds model {name!r}, expected one of {sorted(MODELS)}")
    net = MODELS[name]()
    _apply_checkpoint(state, net, path=path)
    return net, state


def _is_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _history_problem(history) -> str | None:
    """What is wrong with a checkpoint's history (one complete record per epoch, finite numbers); None if nothing."""
    if not isinstance(history, list):
        return f"history: expected a list of dicts, got {type(history).__name__}"
    for number, record in enumerate(history, 1):
        if not isinstance(record, dict):
            return f"history: entry {number}: expected a dict, got {type(record).__name__}"
        missing = [key for key in _RECORD_KEYS if key not in record]
        if missing:
            return f"history: entry {number} lacks {', '.join(missing)}"
        if not is_int(record["epoch"]) or record["epoch"] != number:
            return f"history: entry {number} has epoch {record['epoch']!r}, expected {number}"
        for key in _RECORD_KEYS[1:]:
            if not _is_number(record[key]) and not (key == "test_accuracy" and record[key] is None):
                return f"history: entry {number} has {key}={record[key]!r}, expected a finite number"
    return None


def _optimizer_problem(saved) -> str | None:
    """What is wrong with a checkpoint's optimizer state, as `Optimizer.state_dict` writes it; None if nothing."""
    if saved is None:
        return None
    if not isinstance(saved, dict) or set(saved) != {"state", "param_groups"}:
        got = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
        return f"optimizer_state: expected a dict or None, with 'state' and 'param_groups', got {got}"
    groups = saved["param_groups"]
    if not isinstance(saved["state"], dict) or not isinstance(groups, list) or not groups:
        return "optimizer_state: expected a dict 'state' and a non-empty list 'param_groups'"
    for group in groups:
        if not isinstance(group, dict) or not isinstance(group.get("params"), list) or not all(is_int(i) for i in group["params"]):
            return f"optimizer_state: param_groups: expected dicts with a list of parameter numbers, got {group!r:.60}"
        for key in ("lr", "eps", "weight_decay"):
            if key in group and not _is_number(group[key]):
                return f"optimizer_state: param_groups: {key} is {group[key]!r:.40}, expected a finite number"
        betas = group.get("betas", (0.0, 0.0))
        if not isinstance(betas, (tuple, list)) or len(betas) != 2 or not all(_is_number(b) for b in betas):
            return f"optimizer_state: param_groups: betas is {betas!r:.40}, expected two numbers"
    for entry in saved["state"].values():
        if not isinstance(entry, dict) or not all(isinstance(v, (torch.Tensor, int, float)) for v in entry.values()):
            return "optimizer_state: state: expected a dict of tensors for each parameter"
    return None


def _type_problem(state: dict) -> str | None:
    """Which entry of `state` is not what save_checkpoint writes, and why; None if none.

    weights_only keeps code out of a checkpoint, not wrong values: a crafted
    file could hold history=5 or NaN weights, and every reader would fail
    later, or print a meaningless accuracy.
    """
    kind = {key: type(value).__name__ for key, value in state.items()}
    if not isinstance(state["model_state"], dict):
        return f"model_state: expected a dict, got {kind['model_state']}"
    for key, value in state["model_state"].items():
        if not isinstance(value, torch.Tensor):
            return f"model_state: {key!r} is a {type(value).__name__}, expected a tensor"
        if value.is_complex() or value.dtype == torch.bool:
            return f"model_state: {key} holds {value.dtype} values, expected real numbers"
        if value.is_floating_point() and not torch.isfinite(value).all():
            return f"model_state: {key} holds NaN or infinite values"
    problem = _optimizer_problem(state["optimizer_state"]) or _history_problem(state["history"])
    if problem is not None:
        return problem
    if not isinstance(state["meta"], dict):
        return f"meta: expected a dict, got {kind['meta']}"
    meta = state["meta"]
    for key, types in _META_TYPES.items():
        if key in meta and type(meta[key]) not in types:
            expected = " or ".join("None" if t is type(None) else t.__name__ for t in types)
            return f"meta['{key}']: expected {expected}, got {type(meta[key]).__name__}"
    if meta.get("seed") is not None and not 0 <= meta["seed"] <= SEED_MAX:
        return f"meta['seed']: expected an int from 0 to {SEED_MAX}, got {meta['seed']}"
    if meta.get("pad", 0) < 0:
        return f"meta['pad']: expected an int >= 0, got {meta['pad']}"
    return None


def _fit_problem(saved: dict, net: nn.Module) -> str | None:
    """How weights `saved` do not fit `net`: the first missing, extra, differently shaped or typed entry; None if they fit."""
    expected = net.state_dict()
    for key in expected:
        if key not in saved:
            return f"it lacks {key}"
    for key, value in saved.items():
        if key not in expected:
            return f"it has {key}, which {type(net).__name__} does not"
        if value.shape != expected[key].shape:
            return f"{key} is {tuple(value.shape)} in the file, {tuple(expected[key].shape)} in {type(net).__name__}"
        if value.is_floating_point() != expected[key].is_floating_point():
            return f"{key} holds {value.dtype} values, {type(net).__name__} {expected[key].dtype}"
    return None


def _apply_checkpoint(state: dict, net: nn.Module | None = None, optimizer=None, path: str | os.PathLike = "checkpoint") -> None:
    """Fill `net` and `optimizer` from a checked checkpoint `state` (named `path` in errors).

    Raises:
        ValueError: the weights do not fit `net`, or the optimizer state `optimizer`.
    """
    if net is not None:
        problem = _fit_problem(state["model_state"], net)
        if problem is not None:
            raise ValueError(f"checkpoint: weights in {path} do not fit {type(net).__name__}: {problem}")
        net.load_state_dict(state["model_state"])
    if optimizer is not None and state["optimizer_state"] is not None:
        try:
            optimizer.load_state_dict(state["optimizer_state"])
        except (ValueError, KeyError, TypeError, RuntimeError) as err:
            raise ValueError(f"checkpoint: the optimizer state in {path} does not fit the model ({_first_line(err)})") from None
        for group in optimizer.param_groups:
            for p in group["params"]:
                for key, value in optimizer.state.get(p, {}).items():
                    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != p.shape:
                        raise ValueError(
                            f"checkpoint: the optimizer state in {path} does not fit the model "
                            f"({key} is {tuple(value.shape)}, its weight {tuple(p.shape)})"
                        )


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
    if not _is_number(lr) or lr <= 0:
        raise ValueError(f"lr: expected a positive finite number, got {lr!r}")
    if seed is not None:
        check_int("seed", seed, 0, SEED_MAX)
    if resume and checkpoint is None:
        raise ValueError("resume: resume=True needs checkpoint=PATH to resume from")


def _default_meta(net: nn.Module, seed: int | None, meta: dict | None) -> dict:
    """`meta` with the seed, and the model's name when it is one of the lesson's models, filled in."""
    names = {cls: name for name, cls in MODELS.items()}
    return {**({"model": names[type(net)]} if type(net) in names else {}), "seed": seed, **(meta or {})}


def _read_for_resume(checkpoint, seed: int | None, meta: dict) -> dict:
    """Load and check `checkpoint` for a run with `seed` and `meta`; it must agree with `meta` on `_RESUME_KEYS`."""
    # Load to the CPU: load_state_dict copies the weights to the net's device, and
    # the optimizer puts each state where it belongs (Adam keeps its step
    # counters on the CPU; on the GPU, reading them would wait every step).
    state = load_checkpoint(checkpoint, map_location="cpu")
    saved = state["meta"]
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
    run's `lr` replaces the one in the restored optimizer state. Both are
    said on stderr. No checkpoint yet: the run starts afresh.
    """
    state = None
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
    _apply_checkpoint(state, net, optimizer, checkpoint)
    if seed is None:
        seed = meta["seed"] = state["meta"].get("seed")
    # The restored Adam state carries the old lr; this call's lr wins, and says so.
    old_lr = optimizer.param_groups[0]["lr"]
    for group in optimizer.param_groups:
        group["lr"] = lr
    if old_lr != lr and process.rank == 0:
        print(f"resume: learning rate changed from {old_lr:g} to {lr:g}", file=sys.stderr)
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
    file does not exist yet) with this call's `lr`, and with the
    checkpoint's seed when `seed` is None; its `meta` must agree with the
    checkpoint's on the model, data set, padding, seed and stand-in flag.

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
            raise DivergedError(f"training diverged in epoch {epoch + 1}: {problem}{kept}; try a smaller lr (now {lr:g})")
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
