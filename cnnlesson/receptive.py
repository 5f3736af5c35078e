"""Receptive fields: how much of the input image one output pixel of a layer can see.

A pixel of a conv or pooling layer's output is computed from a window of the
layer's input; that window's pixels come from windows of the layer before,
and so on down to the image. The input region that can change the pixel is
its *receptive field*. Layer by layer (d2l's and CS231n's recurrence), with
`jump` the distance in input pixels between neighbouring outputs:

    size_out = size_in + (kernel - 1) * jump_in
    jump_out = jump_in * stride
    start_out = start_in + (0 - padding) * jump_in   (input row of output row 0's field)

`receptive_fields` does the arithmetic on plain layer specs; `layer_specs`
reads the specs of a PyTorch model's conv and pooling layers, and refuses a
model the arithmetic does not describe.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NamedTuple, cast

import torch
import torch.nn as nn

from cnnlesson._checks import check_int, is_int


class LayerSpec(NamedTuple):
    """One sliding-window layer: its name, square kernel, stride and padding."""

    name: str
    kernel: int
    stride: int = 1
    padding: int = 0


class Field(NamedTuple):
    """The receptive field of one output pixel of a layer, on the input image.

    `size` is the field's side in input pixels, `jump` the distance in input
    pixels between neighbouring output pixels, `start` the input row (and
    column) where output pixel 0's field begins (negative: in the padding).
    Output pixel i's field is the square from row `start + i * jump`, `size`
    wide, cut at the image's edges; at the bottom and right also where a
    layer's last window stopped short of its input's edge (a stride that
    does not divide the size leaves the last rows and columns unread).
    """

    name: str
    kernel: int
    stride: int
    size: int
    jump: int
    start: int


_SPEC = "a LayerSpec or a (name, kernel[, stride[, padding]]) tuple"


def receptive_fields(specs: Iterable[LayerSpec | tuple]) -> list[Field]:
    """The receptive field after each layer of a stack, first layer first.

    Args:
        specs: (name, kernel, stride, padding) per layer, in the order the
            input goes through them; stride and padding may be left out.

    Returns:
        One `Field` per layer.

    Raises:
        TypeError, ValueError: a spec is not one, or a value is not a whole
            number in range; the message names the item (`specs[2]`) and the field.
        ValueError: the field has gaps: after a stride larger than its kernel
            (a 1x1 convolution with stride 2), a kernel of 2 or more covers
            input pixels whose own fields do not touch.
    """
    if isinstance(specs, (str, bytes)) or (isinstance(specs, tuple) and specs and isinstance(specs[0], str)):
        raise TypeError(f"specs: expected a list of layer specs ({_SPEC} each), got the single spec {specs!r}")
    if not isinstance(specs, Iterable):
        raise TypeError(f"specs: expected a list of layer specs ({_SPEC} each), got {type(specs).__name__}")
    fields = []
    size, jump, start = 1, 1, 0  # the image itself: each pixel sees itself
    for index, item in enumerate(specs):
        if not isinstance(item, (tuple, list)) or not 2 <= len(item) <= 4:
            raise TypeError(f"specs[{index}]: expected {_SPEC}, got {item!r}")
        spec = LayerSpec(*item)
        if not isinstance(spec.name, str):
            raise TypeError(f"specs[{index}].name: expected a str, got {spec.name!r}")
        where = f"specs[{index}] ({spec.name})"
        kernel = check_int(f"{where}.kernel", spec.kernel, low=1)
        stride = check_int(f"{where}.stride", spec.stride, low=1)
        padding = check_int(f"{where}.padding", spec.padding, low=0)
        if kernel > 1 and size < jump:
            raise ValueError(
                f"{where}: its kernel takes inputs {jump} pixels apart whose fields are {size} wide, so the field "
                "has gaps (an earlier stride larger than its kernel), which a square cannot describe"
            )
        size += (kernel - 1) * jump
        start -= padding * jump
        jump *= stride
        fields.append(Field(spec.name, kernel, stride, size, jump, start))
    return fields


# --- reading a model ---------------------------------------------------------------------------

# Layers whose output pixel depends on the same pixel of the input alone (BatchNorm2d as in eval mode,
# Dropout as at test time): they keep the field as it is.
_PER_PIXEL_LAYERS = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish, nn.Softplus, nn.Softsign, nn.Tanhshrink,
    nn.Softshrink, nn.Hardshrink, nn.Threshold, nn.LogSigmoid,
    nn.BatchNorm2d, nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.FeatureAlphaDropout,
)  # fmt: skip
_WINDOW_LAYERS = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
# The same, as the autograd operations a forward pass may apply between two layers (F.relu, x * 2, ...).
_PER_PIXEL_OPS = frozenset({
    "Relu", "LeakyRelu", "Elu", "Celu", "Gelu", "Silu", "Mish", "Sigmoid", "Tanh", "Hardtanh", "Hardsigmoid",
    "Hardswish", "Softplus", "Softshrink", "Hardshrink", "Threshold", "LogSigmoid", "PreluKernel",
    "NativeBatchNorm", "CudnnBatchNorm", "MiopenBatchNorm", "NativeDropout", "Add", "Sub", "Mul", "Div", "Neg",
    "Abs", "Sign", "Sgn", "Exp", "Log", "Pow", "Sqrt", "Rsqrt", "Clamp", "ClampMin", "ClampMax", "Clone", "ToCopy",
})  # fmt: skip
_EXPECTED_LAYERS = "Conv2d (zeros padding), MaxPool2d, AvgPool2d, adaptive pooling, per-pixel layers, Flatten"


def _square(value: Any, layer: str, what: str) -> int:
    """A layer's kernel size, stride or padding as one int; ValueError unless it is square."""
    pair = (value, value) if is_int(value) else tuple(value)
    if len(pair) != 2 or pair[0] != pair[1] or not is_int(pair[0]):
        raise ValueError(f"{layer}: expected a square integer {what}, got {value!r}")
    return int(pair[0])


