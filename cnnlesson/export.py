"""A trained MNIST network as a list of layers the feature-maps page can run (docs/javascripts/livenet.js).

`export_net` turns an `MNISTNet`, `LeNet5` or `CNNWithBN` (whatever its
channel counts) into a JSON-ready dict::

    {"format": "cnnlesson-network", "version": 1, "model": "MNISTNet", "dataset": "mnist",
     "input": [1, 28, 28], "pad": 0,
     "layers": [{"name": "conv1", "type": "conv2d", "kernel": 3, "stride": 1, "padding": 1,
                 "weight": TENSOR, "bias": TENSOR},
                {"name": "relu", "type": "relu"}, {"name": "pool1", "type": "maxpool2d", "kernel": 2, "stride": 2},
                ..., {"name": "fc2", "type": "linear", "weight": TENSOR, "bias": TENSOR}]}

Layer types: conv2d, relu, maxpool2d, batchnorm (eval mode: running mean and
variance, eps), dropout (nothing at test time), flatten, linear. A TENSOR is
``{"shape": [...], "dtype": "float32", "data": base64}`` (little-endian
float32) or, smaller, ``{"shape": [...], "dtype": "int8", "scale": base64
float32s, "data": base64 int8s}``: one scale per output channel, the value
being ``int8 * scale``. `read_net` checks such a dict and rebuilds it as an
`nn.Sequential`, the Python twin of the page's interpreter. Only torch is
needed here.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any, cast

import torch
import torch.nn as nn

from cnnlesson.models import CNNWithBN, LeNet5, MNISTNet

__all__ = ["FORMAT", "MODELS", "export_net", "read_net"]

FORMAT, VERSION = "cnnlesson-network", 1
# The order in which each model's forward uses its layers; "relu" and "flatten" are the forward's F.relu and view.
ORDER: dict[type[nn.Module], tuple[str, ...]] = {
    MNISTNet: ("conv1", "relu", "pool1", "conv2", "relu", "pool2", "flatten", "fc1", "relu", "fc2"),
    CNNWithBN: ("conv1", "bn1", "relu", "pool", "dropout", "flatten", "fc1", "bn_fc", "relu", "fc2"),
    LeNet5: ("conv1", "relu", "pool1", "conv2", "relu", "pool2", "flatten", "fc1", "relu", "fc2", "relu", "fc3"),
}
MODELS = {cls.__name__: cls for cls in ORDER}
DTYPES = ("float32", "int8")
_BN_KEYS = ("weight", "bias", "running_mean", "running_var")
NUM_CLASSES = 10
MNIST_SIZE = 28
MAX_SIDE = 64  # no map of these nets is wider; a crafted padding must not make one enormous
MAX_VALUES = 1 << 21  # values in one layer's output, and in one tensor


# ---- tensors ------------------------------------------------------------------------------------


def _b64(array) -> str:
    return base64.b64encode(array.tobytes()).decode("ascii")


def encode_tensor(t: torch.Tensor, dtype: str = "float32", bits: int = 8) -> dict:
    """A tensor as JSON-ready base64: float32, or int8 with one float32 scale per output channel (first axis).

    For int8, `bits` (2 to 8) sets the steps: each channel's values become whole multiples of
    its largest |value| / (2 ** (bits - 1) - 1), stored in one byte each. Fewer steps make a
    file that compresses better (the page ships 7 bits: 63 steps on each side of zero).
    """
    t = t.detach().cpu().to(torch.float32).contiguous()
    if dtype == "float32":
        return {"shape": list(t.shape), "dtype": "float32", "data": _b64(t.numpy().astype("<f4"))}
    if dtype != "int8":
        raise ValueError(f"dtype: expected one of {DTYPES}, got {dtype!r}")
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"bits: expected an int from 2 to 8, got {bits!r}")
    steps = 2 ** (bits - 1) - 1
    rows = t.reshape(t.shape[0], -1)
    scale = rows.abs().amax(dim=1) / steps
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero channel stays zero
    q = torch.round(rows / scale[:, None]).clamp(-steps, steps).to(torch.int8)
    return {
        "shape": list(t.shape),
        "dtype": "int8",
        "scale": _b64(scale.numpy().astype("<f4")),
        "data": _b64(q.numpy()),
    }


def _decode_base64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"{what}: expected a base64 string, got {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what}: not valid base64 ({len(text)} characters)") from None


def decode_tensor(obj: object, what: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The float32 tensor of `encode_tensor`'s dict, checked to have `shape` and finite values."""
    if not isinstance(obj, dict) or obj.get("dtype") not in DTYPES:
        raise ValueError(f"{what}: expected a tensor {{'shape', 'dtype': one of {DTYPES}, 'data'}}, got {obj!r:.60}")
    if obj.get("shape") != list(shape):
        raise ValueError(f"{what}: expected shape {list(shape)}, got {obj.get('shape')!r:.60}")
    count = math.prod(shape)
    raw = _decode_base64(obj.get("data"), f"{what}.data")
    if obj["dtype"] == "float32":
        if len(raw) != 4 * count:
            raise ValueError(f"{what}: expected {count} float32 values ({4 * count} bytes), got {len(raw)} bytes")
        values = torch.frombuffer(bytearray(raw), dtype=torch.float32).clone() if count else torch.zeros(0)
    else:
        scale_raw = _decode_base64(obj.get("scale"), f"{what}.scale")
        if len(raw) != count or len(scale_raw) != 4 * shape[0]:
            raise ValueError(
                f"{what}: expected {count} int8 values and {shape[0]} float32 scales, "
                f"got {len(raw)} and {len(scale_raw)} bytes"
            )
        q = torch.frombuffer(bytearray(raw), dtype=torch.int8).to(torch.float32)
        scale = torch.frombuffer(bytearray(scale_raw), dtype=torch.float32)
        values = (q.reshape(shape[0], -1) * scale[:, None]).reshape(-1)
    if not torch.isfinite(values).all():
        raise ValueError(f"{what}: holds NaN or infinite values")
    return values.reshape(shape)


