"""Where tensors live: the device every module picks the same way, and deterministic GPU runs.

`get_device` lives here alone; the package's modules call it as
`cnnlesson.device.get_device`, so that replacing it here (as the tests'
simulated GPU does) reaches all of them.
"""

import os

import torch

__all__ = ["DEVICE_ENV", "get_device", "set_deterministic"]

DEVICE_ENV = "CNNLESSON_DEVICE"


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def get_device(device: str | torch.device | None = None) -> torch.device:
    """Pick the device: the argument, else `$CNNLESSON_DEVICE`, else CUDA, MPS, CPU.

    "auto" (or nothing) takes the first available of CUDA, MPS and CPU.

    Raises:
        TypeError: `device` is neither a str nor a torch.device.
        ValueError: `device` names an unknown or unavailable device.
    """
    name = "device"  # errors name where the value came from
    if device is None:
        device = os.environ.get(DEVICE_ENV) or "auto"
        name = DEVICE_ENV if DEVICE_ENV in os.environ else name
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device: expected a str such as 'cpu' or 'cuda', got {type(device).__name__}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise ValueError(f"{name}: expected 'auto', 'cpu', 'cuda' or 'mps', got {device!r}") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": _mps_available()}
    if not available.get(chosen.type, False):
        have = ", ".join(name for name, ok in available.items() if ok)
        raise ValueError(f"{name}: {device!r} is not available on this machine; expected one of auto, {have}")
    return chosen


def set_deterministic() -> None:
    """Make GPU runs repeatable: deterministic algorithms only, no cuDNN autotuning, no TF32.

    A seed fixes the shuffling, dropout and initial weights; on the CPU that
    is enough. On CUDA, cuDNN picks the fastest convolution algorithm, some
    of which add in a varying order, and convolutions and matrix products may
    round through TF32. This turns all of that off for the whole process, so
    two seeded runs on the same GPU and software end with the same weights.
    The cost is speed: slower convolution algorithms and full float32 maths
    (how much depends on the GPU and the model); an operation with no
    deterministic version raises instead of running. Results still differ
    between GPU models and PyTorch versions.
    """
    # cuBLAS reads this when it starts; without it deterministic matmuls raise on CUDA >= 10.2.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
