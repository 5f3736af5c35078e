"""Checkpoints: a training run's weights, optimizer state, history and metadata in one file.

`save_checkpoint` writes the file atomically; `load_checkpoint` reads it with
`weights_only=True` and checks every entry before it is used, so that a
crafted or damaged file is one clear error, never code that runs, a
meaningless accuracy or a crash after an epoch of training.
"""

import errno
import math
import os
import re
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from cnnlesson._checks import is_int
from cnnlesson.files import atomic_path, what_is
from cnnlesson.models import MODELS

__all__ = ["load_checkpoint", "load_model", "save_checkpoint"]

_CHECKPOINT_KEYS = {"model_state", "optimizer_state", "history", "meta"}
# The types of the meta entries the CLI writes (the library writes model and seed).
# Exact types: bool is an int to isinstance, but True is no padding.
_META_TYPES = {
    "model": (str,),
    "dataset": (str,),
    "data_root": (str,),
    "pad": (int,),
    "seed": (int, type(None)),
    "standin": (bool,),
    "batch_size": (int,),
}
# What cnnlesson.train.train records for every epoch.
_RECORD_KEYS = ("epoch", "train_loss", "train_accuracy", "test_accuracy", "seconds", "images_per_second")
# How a file torch.save wrote begins: a zip archive (since torch 1.6), or a pickle (the legacy format).
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")
# What torch.optim.Adam keeps for each parameter (amsgrad adds max_exp_avg_sq).
_ADAM_STATE = ("step", "exp_avg", "exp_avg_sq")


