"""The trainer: learning, reproducibility, atomic checkpoints, resume."""

import copy
import json
import math

import pytest
import torch
import torch.nn as nn

from cnnlesson.checkpoint import load_checkpoint, save_checkpoint
from cnnlesson.data import TensorLoader, get_dataloaders
from cnnlesson.models import CIFAR10Net, CNNWithBN, MNISTNet
from cnnlesson.train import SEED_MAX, DivergedError, evaluate, train, write_history


@pytest.fixture(scope="module")
def small_loaders(mnist_root):
    """In-memory loaders over the stand-in digits (fast), on the CPU where these tests train."""
    return get_dataloaders("mnist", mnist_root, batch_size=64, in_memory=True, device="cpu")


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# --- training ----------------------------------------------------------------


def test_train_learns_the_standin_digits(small_loaders):
    torch.manual_seed(0)
    net = MNISTNet()
    history = train(net, *small_loaders, num_epochs=3, device="cpu", seed=0, progress=False)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert set(history[0]) == {"epoch", "train_loss", "train_accuracy", "test_accuracy", "seconds", "images_per_second"}
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_accuracy"] > 0.5  # chance is 0.1
    assert history[-1]["test_accuracy"] == _eval_mode_oracle(net, small_loaders[1].X, small_loaders[1].y)
    images = len(small_loaders[0].X)
    assert all(r["images_per_second"] == pytest.approx(images / r["seconds"]) for r in history)


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
    history = train(
        resumed, loader, num_epochs=2, device="cpu", seed=5, checkpoint=tmp_path / "b.pt", resume=True, progress=False
    )
    assert [r["epoch"] for r in history] == [1, 2]
    assert same_weights(straight, resumed)
    assert not same_weights(first, resumed)


def test_resume_without_a_file_starts_afresh(small_loaders, tmp_path):
    history = train(
        MNISTNet(),
        small_loaders[0],
        num_epochs=1,
        checkpoint=tmp_path / "new.pt",
        resume=True,
        progress=False,
        device="cpu",
    )
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
    with pytest.raises(ValueError, match="num_epochs: expected an int from 1 to 1000000, got 0"):
        train(MNISTNet(), loader, num_epochs=0)
    for lr in (-0.1, math.inf, math.nan, 0):
        with pytest.raises(ValueError, match=f"lr: expected a positive finite number, got {lr}"):
            train(MNISTNet(), loader, lr=lr)
    for seed in (-1, 2**63):
        with pytest.raises(ValueError, match=rf"seed: expected an int from 0 to {SEED_MAX}, got {seed}"):
            train(MNISTNet(), loader, num_epochs=3, seed=seed)
    with pytest.raises(TypeError, match="seed: expected an int, got 1.5 of type float"):
        train(MNISTNet(), loader, seed=1.5)
    with pytest.raises(ValueError, match="num_epochs: expected an int from 1 to 1000000, got 100000000000000000000"):
        train(MNISTNet(), loader, num_epochs=10**20, seed=0)
    with pytest.raises(ValueError, match="resume: resume=True needs checkpoint=PATH"):
        train(MNISTNet(), loader, resume=True)
    with pytest.raises(ValueError, match="train_loader: expected at least one batch, got none"):
        train(MNISTNet(), [], num_epochs=1, device="cpu", progress=False)


# --- oracles: the trainer checked against plain loops written here ----------------------
# Not evaluate() against evaluate(): each expected number below is computed by
# hand or by the lesson's loop spelled out in the test.


def _fixed_linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 3))


def test_train_epoch_loss_and_accuracy_match_a_plain_loop():
    """Loss is the mean over images (batches weighted by size), accuracy the share right before each step."""
    gen = torch.Generator().manual_seed(3)
    X, y = torch.randn(10, 1, 2, 3, generator=gen), torch.randint(0, 3, (10,), generator=gen)
    loader = TensorLoader(X, y, batch_size=4)  # batches of 4, 4 and 2: unequal sizes
    net, oracle = _fixed_linear(), _fixed_linear()
    history = train(net, loader, num_epochs=1, lr=0.05, device="cpu", progress=False)

    optimizer = torch.optim.Adam(oracle.parameters(), lr=0.05)
    loss_sum, correct = 0.0, 0
    for start in range(0, 10, 4):
        images, labels = X[start : start + 4], y[start : start + 4]
        outputs = oracle(images)
        loss = nn.functional.cross_entropy(outputs, labels)
        loss_sum += loss.item() * len(labels)
        correct += (outputs.argmax(1) == labels).sum().item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert history[0]["train_loss"] == pytest.approx(loss_sum / 10, rel=1e-6)
    assert history[0]["train_accuracy"] == correct / 10
    for mine, expected in zip(net.state_dict().values(), oracle.state_dict().values()):
        torch.testing.assert_close(mine, expected)
    assert history[0]["images_per_second"] == pytest.approx(10 / history[0]["seconds"])


