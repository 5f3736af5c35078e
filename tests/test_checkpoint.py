"""Checkpoints: atomic saves, and every entry of a loaded file checked before it is used."""

import math
import re

import pytest
import torch
import torch.nn as nn
from test_train import same_weights

from cnnlesson.checkpoint import load_checkpoint, load_model, save_checkpoint
from cnnlesson.models import CNNWithBN, MNISTNet

RECORD = {
    "epoch": 1,
    "train_loss": 0.5,
    "train_accuracy": 0.8,
    "test_accuracy": None,
    "seconds": 1.0,
    "images_per_second": 64.0,
}


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
    with pytest.raises(ValueError, match="was not written by cnnlesson.checkpoint.save_checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    save_checkpoint(tmp_path / "mnist.pt", MNISTNet())
    with pytest.raises(ValueError, match="do not fit CNNWithBN: it lacks bn1.weight"):
        load_checkpoint(tmp_path / "mnist.pt", CNNWithBN())


def test_weights_that_do_not_fit_name_the_key_and_shapes(tmp_path):
    net = MNISTNet()
    net.fc2 = nn.Linear(128, 7)  # seven classes: same keys, another shape
    save_checkpoint(tmp_path / "c.pt", net)
    with pytest.raises(
        ValueError, match=r"do not fit MNISTNet: fc2.weight is \(7, 128\) in the file, \(10, 128\) in MNISTNet$"
    ):
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
    with pytest.raises(
        ValueError, match=r"do not fit MNISTNet: conv1.weight holds torch.int64 values, MNISTNet torch.float32$"
    ):
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
    (
        {"history": [{}]},
        r"history: entry 1 lacks epoch, train_loss, train_accuracy, test_accuracy, seconds, images_per_second",
    ),
    (
        {"history": [{"train_loss": 1}]},
        r"history: entry 1 lacks epoch, train_accuracy, test_accuracy, seconds, images_per_second",
    ),
    (
        {"history": [{**RECORD, "train_loss": math.nan}]},
        r"history: entry 1 has train_loss=nan, expected a finite number",
    ),
    ({"history": [{**RECORD, "seconds": "1"}]}, r"history: entry 1 has seconds='1', expected a finite number"),
    ({"history": [{**RECORD, "epoch": 2}]}, r"history: entry 1 has epoch 2, expected 1"),
    (
        {"model_state": {"conv1.weight": torch.tensor([math.nan])}},
        r"model_state: conv1.weight holds NaN or infinite values",
    ),
    (
        {"model_state": {"conv1.weight": torch.tensor([-math.inf])}},
        r"model_state: conv1.weight holds NaN or infinite values",
    ),
    (
        {"model_state": {"conv1.weight": torch.ones(2, dtype=torch.complex64)}},
        r"model_state: conv1.weight holds torch.complex64 values, expected real numbers",
    ),
    ({"model_state": {"conv1.weight": [1.0]}}, r"model_state: 'conv1.weight' is a list, expected a tensor"),
    ({"optimizer_state": {}}, r"optimizer_state: expected a dict or None, with 'state' and 'param_groups', got \[\]"),
    (
        {"optimizer_state": {"state": {}, "param_groups": 5}},
        r"optimizer_state: expected a dict 'state' and a non-empty list 'param_groups'",
    ),
    (
        {"optimizer_state": {"state": {}, "param_groups": [{"params": "0"}]}},
        r"optimizer_state: param_groups: expected dicts with a list of parameter numbers, got {'params': '0'}",
    ),
    (
        {"optimizer_state": {"state": {}, "param_groups": [{"params": [0], "lr": "x"}]}},
        r"optimizer_state: param_groups: lr is 'x', expected a finite number",
    ),
    ({"meta": {"pad": -1}}, r"meta\['pad'\]: expected an int >= 0, got -1"),
    ({"model_state": [1]}, r"model_state: expected a dict, got list"),
    (
        {"optimizer_state": "adam"},
        r"optimizer_state: expected a dict or None, with 'state' and 'param_groups', got str",
    ),
    ({"meta": {"model": ["x"]}}, r"meta\['model'\]: expected str, got list"),
    ({"meta": {"data_root": 5}}, r"meta\['data_root'\]: expected str, got int"),
    ({"meta": {"seed": "0"}}, r"meta\['seed'\]: expected int or None, got str"),
    ({"meta": {"pad": True}}, r"meta\['pad'\]: expected int, got bool"),
]


CRAFTED_IDS = [
    "meta-int", "history-int", "history-of-ints", "history-empty-record", "history-train_loss-only", "history-nan",
    "history-seconds-str", "history-epoch-2", "weights-nan", "weights-inf", "weights-complex", "weights-list",
    "optimizer-empty", "optimizer-param_groups-int", "optimizer-params-str", "optimizer-lr-str",
    "pad-negative", "model_state-list", "optimizer_state-str", "model-list", "data_root-int", "seed-str", "pad-bool",
]  # fmt: skip


@pytest.mark.parametrize("change, message", CRAFTED, ids=CRAFTED_IDS)
def test_load_checkpoint_refuses_fields_of_the_wrong_type(change, message, tmp_path):
    save_checkpoint(tmp_path / "c.pt", MNISTNet())
    state = {**torch.load(tmp_path / "c.pt", weights_only=True), **change}
    torch.save(state, tmp_path / "c.pt")
    with pytest.raises(ValueError, match=rf"^checkpoint: {re.escape(str(tmp_path / 'c.pt'))} has a bad {message}$"):
        load_checkpoint(tmp_path / "c.pt")
