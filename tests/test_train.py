"""The trainer: learning, reproducibility, atomic checkpoints, resume."""

import copy
import json
import math
import re

import pytest
import torch
import torch.nn as nn

from cnnlesson.data import TensorLoader, get_dataloaders
from cnnlesson.models import CIFAR10Net, CNNWithBN, MNISTNet
from cnnlesson.train import SEED_MAX, DivergedError, evaluate, load_checkpoint, load_model, save_checkpoint, train, write_history


@pytest.fixture(scope="module")
def small_loaders(mnist_root):
    """In-memory loaders over the stand-in digits (fast)."""
    return get_dataloaders("mnist", mnist_root, batch_size=64, in_memory=True)


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


# --- checkpoints -----------------------------------------------------------


RECORD = {"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.8, "test_accuracy": None, "seconds": 1.0, "images_per_second": 64.0}


def test_checkpoint_round_trip(tmp_path):
    net = MNISTNet()
    optimizer = torch.optim.Adam(net.parameters())
    net(torch.randn(2, 1, 28, 28)).sum().backward()
    optimizer.step()
    path = save_checkpoint(tmp_path / "c.pt", net, optimizer, [RECORD], {"model": "mnistnet"})
    other = MNISTNet()
    other_opt = torch.optim.Adam(other.parameters())
    state = load_checkpoint(path, other, other_opt)
    assert same_weights(net, other)
    assert state["history"] == [RECORD] and state["meta"] == {"model": "mnistnet"}
    assert other_opt.state_dict()["state"][0]["step"] == 1


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.pt", MNISTNet(), history=[RECORD])
    before = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"partial")
        raise OSError("no space left on device")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="no space left"):
        save_checkpoint(path, MNISTNet(), history=[RECORD])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


class Payload:
    """Anything that is not plain tensors and containers: weights_only refuses it."""


def test_load_checkpoint_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model_state": {}, "optimizer_state": None, "history": [], "meta": Payload()}, path)
    with pytest.raises(ValueError, match="holds objects other than tensors and plain data; refused") as caught:
        load_checkpoint(path)
    # Never the advice to load a refused file with weights_only=False; no terminal colour codes.
    message = str(caught.value)
    assert "weights_only" not in message and "\x1b" not in message and "\n" not in message
    assert "Payload" in message


def test_a_full_disk_is_said_so_naming_the_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.pt", MNISTNet())
    before = path.read_bytes()

    def full(obj, f, *args, **kwargs):
        # What torch's zip writer raises when a write comes up short.
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 79424 vs 79312")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match=rf"^the disk is full: cannot write {re.escape(str(path))}$"):
        save_checkpoint(path, MNISTNet())
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint: no file at"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="was not written by cnnlesson.train.save_checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    save_checkpoint(tmp_path / "mnist.pt", MNISTNet())
    with pytest.raises(ValueError, match="do not fit CNNWithBN: it lacks bn1.weight"):
        load_checkpoint(tmp_path / "mnist.pt", CNNWithBN())


def test_weights_that_do_not_fit_name_the_key_and_shapes(tmp_path):
    net = MNISTNet()
    net.fc2 = nn.Linear(128, 7)  # seven classes: same keys, another shape
    save_checkpoint(tmp_path / "c.pt", net)
    with pytest.raises(ValueError, match=r"do not fit MNISTNet: fc2.weight is \(7, 128\) in the file, \(10, 128\) in MNISTNet$"):
        load_checkpoint(tmp_path / "c.pt", MNISTNet())
    save_checkpoint(tmp_path / "c.pt", nn.Sequential(MNISTNet()))
    with pytest.raises(ValueError, match=r"do not fit MNISTNet: it lacks conv1.weight$"):
        load_checkpoint(tmp_path / "c.pt", MNISTNet())
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    state["model_state"] = {**MNISTNet().state_dict(), "extra.weight": torch.zeros(1)}
    torch.save(state, tmp_path / "c.pt")
    with pytest.raises(ValueError, match=r"do not fit MNISTNet: it has extra.weight, which MNISTNet does not$"):
        load_checkpoint(tmp_path / "c.pt", MNISTNet())
    state["model_state"] = {k: v.long() for k, v in MNISTNet().state_dict().items()}  # integer weights
    state["meta"] = {"model": "mnistnet"}
    torch.save(state, tmp_path / "c.pt")
    with pytest.raises(ValueError, match=r"do not fit MNISTNet: conv1.weight holds torch.int64 values, MNISTNet torch.float32$"):
        load_checkpoint(tmp_path / "c.pt", MNISTNet())
    with pytest.raises(ValueError, match=r"do not fit MNISTNet: conv1.weight holds torch.int64 values"):
        load_model(tmp_path / "c.pt")