def _window_spec(name: str, layer: nn.Module, size_in: tuple[int, ...], size_out: tuple[int, ...]) -> LayerSpec:
    """One sliding-window layer as a LayerSpec; ValueError naming it where the arithmetic does not fit."""
    where = f"{name} ({type(layer).__name__})"
    if isinstance(layer, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        # PyTorch's windows are [floor(i*H/h), ceil((i+1)*H/h)): one kernel and stride only when h divides H.
        if any(n % m for n, m in zip(size_in, size_out)) or size_in[0] // size_out[0] != size_in[1] // size_out[1]:
            raise ValueError(
                f"{where}: expected an output size that divides the input size by the same whole number in "
                f"both directions (equal windows), got {size_in[0]}x{size_in[1]} -> {size_out[0]}x{size_out[1]}"
            )
        kernel = size_in[0] // size_out[0]
        return LayerSpec(name, kernel, kernel, 0)
    if _square(getattr(layer, "dilation", 1), where, "dilation") != 1:
        raise ValueError(f"{where}: expected dilation 1 (a dilated kernel's field has holes), got {layer.dilation!r}")
    kernel = _square(layer.kernel_size, where, "kernel size")
    padding: Any = layer.padding
    if isinstance(layer, nn.Conv2d):
        if layer.padding_mode != "zeros":
            raise ValueError(
                f"{where}: expected padding_mode 'zeros', got {layer.padding_mode!r} "
                "(its padding copies image pixels, so a border pixel sees more than its window)"
            )
        if padding == "valid":
            padding = 0
        elif padding == "same":
            padding = (kernel - 1) // 2  # PyTorch pads the odd pixel of an even kernel at the bottom and right
    return LayerSpec(name, kernel, _square(layer.stride, where, "stride"), _square(padding, where, "padding"))


def _op(node: Any) -> str:
    """An autograd node's operation: 'Relu' for ReluBackward0."""
    return re.sub(r"Backward\d*$", "", type(node).__name__)


def _dependents(output: Any, source: Any) -> tuple[set[int], list]:
    """The ids of the autograd nodes behind `output` that depend on `source` (the input image's node).

    Also returns the nodes themselves: holding them keeps each id theirs while the caller uses the ids.
    """
    depends: dict[int, bool] = {}
    nodes = []
    stack = [output]
    while stack:
        node = stack[-1]
        if id(node) in depends:
            stack.pop()
            continue
        inputs = [n for n, _ in node.next_functions if n is not None]
        pending = [n for n in inputs if id(n) not in depends]
        if pending:
            stack.extend(pending)
            continue
        depends[id(node)] = node is source or any(depends[id(n)] for n in inputs)
        nodes.append(stack.pop())
    return {key for key, value in depends.items() if value}, nodes


def _per_pixel_path(start: Any, target: Any, image: Any, outputs: dict[int, str]) -> str | None:
    """None if the tensor made by `start` is a per-pixel function of `target`'s output alone; else what is in between.

    `outputs` names the nodes that made the earlier layers' outputs, by id.
    """
    dependent, _nodes = _dependents(start, image)
    seen, stack = set(), [start]
    while stack:
        node = stack.pop()
        if node is target or id(node) in seen:
            continue
        seen.add(id(node))
        if id(node) in outputs:
            return f"{outputs[id(node)]} (a shortcut or a parallel branch)"
        if _op(node) not in _PER_PIXEL_OPS:
            return f"the operation {_op(node)}"
        stack.extend(n for n, _ in node.next_functions if n is not None and id(n) in dependent)
    return None


def _trace(net: nn.Module, input_shape: tuple[int, ...]) -> tuple[list[tuple], torch.Tensor, Any, Any]:
    """Run `net` once (eval mode, batch of 1) and record every leaf layer's call: (name, layer, input, output)."""
    names = {layer: name for name, layer in net.named_modules()}
    calls: list[tuple] = []

    def record(layer: nn.Module, args: tuple, output: Any) -> None:
        x = args[0] if args else None
        # The nodes now: a later in-place operation (ReLU(inplace=True)) moves the tensor's grad_fn on.
        calls.append((names[layer], layer, x, getattr(x, "grad_fn", None), output, getattr(output, "grad_fn", None)))

    param = next(net.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    image = torch.zeros(1, *input_shape, dtype=dtype, device=param.device if param is not None else None)
    image.requires_grad_(True)
    image_node = cast(Any, image.view_as(image).grad_fn).next_functions[0][0]  # the image's AccumulateGrad node
    modes = {layer: layer.training for layer in net.modules()}
    hooks = [layer.register_forward_hook(record) for layer in net.modules() if not list(layer.children())]
    try:
        with torch.random.fork_rng(devices=[]):
            output = net.eval()(image)
    except Exception as err:
        raise ValueError(
            f"input_shape: running {type(net).__name__} on one image of shape {tuple(input_shape)} failed "
            f"({type(err).__name__}: {err})"
        ) from None
    finally:
        for hook in hooks:
            hook.remove()
        for layer, training in modes.items():
            layer.training = training
    return calls, image, image_node, output


def layer_specs(net: nn.Module, input_shape: tuple[int, int, int] | None = None) -> list[LayerSpec]:
    """The sliding-window layers of `net`, in the order its forward pass applies them, as `LayerSpec`s.

    The arithmetic assumes a plain stack: each conv or pooling layer applied
    once, to what the one before it made, with only per-pixel work between
    them (activations, BatchNorm2d counted as in eval mode, dropout as at test
    time). `net` is run once on a zero image (in eval mode, its weights,
    statistics and random state untouched) to check that, and refused, naming
    the layer, where it does not hold: a layer applied twice, a residual
    shortcut, parallel branches, pooling or reshaping done in `forward` by a
    function, and any layer on images other than Conv2d with zeros padding,
    MaxPool2d, AvgPool2d, adaptive pooling with equal windows (it becomes a
    kernel for this image size), per-pixel layers and Flatten. Dilated or
    non-square kernels, strides and paddings are refused too. Layers that
    work on flattened features (Linear after Flatten) see the whole image and
    are left out.

    Args:
        net: the model.
        input_shape: (channels, height, width) of one image; by default the
            model's own `input_shape` attribute, as the lesson's models have.

    Raises:
        TypeError: `net` is not a module, or `input_shape` is missing.
        ValueError: a layer or the way `forward` uses it is one the arithmetic does not describe.
    """
    if not isinstance(net, nn.Module):
        raise TypeError(f"net: expected a torch.nn.Module, got {type(net).__name__}")
    if input_shape is None:
        input_shape = getattr(net, "input_shape", None)
        if input_shape is None:
            raise TypeError(
                f"input_shape: expected (channels, height, width) of one image; {type(net).__name__} has no "
                "input_shape attribute to take it from"
            )
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3 or not all(is_int(n) for n in input_shape):
        raise TypeError(f"input_shape: expected (channels, height, width) as three ints, got {input_shape!r}")
    shape = tuple(check_int(f"input_shape[{i}]", n, low=1) for i, n in enumerate(input_shape))
    with torch.inference_mode(False), torch.enable_grad():  # the check follows autograd, whatever the caller's mode
        calls, image, image_node, output = _trace(net, shape)
    specs: list[LayerSpec] = []
    counts: dict[str, int] = {}
    previous, previous_name, previous_size = image_node, "the input image", tuple(shape[1:])
    outputs = {id(image_node): "the input image"}
    for name, layer, x, x_node, y, y_node in calls:
        where = f"{name} ({type(layer).__name__})"
        ndim = x.dim() if isinstance(x, torch.Tensor) else None
        if ndim == 2:
            continue  # flattened features: the layer sees the whole image
        if ndim != 4:
            got = f"a {ndim}-D tensor" if ndim is not None else type(x).__name__
            raise ValueError(f"{where}: expected a (batch, channels, height, width) tensor as input, got {got}")
        if isinstance(layer, nn.BatchNorm2d) and layer.running_mean is None:
            raise ValueError(
                f"{where}: expected running statistics; with track_running_stats=False it mixes all pixels"
            )
        if isinstance(layer, (*_PER_PIXEL_LAYERS, nn.Flatten)):
            continue
        if not isinstance(layer, _WINDOW_LAYERS):
            raise ValueError(f"{where}: expected one of {_EXPECTED_LAYERS}; the field through {where} is unknown")
        counts[name] = counts.get(name, 0) + 1
        if counts[name] > 1:
            raise ValueError(f"{where}: expected each layer applied once, but forward applies it again")
        start = image_node if x is image else x_node
        between = (
            "a break in autograd (detached?)"
            if start is None
            else _per_pixel_path(start, previous, image_node, outputs)
        )
        if between is None and tuple(x.shape[-2:]) != previous_size:
            between = f"its input is {tuple(x.shape[-2:])}, not {previous_size}"
        if between is not None:
            raise ValueError(
                f"{where}: expected to take the output of {previous_name} through per-pixel work only, "
                f"but between them is {between}"
            )
        specs.append(_window_spec(name, layer, tuple(x.shape[-2:]), tuple(y.shape[-2:])))
        previous, previous_name, previous_size = y_node, where, tuple(y.shape[-2:])
        outputs[id(y_node)] = f"the output of {where}"
    for name, layer in net.named_modules():
        if isinstance(layer, _WINDOW_LAYERS) and name not in counts:
            raise ValueError(
                f"{name} ({type(layer).__name__}): expected every conv and pooling layer to be applied by forward, "
                f"but {type(net).__name__}'s forward never applies it (registering a layer does not put it in the net)"
            )
    if isinstance(output, torch.Tensor) and output.dim() == 4 and output.grad_fn is not None:
        between = _per_pixel_path(output.grad_fn, previous, image_node, outputs)
        if between is not None:
            raise ValueError(
                f"{type(net).__name__}: expected its output to be {previous_name}'s, through per-pixel work only, "
                f"but between them is {between}"
            )
    return specs