def save_checkpoint(
    path: str | os.PathLike, net: nn.Module, optimizer=None, history: list | None = None, meta: dict | None = None
) -> Path:
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
    text = " ".join(re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text).split("\n")[0].split())
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
        if not os.path.lexists(path):
            raise FileNotFoundError(f"checkpoint: no file at {path}")
        raise ValueError(f"checkpoint: {path} is not a file ({what_is(path)})")
    problem = _format_problem(path)
    if problem is not None:
        raise ValueError(f"checkpoint: {path} is not a PyTorch checkpoint ({problem})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a refusal is one line, without torch's warnings
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        if "WeightsUnpickler error:" in str(err):
            raise ValueError(
                f"checkpoint: {path} holds objects other than tensors and plain data; refused ({_first_line(err)})"
            ) from None
        raise ValueError(f"checkpoint: {path} is not a readable torch checkpoint ({_first_line(err)})") from None
    if not isinstance(state, dict) or not state.keys() >= _CHECKPOINT_KEYS:
        raise ValueError(f"checkpoint: {path} was not written by cnnlesson.checkpoint.save_checkpoint")
    problem = _type_problem(state)
    if problem is not None:
        raise ValueError(f"checkpoint: {path} has a bad {problem}")
    apply_checkpoint(state, net, optimizer, path)
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
    apply_checkpoint(state, net, path=path)
    return net, state


def _format_problem(path: Path) -> str | None:
    """Why the file at `path` cannot be one torch.save wrote (text, JSON, an empty file); None if it may be.

    Its content is never quoted: it may be anything (/proc/self/environ holds the environment).
    """
    try:
        with open(path, "rb") as file:
            head = file.read(512)
    except OSError as err:
        return f"it cannot be read: {err.strerror}"
    if head.startswith(_TORCH_MAGIC):
        return None
    if not head:
        return "it is empty"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:  # a character cut where the read ended is still text
        text = head[: err.start].decode("utf-8") if err.reason == "unexpected end of data" else ""
    if text and all(c.isprintable() or c in "\t\r\n" for c in text):
        return "it holds text; torch.save writes a zip archive"
    return "it is neither the zip archive torch.save writes nor a pickle"


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
        if (
            not isinstance(group, dict)
            or not isinstance(group.get("params"), list)
            or not all(is_int(i) for i in group["params"])
        ):
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
        if value.is_floating_point() and (~torch.isfinite(value)).any():
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
    if meta.get("pad", 0) < 0:
        return f"meta['pad']: expected an int >= 0, got {meta['pad']}"
    if meta.get("batch_size", 1) < 1:
        return f"meta['batch_size']: expected an int >= 1, got {meta['batch_size']}"
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


def _same(value, expected) -> bool:
    """Whether a saved setting equals the optimizer's own: True is not 1, and [0.9, 0.999] is (0.9, 0.999)."""
    if isinstance(expected, (tuple, list)):
        return isinstance(value, (tuple, list)) and len(value) == len(expected) and all(map(_same, value, expected))
    if expected is None or isinstance(expected, bool):
        return value is expected
    return _is_number(value) and value == expected


def _groups_problem(groups: list, optimizer) -> str | None:
    """How saved param_groups differ from `optimizer`'s own settings (lr aside: a resumed run sets it); None if not.

    A file's maximize=True, a negative eps or betas=(2, 2) would make Adam
    train the wrong way, or fail with an error that names none of them.
    """
    name = type(optimizer).__name__
    for number, (group, own) in enumerate(zip(groups, optimizer.state_dict()["param_groups"])):
        where = f"param_groups[{number}]"
        if group["params"] != own["params"]:
            return f"{where}['params'] is {group['params']!r:.60}, expected {own['params']!r:.60}"
        if not (_is_number(group.get("lr")) and group["lr"] > 0):
            return f"{where}['lr'] is {group.get('lr')!r:.40}, expected a positive finite number"
        extra = [key for key in group if key not in own]
        if extra:
            return f"{where} has {extra[0]!r}, which {name} does not write"
        for key, expected in own.items():
            if key in ("params", "lr") or (key not in group and expected in (None, False)):
                continue  # a setting newer than the torch that wrote the file is off by default
            if key not in group:
                return f"{where} lacks {key!r}"
            if not _same(group[key], expected):
                return (
                    f"{where}['{key}'] is {group[key]!r:.40}, expected {expected!r} "
                    f"as in the {name} it is loaded into (only lr may differ)"
                )
    return None


def _moments_problem(entry: dict, param: torch.Tensor, where: str) -> str | None:
    """What is wrong with one parameter's Adam state `entry` (its keys checked already); None if nothing."""
    step = entry["step"]
    if not isinstance(step, torch.Tensor) or step.dim() != 0 or step.is_complex() or step.dtype == torch.bool:
        return f"{where}['step'] is {step!r:.40}, expected a number in a 0-dimensional tensor"
    count = step.item()
    if not (math.isfinite(count) and count >= 0 and count == int(count)):
        return f"{where}['step'] is {count}, expected a whole number >= 0"
    for key in sorted(set(entry) - {"step"}):
        moment = entry[key]
        if not isinstance(moment, torch.Tensor) or moment.dtype != param.dtype:
            got = moment.dtype if isinstance(moment, torch.Tensor) else type(moment).__name__
            return f"{where}['{key}'] holds {got}, its parameter {param.dtype}"
        if moment.shape != param.shape:
            return f"{where}['{key}'] is {tuple(moment.shape)}, its parameter {tuple(param.shape)}"
        # Counted as "any non-finite", like the weights: a device that reads back zeros must not fail it.
        if (~torch.isfinite(moment)).any():
            return f"{where}['{key}'] holds NaN or infinite values"
        if key != "exp_avg" and (moment < 0).any():  # averages of squares
            return f"{where}['{key}'] holds negative values"
    return None


def _check_optimizer_state(saved: dict, optimizer, path) -> None:
    """Refuse an optimizer state `saved` that `optimizer` would fail on, or train the wrong way with.

    Raises:
        ValueError: one line naming the checkpoint and the field.
    """
    groups, own = saved["param_groups"], optimizer.param_groups
    sizes, own_sizes = [len(g["params"]) for g in groups], [len(g["params"]) for g in own]
    if sizes != own_sizes:
        raise ValueError(
            f"checkpoint: the optimizer state in {path} does not fit the model "
            f"(parameter groups of {sizes} parameters in the file, {own_sizes} in the optimizer)"
        )
    problem = _groups_problem(groups, optimizer)
    if problem is None and isinstance(optimizer, torch.optim.Adam):  # other optimizers keep other state
        params = [(p, group["amsgrad"]) for group in own for p in group["params"]]  # in state_dict's numbering
        for index, entry in saved["state"].items():
            where = f"state[{index!r}]"
            if not (is_int(index) and 0 <= int(index) < len(params)):
                problem = f"{where} is for no parameter of the optimizer (it numbers them 0 to {len(params) - 1})"
                break
            param, amsgrad = params[int(index)]
            keys = [*_ADAM_STATE, *(["max_exp_avg_sq"] if amsgrad else [])]
            if set(entry) != set(keys):  # crafted keys need not even be strings: no sorting
                problem = f"{where} holds {', '.join(map(str, entry)) or 'nothing'}, expected {', '.join(keys)}"
                break
            problem = _moments_problem(entry, param, where)
            if problem is not None:
                break
    if problem is not None:
        raise ValueError(f"checkpoint: {path} has a bad optimizer_state: {problem}")


def apply_checkpoint(
    state: dict, net: nn.Module | None = None, optimizer=None, path: str | os.PathLike = "checkpoint"
) -> None:
    """Fill `net` and `optimizer` from a checkpoint `state` that `load_checkpoint` checked (named `path` in errors).

    For `cnnlesson.train`, which receives a checkpoint read by another process; left out of `__all__`.

    Raises:
        ValueError: the weights do not fit `net`, or the optimizer state `optimizer`.
    """
    if net is not None:
        problem = _fit_problem(state["model_state"], net)
        if problem is not None:
            raise ValueError(f"checkpoint: weights in {path} do not fit {type(net).__name__}: {problem}")
        net.load_state_dict(state["model_state"])
    if optimizer is not None and state["optimizer_state"] is not None:
        _check_optimizer_state(state["optimizer_state"], optimizer, path)
        try:
            optimizer.load_state_dict(state["optimizer_state"])
        except (ValueError, KeyError, TypeError, RuntimeError) as err:
            raise ValueError(
                f"checkpoint: the optimizer state in {path} does not fit the model ({_first_line(err)})"
            ) from None
        for group in optimizer.param_groups:
            for p in group["params"]:
                for key, value in optimizer.state.get(p, {}).items():
                    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != p.shape:
                        raise ValueError(
                            f"checkpoint: the optimizer state in {path} does not fit the model "
                            f"({key} is {tuple(value.shape)}, its weight {tuple(p.shape)})"
                        )