# ---- export ---------------------------------------------------------------------------------------


def _square(value: Any, what: str) -> int:
    pair = value if isinstance(value, tuple) else (value, value)
    if len(pair) != 2 or pair[0] != pair[1]:
        raise ValueError(f"{what}: expected a square window, got {value}")
    return int(pair[0])


def _layer(name: str, module: nn.Module | None, dtype: str, bits: int = 8) -> dict:
    """One entry of the layer list for `module` (the attribute `name` of the net; None for relu and flatten)."""
    if module is None:
        return {"name": name, "type": name}
    # Weights may shrink; biases and statistics stay float32 (they are few).
    if isinstance(module, nn.Conv2d):
        if module.groups != 1 or _square(module.dilation, f"{name}.dilation") != 1 or module.padding_mode != "zeros":
            raise ValueError(f"{name}: only plain convolutions are exported (groups 1, dilation 1, zero padding)")
        if isinstance(module.padding, str):
            raise ValueError(f"{name}: padding {module.padding!r}; expected a number of pixels")
        return {
            "name": name, "type": "conv2d", "kernel": _square(module.kernel_size, f"{name}.kernel_size"),
            "stride": _square(module.stride, f"{name}.stride"), "padding": _square(module.padding, f"{name}.padding"),
            "weight": encode_tensor(module.weight, dtype, bits), "bias": encode_tensor(_bias(module)),
        }  # fmt: skip
    if isinstance(module, nn.MaxPool2d):
        if _square(module.padding, f"{name}.padding") or _square(module.dilation, f"{name}.dilation") != 1:
            raise ValueError(f"{name}: only max pooling without padding or dilation is exported")
        if module.ceil_mode:
            raise ValueError(f"{name}: ceil_mode=True is not exported")
        return {
            "name": name, "type": "maxpool2d", "kernel": _square(module.kernel_size, f"{name}.kernel_size"),
            "stride": _square(module.stride, f"{name}.stride"),
        }  # fmt: skip
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if module.running_mean is None or module.running_var is None:
            raise ValueError(f"{name}: batch norm without running statistics cannot run one image at a time")
        features = module.num_features
        gamma = module.weight if module.affine else torch.ones(features)
        beta = module.bias if module.affine else torch.zeros(features)
        return {
            "name": name, "type": "batchnorm", "eps": float(module.eps),
            "weight": encode_tensor(gamma), "bias": encode_tensor(beta),
            "running_mean": encode_tensor(module.running_mean), "running_var": encode_tensor(module.running_var),
        }  # fmt: skip
    if isinstance(module, (nn.Dropout, nn.Dropout2d)):
        return {"name": name, "type": "dropout"}
    if isinstance(module, nn.Linear):
        return {
            "name": name, "type": "linear",
            "weight": encode_tensor(module.weight, dtype, bits), "bias": encode_tensor(_bias(module)),
        }  # fmt: skip
    raise ValueError(f"{name}: a {type(module).__name__} is not one of the exported layer types")


