"""The trainer: device choice, learning, reproducibility, atomic checkpoints, resume."""

import pytest
import torch
import torch.nn as nn

from cnnlesson import device as device_module
from cnnlesson.data import TensorLoader, get_dataloaders
from cnnlesson.models import CNNWithBN, MNISTNet
from cnnlesson.train import evaluate, get_device, load_checkpoint, save_checkpoint, train


@pytest.fixture(scope="module")
def small_loaders(mnist_root):
    """In-memory loaders over the stand-in digits (fast)."""
    return get_dataloaders("mnist", mnist_root, batch_size=64, in_memory=True)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# --- device choice ---------------------------------------------------------


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
    with pytest.raises(ValueError, match="device: 'cuda' is not available"):
        get_device()
    with pytest.raises(ValueError, match="device: expected 'auto', 'cpu', 'cuda' or 'mps', got 'gpu'"):
        get_device("gpu")
    with pytest.raises(TypeError, match="device: expected a str such as 'cpu' or 'cuda', got int"):
        get_device(0)


# --- training ----------------------------------------------------------------


def test_train_learns_the_standin_digits(small_loaders):
    torch.manual_seed(0)
    net = MNISTNet()
    history = train(net, *small_loaders, num_epochs=3, device="cpu", seed=0, progress=False)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert set(history[0]) == {"epoch", "train_loss", "train_accuracy", "test_accuracy", "seconds", "images_per_second"}
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_accuracy"] > 0.5  # chance is 0.1
    assert history[-1]["test_accuracy"] == evaluate(net, small_loaders[1])
    assert all(r["images_per_second"] > 0 and r["seconds"] > 0 for r in history)


def test_seeded_runs_are_reproducible_on_cpu(small_loaders):
    nets = []
    for _ in range(2):
        torch.manual_seed(1)
        net = CNNWithBN()  # dropout: the seed must fix its masks too
        train(net, small_loaders[0], num_epochs=1, device="cpu", seed=7, progress=False)
        nets.append(net)
    assert same_weights(*nets)


def test_resumed_run_ends_with_the_same_weights(mnist_root, tmp_path):
    # The lesson's DataLoader (shuffle=True) and dropout: both draw from torch's RNG.
    loader, _ = get_dataloaders("mnist", mnist_root, batch_size=256)
    torch.manual_seed(0)
    straight = CNNWithBN()
    initial = {k: v.clone() for k, v in straight.state_dict().items()}
    train(straight, loader, num_epochs=2, device="cpu", seed=5, checkpoint=tmp_path / "a.pt", progress=False)

    first = CNNWithBN()
    first.load_state_dict(initial)
    train(first, loader, num_epochs=1, device="cpu", seed=5, checkpoint=tmp_path / "b.pt", progress=False)
    resumed = CNNWithBN()  # a fresh process would start from new random weights
    history = train(resumed, loader, num_epochs=2, device="cpu", seed=5, checkpoint=tmp_path / "b.pt", resume=True, progress=False)
    assert [r["epoch"] for r in history] == [1, 2]
    assert same_weights(straight, resumed)
    assert not same_weights(first, resumed)


def test_resume_without_a_file_starts_afresh(small_loaders, tmp_path):
    history = train(MNISTNet(), small_loaders[0], num_epochs=1, checkpoint=tmp_path / "new.pt", resume=True, progress=False, device="cpu")
    assert len(history) == 1 and (tmp_path / "new.pt").exists()


def test_evaluate_counts_correct_predictions():
    class AlwaysThree(nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(10))

        def forward(self, x):
            return self.bias.index_fill(0, torch.tensor([3]), 1.0).expand(len(x), 10)

    y = torch.tensor([3, 3, 1, 3, 0, 3, 3, 9])
    assert evaluate(AlwaysThree(), TensorLoader(torch.zeros(8, 1), y, batch_size=3)) == 5 / 8


def test_train_rejects_bad_arguments(small_loaders, tmp_path):
    loader = small_loaders[0]
    with pytest.raises(TypeError, match="net: expected a torch.nn.Module, got str"):
        train("net", loader)
    with pytest.raises(ValueError, match="num_epochs: expected a positive int, got 0"):
        train(MNISTNet(), loader, num_epochs=0)
    with pytest.raises(ValueError, match="lr: expected a positive number, got -0.1"):
        train(MNISTNet(), loader, lr=-0.1)
    with pytest.raises(ValueError, match="resume: resume=True needs checkpoint=PATH"):
        train(MNISTNet(), loader, resume=True)
    with pytest.raises(ValueError, match="train_loader: expected at least one batch, got none"):
        train(MNISTNet(), [], num_epochs=1, device="cpu", progress=False)


# --- checkpoints -----------------------------------------------------------


def test_checkpoint_round_trip(tmp_path):
    net = MNISTNet()
    optimizer = torch.optim.Adam(net.parameters())
    net(torch.randn(2, 1, 28, 28)).sum().backward()
    optimizer.step()
    path = save_checkpoint(tmp_path / "c.pt", net, optimizer, [{"epoch": 1}], {"model": "mnistnet"})
    other, other_opt = MNISTNet(), torch.optim.Adam(MNISTNet().parameters())
    state = load_checkpoint(path, other, other_opt)
    assert same_weights(net, other)
    assert state["history"] == [{"epoch": 1}] and state["meta"] == {"model": "mnistnet"}
    assert other_opt.state_dict()["state"][0]["step"] == 1


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.pt", MNISTNet(), history=[{"epoch": 1}])
    before = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"partial")
        raise OSError("no space left on device")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="no space left"):
        save_checkpoint(path, MNISTNet(), history=[{"epoch": 2}])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


class Payload:
    """Anything that is not plain tensors and containers: weights_only refuses it."""


def test_load_checkpoint_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model_state": {}, "optimizer_state": None, "history": [], "meta": Payload()}, path)
    with pytest.raises(ValueError, match="is not a readable torch checkpoint"):
        load_checkpoint(path)


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint: no file at"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="was not written by cnnlesson.train.save_checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    save_checkpoint(tmp_path / "mnist.pt", MNISTNet())
    with pytest.raises(ValueError, match="do not fit CNNWithBN"):
        load_checkpoint(tmp_path / "mnist.pt", CNNWithBN())
