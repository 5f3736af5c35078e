"""A simulated accelerator: catch CPU/GPU device mixes on a machine with no GPU.

`simulated_gpu()` makes `cnnlesson`'s `get_device()` hand out PyTorch's
`meta` device wherever it would hand out `cuda`, and runs the code under a
dispatch mode that raises `DeviceMixError` on any operation mixing a meta
tensor with a CPU tensor of one or more dimensions. Meta tensors have shapes
but no data, so this is a simulation: it proves where tensors live, not
what they hold (every value read back is zero), and a real CUDA run stays
the job of the GPU workflow.

It follows CUDA's own rules: 0-dim CPU tensors (scalars) and CPU index
tensors may meet device tensors; copies to the CPU, `.item()`, `int()`
and `.tolist()` succeed (here they give zeros); `.numpy()` on a device tensor raises
`TypeError`, which meta tensors already do. Plain meta is not enough:
`conv(cpu_x)` with meta weights returns a meta result instead of raising.

PRIVATE PYTORCH API: `TorchDispatchMode` lives in the private module
`torch.utils._python_dispatch`. This file is the only place that imports it;
if a future torch moves it, `SKIP_REASON` says so and the tests that use
the simulation skip with that reason instead of breaking the suite.
"""

import contextlib
import traceback
from pathlib import Path
from unittest import mock

import torch

try:  # private: see the module docstring
    from torch.utils._python_dispatch import TorchDispatchMode
except ImportError as err:  # pragma: no cover - depends on the installed torch
    TorchDispatchMode = object
    SKIP_REASON = (
        f"simulated accelerator unavailable: torch {torch.__version__} has no "
        f"torch.utils._python_dispatch.TorchDispatchMode ({err})"
    )
else:
    SKIP_REASON = None

aten = torch.ops.aten
SIMULATED = torch.device("meta")
# Ops whose index arguments may be CPU integer or bool tensors, as on CUDA.
_INDEX_OPS = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default}
_TORCH_DIR = str(Path(torch.__file__).parent)


class DeviceMixError(RuntimeError):
    """An operation met a tensor on the simulated GPU and a CPU tensor."""


def _tensors(value):
    """Every tensor inside nested lists, tuples and dicts of op arguments."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def _where() -> str:
    """The user-code line that issued the op: innermost frame outside torch and this file."""
    frames = [f for f in traceback.extract_stack() if not f.filename.startswith(_TORCH_DIR) and f.filename != __file__]
    if not frames:
        return "an unknown line"

    def name(frame) -> str:
        # Page blocks are compiled with the file name "<block at line N>" (N: the fence's page line).
        if frame.filename.startswith("<block"):
            place = f"line {frame.lineno} of the {frame.filename[1:-1]}"
        else:
            place = f"{frame.filename}, line {frame.lineno}"
        return f"{place}: {frame.line}" if frame.line else place

    inner, blocks = frames[-1], [f for f in frames if f.filename.startswith("<block")]
    if blocks and blocks[-1] is not inner:  # the page's own line that led there
        return f"{name(inner)} (called from {name(blocks[-1])})"
    return name(inner)


def _zero_scalar(tensor: torch.Tensor):
    """What `.item()` gives here: a zero of the tensor's kind."""
    return torch.zeros((), dtype=tensor.dtype).item()


def _tolist(real_tolist):
    def tolist(self):
        # A copy to the host, done in C++ without dispatch: zeros, as for .cpu().
        return torch.zeros(self.shape, dtype=self.dtype).tolist() if self.device == SIMULATED else real_tolist(self)

    return tolist


class SimulatedAccelerator(TorchDispatchMode):
    """Raise on device mixes between meta (the simulated GPU) and the CPU; read back zeros."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = list(_tensors((args, kwargs)))
        if not any(t.device == SIMULATED for t in tensors):
            return func(*args, **kwargs)
        # Reading device data back to the host: allowed, and zeros here.
        if func is aten._local_scalar_dense.default:  # .item(), int(), float(), bool()
            return _zero_scalar(args[0])
        if func is aten._to_copy.default and torch.device(kwargs.get("device") or args[0].device).type == "cpu":
            return torch.zeros(args[0].shape, dtype=kwargs.get("dtype") or args[0].dtype)
        if func is aten.copy_.default:
            dst, src = args[0], args[1]
            if dst.device.type == "cpu" and src.device == SIMULATED:
                return dst.zero_()
            return func(*args, **kwargs)  # host to device: allowed
        mixed = [t for t in tensors if t.device.type == "cpu" and t.dim() > 0]
        if func in _INDEX_OPS:
            indices = list(_tensors(args[1] if len(args) > 1 else kwargs.get("indices")))
            mixed = [t for t in mixed if not any(t is i for i in indices) or t.is_floating_point()]
        if mixed:
            shapes = ", ".join(str(tuple(t.shape)) for t in mixed)
            raise DeviceMixError(
                f"device mix: {func} got a tensor on the simulated GPU and CPU tensor(s) of shape {shapes}, "
                f"at {_where()}"
            )
        return func(*args, **kwargs)


def _simulating(real_get_device):
    def get_device(device=None) -> torch.device:
        if device is not None and str(device) == "meta":  # one it handed out before
            return SIMULATED
        # Let the real function pick as if CUDA were there, then hand out meta for it.
        with mock.patch.object(torch.cuda, "is_available", return_value=True):
            chosen = real_get_device(device)
        return SIMULATED if chosen.type == "cuda" else chosen

    get_device.__doc__ = f"Simulated accelerator: {real_get_device.__doc__}"
    return get_device


@contextlib.contextmanager
def simulated_gpu():
    """Within this block `get_device()` gives meta for CUDA, and device mixes raise `DeviceMixError`."""
    if SKIP_REASON is not None:
        import pytest

        pytest.skip(SKIP_REASON)
    import cnnlesson.device

    # One place: the package's modules call cnnlesson.device.get_device, and a
    # page's `from cnnlesson.device import get_device` runs inside this block.
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(cnnlesson.device, "get_device", _simulating(cnnlesson.device.get_device)))
        stack.enter_context(mock.patch.object(torch.Tensor, "tolist", _tolist(torch.Tensor.tolist)))
        stack.enter_context(SimulatedAccelerator())
        yield