def test_an_optimizer_state_that_does_not_fit_is_one_error(tmp_path):
    net = MNISTNet()
    optimizer = torch.optim.Adam(net.parameters())
    net(torch.randn(2, 1, 28, 28)).sum().backward()
    optimizer.step()
    save_checkpoint(tmp_path / "c.pt", net, optimizer)
    other = CNNWithBN()
    with pytest.raises(ValueError, match="the optimizer state in .* does not fit the model"):
        load_checkpoint(tmp_path / "c.pt", optimizer=torch.optim.Adam(other.parameters()))
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    state["optimizer_state"]["state"][0]["exp_avg"] = torch.zeros(3)  # a moment of another shape than conv1.weight
    torch.save(state, tmp_path / "c.pt")
    with pytest.raises(ValueError, match=r"does not fit the model \(exp_avg is \(3,\), its weight \(32, 1, 3, 3\)\)"):
        load_checkpoint(tmp_path / "c.pt", optimizer=torch.optim.Adam(MNISTNet().parameters()))


CRAFTED = [
    ({"meta": 5}, r"meta: expected a dict, got int"),
    ({"history": 5}, r"history: expected a list of dicts, got int"),
    ({"history": [5]}, r"history: entry 1: expected a dict, got int"),
    ({"history": [{}]}, r"history: entry 1 lacks epoch, train_loss, train_accuracy, test_accuracy, seconds, images_per_second"),
    ({"history": [{"train_loss": 1}]}, r"history: entry 1 lacks epoch, train_accuracy, test_accuracy, seconds, images_per_second"),
    ({"history": [{**RECORD, "train_loss": math.nan}]}, r"history: entry 1 has train_loss=nan, expected a finite number"),
    ({"history": [{**RECORD, "seconds": "1"}]}, r"history: entry 1 has seconds='1', expected a finite number"),
    ({"history": [{**RECORD, "epoch": 2}]}, r"history: entry 1 has epoch 2, expected 1"),
    ({"model_state": {"conv1.weight": torch.tensor([math.nan])}}, r"model_state: conv1.weight holds NaN or infinite values"),
    ({"model_state": {"conv1.weight": torch.tensor([-math.inf])}}, r"model_state: conv1.weight holds NaN or infinite values"),
    ({"model_state": {"conv1.weight": torch.ones(2, dtype=torch.complex64)}}, r"model_state: conv1.weight holds torch.complex64 values, expected real numbers"),
    ({"model_state": {"conv1.weight": [1.0]}}, r"model_state: 'conv1.weight' is a list, expected a tensor"),
    ({"optimizer_state": {}}, r"optimizer_state: expected a dict or None, with 'state' and 'param_groups', got \[\]"),
    ({"optimizer_state": {"state": {}, "param_groups": 5}}, r"optimizer_state: expected a dict 'state' and a non-empty list 'param_groups'"),
    ({"optimizer_state": {"state": {}, "param_groups": [{"params": "0"}]}}, r"optimizer_state: param_groups: expected dicts with a list of parameter numbers, got {'params': '0'}"),
    ({"optimizer_state": {"state": {}, "param_groups": [{"params": [0], "lr": "x"}]}}, r"optimizer_state: param_groups: lr is 'x', expected a finite number"),
    ({"meta": {"seed": 2**64}}, rf"meta\['seed'\]: expected an int from 0 to {2**63 - 1}, got {2**64}"),
    ({"meta": {"pad": -1}}, r"meta\['pad'\]: expected an int >= 0, got -1"),
    ({"model_state": [1]}, r"model_state: expected a dict, got list"),
    ({"optimizer_state": "adam"}, r"optimizer_state: expected a dict or None, with 'state' and 'param_groups', got str"),
    ({"meta": {"model": ["x"]}}, r"meta\['model'\]: expected str, got list"),
    ({"meta": {"data_root": 5}}, r"meta\['data_root'\]: expected str, got int"),
    ({"meta": {"seed": "0"}}, r"meta\['seed'\]: expected int or None, got str"),
    ({"meta": {"pad": True}}, r"meta\['pad'\]: expected int, got bool"),
]


