"""Receptive fields: the arithmetic, checked against where PyTorch's input gradient is non-zero."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cnnlesson.models import CIFAR10Net, CNNWithBN, LeNet5, MNISTNet
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
    with pytest.raises(ValueError, match=r"0 \(Conv2d\): expected dilation 1"):
        layer_specs(nn.Sequential(nn.Conv2d(1, 1, 3, dilation=2)), (1, 9, 9))
    with pytest.raises(ValueError, match=r"0 \(Conv2d\): expected a square integer kernel size"):
        layer_specs(nn.Sequential(nn.Conv2d(1, 1, (3, 5))), (1, 9, 9))


# --- models the arithmetic does not describe are refused, naming the layer ----------------------


class Residual(nn.Module):
    """conv2(relu(conv1(x))) + x, then conv3: a shortcut past conv1 and conv2."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.conv3 = (nn.Conv2d(1, 1, 3, padding=1) for _ in range(3))

    def forward(self, x):
        return self.conv3(self.conv2(F.relu(self.conv1(x))) + x)


class Branches(nn.Module):
    """A 3x3 and a 5x5 conv side by side on the image, concatenated, then a conv."""

    def __init__(self):
        super().__init__()
        self.small, self.large = nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 5, padding=2)
        self.after = nn.Conv2d(2, 1, 3)

    def forward(self, x):
        return self.after(torch.cat([self.small(x), self.large(x)], 1))


class Reused(nn.Module):
    """One conv applied three times."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3)

    def forward(self, x):
        return self.conv(self.conv(self.conv(x)))


class FunctionalPool(nn.Module):
    """Max pooling done in forward by F.max_pool2d, between two registered convs."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3)

    def forward(self, x):
        return self.conv2(F.max_pool2d(self.conv1(x), 2))