def test_train_loss_of_a_fixed_model_by_hand():
    """Zero inputs, zero weights, bias (2, 0, 0), an lr too small to matter: the losses are known in closed form."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 3))
    nn.init.zeros_(net[1].weight)
    with torch.no_grad():
        net[1].bias.copy_(torch.tensor([2.0, 0.0, 0.0]))
    X = torch.zeros(5, 1, 1, 2)
    y = torch.tensor([0, 1, 2, 0, 1])
    history = train(net, TensorLoader(X, y, batch_size=2), num_epochs=1, lr=1e-9, device="cpu", progress=False)
    # Every image gets logits (2, 0, 0): class 0 costs log(e^2 + 2) - 2, the others log(e^2 + 2).
    right, wrong = math.log(math.exp(2) + 2) - 2, math.log(math.exp(2) + 2)
    assert history[0]["train_loss"] == pytest.approx((2 * right + 3 * wrong) / 5, rel=1e-5)
    assert history[0]["train_accuracy"] == 2 / 5  # every image is called class 0


def _eval_mode_oracle(net: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of a copy of `net` in eval mode, counted by hand."""
    twin = copy.deepcopy(net).eval()
    with torch.no_grad():
        return (twin(X).argmax(1) == y).sum().item() / len(y)


@pytest.mark.parametrize(("model", "shape"), [(CNNWithBN, (1, 28, 28)), (CIFAR10Net, (3, 32, 32))])
def test_evaluate_runs_the_net_in_eval_mode(model, shape):
    """evaluate() equals a manual eval() forward pass, changes no running statistics, and dropout is off."""
    torch.manual_seed(0)
    net = model()
    X = torch.randn(48, *shape)
    with torch.no_grad():  # move BN's running statistics away from their start (0 and 1)
        net.train()(X * 3 + 1)
    # Labels = the eval-mode predictions: a net evaluated in eval mode scores exactly 1.
    with torch.no_grad():
        y = copy.deepcopy(net).eval()(X).argmax(1)
    assert _eval_mode_oracle(net, X, y) == 1.0
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()  # as train() leaves it after an epoch
    assert evaluate(net, TensorLoader(X, y, batch_size=16), device="cpu") == 1.0
    assert same_weights(net, _with_state(model(), before)), "evaluate() changed BatchNorm's running statistics"
    assert net.training  # evaluate() puts the mode back


def _with_state(net: nn.Module, state: dict) -> nn.Module:
    net.load_state_dict(state)
    return net


@pytest.mark.parametrize(("model", "shape"), [(CNNWithBN, (1, 28, 28)), (CIFAR10Net, (3, 32, 32))])
def test_train_and_eval_mode_outputs_differ_where_they_should(model, shape):
    torch.manual_seed(0)
    net = model()
    X = torch.randn(16, *shape)
    with torch.no_grad():
        net.eval()
        # Eval mode: deterministic, and one image's output does not depend on the rest of its batch.
        torch.testing.assert_close(net(X), net(X))
        torch.testing.assert_close(net(X)[:1], net(X[:1]), rtol=1e-4, atol=1e-5)
        net.train()
        # Train mode: dropout draws new masks, BatchNorm normalises with the batch's statistics.
        assert not torch.allclose(net(X), net(X))
        torch.manual_seed(1)
        whole = net(X)[:4]
        torch.manual_seed(1)
        part = net(X[:4])
        assert not torch.allclose(whole, part, atol=1e-4)


def test_trained_test_accuracy_matches_an_eval_mode_loop(small_loaders):
    """The history's test accuracy is the eval-mode accuracy of the final weights, counted here."""
    torch.manual_seed(0)
    net = CNNWithBN()
    history = train(net, *small_loaders, num_epochs=1, device="cpu", seed=0, progress=False)
    X, y = small_loaders[1].X, small_loaders[1].y
    assert history[-1]["test_accuracy"] == pytest.approx(_eval_mode_oracle(net, X, y), abs=1e-9)


