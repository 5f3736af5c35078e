"""The command line end to end on stand-in data, and each bad input's exit."""

import json
import shutil
import subprocess

import pytest

from cnnlesson.cli import main
from cnnlesson.data import write_standin_cifar10
from cnnlesson.train import load_checkpoint


def run(capsys, *argv):
    """Run `cnnlesson ARGV` in-process; return (exit status, stdout, stderr)."""
    try:
        status = main(list(argv))
    except SystemExit as exit_:  # argparse exits on bad flags
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def trained(mnist_root, tmp_path_factory):
    """One real `cnnlesson train` run, shared by the tests that read its output."""
    out = tmp_path_factory.mktemp("run")
    status = main(["train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", str(mnist_root),
                   "--epochs", "1", "--device", "cpu", "--seed", "0", "--out", str(out)])  # fmt: skip
    assert status == 0
    return out


def test_train_writes_history_and_checkpoint(trained):
    history = json.loads((trained / "history.json").read_text())
    assert isinstance(history, list) and len(history) == 1
    record = history[0]
    assert {"epoch", "train_loss", "train_accuracy", "test_accuracy", "seconds", "images_per_second"} <= set(record)
    assert 0.0 <= record["test_accuracy"] <= 1.0 and record["epoch"] == 1
    state = load_checkpoint(trained / "checkpoint.pt")
    assert state["meta"]["model"] == "mnistnet" and state["history"] == history


def test_evaluate_prints_the_trained_accuracy(trained, capsys):
    status, out, _ = run(capsys, "evaluate", "--checkpoint", str(trained / "checkpoint.pt"), "--device", "cpu")
    final = json.loads((trained / "history.json").read_text())[-1]["test_accuracy"]
    assert status == 0
    assert out.startswith(f"test accuracy {final:.4f} (256 mnist test images, mnistnet)")


def test_visualize_writes_pngs(trained, tmp_path, capsys):
    status, out, _ = run(capsys, "visualize", "--checkpoint", str(trained / "checkpoint.pt"), "--out", str(tmp_path))
    assert status == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["feature_maps.png", "filters.png", "history.png", "predictions.png"]
    assert all((tmp_path / n).read_bytes()[:4] == b"\x89PNG" for n in names)


def test_resume_continues_the_history(trained, mnist_root, tmp_path, capsys):
    shutil.copy(trained / "checkpoint.pt", tmp_path / "checkpoint.pt")
    status, out, _ = run(capsys, "train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", str(mnist_root),
                         "--epochs", "2", "--device", "cpu", "--seed", "0", "--resume", "--out", str(tmp_path))  # fmt: skip
    assert status == 0 and "after 2 epochs" in out
    history = json.loads((tmp_path / "history.json").read_text())
    first = json.loads((trained / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2] and history[0] == first[0]


def test_lenet5_on_mnist_is_padded_and_cifar10net_trains(mnist_root, tmp_path, capsys):
    status, _, _ = run(capsys, "train", "--model", "lenet5", "--dataset", "mnist", "--data-root", str(mnist_root),
                       "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "lenet"))  # fmt: skip
    assert status == 0 and load_checkpoint(tmp_path / "lenet" / "checkpoint.pt")["meta"]["pad"] == 2
    write_standin_cifar10(tmp_path / "cifar", num_train=20, num_test=10)
    status, out, _ = run(capsys, "train", "--model", "cifar10net", "--dataset", "cifar10", "--data-root",
                         str(tmp_path / "cifar"), "--epochs", "1", "--batch-size", "10", "--dataloader",
                         "--standin", "--device", "cpu", "--out", str(tmp_path / "cifar-run"))  # fmt: skip
    assert status == 0 and "test accuracy" in out
    assert load_checkpoint(tmp_path / "cifar-run" / "checkpoint.pt")["meta"]["dataset"] == "cifar10"


BAD_FLAGS = [
    (["train", "--model", "resnet", "--dataset", "mnist", "--epochs", "1", "--out", "x"], "invalid choice: 'resnet'"),
    (["train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", "d", "--epochs", "0", "--out", "x"], "--epochs: expected a positive int, got 0"),
    (["train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", "d", "--epochs", "1", "--lr", "-1", "--out", "x"], "--lr: expected a positive finite float, got -1"),
    (["train", "--model", "mnistnet", "--dataset", "mnist", "--epochs", "1", "--out", "x"], "required: --data-root"),
    (["train", "--model", "cifar10net", "--dataset", "mnist", "--data-root", "d", "--epochs", "1", "--out", "x"], "--model cifar10net does not take mnist images"),
    (["evaluate", "--checkpoint", "c.pt", "--device", "tpu"], "--device: device: expected 'auto', 'cpu', 'cuda' or 'mps', got 'tpu'"),
    (["fly"], "invalid choice: 'fly'"),
]


@pytest.mark.parametrize("argv, message", BAD_FLAGS, ids=[" ".join(a[:1] + a[-3:]) for a, _ in BAD_FLAGS])
def test_bad_flags_exit_2_with_one_line(argv, message, capsys):
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert message in err and err.count("\n") == 1 and "--help)" in err


def test_missing_data_exits_1_with_one_line(tmp_path, capsys):
    status, out, err = run(capsys, "train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", str(tmp_path),
                           "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "out"))  # fmt: skip
    assert status == 1
    assert err.count("\n") == 1 and err.startswith("cnnlesson train: error: MNIST not found in")
    assert "Traceback" not in err


def test_missing_checkpoint_exits_1(tmp_path, capsys):
    status, _, err = run(capsys, "evaluate", "--checkpoint", str(tmp_path / "nope.pt"))
    assert status == 1 and err == f"cnnlesson evaluate: error: checkpoint: no file at {tmp_path / 'nope.pt'}\n"


def test_console_script_is_installed():
    done = subprocess.run([shutil.which("cnnlesson") or "cnnlesson", "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "{train,evaluate,visualize}" in done.stdout
