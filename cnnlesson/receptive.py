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
reads the specs of a PyTorch model's conv and pooling layers.
"""

from collections.abc import Iterable
from typing import NamedTuple

import torch.nn as nn

from cnnlesson._checks import check_int


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
    """

    name: str
    kernel: int
    stride: int
    size: int
    jump: int
    start: int


def receptive_fields(specs: Iterable[LayerSpec | tuple]) -> list[Field]:
    """The receptive field after each layer of a stack, first layer first.

    Args:
        specs: (name, kernel, stride, padding) per layer, in the order the
            input goes through them; stride and padding may be left out.

    Returns:
        One `Field` per layer.
    """
    fields = []
    size, jump, start = 1, 1, 0  # the image itself: each pixel sees itself
    for index, spec in enumerate(specs):
        spec = LayerSpec(*spec)
        where = f"specs[{index}] ({spec.name})"
        kernel = check_int(f"{where}.kernel", spec.kernel, low=1)
        stride = check_int(f"{where}.stride", spec.stride, low=1)
        padding = check_int(f"{where}.padding", spec.padding, low=0)
        size += (kernel - 1) * jump
        start -= padding * jump
        jump *= stride
        fields.append(Field(spec.name, kernel, stride, size, jump, start))
    return fields


def _square(value, layer: str, what: str) -> int:
    """A layer's kernel size, stride or padding as one int; ValueError unless it is square."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or pair[0] != pair[1] or not isinstance(pair[0], int):
        raise ValueError(f"{layer}: expected a square integer {what}, got {value!r}")
    return pair[0]


def layer_specs(net: nn.Module) -> list[LayerSpec]:
    """The conv and pooling layers of `net`, in the order they were defined, as `LayerSpec`s.

    Registration order is the order the lesson's models (`MNISTNet`,
    `LeNet5`, `CNNWithBN`, `CIFAR10Net`) apply their layers in. Dilated
    convolutions and non-square windows are refused.
    """
    if not isinstance(net, nn.Module):
        raise TypeError(f"net: expected a torch.nn.Module, got {type(net).__name__}")
    specs = []
    for name, layer in net.named_modules():
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            if isinstance(layer, nn.Conv2d) and isinstance(layer.padding, str):
                raise ValueError(f"{name}: expected a numeric padding, got {layer.padding!r}")
            if _square(getattr(layer, "dilation", 1), name, "dilation") != 1:
                raise ValueError(f"{name}: expected dilation 1, got {layer.dilation!r}")
            kernel = _square(layer.kernel_size, name, "kernel size")
            stride = _square(layer.stride, name, "stride")
            padding = _square(layer.padding, name, "padding")
            specs.append(LayerSpec(name, kernel, stride, padding))
    return specs
