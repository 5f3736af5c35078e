"""The command line end to end on stand-in data, and each bad input's exit."""

import contextlib
import errno
import json
import math
import os
import pickle
import queue
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import forkserver
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import datasets

import cnnlesson
from cnnlesson import models
from cnnlesson.checkpoint import load_checkpoint
from cnnlesson.cli import main
from cnnlesson.data import TensorLoader, mnist_transform
from cnnlesson.files import LOCK_NAME, lock_folder
from cnnlesson.models import MNISTNet
from cnnlesson.standin import write_standin_cifar10, write_standin_mnist
from cnnlesson.train import train


def last_line(err: str) -> str:
    """The last line of stderr, after tqdm's bar (which redraws with carriage returns)."""
    return re.split(r"[\r\n]", err.rstrip("\n"))[-1] + "\n"


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


def test_train_writes_history_and_checkpoint(trained, mnist_root):
    history = json.loads((trained / "history.json").read_text())
    assert isinstance(history, list) and len(history) == 1
    record = history[0]
    assert {"epoch", "train_loss", "train_accuracy", "test_accuracy", "seconds", "images_per_second"} <= set(record)
    assert record["epoch"] == 1
    net = MNISTNet()
    state = load_checkpoint(trained / "checkpoint.pt", net)
    assert state["meta"]["model"] == "mnistnet" and state["history"] == history
    # The recorded test accuracy is the saved weights' accuracy, counted here in eval mode.
    test = datasets.MNIST(mnist_root, train=False, transform=mnist_transform())
    with torch.no_grad():
        correct = sum((net.eval()(x).argmax(1) == y).sum().item() for x, y in DataLoader(test, batch_size=256))
    assert record["test_accuracy"] == pytest.approx(correct / len(test), abs=1e-9)


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


@pytest.mark.parametrize("command", ["train", "visualize"])
def test_a_file_named_like_the_write_probe_survives(command, trained, mnist_root, tmp_path, capsys):
    (tmp_path / ".cnnlesson-write-test").write_text("mine")
    argv = {
        "train": ["--model", "mnistnet", "--dataset", "mnist", "--data-root", str(mnist_root), "--epochs", "1"],
        "visualize": ["--checkpoint", str(trained / "checkpoint.pt")],
    }[command]
    status, _, err = run(capsys, command, *argv, "--device", "cpu", "--out", str(tmp_path))
    assert status == 0, err
    assert (tmp_path / ".cnnlesson-write-test").read_text() == "mine"


def test_resume_continues_the_history(trained, mnist_root, tmp_path, capsys):
    shutil.copy(trained / "checkpoint.pt", tmp_path / "checkpoint.pt")
    status, out, _ = run(capsys, "train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", str(mnist_root),
                         "--epochs", "2", "--device", "cpu", "--seed", "0", "--resume", "--out", str(tmp_path))  # fmt: skip
    assert status == 0 and "after 2 epochs" in out
    history = json.loads((tmp_path / "history.json").read_text())
    first = json.loads((trained / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2] and history[0] == first[0]


def test_resume_with_another_batch_size_says_so(trained, mnist_root, tmp_path, capsys):
    shutil.copy(trained / "checkpoint.pt", tmp_path / "checkpoint.pt")
    status, out, err = run(capsys, "train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", str(mnist_root),
                           "--epochs", "2", "--batch-size", "32", "--device", "cpu", "--seed", "0", "--resume",
                           "--out", str(tmp_path))  # fmt: skip
    assert status == 0 and "after 2 epochs" in out
    assert "resume: batch size changed from 64 to 32\n" in err
    assert load_checkpoint(tmp_path / "checkpoint.pt")["meta"]["batch_size"] == 32


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
    (
        ["train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", "d", "--epochs", "0", "--out", "x"],
        "--epochs: expected a positive int up to 1000000, got 0",
    ),
    (
        [
            "train",
            "--model",
            "mnistnet",
            "--dataset",
            "mnist",
            "--data-root",
            "d",
            "--epochs",
            "1",
            "--lr",
            "-1",
            "--out",
            "x",
        ],
        "--lr: expected a positive finite float, got -1",
    ),
    (["train", "--model", "mnistnet", "--dataset", "mnist", "--epochs", "1", "--out", "x"], "required: --data-root"),
    (
        ["train", "--model", "cifar10net", "--dataset", "mnist", "--data-root", "d", "--epochs", "1", "--out", "x"],
        "--model cifar10net does not take mnist images",
    ),
    (
        ["evaluate", "--checkpoint", "c.pt", "--device", "tpu"],
        "error: --device: expected 'auto', 'cpu', 'cuda' or 'mps', got 'tpu'",
    ),
    (["fly"], "invalid choice: 'fly'"),
    (
        [
            "train",
            "--model",
            "mnistnet",
            "--dataset",
            "mnist",
            "--data-root",
            "d",
            "--epochs",
            str(10**20),
            "--seed",
            "0",
            "--out",
            "x",
        ],
        f"--epochs: expected a positive int up to 1000000, got {10**20}",
    ),
    (
        ["train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", "d", "--epochs", "1", "--out", ""],
        "--out: expected a folder, got an empty name",
    ),
    (["visualize", "--checkpoint", "c.pt", "--out", ""], "--out: expected a folder, got an empty name"),
    (
        ["train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", "", "--epochs", "1", "--out", "x"],
        "--data-root: expected a folder, got an empty name",
    ),
]


