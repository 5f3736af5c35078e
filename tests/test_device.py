"""cnnlesson.device: deterministic runs. (get_device is tested in test_train.py, where the pages import it from.)"""

import os

import pytest
import torch

from cnnlesson.device import set_deterministic


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
    assert main([*argv, "--deterministic"]) == 0
    assert deterministic_flags() == (True, True, False, False, False, ":4096:8")
