"""Checkpoints: atomic saves, and every entry of a loaded file checked before it is used."""

import copy
import errno
import math
import os
import re
from pathlib import Path

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
    with pytest.raises(
        ValueError, match=r"optimizer_state: state\[0\]\['exp_avg'\] is \(3,\), its parameter \(32, 1, 3, 3\)$"
    ):
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
    ({"meta": {"batch_size": 0}}, r"meta\['batch_size'\]: expected an int >= 1, got 0"),
    ({"meta": {"batch_size": "64"}}, r"meta\['batch_size'\]: expected int, got str"),
]


CRAFTED_IDS = [
    "meta-int", "history-int", "history-of-ints", "history-empty-record", "history-train_loss-only", "history-nan",
    "history-seconds-str", "history-epoch-2", "weights-nan", "weights-inf", "weights-complex", "weights-list",
    "optimizer-empty", "optimizer-param_groups-int", "optimizer-params-str", "optimizer-lr-str",
    "pad-negative", "model_state-list", "optimizer_state-str", "model-list", "data_root-int", "seed-str", "pad-bool",
    "batch_size-0", "batch_size-str",
]  # fmt: skip


@pytest.mark.parametrize("change, message", CRAFTED, ids=CRAFTED_IDS)
def test_load_checkpoint_refuses_fields_of_the_wrong_type(change, message, tmp_path):
    save_checkpoint(tmp_path / "c.pt", MNISTNet())
    state = {**torch.load(tmp_path / "c.pt", weights_only=True), **change}
    torch.save(state, tmp_path / "c.pt")
    with pytest.raises(ValueError, match=rf"^checkpoint: {re.escape(str(tmp_path / 'c.pt'))} has a bad {message}$"):
        load_checkpoint(tmp_path / "c.pt")


def _small() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


@pytest.fixture(scope="module")
def stepped():
    """The state save_checkpoint writes for a small net after one Adam step (lr 0.01)."""
    torch.manual_seed(0)
    net = _small()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    net(torch.randn(2, 3)).sum().backward()
    optimizer.step()
    return {"model_state": net.state_dict(), "optimizer_state": optimizer.state_dict(), "history": [], "meta": {}}


def _group(**settings):
    return lambda opt: opt["param_groups"][0].update(settings)


def _param(key, change, index=0):
    return lambda opt: opt["state"][index].update({key: change(opt["state"][index][key])})


# Each: what a crafted file changes in the optimizer state, and the message after "has a bad optimizer_state: ".
CRAFTED_OPTIMIZER = {
    "maximize": (_group(maximize=True), r"param_groups\[0\]\['maximize'\] is True, expected False as in the Adam"),
    "eps-negative": (_group(eps=-1e-8), r"param_groups\[0\]\['eps'\] is -1e-08, expected 1e-08"),
    "eps-zero": (_group(eps=0.0), r"param_groups\[0\]\['eps'\] is 0.0, expected 1e-08"),
    "betas-minus-5": (
        _group(betas=(-5, 0.999)),
        r"param_groups\[0\]\['betas'\] is \(-5, 0.999\), expected \(0.9, 0.999\)",
    ),
    "betas-1-1": (_group(betas=(1.0, 1.0)), r"param_groups\[0\]\['betas'\] is \(1.0, 1.0\), expected \(0.9, 0.999\)"),
    "betas-2-2": (_group(betas=(2, 2)), r"param_groups\[0\]\['betas'\] is \(2, 2\), expected \(0.9, 0.999\)"),
    "weight-decay": (_group(weight_decay=-1e6), r"param_groups\[0\]\['weight_decay'\] is -1000000.0, expected 0"),
    "amsgrad": (_group(amsgrad=True), r"param_groups\[0\]\['amsgrad'\] is True, expected False"),
    "capturable": (_group(capturable=True), r"param_groups\[0\]\['capturable'\] is True, expected False"),
    "maximize-1": (_group(maximize=1), r"param_groups\[0\]\['maximize'\] is 1, expected False"),
    "lr-negative": (_group(lr=-1.0), r"param_groups\[0\]\['lr'\] is -1.0, expected a positive finite number"),
    "unknown-setting": (_group(momentum=0.9), r"param_groups\[0\] has 'momentum', which Adam does not write"),
    "params-swapped": (
        lambda opt: opt["param_groups"][0].update(params=[1, 0, *opt["param_groups"][0]["params"][2:]]),
        r"param_groups\[0\]\['params'\] is \[1, 0, 2, 3\], expected \[0, 1, 2, 3\]$",
    ),
    "step-negative": (_param("step", lambda t: torch.tensor(-1.0)), r"state\[0\]\['step'\] is -1.0, expected a whole"),
    "step-half": (_param("step", lambda t: torch.tensor(0.5)), r"state\[0\]\['step'\] is 0.5, expected a whole"),
    "step-nan": (_param("step", lambda t: torch.tensor(math.nan)), r"state\[0\]\['step'\] is nan, expected a whole"),
    "step-int": (_param("step", lambda t: 1), r"state\[0\]\['step'\] is 1, expected a number in a 0-dimensional"),
    "exp-avg-nan": (
        _param("exp_avg", lambda t: torch.full_like(t, math.nan)),
        r"state\[0\]\['exp_avg'\] holds NaN or infinite values",
    ),
    "exp-avg-inf": (
        _param("exp_avg", lambda t: torch.full_like(t, math.inf), index=3),
        r"state\[3\]\['exp_avg'\] holds NaN or infinite values",
    ),
    "exp-avg-sq-negative": (
        _param("exp_avg_sq", lambda t: -t - 1),
        r"state\[0\]\['exp_avg_sq'\] holds negative values",
    ),
    "exp-avg-float64": (
        _param("exp_avg", lambda t: t.double()),
        r"state\[0\]\['exp_avg'\] holds torch.float64, its parameter torch.float32",
    ),
    "state-of-no-parameter": (
        lambda opt: opt["state"].update({99: opt["state"][0]}),
        r"state\[99\] is for no parameter of the optimizer \(it numbers them 0 to 3\)",
    ),
    "state-without-exp-avg": (
        lambda opt: opt["state"][0].pop("exp_avg"),
        r"state\[0\] holds step, exp_avg_sq, expected step, exp_avg, exp_avg_sq",
    ),
    "state-with-a-number-key": (
        lambda opt: opt["state"][0].update({5: torch.zeros(1)}),
        r"state\[0\] holds step, exp_avg, exp_avg_sq, 5, expected step, exp_avg, exp_avg_sq",
    ),
    "state-with-amsgrad-max": (
        lambda opt: opt["state"][0].update(max_exp_avg_sq=opt["state"][0]["exp_avg_sq"]),
        r"state\[0\] holds step, exp_avg, exp_avg_sq, max_exp_avg_sq, expected step, exp_avg, exp_avg_sq",
    ),
}


