"""`cnnlesson export` and its format (cnnlesson/export.py), and the page's weights asset (benchmarks/livenet.py).

The browser side (livenet.js running these files against PyTorch) is tests/test_livenet.py;
the CLI's refusals of bad --out and checkpoints are rows of tests/test_cli.py's hostile table.

    pytest tests/test_export.py -q
"""

from __future__ import annotations

import base64
import copy
import json
import math

import pytest
import torch

from benchmarks import livenet
from cnnlesson.checkpoint import load_model
from cnnlesson.cli import main
from cnnlesson.data import get_dataloaders
from cnnlesson.export import decode_tensor, encode_tensor, export_net, read_net
from cnnlesson.models import CIFAR10Net, CNNWithBN, LeNet5, MNISTNet

MODELS = {"mnistnet": MNISTNet, "lenet5": LeNet5, "cnnwithbn": CNNWithBN}


def _seeded(cls, seed: int = 0):
    torch.manual_seed(seed)
    net = cls()
    for m in net.modules():  # running statistics away from (0, 1), as training leaves them
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return net.eval()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_float32_export_computes_the_models_forward(name):
    net = _seeded(MODELS[name])
    doc = json.loads(json.dumps(export_net(net)))  # through JSON text, as the file holds it
    X = torch.randn(5, *net.input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(read_net(doc)(X), net(X), atol=1e-5, rtol=0)
    assert doc["model"] == type(net).__name__ and doc["input"] == list(net.input_shape)
    assert doc["pad"] == (net.input_shape[-1] - 28) // 2


def test_int8_weights_are_a_quarter_and_dequantise_per_channel():
    net = _seeded(MNISTNet)
    small, full = export_net(net, "int8"), export_net(net)
    assert len(json.dumps(small)) < 0.3 * len(json.dumps(full))
    weight = net.conv2.weight.detach()
    got = decode_tensor(small["layers"][3]["weight"], "conv2.weight", tuple(weight.shape))
    # Each output channel: int8 steps of its own largest |weight| / 127, so off by at most half a step.
    step = weight.flatten(1).abs().amax(1) / 127
    assert ((got - weight).flatten(1).abs().amax(1) <= step / 2 + 1e-7).all()


def test_fewer_bits_round_to_fewer_steps():
    t = torch.randn(4, 50, generator=torch.Generator().manual_seed(2))
    obj = encode_tensor(t, "int8", bits=6)
    q = torch.frombuffer(bytearray(base64.b64decode(obj["data"])), dtype=torch.int8)
    assert q.abs().max() == 31  # each row's largest value is 31 steps of its scale
    got = decode_tensor(obj, "t", (4, 50))
    assert ((got - t).abs().amax(1) <= t.abs().amax(1) / 31 / 2 + 1e-7).all()
    with pytest.raises(ValueError, match=r"^bits: expected an int from 2 to 8, got 9"):
        export_net(_seeded(LeNet5), "int8", 9)


def test_an_all_zero_channel_stays_zero():
    t = torch.zeros(3, 4)
    t[1] = torch.arange(4.0)
    assert torch.equal(decode_tensor(encode_tensor(t, "int8"), "t", (3, 4))[0], torch.zeros(4))


def test_export_refuses_other_models_and_nan():
    with pytest.raises(
        ValueError, match=r"^net: expected one of the lesson's MNIST models .* got CIFAR10Net \(a CIFAR-10"
    ):
        export_net(CIFAR10Net())
    net = _seeded(MNISTNet)
    with torch.no_grad():
        net.fc1.bias[3] = math.nan
    with pytest.raises(ValueError, match=r"^net: fc1.bias holds NaN or infinite values"):
        export_net(net)
    with pytest.raises(ValueError, match=r"^dtype: expected one of \('float32', 'int8'\), got 'float16'"):
        export_net(_seeded(LeNet5), "float16")


def test_thirteen_bytes_of_weights_say_what_is_wrong():
    t = {"shape": [2, 2], "dtype": "float32", "data": base64.b64encode(b"x" * 13).decode()}
    with pytest.raises(ValueError, match=r"^fc\.weight: expected 4 float32 values \(16 bytes\), got 13 bytes$"):
        decode_tensor(t, "fc.weight", (2, 2))


def _broken(change):
    doc = copy.deepcopy(export_net(_seeded(LeNet5), "int8"))
    change(doc)
    return doc


def _set(path, value):
    def change(doc):
        *keys, last = path
        target = doc
        for key in keys:
            target = target[key]
        target[last] = value

    return change


BAD_FILES = [
    (
        "not-an-object",
        lambda doc: doc.clear(),
        "network: expected a 'cnnlesson-network' file written by `cnnlesson export`",
    ),
    ("cifar10", _set(["dataset"], "cifar10"), "network: trained on 'cifar10'; expected an MNIST network"),
    ("wrong-input", _set(["input"], [3, 32, 32]), "network: input: expected [1, 32, 32]"),
    ("unknown-layer", _set(["layers", 1, "type"], "gelu"), "layer 1 (relu): unknown layer type 'gelu'"),
    ("truncated-weights", _set(["layers", 0, "weight", "data"], "AAAA"), "layer 0 (conv1).weight: expected 150 int8"),
    ("not-base64", _set(["layers", 0, "bias", "data"], "!!"), "layer 0 (conv1).bias.data: not valid base64"),
    (
        "shape-does-not-follow",
        _set(["layers", 7, "weight", "shape"], [120, 300]),
        "layer 7 (fc1).weight: expected shape",
    ),
    ("huge-padding", _set(["layers", 0, "padding"], 4000), "layer 0 (conv1).padding: expected an int from 0 to 4"),
    (
        "not-ten-classes",
        lambda doc: doc["layers"].pop(),
        "network: the last layer gives shape [84], expected [10] class scores",
    ),
    (
        "nan-scale",
        _set(["layers", 0, "weight", "scale"], base64.b64encode(b"\x00\x00\xc0\x7f" * 6).decode()),
        "layer 0 (conv1).weight: holds NaN or infinite values",
    ),
]


@pytest.mark.parametrize("change, message", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_read_net_names_what_is_wrong(change, message):
    with pytest.raises(ValueError) as err:
        read_net(_broken(change))
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)


# ---- the CLI, end to end -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lenet_run(mnist_root, tmp_path_factory):
    """A LeNet-5 trained one epoch on the stand-in digits by the CLI: its run folder."""
    out = tmp_path_factory.mktemp("lenet") / "run"
    argv = ["train", "--model", "lenet5", "--dataset", "mnist", "--data-root", str(mnist_root)]
    assert main([*argv, "--epochs", "1", "--seed", "0", "--out", str(out), "--device", "cpu"]) == 0
    return out


def test_cli_export_writes_what_the_checkpoint_computes(lenet_run, mnist_root, tmp_path, capsys):
    out = tmp_path / "nets" / "my-net.json"
    assert main(["export", "--checkpoint", str(lenet_run / "checkpoint.pt"), "--out", str(out)]) == 0
    assert f"wrote {out} (lenet5" in capsys.readouterr().out
    net, _ = load_model(lenet_run / "checkpoint.pt")
    _, test_loader = get_dataloaders("mnist", mnist_root, pad=2, in_memory=True, device="cpu")
    X = test_loader.X[:16]
    with torch.no_grad():
        assert torch.allclose(read_net(json.loads(out.read_text()))(X), net.eval()(X), atol=1e-5, rtol=0)
    # --overwrite replaces it; without, it stays (tests/test_cli.py checks the refusal's line).
    out.write_text("old")
    assert main(["export", "--checkpoint", str(lenet_run / "checkpoint.pt"), "--out", str(out), "--overwrite"]) == 0
    assert json.loads(out.read_text())["model"] == "LeNet5"


# ---- the page's asset (benchmarks/livenet.py) ----------------------------------------------------------


@pytest.fixture(scope="module")
def digits(mnist_root):
    _, test_loader = get_dataloaders("mnist", mnist_root, in_memory=True, device="cpu")
    return test_loader.X[:40], test_loader.y[:40]


def test_asset_round_trip(tmp_path, digits):
    X, y = digits
    net = _seeded(MNISTNet)
    record = livenet.write_asset(tmp_path / livenet.ASSET, net, X, y, first_index=8000)
    asset = livenet.read_asset(tmp_path / livenet.ASSET)
    assert asset["run"] == record["run"] == livenet.run_id(asset["net"]) and asset["net"]["model"] == "MNISTNet"
    with torch.no_grad():  # int8 weights: close to the float32 net, exactly what read_net rebuilds
        assert torch.allclose(read_net(asset["net"])(X), net(X), atol=0.05)
    assert all(8000 <= k < 8040 for k in asset["digits"]["indices"])


ASSET_REFUSALS = [
    ("lenet5", lambda X, y: (_seeded(LeNet5), X, y), "net: the feature-maps page shows an MNISTNet, got LeNet5"),
    (
        "cnnwithbn",
        lambda X, y: (_seeded(CNNWithBN), X, y),
        "net: the feature-maps page shows an MNISTNet, got CNNWithBN",
    ),
    ("no-digits", lambda X, y: (_seeded(MNISTNet), X[:0], y[:0]), "X: expected at least one normalised digit"),
    (
        "label-10",
        lambda X, y: (_seeded(MNISTNet), X, torch.where(y == y[0], 10, y)),
        "y: expected labels 0 to 9, got 10",
    ),
    ("label-negative", lambda X, y: (_seeded(MNISTNet), X, y - 1), "y: expected labels 0 to 9, got -1"),
    ("nan-weights", lambda X, y: (_nan(_seeded(MNISTNet)), X, y), "net: conv2.weight holds NaN or infinite values"),
    ("labels-short", lambda X, y: (_seeded(MNISTNet), X, y[:3]), "y: expected 40 integer labels"),
]


def _nan(net):
    with torch.no_grad():
        net.conv2.weight[0, 0, 0, 0] = math.nan
    return net


@pytest.mark.parametrize("make, message", [c[1:] for c in ASSET_REFUSALS], ids=[c[0] for c in ASSET_REFUSALS])
def test_write_asset_checks_everything_before_writing(tmp_path, digits, make, message):
    path = tmp_path / livenet.ASSET
    path.write_text("the asset before\n")
    net, X, y = make(*digits)
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        livenet.write_asset(path, net, X, y, first_index=0)
    assert path.read_text() == "the asset before\n"  # nothing written, nothing mislabelled


@pytest.mark.parametrize(
    "text, message",
    [
        ("console.log('hello');\n", "is not a live-network asset (no line `window.LIVENET_ASSET = {...};`)"),
        ("window.LIVENET_ASSET = {oops};\n", "the object after `window.LIVENET_ASSET =` is not JSON"),
        ('window.LIVENET_ASSET = {"run": "x"};\n', "lacks model, net, digits; it was not written by write_asset"),
    ],
)
def test_read_asset_says_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "weights.js"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        livenet.read_asset(path)
    assert str(err.value).startswith(f"asset: {path}") and message in str(err.value), str(err.value)