class UpsampledOutput(nn.Module):
    """A conv whose output forward upsamples by a function: the output pixels are not the conv's."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3)

    def forward(self, x):
        return F.interpolate(self.conv(x), scale_factor=2)


def _unused_conv3() -> nn.Module:
    net = MNISTNet()
    net.conv3 = nn.Conv2d(64, 128, 3, padding=1)  # registered, never called by MNISTNet.forward
    return net


REFUSED = [
    ("adaptive-4-mid-network", nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(4), nn.Conv2d(2, 2, 3)),
     r"^1 \(AdaptiveAvgPool2d\): expected an output size that divides the input size .* got 26x26 -> 4x4$"),
    ("lppool", nn.Sequential(nn.Conv2d(1, 2, 3), nn.LPPool2d(2, 2)), r"^1 \(LPPool2d\): expected one of Conv2d"),
    ("conv-transpose", nn.Sequential(nn.ConvTranspose2d(1, 2, 3)), r"^0 \(ConvTranspose2d\): expected one of"),
    ("fractional-max-pool", nn.Sequential(nn.FractionalMaxPool2d(2, output_size=10)),
     r"^0 \(FractionalMaxPool2d\): expected one of"),
    ("upsample", nn.Sequential(nn.Conv2d(1, 2, 3), nn.Upsample(scale_factor=2)), r"^1 \(Upsample\): expected one of"),
    ("instance-norm", nn.Sequential(nn.Conv2d(1, 2, 3), nn.InstanceNorm2d(2)), r"^1 \(InstanceNorm2d\): expected"),
    ("batch-norm-without-running-statistics", nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False)),
     r"^1 \(BatchNorm2d\): expected running statistics"),
    ("circular-padding", nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular")),
     r"^0 \(Conv2d\): expected padding_mode 'zeros', got 'circular'"),
    ("reflect-padding", nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect")),
     r"^0 \(Conv2d\): expected padding_mode 'zeros', got 'reflect'"),
    ("dilated-pool", nn.Sequential(nn.MaxPool2d(3, dilation=2)), r"^0 \(MaxPool2d\): expected dilation 1"),
    ("non-square-stride", nn.Sequential(nn.Conv2d(1, 1, 3, stride=(1, 2))),
     r"^0 \(Conv2d\): expected a square integer stride, got \(1, 2\)$"),
    ("residual", Residual(), r"^conv3 \(Conv2d\): expected to take the output of conv2 \(Conv2d\) through per-pixel "
     r"work only, but between them is the input image \(a shortcut or a parallel branch\)$"),
    ("branches", Branches(), r"^large \(Conv2d\): expected to take the output of small \(Conv2d\) .* is the input image"),
    ("reused", Reused(), r"^conv \(Conv2d\): expected each layer applied once, but forward applies it again$"),
    ("functional-pool", FunctionalPool(), r"^conv2 \(Conv2d\): .* between them is the operation MaxPool2DWithIndices$"),
    ("functional-upsample-at-the-end", UpsampledOutput(),
     r"^UpsampledOutput: expected its output to be conv \(Conv2d\)'s, .* the operation UpsampleNearest2D$"),
    ("registered-never-applied", _unused_conv3(),
     r"^conv3 \(Conv2d\): expected every conv and pooling layer to be applied by forward, but MNISTNet's forward never"),
    ("a-layer-on-3-d-tensors", nn.Sequential(nn.Conv2d(1, 1, 3), nn.Flatten(2), nn.Dropout()),
     r"^2 \(Dropout\): expected a \(batch, channels, height, width\) tensor as input, got a 3-D tensor$"),
    ("linear-on-images", nn.Sequential(nn.Conv2d(1, 1, 3), nn.Linear(26, 4)), r"^1 \(Linear\): expected one of"),
]  # fmt: skip


@pytest.mark.parametrize(("net", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_a_model_the_arithmetic_does_not_describe_is_refused_naming_the_layer(net, message):
    with pytest.raises(ValueError, match=message):
        layer_specs(net, (1, 28, 28))


def test_bad_input_shapes_are_named():
    net = nn.Sequential(nn.Conv2d(1, 1, 3))
    with pytest.raises(TypeError, match="input_shape: expected .* Sequential has no input_shape attribute"):
        layer_specs(net)
    with pytest.raises(TypeError, match=r"input_shape: expected \(channels, height, width\) as three ints, got 28"):
        layer_specs(net, 28)
    with pytest.raises(ValueError, match=r"input_shape\[1\]: expected an int >= 1, got 0"):
        layer_specs(net, (1, 0, 28))
    with pytest.raises(
        ValueError, match=r"input_shape: running Sequential on one image of shape \(2, 28, 28\) failed \(RuntimeError: "
    ):
        layer_specs(net, (2, 28, 28))


def test_reading_a_model_changes_nothing_in_it():
    net = CNNWithBN().train()
    net.dropout.eval()  # a mixed state: each layer's own mode comes back
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    with torch.no_grad():  # the check follows autograd even where the caller has switched it off
        assert [s.name for s in layer_specs(net, input_shape=(1, 28, 28))] == ["conv1", "pool"]
    assert torch.equal(torch.rand(3), expected)  # the random state too
    assert net.training and net.bn1.training and not net.dropout.training
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())


def test_numpy_integers_are_ints():
    specs = layer_specs(nn.Sequential(nn.Conv2d(1, 1, np.int64(3), padding=np.int32(1)), nn.MaxPool2d(np.int64(2))),
                        (1, 8, 8))  # fmt: skip
    assert specs == [LayerSpec("0", 3, 1, 1), LayerSpec("1", 2, 2, 0)]
    assert all(type(v) is int for spec in specs for v in spec[1:])
    assert receptive_fields([("a", np.int64(3), np.int8(2), np.uint16(1))]) == receptive_fields([("a", 3, 2, 1)])


@pytest.mark.parametrize(("specs", "error", "message"), [
    ([("c", 3), 3], TypeError, r"^specs\[1\]: expected a LayerSpec or a \(name, kernel\[, stride\[, padding\]\]\) tuple, got 3$"),
    ([("c",)], TypeError, r"^specs\[0\]: expected a LayerSpec .* got \('c',\)$"),
    ([("c", 3, 1, 0, 9)], TypeError, r"^specs\[0\]: expected a LayerSpec .* got \('c', 3, 1, 0, 9\)$"),
    ([None], TypeError, r"^specs\[0\]: expected a LayerSpec .* got None$"),
    ([(3, 3)], TypeError, r"^specs\[0\]\.name: expected a str, got 3$"),
    (("c", 3), TypeError, r"^specs: expected a list of layer specs .* got the single spec \('c', 3\)$"),
    ("conv", TypeError, r"^specs: expected a list of layer specs .* got the single spec 'conv'$"),
    (3, TypeError, r"^specs: expected a list of layer specs .* got int$"),
], ids=["an-int-item", "too-short", "too-long", "none", "name-not-str", "one-spec", "a-str", "an-int"])  # fmt: skip
def test_bad_items_are_named(specs, error, message):
    with pytest.raises(error, match=message):
        receptive_fields(specs)


# --- what it accepts, it gets right: PyTorch's own input gradient ---------------------------------


def _support_twin(layer: nn.Module) -> nn.Module:
    """`layer` with the same geometry, made so that no gradient cancels or is dropped (see gradient_support)."""
    if isinstance(layer, nn.Conv2d):
        twin = nn.Conv2d(
            layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding, bias=False
        )
        twin.weight.data = layer.weight.detach().abs() + 0.1
        return twin.double()
    if isinstance(layer, nn.MaxPool2d):
        return nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding, layer.ceil_mode)
    if isinstance(layer, nn.AdaptiveMaxPool2d):
        return nn.AdaptiveAvgPool2d(layer.output_size)
    return layer.double()


@st.composite
def stacks(draw):
    """A small random stack of layers layer_specs accepts, and the image shape it runs on."""
    channels, height, width = draw(st.integers(1, 2)), draw(st.integers(6, 20)), draw(st.integers(6, 20))
    layers, c, h, w = [], channels, height, width
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["conv", "max", "avg", "adaptive", "relu", "bn"]))
        if kind == "conv":
            k, stride = draw(st.integers(1, 4)), draw(st.integers(1, 3))
            padding = "same" if stride == 1 and draw(st.booleans()) else draw(st.integers(0, k // 2))
            out = draw(st.integers(1, 2))
            layer = nn.Conv2d(c, out, k, stride, padding)
            c = out
        elif kind in ("max", "avg"):
            k = draw(st.integers(1, 3))
            cls = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
            layer = cls(k, draw(st.integers(1, 3)), draw(st.integers(0, k // 2)), ceil_mode=draw(st.booleans()))
        elif kind == "adaptive":
            common = [r for r in range(1, min(h, w) + 1) if h % r == 0 and w % r == 0]
            r = draw(st.sampled_from(common))
            cls = draw(st.sampled_from([nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d]))
            layer = cls((h // r, w // r))
        else:
            layer = nn.ReLU() if kind == "relu" else nn.BatchNorm2d(c)
        try:
            h, w = nn.Sequential(*layers, layer).eval()(torch.zeros(1, channels, height, width)).shape[-2:]
        except RuntimeError:
            break  # the image is too small for this layer: the stack ends before it
        layers.append(layer)
    assume(layers)
    return nn.Sequential(*layers), (channels, height, width)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks())
def test_fields_of_random_stacks_match_the_input_gradient(case):
    net, (channels, height, width) = case
    try:
        fields = receptive_fields(layer_specs(net, (channels, height, width)))
    except ValueError as err:
        assume("gaps" not in str(err))  # tested on its own below
        raise
    windows = [i for i, layer in enumerate(net) if not isinstance(layer, (nn.ReLU, nn.BatchNorm2d))]
    assert [f.name for f in fields] == [str(i) for i in windows]
    twin = nn.Sequential(*(_support_twin(layer) for layer in net)).eval()
    X = (torch.rand(1, channels, height, width, dtype=torch.float64) + 0.5).requires_grad_(True)
    for field, index in zip(fields, windows):
        X.grad = None
        Y = twin[: index + 1](X)
        Y.sum().backward()
        # The last row and column any output pixel reads: a layer whose last window stops short of its
        # input's edge (a stride that does not divide evenly) leaves the rest unread, inside the field's square.
        read = X.grad[0].abs().sum(0) != 0
        end_row, end_col = read.any(1).nonzero().max().item() + 1, read.any(0).nonzero().max().item() + 1
        rows, cols = Y.shape[-2:]
        for i, j in {(0, 0), (rows // 2, cols - 1), (rows - 1, cols // 2)}:
            X.grad = None
            Y = twin[: index + 1](X)
            Y[0, :, i, j].sum().backward()
            support = X.grad[0].abs().sum(0) != 0
            top, left = field.start + i * field.jump, field.start + j * field.jump
            expected = torch.zeros(height, width, dtype=torch.bool)
            expected[max(top, 0) : min(top + field.size, end_row), max(left, 0) : min(left + field.size, end_col)] = (
                True
            )
            assert torch.equal(support, expected), (field, i, j)


def test_global_pooling_sees_the_whole_image():
    # The case: a conv, then AdaptiveAvgPool2d(1): the pooled value sees all 28x28 pixels, not 3x3.
    fields = receptive_fields(layer_specs(nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1)), (1, 28, 28)))
    assert [(f.size, f.start) for f in fields] == [(3, 0), (28, 0)]


def test_a_field_with_gaps_is_refused():
    # A 1x1 conv with stride 2 keeps every other pixel; a 2x2 kernel after it sees pixels 0 and 2, not 1.
    net = nn.Sequential(nn.Conv2d(1, 1, 1, stride=2), nn.Conv2d(1, 1, 2))
    X = torch.rand(1, 1, 6, 6, requires_grad=True)
    net(X)[0, 0, 0, 0].backward()
    assert (X.grad[0, 0, :3, :3] != 0).tolist() == [[True, False, True], [False] * 3, [True, False, True]]
    with pytest.raises(
        ValueError, match=r"^specs\[1\] \(1\): its kernel takes inputs 2 pixels apart whose fields are 1 wide"
    ):
        receptive_fields(layer_specs(net, (1, 6, 6)))
    assert [f.size for f in receptive_fields([("a", 1, 2), ("b", 1)])] == [1, 1]  # a 1x1 kernel after it is fine