@pytest.mark.parametrize("change, message", CRAFTED_OPTIMIZER.values(), ids=CRAFTED_OPTIMIZER)
def test_an_optimizer_state_adam_would_fail_on_or_train_the_wrong_way_with_is_refused(
    change, message, stepped, tmp_path
):
    state = copy.deepcopy(stepped)
    change(state["optimizer_state"])
    torch.save(state, tmp_path / "c.pt")
    net = _small()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.001)
    before = copy.deepcopy(optimizer.state_dict())
    with pytest.raises(
        ValueError, match=rf"^checkpoint: {re.escape(str(tmp_path / 'c.pt'))} has a bad optimizer_state: {message}"
    ):
        load_checkpoint(tmp_path / "c.pt", net, optimizer)
    assert optimizer.state_dict() == before  # nothing of the file was loaded


def test_an_optimizer_state_the_trainer_wrote_loads(stepped, tmp_path):
    """The checks pass the trainer's own Adam: another lr, and settings newer than the torch that wrote the file."""
    state = copy.deepcopy(stepped)
    del state["optimizer_state"]["param_groups"][0]["decoupled_weight_decay"]  # off by default where it exists
    torch.save(state, tmp_path / "c.pt")
    optimizer = torch.optim.Adam(_small().parameters(), lr=0.5)
    load_checkpoint(tmp_path / "c.pt", _small(), optimizer)
    assert optimizer.param_groups[0]["lr"] == 0.01 and optimizer.state_dict()["state"][0]["step"] == 1


NOT_CHECKPOINTS = {
    "text": (b"epoch 1: loss 0.3\n", "it holds text; torch.save writes a zip archive"),
    "json": (b'{"model_state": {}, "history": []}\n', "it holds text; torch.save writes a zip archive"),
    "utf8-cut": ("é".encode() * 300, "it holds text; torch.save writes a zip archive"),  # 512 bytes end mid-character
    "environ": (b"HOME=/root\x00PATH=/usr/bin\x00", "it is neither the zip archive torch.save writes nor a pickle"),
    "empty": (b"", "it is empty"),
}


@pytest.mark.parametrize("content, reason", NOT_CHECKPOINTS.values(), ids=NOT_CHECKPOINTS)
def test_a_file_that_is_no_checkpoint_at_all_is_said_so(content, reason, tmp_path):
    path = tmp_path / "c.pt"
    path.write_bytes(content)
    with pytest.raises(
        ValueError, match=rf"^checkpoint: {re.escape(str(path))} is not a PyTorch checkpoint \({reason}\)$"
    ):
        load_checkpoint(path)


@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="Linux's /proc")
def test_proc_self_environ_is_no_checkpoint_and_its_content_is_not_shown():
    with pytest.raises(ValueError) as caught:
        load_checkpoint("/proc/self/environ")
    assert (
        str(caught.value) == "checkpoint: /proc/self/environ is not a PyTorch checkpoint "
        "(it is neither the zip archive torch.save writes nor a pickle)"
    )


def test_a_checkpoint_path_that_is_a_folder_or_a_broken_link_says_what_it_is(tmp_path):
    (tmp_path / "folder.pt").mkdir()
    (tmp_path / "dangling.pt").symlink_to(tmp_path / "gone.pt")
    (tmp_path / "loop.pt").symlink_to(tmp_path / "loop.pt")
    expected = {
        "folder.pt": "a folder",
        "dangling.pt": f"a symbolic link to {tmp_path / 'gone.pt'}, which does not exist",
        "loop.pt": "a symbolic link loop",
    }
    for name, what in expected.items():
        with pytest.raises(
            ValueError, match=rf"^checkpoint: {re.escape(str(tmp_path / name))} is not a file \({what}\)$"
        ):
            load_checkpoint(tmp_path / name)


def test_a_disk_out_of_inodes_is_full_naming_the_checkpoint(tmp_path, monkeypatch):
    """With no inode left, creating the temporary file fails with ENOSPC: the disk is full, naming the checkpoint."""
    path = save_checkpoint(tmp_path / "c.pt", MNISTNet())
    before = path.read_bytes()
    real_open = os.open

    def no_inodes(file, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_inodes)
    with pytest.raises(OSError, match=rf"^the disk is full: cannot write {re.escape(str(path))}$"):
        save_checkpoint(path, MNISTNet())
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["c.pt"]