def _part(net: nn.Module, name: str) -> nn.Module | None:
    """The layer `name` of `net`; None for the forward's F.relu and flatten, which are no modules."""
    return None if name in ("relu", "flatten") else getattr(net, name)


def _bias(module: nn.Conv2d | nn.Linear) -> torch.Tensor:
    return module.bias if module.bias is not None else torch.zeros(module.weight.shape[0])


def export_net(net: nn.Module, dtype: str = "float32", bits: int = 8) -> dict:
    """The layer list of a trained MNISTNet, LeNet5 or CNNWithBN, JSON-ready; weights as `dtype` (float32 or int8).

    With int8, `bits` (2 to 8) sets how finely the weights are rounded (see `encode_tensor`).

    Everything is checked first: the model is one of the three, its weights
    are finite, and the layer list computes what the model's forward does.

    Raises:
        ValueError: another model (CIFAR10Net: not MNIST), non-finite weights, or a layer this format lacks.
    """
    if type(net) not in ORDER:
        raise ValueError(
            f"net: expected one of the lesson's MNIST models {sorted(MODELS)}, got {type(net).__name__}"
            + (" (a CIFAR-10 model: the page runs MNIST digits)" if type(net).__name__ == "CIFAR10Net" else "")
        )
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {DTYPES}, got {dtype!r}")
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"bits: expected an int from 2 to 8, got {bits!r}")
    for key, value in net.state_dict().items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError(f"net: {key} holds NaN or infinite values")
    names = ORDER[type(net)]
    shape = cast(tuple[int, ...], net.input_shape)  # a class attribute; nn.Module's __getattr__ would say Tensor
    layers = [_layer(name, _part(net, name), dtype, bits) for name in names]
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "model": type(net).__name__,
        "dataset": "mnist",
        "input": list(shape),
        "pad": (shape[-1] - MNIST_SIZE) // 2,
        "layers": layers,
    }
    # The list must compute the forward: run both on the same images (float32 weights: the same numbers).
    exact = layers if dtype == "float32" else [_layer(n, _part(net, n), "float32") for n in names]
    check = read_net({**doc, "layers": exact})
    probe = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            expected, got = net(probe), check(probe)
    finally:
        net.train(was_training)
    if not torch.allclose(expected, got, atol=1e-5, rtol=1e-5):
        raise ValueError(f"net: the exported layers do not compute {type(net).__name__}.forward")
    return doc


# ---- reading it back ------------------------------------------------------------------------------


def _int(layer: dict, key: str, low: int, high: int, what: str) -> int:
    value = layer.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{what}.{key}: expected an int from {low} to {high}, got {value!r:.40}")
    return value


def read_net(doc: object) -> nn.Sequential:
    """`export_net`'s dict as an `nn.Sequential` in eval mode, after checking every field, shape and number.

    Raises:
        ValueError: one line saying what is wrong (another data set, a layer type it does not know,
            a shape that does not follow from the one before, a truncated tensor, NaN).
    """
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = f"format {doc.get('format')!r:.40}" if isinstance(doc, dict) else f"a {type(doc).__name__}"
        raise ValueError(f"network: expected a {FORMAT!r} file written by `cnnlesson export`, got {got}")
    if doc.get("version") != VERSION:
        raise ValueError(f"network: expected version {VERSION}, got {doc.get('version')!r:.40}")
    if doc.get("dataset") != "mnist":
        raise ValueError(f"network: trained on {doc.get('dataset')!r:.40}; expected an MNIST network (dataset 'mnist')")
    pad = doc.get("pad")
    if isinstance(pad, bool) or not isinstance(pad, int) or not 0 <= pad <= 8:
        raise ValueError(f"network: pad: expected an int from 0 to 8, got {pad!r:.40}")
    side = MNIST_SIZE + 2 * pad
    if doc.get("input") != [1, side, side]:
        raise ValueError(
            f"network: input: expected [1, {side}, {side}] (MNIST digits, padded by {pad}), got {doc.get('input')!r:.40}"
        )
    layers = doc.get("layers")
    if not isinstance(layers, list) or not 1 <= len(layers) <= 64:
        raise ValueError("network: layers: expected a list of 1 to 64 layers")
    shape: tuple[int, ...] = (1, side, side)
    modules: list[nn.Module] = []
    for k, layer in enumerate(layers):
        if not isinstance(layer, dict) or not isinstance(layer.get("name"), str) or len(layer["name"]) > 40:
            raise ValueError(f"network: layer {k}: expected an object with a name (a short string)")
        what, kind = f"layer {k} ({layer['name']})", layer.get("type")
        module, shape = _module(layer, kind, shape, what)
        if math.prod(shape) > MAX_VALUES:
            raise ValueError(f"{what}: its output holds {math.prod(shape)} values, more than {MAX_VALUES}")
        modules.append(module)
    if shape != (NUM_CLASSES,):
        raise ValueError(f"network: the last layer gives shape {list(shape)}, expected [{NUM_CLASSES}] class scores")
    return nn.Sequential(*modules).eval()