CRAFTED_IDS = [
    "meta-int", "history-int", "history-of-ints", "history-empty-record", "history-train_loss-only", "history-nan",
    "history-seconds-str", "history-epoch-2", "weights-nan", "weights-inf", "weights-complex", "weights-list",
    "optimizer-empty", "optimizer-param_groups-int", "optimizer-params-str", "optimizer-lr-str", "seed-too-large",
    "pad-negative", "model_state-list", "optimizer_state-str", "model-list", "data_root-int", "seed-str", "pad-bool",
]  # fmt: skip


@pytest.mark.parametrize("change, message", CRAFTED, ids=CRAFTED_IDS)
def test_load_checkpoint_refuses_fields_of_the_wrong_type(change, message, tmp_path):
    save_checkpoint(tmp_path / "c.pt", MNISTNet())
    state = {**torch.load(tmp_path / "c.pt", weights_only=True), **change}
    torch.save(state, tmp_path / "c.pt")
    with pytest.raises(ValueError, match=rf"^checkpoint: {re.escape(str(tmp_path / 'c.pt'))} has a bad {message}$"):
        load_checkpoint(tmp_path / "c.pt")


# --- oracles: the trainer checked against plain loops written here (issue 15) ------------
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
        images, labels = X[start:start + 4], y[start:start + 4]
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
    train(MNISTNet(), small_loaders[0], num_epochs=1, device="cpu", seed=0, checkpoint=ckpt, history_file=hist, progress=False)
    saved, written = ckpt.read_bytes(), hist.read_text()
    with pytest.raises(DivergedError, match=rf"training diverged in epoch 2: the training loss is nan; {ckpt} keeps epoch 1; try a smaller lr \(now 1e\+20\)"):
        train(MNISTNet(), small_loaders[0], num_epochs=3, lr=1e20, device="cpu", seed=0, checkpoint=ckpt, history_file=hist, resume=True, progress=False)
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
        train(MNISTNet(), CrashesInEpoch2(small_loaders[0]), num_epochs=3, device="cpu", checkpoint=ckpt, history_file=hist, progress=False)
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
    train(MNISTNet(), small_loaders[0], num_epochs=2, lr=5e-4, device="cpu", checkpoint=ckpt, resume=True, progress=False)
    assert capsys.readouterr().err == "resume: learning rate changed from 0.001 to 0.0005\n"
    assert [g["lr"] for g in load_checkpoint(ckpt)["optimizer_state"]["param_groups"]] == [5e-4]


def test_resume_refuses_a_checkpoint_of_another_model_or_seed(small_loaders, tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    train(MNISTNet(), small_loaders[0], num_epochs=1, seed=3, device="cpu", checkpoint=ckpt, progress=False)
    before = ckpt.read_bytes()
    with pytest.raises(ValueError, match=rf"resume: {ckpt} was trained with model='mnistnet', this run has model='cnnwithbn'"):
        train(CNNWithBN(), small_loaders[0], num_epochs=2, seed=3, device="cpu", checkpoint=ckpt, resume=True, progress=False)
    with pytest.raises(ValueError, match=rf"resume: {ckpt} was trained with seed=3, this run has seed=4"):
        train(MNISTNet(), small_loaders[0], num_epochs=2, seed=4, device="cpu", checkpoint=ckpt, resume=True, progress=False)
    with pytest.raises(ValueError, match="was trained with dataset='mnist', this run has dataset='cifar10'"):
        save_checkpoint(ckpt, MNISTNet(), meta={"dataset": "mnist"})
        train(MNISTNet(), small_loaders[0], num_epochs=2, device="cpu", checkpoint=ckpt, resume=True, progress=False, meta={"dataset": "cifar10"})
    assert ckpt.read_bytes() != before  # the last case wrote its own checkpoint first


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
    train(MNISTNet(), small_loaders[0], num_epochs=1, seed=2, device="cpu", checkpoint=tmp_path / "c.pt", progress=False)
    assert load_checkpoint(tmp_path / "c.pt")["meta"] == {"model": "mnistnet", "seed": 2}