@pytest.mark.parametrize("argv, message", BAD_FLAGS, ids=[" ".join(a[:1] + a[-3:]) for a, _ in BAD_FLAGS])
def test_bad_flags_exit_2_with_one_line(argv, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # an empty --out would mean this folder
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert message in err and err.count("\n") == 1 and "--help)" in err
    assert list(tmp_path.iterdir()) == []


def test_version_and_help(capsys):
    status, out, _ = run(capsys, "--version")
    assert status == 0 and out == f"cnnlesson {cnnlesson.__version__}\n"
    status, out, _ = run(capsys, "train", "--help")
    usage = " ".join(out.split("options:")[0].split())
    assert status == 0 and " --data-root DATA_ROOT" in usage and "[--data-root" not in usage  # marked required


def test_missing_data_exits_1_with_one_line(tmp_path, capsys):
    status, out, err = run(capsys, "train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", str(tmp_path),
                           "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "out"))  # fmt: skip
    assert status == 1
    assert err.count("\n") == 1 and err.startswith("cnnlesson train: error: MNIST not found in")
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # the folder this run made (with only its lock) is gone again


def test_an_out_folder_that_existed_keeps_its_lock_file_after_a_failed_run(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    status, _, _ = run(capsys, "train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", str(tmp_path / "none"),
                       "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "out"))  # fmt: skip
    assert status == 1 and [p.name for p in (tmp_path / "out").iterdir()] == [LOCK_NAME]


def test_an_out_folder_where_no_file_can_be_created_fails_before_training(mnist_root, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    with lock_folder(out):
        pass  # an earlier run's lock file, left in a folder since made read-only (chmod 555, chattr +i)
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        # Root ignores chmod, so the refusal is made here: opening the lock file works, creating a file does not.
        if flags & os.O_CREAT and Path(path).parent == out and not Path(path).exists():
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    monkeypatch.setattr("cnnlesson.cli.train", lambda *args, **kwargs: pytest.fail("training started"))
    status, out_text, err = run(capsys, "train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", str(mnist_root),
                                "--epochs", "1", "--device", "cpu", "--out", str(out))  # fmt: skip
    assert status == 1 and out_text == ""
    assert err == f"cnnlesson train: error: --out: cannot create files in {out} (Permission denied)\n"
    assert [p.name for p in out.iterdir()] == [LOCK_NAME]


def test_an_out_folder_where_the_lock_cannot_be_created_names_out(mnist_root, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        # Root ignores chmod 555, so the refusal is made here.
        if flags & os.O_CREAT and Path(path).parent == out:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    status, out_text, err = run(capsys, "train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", str(mnist_root),
                                "--epochs", "1", "--device", "cpu", "--out", str(out))  # fmt: skip
    assert status == 1 and out_text == ""
    assert err == f"cnnlesson train: error: --out: cannot create files in {out} (Permission denied)\n"
    assert LOCK_NAME not in err and list(out.iterdir()) == []


def test_a_run_that_finishes_while_this_one_waits_for_the_lock_is_not_overwritten(
    mnist_root, tmp_path, capsys, monkeypatch
):
    @contextlib.contextmanager
    def finished_meanwhile(folder):
        # Another run writes its history between this run's first look at --out and its taking the lock.
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "history.json").write_text("[]")
        with lock_folder(folder) as locked:
            yield locked

    monkeypatch.setattr("cnnlesson.cli.lock_folder", finished_meanwhile)
    status, out, err = run(capsys, "train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", str(mnist_root),
                           "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "out"))  # fmt: skip
    assert status == 2 and out == "", err
    assert "--out " + str(tmp_path / "out") + " already holds a run (history.json)" in err and err.count("\n") == 1
    assert (tmp_path / "out" / "history.json").read_text() == "[]"


@pytest.mark.parametrize("model", ["mnistnet", "lenet5"])
def test_evaluate_a_library_checkpoint_with_data_root(model, mnist_root, tmp_path, capsys):
    X, y = torch.zeros(4, *models.MODELS[model].input_shape), torch.arange(4)
    train(models.build_model(model), TensorLoader(X, y, batch_size=4), num_epochs=1, device="cpu", progress=False,
          checkpoint=tmp_path / "library.pt")  # fmt: skip
    assert set(load_checkpoint(tmp_path / "library.pt")["meta"]) == {"model", "seed"}
    status, out, err = run(
        capsys,
        "evaluate",
        "--checkpoint",
        str(tmp_path / "library.pt"),
        "--data-root",
        str(mnist_root),
        "--device",
        "cpu",
    )
    assert status == 0, err
    assert re.fullmatch(rf"test accuracy [01]\.\d{{4}} \(256 mnist test images, {model}\)\n", out)


def test_a_valid_device_in_the_environment_is_used(mnist_root, tmp_path, capsys, monkeypatch):
    from cnnlesson import device

    # With an MPS that seems available, auto would pick CUDA or MPS (and fail here): only the variable says cpu.
    monkeypatch.setattr(device, "_mps_available", lambda: True)
    monkeypatch.setenv("CNNLESSON_DEVICE", "cpu")
    status, out, err = run(capsys, "train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", str(mnist_root),
                           "--epochs", "1", "--out", str(tmp_path / "out"))  # fmt: skip
    assert status == 0, err
    assert "s of training on cpu)" in out


def test_missing_checkpoint_exits_1(tmp_path, capsys):
    status, _, err = run(capsys, "evaluate", "--checkpoint", str(tmp_path / "nope.pt"))
    assert status == 1 and err == f"cnnlesson evaluate: error: checkpoint: no file at {tmp_path / 'nope.pt'}\n"


def test_console_script_is_installed():
    done = subprocess.run(
        [shutil.which("cnnlesson") or "cnnlesson", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "{train,evaluate,export,visualize,doctor}" in done.stdout


def test_a_relative_data_root_is_stored_absolute(mnist_root, tmp_path, monkeypatch, capsys):
    shutil.copytree(mnist_root, tmp_path / "project" / "data")
    monkeypatch.chdir(tmp_path / "project")
    status, _, _ = run(capsys, "train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", "data",
                       "--epochs", "1", "--device", "cpu", "--out", "run")  # fmt: skip
    assert status == 0
    meta = load_checkpoint(tmp_path / "project" / "run" / "checkpoint.pt")["meta"]
    assert meta["data_root"] == str(tmp_path / "project" / "data")
    monkeypatch.chdir(tmp_path)  # evaluate from another folder finds the data
    status, out, err = run(capsys, "evaluate", "--checkpoint", "project/run/checkpoint.pt", "--device", "cpu")
    assert status == 0 and out.startswith("test accuracy"), err


def test_overwrite_starts_afresh_over_an_earlier_run(trained, mnist_root, tmp_path, capsys):
    shutil.copytree(trained, tmp_path / "run")
    status, out, err = run(capsys, "train", "--model", "lenet5", "--dataset", "mnist", "--data-root", str(mnist_root),
                           "--epochs", "1", "--device", "cpu", "--overwrite", "--out", str(tmp_path / "run"))  # fmt: skip
    assert status == 0, err
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["meta"]["model"] == "lenet5"
    assert json.loads((tmp_path / "run" / "history.json").read_text()) == state["history"]


def test_evaluate_reads_the_checkpoint_once(trained, capsys, monkeypatch):
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))
    status, _, _ = run(capsys, "evaluate", "--checkpoint", str(trained / "checkpoint.pt"), "--device", "cpu")
    assert status == 0 and loads == [trained / "checkpoint.pt"]


def test_visualize_writes_all_figures_or_none(trained, tmp_path, capsys, monkeypatch):
    import matplotlib.pyplot as plt

    from cnnlesson import viz

    def broken(*args, **kwargs):
        raise ValueError("history: the last figure fails")

    monkeypatch.setattr(viz, "plot_history", broken)
    before = plt.get_fignums()  # figures other tests in this process left open are not this command's
    status, out, err = run(
        capsys, "visualize", "--checkpoint", str(trained / "checkpoint.pt"), "--out", str(tmp_path / "fig")
    )
    assert status == 1 and err == "cnnlesson visualize: error: history: the last figure fails\n"
    assert not (tmp_path / "fig").exists()  # not three figures of four, no temporary files, no empty folder
    assert plt.get_fignums() == before  # the figures drawn before the failure were closed too


def test_visualize_closes_its_figures(trained, tmp_path, capsys):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()  # figures other tests in this process left open are not this command's
    status, _, _ = run(capsys, "visualize", "--checkpoint", str(trained / "checkpoint.pt"), "--out", str(tmp_path))
    assert status == 0 and plt.get_fignums() == before


FULL_DISK = {
    "oserror": OSError(errno.ENOSPC, "No space left on device"),
    # What torch's zip writer raises when the disk fills mid-write.
    "torch-zip-writer": RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 79424 vs 79312"),
}


@pytest.mark.parametrize("error", FULL_DISK.values(), ids=FULL_DISK)
def test_a_full_disk_mid_run_is_one_line_and_keeps_the_earlier_run(
    error, trained, mnist_root, tmp_path, capsys, monkeypatch
):
    shutil.copytree(trained, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}

    def full(*args, **kwargs):
        raise error

    monkeypatch.setattr(torch, "save", full)
    status, _, err = run(capsys, "train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", str(mnist_root),
                         "--epochs", "2", "--device", "cpu", "--seed", "0", "--resume", "--out", str(tmp_path / "run"))  # fmt: skip
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    assert status == 1 and last_line(err) == f"cnnlesson train: error: the disk is full: cannot write {checkpoint}\n"
    assert "Traceback" not in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before


def test_the_cli_knows_every_data_set():
    from cnnlesson.cli import CHANNELS
    from cnnlesson.data import DATASETS

    assert tuple(CHANNELS) == DATASETS


# --- hostile input: every mistake as the user meets it, in a subprocess ----------------
#
# Each case starts from copies of tiny stand-in data and of one finished 1-epoch run,
# runs `python -m cnnlesson.cli ...` in its own folder, and checks: the exit status, one
# line on stderr without a traceback, no training when the mistake is knowable up front,
# and every file as it was (the earlier checkpoint and history included).


def train_argv(*extra, model="mnistnet", epochs="1", seed="0", resume=True, out="{run}", device="cpu"):
    """`cnnlesson train` on the case's MNIST copy; by default resuming the earlier run with its seed."""
    argv = [
        "train",
        "--model",
        model,
        "--dataset",
        "mnist",
        "--data-root",
        "{mnist}",
        "--epochs",
        epochs,
        "--batch-size",
        "32",
    ]
    argv += ["--device", device] if device else []
    argv += ["--seed", seed] if seed is not None else []
    argv += ["--resume"] if resume else []
    return argv + ["--out", out, *extra]


CIFAR = ["train", "--model", "cifar10net", "--dataset", "cifar10", "--data-root", "{cifar}", "--epochs", "1",
         "--batch-size", "10", "--device", "cpu", "--out", "{tmp}/new"]  # fmt: skip
PROOF = "code-ran"  # a forged pickle creates this file if its code runs


def _edit(relative, edit):
    def setup(tmp, stack):
        path = tmp / relative
        path.write_bytes(edit(path.read_bytes()))

    return setup


def _forge_pickle(tmp, stack):
    class Payload:
        def __reduce__(self):
            return open, (str(tmp / PROOF), "w")

    (tmp / "cifar" / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps(Payload()))


def _file(tmp, stack):
    (tmp / "file").write_text("not a folder")


def _garbage(tmp, stack):
    (tmp / "garbage.pt").write_bytes(b"PK\x03\x04 not a checkpoint")


def _craft(**fields):
    """A copy of the earlier run's checkpoint as crafted.pt, with `fields` replaced."""

    def setup(tmp, stack):
        state = torch.load(tmp.parent / "run" / "checkpoint.pt", weights_only=True)
        torch.save({**state, **fields}, tmp / "crafted.pt")

    return setup


def _craft_meta(**entries):
    """A copy of the earlier run's checkpoint as crafted.pt, with `entries` replaced in its meta."""

    def setup(tmp, stack):
        state = torch.load(tmp.parent / "run" / "checkpoint.pt", weights_only=True)
        torch.save({**state, "meta": {**state["meta"], **entries}}, tmp / "crafted.pt")

    return setup


def _craft_run(**fields):
    """The earlier run's own checkpoint, with `fields` replaced (a crafted file in --out, for --resume)."""

    def setup(tmp, stack):
        path = tmp / "run" / "checkpoint.pt"
        torch.save({**torch.load(path, weights_only=True), **fields}, path)

    return setup


def _craft_weights(change):
    """crafted.pt: the earlier run's checkpoint with `change(tensor)` applied to conv1.weight."""

    def setup(tmp, stack):
        state = torch.load(tmp.parent / "run" / "checkpoint.pt", weights_only=True)
        weights = {**state["model_state"], "conv1.weight": change(state["model_state"]["conv1.weight"])}
        torch.save({**state, "model_state": weights}, tmp / "crafted.pt")

    return setup


def _craft_optimizer(change):
    """The earlier run's own checkpoint, with `change(optimizer_state)` applied (for --resume)."""

    def setup(tmp, stack):
        path = tmp / "run" / "checkpoint.pt"
        state = torch.load(path, weights_only=True)
        change(state["optimizer_state"])
        torch.save(state, path)

    return setup


def _write(name, content: bytes):
    def setup(tmp, stack):
        (tmp / name).write_bytes(content)

    return setup


def _link_checkpoint(target: str):
    """OUT/checkpoint.pt as a symbolic link to `target` (relative to the case's folder)."""

    def setup(tmp, stack):
        (tmp / "run" / "checkpoint.pt").unlink()
        (tmp / "run" / "checkpoint.pt").symlink_to(tmp / target)

    return setup


def _payload(tmp, stack):
    class Payload:
        def __reduce__(self):
            return open, (str(tmp / PROOF), "w")

    state = torch.load(tmp.parent / "run" / "checkpoint.pt", weights_only=True)
    torch.save({**state, "meta": Payload()}, tmp / "crafted.pt")


def _link_lock(target: str):
    """OUT/.cnnlesson.lock as a symbolic link to `target` (relative to the case's folder)."""

    def setup(tmp, stack):
        (tmp / "victim").write_bytes(b"the user's own file\n")
        (tmp / "run" / LOCK_NAME).unlink(missing_ok=True)
        (tmp / "run" / LOCK_NAME).symlink_to(tmp / target)

    return setup


def _loop(tmp, stack):
    (tmp / "loop").symlink_to(tmp / "loop")


def _folder_in_place_of(name):
    def setup(tmp, stack):
        (tmp / "run" / name).unlink()
        (tmp / "run" / name).mkdir()

    return setup


def _lock_run(tmp, stack):
    stack.enter_context(lock_folder(tmp / "run"))  # held by this test process while the case runs


IMAGES = "mnist/MNIST/raw/train-images-idx3-ubyte"
LABELS = "mnist/MNIST/raw/train-labels-idx1-ubyte"
ON_LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")


class Case(NamedTuple):
    id: str
    argv: list
    status: int
    message: str
    upfront: bool = True
    setup: object = None
    env: dict = {}
    memory: int | None = None  # bytes of address space the process may take beyond its start (RLIMIT_AS)


TORCHRUN_ENV = dict(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                    MASTER_PORT="29500", TORCHELASTIC_RUN_ID="none")  # fmt: skip
EVALUATE = ["evaluate", "--checkpoint", "{tmp}/crafted.pt"]
NOT_POSIX = pytest.mark.skipif(os.name != "posix", reason="symbolic links need privileges on Windows")


HOSTILE = [
    Case("lr-inf", train_argv("--lr", "inf"), 2, "--lr: expected a positive finite float, got inf"),
    Case("lr-nan", train_argv("--lr", "nan"), 2, "--lr: expected a positive finite float, got nan"),
    Case("seed-overflow", train_argv(seed=str(2**64)), 2, "--seed: expected an int from 0 to 9223372036854775807"),
    Case("seed-negative", train_argv(seed="-1", resume=False, out="{tmp}/new"), 2, "--seed: expected an int from 0 to"),
    Case(
        "epochs-zero",
        train_argv(epochs="0", resume=False, out="{tmp}/new"),
        2,
        "--epochs: expected a positive int up to 1000000, got 0",
    ),
    Case(
        "fresh-run-over-earlier",
        train_argv(resume=False),
        2,
        "already holds a run (checkpoint.pt, history.json); pass --resume to continue it or --overwrite",
    ),
    Case("resume-and-overwrite", train_argv("--overwrite"), 2, "--resume and --overwrite contradict each other"),
    Case(
        "device-env-bogus",
        train_argv(device=None),
        2,
        "CNNLESSON_DEVICE: expected 'auto', 'cpu', 'cuda' or 'mps', got 'bogus'",
        env={"CNNLESSON_DEVICE": "bogus"},
    ),
    Case("device-flag-bogus", train_argv(device="tpu"), 2, "error: --device: expected 'auto'"),
    Case(
        "batch-size-not-a-multiple-of-world-size",
        train_argv("--batch-size", "63", resume=False, out="{tmp}/new"),
        2,
        "--batch-size: expected a multiple of the world size 2 (WORLD_SIZE), so that each process takes the same share; got 63",
        env=TORCHRUN_ENV,
    ),  # fmt: skip
    Case(
        "stray-rank",
        train_argv(epochs="2"),
        2,
        "RANK set without WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, "
        "MASTER_PORT, TORCHELASTIC_RUN_ID: torchrun sets all of them",
        env={"RANK": "1"},
    ),
    Case(
        "rank-abc",
        train_argv(epochs="2"),
        2,
        "RANK: expected an int >= 0 (torchrun sets it), got 'abc'",
        env={**TORCHRUN_ENV, "RANK": "abc"},
    ),
    Case(
        "torchrun-alone",
        train_argv(resume=False, out="{tmp}/new"),
        1,
        # MASTER_PORT 0: rank 0 listens on a port of the OS's choice, which no other test's job can take.
        "torchrun: rank 0 of 2 could not join the job at 127.0.0.1:0 (Timed out after ",
        upfront=False,  # the data is read before the join, and the note on what it waits for comes first
        env={**TORCHRUN_ENV, "MASTER_PORT": "0", "CNNLESSON_JOIN_TIMEOUT": "2"},
    ),
    Case(
        "join-timeout-soon",
        train_argv(resume=False, out="{tmp}/new"),
        2,
        "CNNLESSON_JOIN_TIMEOUT: expected a positive finite number of seconds, got 'soon'",
        env={**TORCHRUN_ENV, "CNNLESSON_JOIN_TIMEOUT": "soon"},
    ),
    Case(
        "rank-beyond-world",
        train_argv(epochs="2"),
        2,
        "torchrun's variables contradict each other: RANK=2, WORLD_SIZE=2",
        env={**TORCHRUN_ENV, "RANK": "2"},
    ),
    Case(
        "epochs-10-to-the-20",
        train_argv(epochs=str(10**20)),
        2,
        f"--epochs: expected a positive int up to 1000000, got {10**20}",
    ),
    Case(
        "evaluate-weights-nan",
        EVALUATE,
        1,
        "crafted.pt has a bad model_state: conv1.weight holds NaN or infinite values",
        setup=_craft_weights(lambda w: w.index_fill(0, torch.tensor([3]), math.nan)),
    ),
    Case(
        "evaluate-weights-inf",
        EVALUATE,
        1,
        "crafted.pt has a bad model_state: conv1.weight holds NaN or infinite values",
        setup=_craft_weights(lambda w: w.index_fill(0, torch.tensor([0]), math.inf)),
    ),
    Case(
        "evaluate-weights-int",
        EVALUATE,
        1,
        "weights in {tmp}/crafted.pt do not fit MNISTNet: conv1.weight holds torch.int64 values",
        setup=_craft_weights(lambda w: (w * 100).long()),
    ),
    Case(
        "evaluate-weights-complex",
        EVALUATE,
        1,
        "crafted.pt has a bad model_state: conv1.weight holds torch.complex64 values",
        setup=_craft_weights(lambda w: w.to(torch.complex64)),
    ),
    Case(
        "evaluate-weights-another-shape",
        EVALUATE,
        1,
        "do not fit MNISTNet: conv1.weight is (16, 1, 3, 3) in the file, (32, 1, 3, 3) in MNISTNet",
        setup=_craft_weights(lambda w: w[:16]),
    ),
    Case(
        "resume-weights-nan",
        train_argv(epochs="2"),
        1,
        "checkpoint.pt has a bad model_state: conv1.bias holds NaN or infinite values",
        setup=lambda tmp, stack: _craft_run(
            model_state={
                **torch.load(tmp / "run" / "checkpoint.pt", weights_only=True)["model_state"],
                "conv1.bias": torch.full((32,), math.nan),
            }
        )(tmp, stack),
    ),  # fmt: skip
    pytest.param(
        Case(
            "evaluate-pad-10000",
            EVALUATE,
            1,
            "crafted.pt has meta['pad']=10000, but mnistnet on mnist takes pad=0",
            setup=_craft_meta(pad=10000),
            memory=2**30,
        ),
        marks=ON_LINUX,
    ),
    Case(
        "evaluate-payload",
        EVALUATE,
        1,
        "crafted.pt holds objects other than tensors and plain data; refused (Unsupported global",
        setup=_payload,
    ),
    Case("evaluate-data-root-nul", EVALUATE, 1, "\\x00", setup=_craft_meta(data_root="/data\x00/mnist")),
    Case(
        "visualize-history-empty-record",
        ["visualize", "--checkpoint", "{tmp}/crafted.pt", "--out", "{tmp}/fig"],
        1,
        "crafted.pt has a bad history: entry 1 lacks epoch, train_loss",
        setup=_craft(history=[{}]),
    ),
    Case(
        "visualize-history-train-loss-only",
        ["visualize", "--checkpoint", "{tmp}/crafted.pt", "--out", "{tmp}/fig"],
        1,
        "crafted.pt has a bad history: entry 1 lacks epoch, train_accuracy",
        setup=_craft(history=[{"train_loss": 1}]),
    ),
    Case(
        "resume-history-empty-record",
        train_argv(epochs="2"),
        1,
        "checkpoint.pt has a bad history: entry 1 lacks epoch",
        setup=_craft_run(history=[{}]),
    ),
    Case(
        "resume-history-train-loss-only",
        train_argv(epochs="2"),
        1,
        "checkpoint.pt has a bad history: entry 1 lacks epoch, train_accuracy",
        setup=_craft_run(history=[{"train_loss": 1}]),
    ),
    Case(
        "resume-history-nan",
        train_argv(epochs="2"),
        1,
        "checkpoint.pt has a bad history: entry 1 has train_loss=nan",
        setup=lambda tmp, stack: _craft_run(
            history=[{**json.loads((tmp / "run" / "history.json").read_text())[0], "train_loss": math.nan}]
        )(tmp, stack),
    ),
    Case(
        "resume-optimizer-empty",
        train_argv(epochs="2"),
        1,
        "checkpoint.pt has a bad optimizer_state: expected a dict or None, with 'state' and 'param_groups'",
        setup=_craft_run(optimizer_state={}),
    ),
    Case(
        "resume-optimizer-param-groups-int",
        train_argv(epochs="2"),
        1,
        "checkpoint.pt has a bad optimizer_state: expected a dict 'state' and a non-empty list",
        setup=_craft_run(optimizer_state={"state": {}, "param_groups": 5}),
    ),
    pytest.param(
        Case(
            "lock-is-a-link",
            train_argv(epochs="2"),
            1,
            f"--out: {{run}}/{LOCK_NAME} is a symbolic link; remove it",
            setup=_link_lock("victim"),
        ),
        marks=NOT_POSIX,
    ),
    pytest.param(
        Case(
            "lock-is-a-dangling-link",
            train_argv(epochs="2"),
            1,
            f"--out: {{run}}/{LOCK_NAME} is a symbolic link; remove it",
            setup=_link_lock("created-by-the-lock"),
        ),
        marks=NOT_POSIX,
    ),
    pytest.param(
        Case(
            "out-is-a-link-loop",
            train_argv(resume=False, out="{tmp}/loop"),
            1,
            "--out: {tmp}/loop is a symbolic link loop",
            setup=_loop,
        ),
        marks=NOT_POSIX,
    ),
    Case(
        "resume-optimizer-maximize",
        train_argv(epochs="2"),
        1,
        "checkpoint.pt has a bad optimizer_state: param_groups[0]['maximize'] is True, expected False",
        setup=_craft_optimizer(lambda opt: opt["param_groups"][0].update(maximize=True)),
    ),
    Case(
        "resume-optimizer-capturable",
        train_argv(epochs="2"),
        1,
        "checkpoint.pt has a bad optimizer_state: param_groups[0]['capturable'] is True, expected False",
        setup=_craft_optimizer(lambda opt: opt["param_groups"][0].update(capturable=True)),
    ),
    Case(
        "resume-optimizer-step-negative",
        train_argv(epochs="2"),
        1,
        "checkpoint.pt has a bad optimizer_state: state[0]['step'] is -1.0, expected a whole number >= 0",
        setup=_craft_optimizer(lambda opt: opt["state"][0].update(step=torch.tensor(-1.0))),
    ),
    Case(
        "resume-optimizer-exp-avg-nan",
        train_argv(epochs="2"),
        1,
        "checkpoint.pt has a bad optimizer_state: state[1]['exp_avg'] holds NaN or infinite values",
        setup=_craft_optimizer(lambda opt: opt["state"][1]["exp_avg"].fill_(math.nan)),
    ),
    Case(
        "evaluate-text-checkpoint",
        EVALUATE,
        1,
        "crafted.pt is not a PyTorch checkpoint (it holds text; torch.save writes a zip archive)",
        setup=_write("crafted.pt", b"epoch 1: loss 0.31\n"),
    ),
    Case(
        "evaluate-json-checkpoint",
        EVALUATE,
        1,
        "crafted.pt is not a PyTorch checkpoint (it holds text; torch.save writes a zip archive)",
        setup=_write("crafted.pt", b'[{"epoch": 1, "train_loss": 0.31}]\n'),
    ),
    pytest.param(
        Case(
            "evaluate-proc-self-environ",
            ["evaluate", "--checkpoint", "/proc/self/environ"],
            1,
            "/proc/self/environ is not a PyTorch checkpoint (it is neither the zip archive torch.save writes nor a pickle)",
        ),
        marks=ON_LINUX,
    ),
    pytest.param(
        Case(
            "resume-checkpoint-is-a-dangling-link",
            train_argv(epochs="2"),
            1,
            "--out: {run}/checkpoint.pt is not a file (a symbolic link to {tmp}/gone.pt, which does not exist)",
            setup=_link_checkpoint("gone.pt"),
        ),
        marks=NOT_POSIX,
    ),
    pytest.param(
        Case(
            "resume-checkpoint-is-a-link-loop",
            train_argv(epochs="2"),
            1,
            "--out: {run}/checkpoint.pt is not a file (a symbolic link loop)",
            setup=_link_checkpoint("run/checkpoint.pt"),
        ),
        marks=NOT_POSIX,
    ),
    Case(
        "overwrite-history-is-a-folder",
        train_argv("--overwrite", resume=False),
        1,
        "--out: {run}/history.json is not a file (a folder)",
        setup=_folder_in_place_of("history.json"),
    ),
    Case(
        "overwrite-checkpoint-is-a-folder",
        train_argv("--overwrite", resume=False),
        1,
        "--out: {run}/checkpoint.pt is not a file (a folder)",
        setup=_folder_in_place_of("checkpoint.pt"),
    ),
    Case(
        "standin-with-mnist",
        train_argv("--standin", resume=False, out="{tmp}/new"),
        2,
        "--standin reads stand-in CIFAR-10",
    ),
    Case(
        "resume-another-model",
        train_argv(model="cnnwithbn"),
        1,
        "was trained with model='mnistnet', this run has model='cnnwithbn'",
    ),
    Case("resume-another-seed", train_argv(seed="1"), 1, "was trained with seed=0, this run has seed=1"),
    Case(
        "out-is-a-file",
        train_argv(resume=False, out="{tmp}/file"),
        1,
        "--out: {tmp}/file is a file, not a folder",
        setup=_file,
    ),
    Case("out-parent-is-a-file", train_argv(resume=False, out="{tmp}/file/run"), 1, "{tmp}/file", setup=_file),
    pytest.param(
        Case("out-in-proc", train_argv(resume=False, out="/proc/cnnlesson/run"), 1, "/proc/cnnlesson"), marks=ON_LINUX
    ),
    Case(
        "out-locked", train_argv(epochs="2"), 1, "--out: {run} is in use by another cnnlesson run (pid", setup=_lock_run
    ),
    Case(
        "mnist-truncated",
        train_argv(resume=False, out="{tmp}/new"),
        1,
        f"{{tmp}}/{IMAGES} is corrupt: its header promises",
        setup=_edit(IMAGES, lambda b: b[:-500]),
    ),
    Case(
        "mnist-truncated-download",
        train_argv("--download", resume=False, out="{tmp}/new"),
        1,
        f"{{tmp}}/{IMAGES} is corrupt",
        setup=_edit(IMAGES, lambda b: b[:-500]),
    ),
    Case(
        "mnist-dimension-9",
        train_argv(resume=False, out="{tmp}/new"),
        1,
        "is corrupt: its header 00000809 is not 00000803",
        setup=_edit(IMAGES, lambda b: b[:3] + b"\x09" + b[4:]),
    ),
    Case(
        "mnist-label-200",
        train_argv(resume=False, out="{tmp}/new"),
        1,
        f"{{tmp}}/{LABELS} is corrupt: label 200 at index 5",
        setup=_edit(LABELS, lambda b: b[:13] + b"\xc8" + b[14:]),
    ),
    Case(
        "cifar-forged-pickle",
        CIFAR,
        1,
        "data_batch_1 is corrupt: its md5 is not the real CIFAR-10's",
        setup=_forge_pickle,
    ),
    Case(
        "cifar-forged-pickle-standin",
        CIFAR + ["--standin"],
        1,
        "data_batch_1 is corrupt: not a CIFAR-10 pickle (it names",
        setup=_forge_pickle,
    ),
    Case(
        "cifar-truncated-standin",
        CIFAR + ["--standin"],
        1,
        "test_batch is corrupt: not a CIFAR-10 pickle",
        setup=_edit("cifar/cifar-10-batches-py/test_batch", lambda b: b[: len(b) // 2]),
    ),  # fmt: skip
    Case(
        "evaluate-library-checkpoint-without-data-root",
        ["evaluate", "--checkpoint", "{library}"],
        1,
        "records no data set or data folder (saved by cnnlesson.train.train?); pass --data-root, the folder holding MNIST/",
    ),
    Case(
        "evaluate-meta-not-a-dict",
        ["evaluate", "--checkpoint", "{tmp}/crafted.pt"],
        1,
        "crafted.pt has a bad meta: expected a dict, got int",
        setup=_craft(meta=5),
    ),
    Case(
        "evaluate-data-root-int",
        ["evaluate", "--checkpoint", "{tmp}/crafted.pt"],
        1,
        "crafted.pt has a bad meta['data_root']: expected str, got int",
        setup=_craft_meta(data_root=5),
    ),
    Case(
        "evaluate-model-list",
        ["evaluate", "--checkpoint", "{tmp}/crafted.pt"],
        1,
        "crafted.pt has a bad meta['model']: expected str, got list",
        setup=_craft_meta(model=["x"]),
    ),
    Case(
        "evaluate-dataset-unknown",
        ["evaluate", "--checkpoint", "{tmp}/crafted.pt"],
        1,
        "crafted.pt holds data set 'svhn', expected one of ['mnist', 'cifar10']",
        setup=_craft_meta(dataset="svhn"),
    ),
    Case(
        "visualize-history-int",
        ["visualize", "--checkpoint", "{tmp}/crafted.pt", "--out", "{tmp}/fig"],
        1,
        "crafted.pt has a bad history: expected a list of dicts, got int",
        setup=_craft(history=5),
    ),  # fmt: skip
    Case(
        "visualize-bad-checkpoint-makes-no-folder",
        ["visualize", "--checkpoint", "{tmp}/garbage.pt", "--out", "{tmp}/fig"],
        1,
        "is not a readable torch checkpoint",
        setup=_garbage,
    ),
    Case(
        "evaluate-not-a-checkpoint",
        ["evaluate", "--checkpoint", "{tmp}/garbage.pt"],
        1,
        "is not a readable torch checkpoint",
        setup=_garbage,
    ),
    Case(
        "evaluate-no-checkpoint",
        ["evaluate", "--checkpoint", "{tmp}/none.pt"],
        1,
        "checkpoint: no file at {tmp}/none.pt",
    ),
    Case(
        "visualize-out-is-a-file",
        ["visualize", "--checkpoint", "{run}/checkpoint.pt", "--out", "{tmp}/file"],
        1,
        "is a file, not a folder",
        setup=_file,
    ),
    pytest.param(
        Case(
            "visualize-out-in-proc",
            ["visualize", "--checkpoint", "{run}/checkpoint.pt", "--out", "/proc/cnnlesson"],
            1,
            "/proc/cnnlesson",
        ),
        marks=ON_LINUX,
    ),
    Case(
        "diverges-in-epoch-2",
        train_argv("--lr", "1e20", epochs="2"),
        1,
        "training diverged in epoch 2: the training loss is nan; {run}/checkpoint.pt keeps epoch 1",
        upfront=False,
    ),  # fmt: skip
    Case(
        "export-out-exists",
        ["export", "--checkpoint", "{run}/checkpoint.pt", "--out", "{run}/history.json"],
        2,
        "--out {run}/history.json already exists; pass --overwrite to replace it",
    ),
    Case(
        "export-out-is-a-folder",
        ["export", "--checkpoint", "{run}/checkpoint.pt", "--out", "{run}", "--overwrite"],
        1,
        "--out: {run} is not a file (a folder?)",
    ),
    Case(
        "export-nan-weights",
        ["export", "--checkpoint", "{tmp}/crafted.pt", "--out", "{tmp}/new.json"],
        1,
        "conv1.weight holds NaN or infinite values",
        setup=_craft_weights(lambda w: w.index_fill(0, torch.tensor([3]), math.nan)),
    ),
    Case(
        "export-cifar10",
        ["export", "--checkpoint", "{tmp}/crafted.pt", "--out", "{tmp}/new.json"],
        1,
        "holds cifar10net trained on cifar10; the page runs MNIST models",
        setup=lambda tmp, stack: torch.save(
            {
                "model_state": models.CIFAR10Net().state_dict(),
                "optimizer_state": None,
                "history": [],
                "meta": {"model": "cifar10net", "dataset": "cifar10"},
            },
            tmp / "crafted.pt",
        ),
    ),
]
CASES = [c.values[0] if hasattr(c, "values") else c for c in HOSTILE]


# Each case runs in a process of its own, as `python -m cnnlesson.cli` would (see tests/forkserver.py:
# on Linux a fork of a Python that has already imported torch, torchvision and the CLI).
CLI_PRELOAD = ["torch", "torchvision", "cnnlesson.cli"]
CLI_MAIN = "import sys\nfrom cnnlesson import cli\nsys.exit(cli.main())\n"


def _snapshot(folder: Path) -> dict:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != LOCK_NAME
    }


@pytest.fixture(scope="module")
def hostile_runs(request, tmp_path_factory):
    """Run the selected cases at once (they are independent) and return {id: (result, tmp, before, after)}."""
    base = tmp_path_factory.mktemp("hostile")
    env = _cli_env()
    servers: queue.Queue[forkserver.ForkServer | forkserver.Spawn] = queue.Queue()
    workers = max(2, os.cpu_count() or 2)
    for n in range(workers):  # the fork servers import torch while the earlier run below trains
        (base / f"server-{n}").mkdir()
        servers.put(forkserver.server(CLI_PRELOAD, env, base / f"server-{n}"))
    write_standin_mnist(base / "mnist", num_train=64, num_test=32)
    write_standin_cifar10(base / "cifar", num_train=10, num_test=10)
    earlier = train_argv(resume=False, out=str(base / "run"))
    assert main([a.replace("{mnist}", str(base / "mnist")) for a in earlier]) == 0
    X, y = torch.zeros(4, 1, 28, 28), torch.arange(4)
    train(
        MNISTNet(),
        TensorLoader(X, y, batch_size=4),
        num_epochs=1,
        device="cpu",
        progress=False,
        checkpoint=base / "library.pt",
    )
    skipped = {"out-in-proc", "visualize-out-in-proc"} if not sys.platform.startswith("linux") else set()
    skipped |= {"lock-is-a-link", "lock-is-a-dangling-link", "out-is-a-link-loop"} if os.name != "posix" else set()
    skipped |= {"evaluate-pad-10000"} if not sys.platform.startswith("linux") else set()  # /proc/self/statm
    skipped |= {"evaluate-proc-self-environ"} if not sys.platform.startswith("linux") else set()
    skipped |= (
        {"resume-checkpoint-is-a-dangling-link", "resume-checkpoint-is-a-link-loop"} if os.name != "posix" else set()
    )
    # Only the cases whose tests run (pytest -k ...): each is a process of its own.
    wanted = {
        item.callspec.params["case"].id for item in request.session.items if item.name.startswith("test_hostile_input")
    }
    selected = [c for c in CASES if c.id not in skipped and c.id in wanted]

    def run_case(case: Case, stack: contextlib.ExitStack):
        tmp = base / case.id
        tmp.mkdir()
        shutil.copytree(base / "mnist", tmp / "mnist")
        for name in ("cifar", "run"):
            if any(f"{{{name}}}" in a for a in case.argv):
                shutil.copytree(base / name, tmp / name)
        if case.setup:
            case.setup(tmp, stack)
        names = {
            "tmp": tmp,
            "mnist": tmp / "mnist",
            "cifar": tmp / "cifar",
            "run": tmp / "run",
            "library": base / "library.pt",
        }
        argv = [a.format(**{k: str(v) for k, v in names.items()}) for a in case.argv]
        before = _snapshot(tmp)
        server = servers.get()
        try:
            result = server.run(CLI_MAIN, ["cnnlesson", *argv], {**env, **case.env}, tmp, case.memory)
        finally:
            servers.put(server)
        return result, tmp, before, _snapshot(tmp)

    try:
        with contextlib.ExitStack() as stack, ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {case.id: pool.submit(run_case, case, stack) for case in selected}
            return {name: future.result() for name, future in futures.items()}
    finally:
        while not servers.empty():
            servers.get().close()


@pytest.mark.parametrize("case", HOSTILE, ids=[c.id for c in CASES])
def test_hostile_input_gets_one_line_and_loses_nothing(case, hostile_runs):
    result, tmp, before, after = hostile_runs[case.id]
    err = result.stderr
    if case.id == "torchrun-alone":  # it said what it waited for, before the error
        assert "torchrun: rank 0 of 2 is waiting for the job's other processes at 127.0.0.1:0" in err, err
    assert "Traceback" not in err, err
    # When a run had started, tqdm's bar and notes come first: the error is the last line.
    last = err if case.upfront else last_line(err)
    assert result.returncode == case.status, err
    assert last.count("\n") == 1 and last.startswith("cnnlesson"), err
    assert case.message.format(tmp=tmp, run=tmp / "run").replace("/", os.sep) in last
    if case.upfront:
        assert result.stdout == ""  # no epoch line (and, with one line on stderr, no progress bar): nothing trained
    assert after == before  # the earlier checkpoint and history, the data, a lock link's target: all as they were
    assert not (tmp / PROOF).exists()
    assert not (tmp / "created-by-the-lock").exists() and not (tmp / "fig").exists() and not (tmp / "new").exists()


# --- signals and concurrent runs, in real processes ------------------------------------


def _cli_env(**extra) -> dict:
    root = str(Path(cnnlesson.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
        **extra,
    }
    env.pop("CNNLESSON_DEVICE", None)
    return env


def _sigint_as_usual() -> None:
    """In the child, before Python starts: Ctrl-C as in a terminal.

    A suite started in the background by a shell without job control inherits
    SIGINT ignored, and Python then never turns it into KeyboardInterrupt.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child process")
def test_ctrl_c_says_where_the_checkpoint_is_and_leaves_nothing_behind(tmp_path):
    import signal
    import time

    write_standin_mnist(tmp_path / "mnist", num_train=256, num_test=32)
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "cnnlesson", "train", "--model", "mnistnet", "--dataset", "mnist", "--data-root",
            str(tmp_path / "mnist"), "--epochs", "1000", "--batch-size", "16", "--device", "cpu", "--seed", "0", "--out", str(out)]  # fmt: skip
    job = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_cli_env(), preexec_fn=_sigint_as_usual
    )
    deadline = time.monotonic() + 240
    while not (out / "history.json").exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.poll() is None, job.communicate()
    time.sleep(0.3)  # into the next epoch
    job.send_signal(signal.SIGINT)
    _, err = job.communicate(timeout=120)
    assert job.returncode == -signal.SIGINT, err  # the shell's status 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    checkpoint = out / "checkpoint.pt"
    assert (
        last_line(err)
        == f"cnnlesson train: interrupted; the last checkpoint is {checkpoint}: to go on, run the command again with --resume\n"
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [LOCK_NAME, "checkpoint.pt", "history.json"]
    )  # no temporary files
    state = load_checkpoint(checkpoint)
    assert len(state["history"]) >= 1 and json.loads((out / "history.json").read_text()) == state["history"]
    with lock_folder(out):  # released
        pass


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child process")
def test_ctrl_c_before_the_first_epoch_says_nothing_was_saved(tmp_path):
    import signal
    import time

    write_standin_mnist(tmp_path / "mnist", num_train=4000, num_test=32)
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "cnnlesson", "train", "--model", "mnistnet", "--dataset", "mnist", "--data-root",
            str(tmp_path / "mnist"), "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--out", str(out)]  # fmt: skip
    job = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_cli_env(), preexec_fn=_sigint_as_usual
    )
    deadline = time.monotonic() + 240
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the lock made the folder: the run has started
    time.sleep(1)
    job.send_signal(signal.SIGINT)
    _, err = job.communicate(timeout=120)
    assert job.returncode == -signal.SIGINT, err  # the shell's status 130
    assert last_line(err) == "cnnlesson train: interrupted before the first epoch ended; nothing was saved\n", err
    assert not out.exists()  # the folder the run made, with only its lock, is gone again


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child process")
def test_ctrl_c_while_a_torchrun_rank_waits_for_the_others_stops_it_at_once(tmp_path):
    """torch's join does not return to Python until it ends; run in a thread, it leaves Ctrl-C working."""
    import signal

    write_standin_mnist(tmp_path / "mnist", num_train=64, num_test=32)
    env = _cli_env(**{**TORCHRUN_ENV, "MASTER_PORT": "0", "CNNLESSON_JOIN_TIMEOUT": "3000"})  # no second process comes
    argv = [sys.executable, "-m", "cnnlesson", "train", "--model", "mnistnet", "--dataset", "mnist", "--data-root",
            str(tmp_path / "mnist"), "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "run")]  # fmt: skip
    job = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_sigint_as_usual
    )
    try:
        note = job.stderr.readline()  # the process is waiting once it says so
        assert note.startswith("torchrun: rank 0 of 2 is waiting for the job's other processes at 127.0.0.1:0"), note
        job.send_signal(signal.SIGINT)
        _, err = job.communicate(timeout=120)  # well before the join's 3000 s
    finally:
        job.kill()  # a no-op once it has ended; else it would wait out the 3000 s
    assert job.returncode == -signal.SIGINT, err
    assert err == "cnnlesson train: interrupted before the first epoch ended; nothing was saved\n"
    assert not (tmp_path / "run").exists()


# A torch whose import is hit by Ctrl-C: plainly, or (Python 3.11) inside a class's __set_name__, as a RuntimeError.
CTRL_C_IN_IMPORT = {
    "plain": "raise KeyboardInterrupt\n",
    "set-name": "class D:\n    def __set_name__(self, owner, name):\n        raise KeyboardInterrupt\n\n"
    "class Knobs:\n    use_buffer_ops = D()\n",
}


@pytest.mark.skipif(os.name != "posix", reason="ended by SIGINT")
@pytest.mark.parametrize("how", CTRL_C_IN_IMPORT.values(), ids=CTRL_C_IN_IMPORT)
def test_ctrl_c_while_torch_imports_is_one_line_and_ends_by_sigint(how, tmp_path):
    """Ctrl-C in the program's first seconds, while the CLI's modules import torch, deterministically: a planted torch."""
    import signal

    (tmp_path / "planted").mkdir()
    (tmp_path / "planted" / "torch.py").write_text(how)
    env = _cli_env()
    env["PYTHONPATH"] = str(tmp_path / "planted") + os.pathsep + env["PYTHONPATH"]
    script = shutil.which("cnnlesson") or "cnnlesson"
    argv = ["train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", "d", "--epochs", "1", "--out", "run"]
    for program in ([sys.executable, "-m", "cnnlesson"], [script]):  # python -m, and the console script
        done = subprocess.run([*program, *argv], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        assert (done.returncode, done.stderr) == (-signal.SIGINT, "cnnlesson: interrupted; nothing was written\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["planted"]


@pytest.mark.parametrize("wrapped", [True, False])
def test_ctrl_c_inside_a_class_definition_is_still_ctrl_c(tmp_path, monkeypatch, capsys, wrapped):
    """Python 3.11 reports a Ctrl-C in a __set_name__ (as in torch's imports) as a RuntimeError; it is still Ctrl-C."""

    class Descriptor:
        def __set_name__(self, owner, name):
            raise KeyboardInterrupt if wrapped else ValueError("a bad name")

    def train(args, parser, device):
        type("Knobs", (), {"use_buffer_ops": Descriptor()})  # 3.11: RuntimeError("Error calling __set_name__ ...")

    monkeypatch.setattr(cnnlesson.cli, "_cmd_train", train)
    status = main(["train", "--model", "mnistnet", "--dataset", "mnist", "--data-root", str(tmp_path),
                   "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err
    if wrapped:
        assert (status, err) == (130, "cnnlesson train: interrupted; nothing was written\n")
    else:
        assert status == 1 and err.startswith("cnnlesson train: error: ") and err.count("\n") == 1


def test_a_stray_rank_cannot_turn_the_lock_off(mnist_root, tmp_path):
    """Two runs at once into one --out, each with RANK=1 but no torchrun: neither may write unlocked."""
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "cnnlesson", "train", "--model", "mnistnet", "--dataset", "mnist", "--data-root",
            str(mnist_root), "--epochs", "1", "--device", "cpu", "--out", str(out)]  # fmt: skip
    jobs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_cli_env(RANK="1"))
        for _ in range(2)
    ]
    results = [(job.communicate(timeout=300), job.returncode) for job in jobs]
    for (stdout, stderr), status in results:
        assert status == 2 and stdout == "", stderr
        assert (
            stderr.count("\n") == 1
            and "RANK set without WORLD_SIZE" in stderr
            and "torchrun sets all of them" in stderr
        )
    assert not out.exists()