def _module(layer: dict, kind: object, shape: tuple[int, ...], what: str) -> tuple[nn.Module, tuple[int, ...]]:
    """The torch module of one layer entry, and its output shape from input `shape`."""
    maps = len(shape) == 3
    if kind in ("conv2d", "maxpool2d") and not maps:
        raise ValueError(f"{what}: a {kind} needs maps (channels, height, width), got shape {list(shape)}")
    if kind == "conv2d":
        k, s = _int(layer, "kernel", 1, 11, what), _int(layer, "stride", 1, 4, what)
        p = _int(layer, "padding", 0, k - 1, what)
        out_channels = _shape0(layer, what)
        weight = decode_tensor(layer.get("weight"), f"{what}.weight", (out_channels, shape[0], k, k))
        conv = nn.Conv2d(shape[0], out_channels, k, stride=s, padding=p)
        conv.weight.data = weight
        cast(torch.Tensor, conv.bias).data = decode_tensor(layer.get("bias"), f"{what}.bias", (out_channels,))
        return conv, (out_channels, *(_side(n, k, s, p, what) for n in shape[1:]))
    if kind == "maxpool2d":
        k, s = _int(layer, "kernel", 1, 8, what), _int(layer, "stride", 1, 8, what)
        return nn.MaxPool2d(k, s), (shape[0], *(_side(n, k, s, 0, what) for n in shape[1:]))
    if kind == "batchnorm":
        features, eps = shape[0], layer.get("eps")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
            raise ValueError(f"{what}.eps: expected a number between 0 and 1, got {eps!r:.40}")
        bn = (nn.BatchNorm2d if maps else nn.BatchNorm1d)(features, eps=float(eps))
        values = {key: decode_tensor(layer.get(key), f"{what}.{key}", (features,)) for key in _BN_KEYS}
        if (values["running_var"] < 0).any():
            raise ValueError(f"{what}.running_var: holds negative variances")
        for key, value in values.items():
            getattr(bn, key).data = value
        return bn, shape
    if kind == "relu":
        return nn.ReLU(), shape
    if kind == "dropout":
        return nn.Dropout(), shape  # nothing at test time (eval mode)
    if kind == "flatten":
        return nn.Flatten(), (math.prod(shape),)
    if kind == "linear":
        if maps:
            raise ValueError(f"{what}: a linear layer needs a flat input (a flatten before it), got {list(shape)}")
        out_features = _shape0(layer, what)
        fc = nn.Linear(shape[0], out_features)
        fc.weight.data = decode_tensor(layer.get("weight"), f"{what}.weight", (out_features, shape[0]))
        fc.bias.data = decode_tensor(layer.get("bias"), f"{what}.bias", (out_features,))
        return fc, (out_features,)
    known = "conv2d, relu, maxpool2d, batchnorm, dropout, flatten, linear"
    raise ValueError(f"{what}: unknown layer type {kind!r:.40}; expected one of {known}")


def _shape0(layer: dict, what: str) -> int:
    """The output channels or features a layer's weight declares."""
    shape = layer.get("weight", {}).get("shape") if isinstance(layer.get("weight"), dict) else None
    if not isinstance(shape, list) or not shape or isinstance(shape[0], bool) or not isinstance(shape[0], int):
        raise ValueError(f"{what}.weight: expected a tensor with a shape, got {layer.get('weight')!r:.60}")
    if not 1 <= shape[0] <= 4096:
        raise ValueError(f"{what}.weight: expected 1 to 4096 outputs, got {shape[0]}")
    return shape[0]


def _side(n: int, k: int, s: int, p: int, what: str) -> int:
    out = (n + 2 * p - k) // s + 1
    if not 1 <= out <= MAX_SIDE:
        raise ValueError(f"{what}: turns {n} pixels into {out}; expected 1 to {MAX_SIDE}")
    return out
