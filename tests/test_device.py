"""cnnlesson.device: the device every module picks, and deterministic runs."""

import os

import pytest
import torch

from cnnlesson import device as device_module
from cnnlesson.device import get_device, set_deterministic


def test_device_argument_env_and_auto(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)
    assert get_device() == torch.device("cpu")
    assert get_device("auto") == torch.device("cpu")
    assert get_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setenv("CNNLESSON_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")


def test_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: True)
    assert get_device() == torch.device("mps")


def test_argument_overrides_environment(monkeypatch):
    monkeypatch.setenv("CNNLESSON_DEVICE", "cuda")
    assert get_device("cpu") == torch.device("cpu")


def test_device_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)
    with pytest.raises(ValueError, match=r"device: 'cuda' is not available on this machine; expected one of auto, cpu"):
        get_device("cuda")
    monkeypatch.setenv("CNNLESSON_DEVICE", "cuda")
    with pytest.raises(ValueError, match="^CNNLESSON_DEVICE: 'cuda' is not available"):
        get_device()
    monkeypatch.setenv("CNNLESSON_DEVICE", "bogus")
    with pytest.raises(ValueError, match="^CNNLESSON_DEVICE: expected 'auto', 'cpu', 'cuda' or 'mps', got 'bogus'"):
        get_device()
    with pytest.raises(ValueError, match="device: expected 'auto', 'cpu', 'cuda' or 'mps', got 'gpu'"):
        get_device("gpu")
    with pytest.raises(TypeError, match="device: expected a str such as 'cpu' or 'cuda', got int"):
        get_device(0)


@pytest.fixture
def restore_determinism(monkeypatch):
    """Put back the process-wide flags set_deterministic changes."""
    saved = (
        torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
    )  # fmt: skip
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    yield
    torch.use_deterministic_algorithms(saved[0])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = saved[1:4]
    torch.backends.cuda.matmul.allow_tf32 = saved[4]


def deterministic_flags() -> tuple:
    return (
        torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )  # fmt: skip


def test_set_deterministic_turns_off_every_nondeterministic_gpu_path(restore_determinism):
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = True
    set_deterministic()
    assert deterministic_flags() == (True, True, False, False, False, ":4096:8")


def test_cli_deterministic_flag(restore_determinism, mnist_root, tmp_path, capsys):
    from cnnlesson.cli import build_parser, main

    train_help = " ".join(build_parser()._subparsers._group_actions[0].choices["train"].format_help().split())
    assert "--deterministic" in train_help and "on a GPU add --deterministic" in train_help
    argv = ["train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", str(mnist_root),
            "--epochs", "1", "--device", "cpu", "--seed", "0", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    assert not torch.are_deterministic_algorithms_enabled()  # only when asked
    assert main([*argv, "--deterministic", "--overwrite"]) == 0
    assert deterministic_flags() == (True, True, False, False, False, ":4096:8")
