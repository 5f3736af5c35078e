"""Receptive fields: the arithmetic, checked against where PyTorch's input gradient is non-zero."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlesson.models import CIFAR10Net, LeNet5, MNISTNet
from cnnlesson.receptive import LayerSpec, layer_specs, receptive_fields


def gradient_support(net: nn.Module, size: int, upto: int, row: int, col: int) -> torch.Tensor:
    """Input pixels whose gradient is non-zero for one output pixel of the `upto`-th conv/pool layer.

    The net's own layer geometry, made so that nothing cancels or is dropped:
    weights |w| (no sign cancels), average instead of max pooling (max sends
    the gradient to one pixel per window), no ReLU, all-positive input.
    """
    X = torch.rand(1, next(net.parameters()).shape[1], size, size, dtype=torch.float64) + 0.5
    X.requires_grad_(True)
    Y = X
    layers = [m for _, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]
    for layer in layers[: upto + 1]:
        if isinstance(layer, nn.Conv2d):
            Y = F.conv2d(Y, layer.weight.detach().double().abs(), stride=layer.stride, padding=layer.padding)
        else:
            Y = F.avg_pool2d(Y, layer.kernel_size, layer.stride, layer.padding)
    Y[0, :, row, col].sum().backward()
    return X.grad[0].abs().sum(0) != 0


@pytest.mark.parametrize(
    ("net", "size"), [(MNISTNet(), 28), (LeNet5(), 32), (CIFAR10Net(), 32)], ids=lambda v: type(v).__name__
)
def test_fields_match_the_input_gradient(net, size):
    fields = receptive_fields(layer_specs(net))
    torch.manual_seed(0)
    for k, field in enumerate(fields):
        out = size
        for f in fields[: k + 1]:
            spec = next(s for s in layer_specs(net) if s.name == f.name)
            out = (out + 2 * spec.padding - spec.kernel) // spec.stride + 1
        for i in sorted({0, out // 2, out - 1}):  # a border pixel, a middle one, the last one
            support = gradient_support(net, size, k, i, i)
            top = field.start + i * field.jump
            expected = torch.zeros(size, size, dtype=torch.bool)
            expected[max(top, 0) : top + field.size, max(top, 0) : top + field.size] = True
            assert torch.equal(support, expected), (field, i)


def test_the_lessons_networks():
    assert [(f.name, f.size, f.jump) for f in receptive_fields(layer_specs(MNISTNet()))] == [
        ("conv1", 3, 1), ("pool1", 4, 2), ("conv2", 8, 2), ("pool2", 10, 4)]  # fmt: skip
    assert [(f.name, f.size, f.jump) for f in receptive_fields(layer_specs(LeNet5()))] == [
        ("conv1", 5, 1), ("pool1", 6, 2), ("conv2", 14, 2), ("pool2", 16, 4)]  # fmt: skip


def test_plain_tuples_and_defaults():
    assert receptive_fields([("a", 3), ("b", 3)]) == receptive_fields(
        [LayerSpec("a", 3, 1, 0), LayerSpec("b", 3, 1, 0)]
    )
    (field,) = receptive_fields([("p", 2, 2, 1)])
    assert (field.size, field.jump, field.start) == (2, 2, -1)
    assert receptive_fields([]) == []


@pytest.mark.parametrize(("spec", "error", "message"), [
    (("c", 0), ValueError, r"specs\[0\] \(c\)\.kernel: expected an int >= 1, got 0"),
    (("c", 3, 0), ValueError, r"stride: expected an int >= 1, got 0"),
    (("c", 3, 1, -1), ValueError, r"padding: expected an int >= 0, got -1"),
    (("c", 3.0), TypeError, r"kernel: expected an int, got 3\.0"),
    (("c", True), TypeError, r"kernel: expected an int, got True"),
])  # fmt: skip
def test_bad_specs_name_the_field(spec, error, message):
    with pytest.raises(error, match=message):
        receptive_fields([spec])


def test_layer_specs_refuses_what_it_cannot_describe():
    with pytest.raises(TypeError, match="net: expected a torch.nn.Module, got str"):
        layer_specs("mnistnet")
    with pytest.raises(ValueError, match="0: expected dilation 1"):
        layer_specs(nn.Sequential(nn.Conv2d(1, 1, 3, dilation=2)))
    with pytest.raises(ValueError, match="0: expected a square integer kernel size"):
        layer_specs(nn.Sequential(nn.Conv2d(1, 1, (3, 5))))
    with pytest.raises(ValueError, match="0: expected a numeric padding, got 'same'"):
        layer_specs(nn.Sequential(nn.Conv2d(1, 1, 3, padding="same")))