# --- hostile input: divergence, history, resume ----------------------------


def strict_json(text: str):
    """Parse JSON as the standard defines it: NaN and Infinity are not JSON."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))


def test_a_diverged_run_stops_and_keeps_the_last_good_checkpoint(small_loaders, tmp_path):
    ckpt, hist = tmp_path / "checkpoint.pt", tmp_path / "history.json"
    torch.manual_seed(0)
    train(
        MNISTNet(),
        small_loaders[0],
        num_epochs=1,
        device="cpu",
        seed=0,
        checkpoint=ckpt,
        history_file=hist,
        progress=False,
    )
    saved, written = ckpt.read_bytes(), hist.read_text()
    with pytest.raises(
        DivergedError,
        match=rf"training diverged in epoch 2: the training loss is nan; {ckpt} keeps epoch 1; try a smaller lr \(now 1e\+20\)",
    ):
        train(
            MNISTNet(),
            small_loaders[0],
            num_epochs=3,
            lr=1e20,
            device="cpu",
            seed=0,
            checkpoint=ckpt,
            history_file=hist,
            resume=True,
            progress=False,
        )
    assert ckpt.read_bytes() == saved and hist.read_text() == written
    assert [r["epoch"] for r in strict_json(written)] == [1]


def test_a_run_that_diverges_at_once_writes_nothing(small_loaders, tmp_path):
    with pytest.raises(DivergedError, match="training diverged in epoch 1: the training loss is nan; try a smaller lr"):
        train(MNISTNet(), small_loaders[0], num_epochs=1, lr=1e20, device="cpu", checkpoint=tmp_path / "c.pt",
              history_file=tmp_path / "h.json", progress=False)  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_non_finite_weights_count_as_diverged(small_loaders):
    class Poisoned(MNISTNet):
        def forward(self, x):
            out = super().forward(x)
            with torch.no_grad():
                self.fc2.bias[0] = math.inf  # the loss of this batch is still finite
            return out

    X, y = next(iter(small_loaders[1]))
    one_batch = TensorLoader(X[:8], y[:8], batch_size=8)  # the poisoned weights never reach a loss
    with pytest.raises(DivergedError, match="training diverged in epoch 1: some weights are not finite"):
        train(Poisoned(), one_batch, num_epochs=1, device="cpu", progress=False)


def test_history_file_is_written_with_every_checkpoint(small_loaders, tmp_path):
    class CrashesInEpoch2:
        def __init__(self, loader):
            self.loader, self.batches = loader, 0

        def __iter__(self):
            for batch in self.loader:
                self.batches += 1
                if self.batches > len(self.loader):
                    raise KeyboardInterrupt  # the run stops between two checkpoints
                yield batch

    ckpt, hist = tmp_path / "checkpoint.pt", tmp_path / "history.json"
    with pytest.raises(KeyboardInterrupt):
        train(
            MNISTNet(),
            CrashesInEpoch2(small_loaders[0]),
            num_epochs=3,
            device="cpu",
            checkpoint=ckpt,
            history_file=hist,
            progress=False,
        )
    assert strict_json(hist.read_text()) == load_checkpoint(ckpt)["history"]
    assert [r["epoch"] for r in strict_json(hist.read_text())] == [1]


def test_write_history_refuses_nan_and_leaves_the_old_file(tmp_path):
    path = write_history(tmp_path / "history.json", [{"epoch": 1, "train_loss": 0.5}])
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        write_history(path, [{"epoch": 1, "train_loss": math.nan}])
    assert strict_json(path.read_text()) == [{"epoch": 1, "train_loss": 0.5}]
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]


def test_resume_applies_the_new_lr_and_says_so(small_loaders, tmp_path, capsys):
    ckpt = tmp_path / "checkpoint.pt"
    train(MNISTNet(), small_loaders[0], num_epochs=1, lr=1e-3, device="cpu", checkpoint=ckpt, progress=False)
    capsys.readouterr()
    train(
        MNISTNet(), small_loaders[0], num_epochs=2, lr=5e-4, device="cpu", checkpoint=ckpt, resume=True, progress=False
    )
    assert capsys.readouterr().err == "resume: learning rate changed from 0.001 to 0.0005\n"
    assert [g["lr"] for g in load_checkpoint(ckpt)["optimizer_state"]["param_groups"]] == [5e-4]


def test_resume_says_a_new_batch_size_as_it_says_a_new_lr(small_loaders, tmp_path, capsys):
    ckpt = tmp_path / "checkpoint.pt"
    train(MNISTNet(), small_loaders[0], num_epochs=1, device="cpu", checkpoint=ckpt, progress=False,
          meta={"batch_size": 32})  # fmt: skip
    capsys.readouterr()
    train(MNISTNet(), small_loaders[0], num_epochs=2, device="cpu", checkpoint=ckpt, resume=True, progress=False,
          meta={"batch_size": 16})  # fmt: skip
    assert capsys.readouterr().err == "resume: batch size changed from 32 to 16\n"
    assert load_checkpoint(ckpt)["meta"]["batch_size"] == 16


def test_resume_refuses_a_checkpoint_of_another_model_or_seed(small_loaders, tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    train(MNISTNet(), small_loaders[0], num_epochs=1, seed=3, device="cpu", checkpoint=ckpt, progress=False)
    before = ckpt.read_bytes()
    with pytest.raises(
        ValueError, match=rf"resume: {ckpt} was trained with model='mnistnet', this run has model='cnnwithbn'"
    ):
        train(
            CNNWithBN(),
            small_loaders[0],
            num_epochs=2,
            seed=3,
            device="cpu",
            checkpoint=ckpt,
            resume=True,
            progress=False,
        )
    with pytest.raises(ValueError, match=rf"resume: {ckpt} was trained with seed=3, this run has seed=4"):
        train(
            MNISTNet(),
            small_loaders[0],
            num_epochs=2,
            seed=4,
            device="cpu",
            checkpoint=ckpt,
            resume=True,
            progress=False,
        )
    with pytest.raises(ValueError, match="was trained with dataset='mnist', this run has dataset='cifar10'"):
        save_checkpoint(ckpt, MNISTNet(), meta={"dataset": "mnist"})
        train(
            MNISTNet(),
            small_loaders[0],
            num_epochs=2,
            device="cpu",
            checkpoint=ckpt,
            resume=True,
            progress=False,
            meta={"dataset": "cifar10"},
        )
    assert ckpt.read_bytes() != before  # the last case wrote its own checkpoint first


def test_resume_refuses_a_checkpoint_seed_torch_cannot_take(small_loaders, tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    save_checkpoint(ckpt, MNISTNet(), meta={"model": "mnistnet", "seed": 2**64})
    with pytest.raises(
        ValueError, match=rf"has a bad meta\['seed'\]: expected an int from 0 to {SEED_MAX}, got {2**64}$"
    ):
        train(MNISTNet(), small_loaders[0], num_epochs=2, device="cpu", checkpoint=ckpt, resume=True, progress=False)


def test_resume_without_a_seed_continues_with_the_checkpoints(mnist_root, tmp_path, capsys):
    loader, _ = get_dataloaders("mnist", mnist_root, batch_size=256)
    torch.manual_seed(0)
    straight = CNNWithBN()
    initial = {k: v.clone() for k, v in straight.state_dict().items()}
    train(straight, loader, num_epochs=2, device="cpu", seed=5, progress=False)
    first = CNNWithBN()
    first.load_state_dict(initial)
    train(first, loader, num_epochs=1, device="cpu", seed=5, checkpoint=tmp_path / "c.pt", progress=False)
    capsys.readouterr()
    resumed = CNNWithBN()
    train(resumed, loader, num_epochs=2, device="cpu", checkpoint=tmp_path / "c.pt", resume=True, progress=False)
    assert capsys.readouterr().err == "resume: with the checkpoint's seed 5\n"
    assert same_weights(straight, resumed) and load_checkpoint(tmp_path / "c.pt")["meta"]["seed"] == 5


def test_library_checkpoints_record_the_model_and_seed(small_loaders, tmp_path):
    train(
        MNISTNet(), small_loaders[0], num_epochs=1, seed=2, device="cpu", checkpoint=tmp_path / "c.pt", progress=False
    )
    assert load_checkpoint(tmp_path / "c.pt")["meta"] == {"model": "mnistnet", "seed": 2}
