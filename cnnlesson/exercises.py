"""Answer keys for the lesson's exercises, and `check` to try an answer against them.

Each exercise whose answer is a number or a shape is registered here once, by
id (``"conv2d-2"``): its answer as the call into the package that produces it,
and the typical mistakes as the calls that produce *their* values, each with a
hint. The site's answer boxes and `check` in Python or a notebook read the same
keys, so they give the same verdict:

    >>> from cnnlesson.exercises import check
    >>> check("conv2d-2", 73856)
    Correct.
    >>> check("conv2d-2", "73,728")
    Not quite: did you forget the bias? Each of the 128 filters adds one bias to its 3 × 3 × 64 weights.

Typed answers are read by `cnnlesson.answers` (its docstring has the rule):
numbers (``3136``, ``"3,136"``), shapes (``(64, 7, 7)``, ``"64x7x7"``,
``"64×7×7"``, a ``torch.Size``), products and sums (``"64×3×3"``). Values are
compared exactly, so a count is right only as that integer. A right value in
another form is right, and the verdict names the form:

- the side of a square as ``24×24`` or ``(24, 24)`` (a box with ``side``);
- a shape with leading axes of size 1, as PyTorch prints a batch of one;
- for one number, a product or sum that works out to it, or a shape whose
  product it is (``(1, 64, 5, 5)`` for the 1,600 inputs of a Linear layer).

An answer with the wrong number of values gets kind "count" and says what
the box takes. Text that breaks the reading rule, and in Python anything but a
real number or a shape of them (a bool, NaN, infinity, a string in a list),
is "unreadable"; nothing an answer holds raises.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
import torch.nn as nn

from cnnlesson import answers
from cnnlesson.answers import MAX_CHARS
from cnnlesson.conv import conv2d, max_pool2d, output_size
from cnnlesson.models import CIFAR10Net, LeNet5, MNISTNet, count_parameters
from cnnlesson.receptive import LayerSpec, layer_specs, receptive_fields

# The lesson's first example: a 3x4 input and a 2x2 filter that keeps one diagonal.
LESSON_IMAGE = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 0, 1, 2]], dtype=float)
LESSON_KERNEL = np.array([[1, 0], [0, 1]], dtype=float)


@dataclass(frozen=True)
class Mistake:
    """A typical wrong answer: the call that produces its value, and a hint about it."""

    name: str
    value: Callable[[], object]
    hint: str


@dataclass(frozen=True)
class Exercise:
    """One answer box: what it asks, the call that gives its answer, the mistakes it names."""

    id: str
    label: str
    answer: Callable[[], object]
    mistakes: tuple[Mistake, ...]
    nudge: str
    side: bool = False  # the answer is the side of a square: 24×24 or (24, 24) say it too


# ---- the calls the keys come from ------------------------------------------------------


def _shape(t) -> tuple[int, ...]:
    return tuple(int(n) for n in t.shape)


def _ceil_output_size(n: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """The output-size formula rounded up instead of down (a mistake, on purpose)."""
    return math.ceil((n + 2 * padding - kernel) / stride) + 1


def _lesson_conv(padding: int = 0) -> np.ndarray:
    return conv2d(LESSON_IMAGE[None, None], LESSON_KERNEL[None, None], padding=padding)[0, 0]


def _flat_features(net: nn.Module, shape: tuple[int, ...]) -> int:
    """How many numbers `net` hands to the first Linear layer for one input of `shape`."""
    with torch.no_grad():
        return int(net(torch.zeros(1, *shape)).numel())


def _blocks(
    channels: Sequence[int], padding: int = 1, ceil_mode: bool = False, pool_last: bool = True
) -> nn.Sequential:
    """[Conv 3x3 -> ReLU -> MaxPool 2] blocks, channels[0] -> channels[1] -> ..."""
    layers: list[nn.Module] = []
    pairs = list(itertools.pairwise(channels))
    for k, (c_in, c_out) in enumerate(pairs):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=padding), nn.ReLU()]
        if pool_last or k < len(pairs) - 1:
            layers.append(nn.MaxPool2d(2, ceil_mode=ceil_mode))
    return nn.Sequential(*layers)


def _weights_only(net: nn.Module) -> int:
    return sum(p.numel() for name, p in net.named_parameters() if not name.endswith("bias"))


def _conv2_maps(net: MNISTNet, pool: bool = True) -> tuple[int, ...]:
    x = torch.zeros(1, 1, 28, 28)
    with torch.no_grad():
        x = net.conv1(x)
        return _shape(net.conv2(net.pool1(x) if pool else x))[1:]


def _convs(net: nn.Module) -> list[nn.Conv2d]:
    return [m for m in net.modules() if isinstance(m, nn.Conv2d)]


@functools.cache
def _cifar10_macs(index: int) -> int:
    """Multiply-adds of CIFAR10Net's index-th convolution for one image: output elements × one filter's weights.

    Cached: a key and its mistakes ask for it several times, and each would build a new network.
    """
    net = CIFAR10Net()
    conv = _convs(net)[index]
    seen: list[torch.Tensor] = []
    handle = conv.register_forward_hook(lambda module, inputs, output: seen.append(output))
    with torch.no_grad():
        net.eval()(torch.zeros(1, *net.input_shape))
    handle.remove()
    return seen[0].numel() * conv.weight[0].numel()


@functools.cache
def _conv3_specs() -> tuple[LayerSpec, ...]:
    """MNISTNet's conv and pooling layers, then a third conv, Conv2d(64, 128, 3, padding=1), after pool2."""
    conv3 = nn.Conv2d(64, 128, 3, padding=1)
    return (*layer_specs(MNISTNet()), LayerSpec("conv3", conv3.kernel_size[0], conv3.stride[0], int(conv3.padding[0])))


@functools.cache
def _summary_maps(conv1_padding: int = 2, conv2_padding: int = 0, pools: int = 2) -> tuple[int, ...]:
    """The summary exercise's stack on one 3×64×64 image: its output shape without the batch."""
    layers: list[nn.Module] = [nn.Conv2d(3, 16, 5, padding=conv1_padding), nn.ReLU(), nn.MaxPool2d(2)]
    layers += [nn.Conv2d(16, 32, 3, padding=conv2_padding), nn.ReLU()]
    if pools == 2:
        layers.append(nn.MaxPool2d(2))
    with torch.no_grad():
        return _shape(nn.Sequential(*layers)(torch.zeros(1, 3, 64, 64)))[1:]


def _bn_buffers(*channels: int) -> int:
    total = 0
    for c in channels:
        bn = nn.BatchNorm2d(c)
        total += sum(buffer.numel() for name, buffer in bn.named_buffers() if name.startswith("running_"))
    return total


# ---- the exercises, page by page ---------------------------------------------------------

OFF_BY_ONE = (
    "the formula ends in + 1: the window's first position is an output too, "
    "so count the positions, not the steps between them."
)
PADDING_ONCE = "padding p adds p zeros on each side, so 2p in all along each axis, not p."
NO_FLOOR = "a window that would stick out past the border is dropped: the output size is rounded down, never up."
NO_BIAS = "did you forget the bias? "

EXERCISES: tuple[Exercise, ...] = (
    # convolution.md
    Exercise(
        "convolution-1a",
        "Output side without padding",
        lambda: output_size(28, kernel=5),
        (Mistake("off by one", lambda: output_size(28, kernel=5) - 1, OFF_BY_ONE),),
        "Put n = 28 and k = 5 into the output-size formula, with no padding and stride 1.",
        side=True,
    ),
    Exercise(
        "convolution-1b",
        "Output side with padding 2",
        lambda: output_size(28, kernel=5, padding=2),
        (
            Mistake(
                "forgot the padding",
                lambda: output_size(28, kernel=5),
                "that is the size without padding: the 2 rings of zeros make the input 32 wide.",
            ),
            Mistake("padding counted once", lambda: output_size(28 + 2, kernel=5), PADDING_ONCE),
            Mistake("off by one", lambda: output_size(28, kernel=5, padding=2) - 1, OFF_BY_ONE),
        ),
        "Add the padding to both sides of the input first, then apply the formula.",
        side=True,
    ),
    Exercise(
        "convolution-4a",
        "Output shape (rows, columns)",
        lambda: _lesson_conv(padding=1).shape,
        (
            Mistake(
                "forgot the padding",
                lambda: _lesson_conv().shape,
                "that is the shape without padding: one ring of zeros makes the input 5×6.",
            ),
            Mistake("padding counted once", lambda: (output_size(3 + 1, 2), output_size(4 + 1, 2)), PADDING_ONCE),
            Mistake(
                "rows and columns swapped",
                lambda: _lesson_conv(padding=1).shape[::-1],
                "a shape lists rows first, then columns: the input has 3 rows and 4 columns.",
            ),
        ),
        "Pad the 3×4 input to 5×6, then count the positions a 2×2 window can take.",
    ),
    Exercise(
        "convolution-4b",
        "Value of output[0, 0]",
        lambda: _lesson_conv(padding=1)[0, 0],
        (
            Mistake(
                "forgot the padding",
                lambda: _lesson_conv()[0, 0],
                "that is output[0, 0] without padding. With padding, the first window starts "
                "one row above and one column left of the input, on the zeros.",
            ),
        ),
        "Draw the padded input and put the 2×2 window in its top-left corner; "
        "multiply each of its four cells by the filter's weight there.",
    ),
    # pooling.md
    Exercise(
        "pooling-1",
        "Output side",
        lambda: _shape(nn.MaxPool2d(2)(torch.zeros(1, 1, 7, 7)))[-1],
        (
            Mistake(
                "no rounding",
                lambda: (7 - 2) / 2 + 1,
                "an output size counts windows, a whole number: round the formula down.",
            ),
            Mistake(
                "rounded up",
                lambda: _shape(nn.MaxPool2d(2, ceil_mode=True)(torch.zeros(1, 1, 7, 7)))[-1],
                "pooling floors: a last window that would stick out past the border is dropped, "
                "so the 7th row and column are left out.",
            ),
            Mistake("off by one", lambda: _shape(nn.MaxPool2d(2)(torch.zeros(1, 1, 7, 7)))[-1] - 1, OFF_BY_ONE),
        ),
        "Count where 2×2 windows can start when they move 2 pixels at a time and must fit inside 7.",
        side=True,
    ),
    Exercise(
        "pooling-2",
        "Output side",
        lambda: output_size(7, kernel=3, stride=2),
        (
            Mistake(
                "forgot the stride",
                lambda: output_size(7, kernel=3),
                "that is the size with stride 1: divide by the stride before adding 1.",
            ),
            Mistake("off by one", lambda: output_size(7, kernel=3, stride=2) - 1, OFF_BY_ONE),
        ),
        "Use the formula with n = 7, k = 3, p = 0, s = 2.",
        side=True,
    ),
    Exercise(
        "pooling-3",
        "Output shape (rows, columns)",
        lambda: max_pool2d(np.zeros((1, 1, 4, 4)), 2, stride=1).shape[2:],
        (
            Mistake(
                "stride of 2",
                lambda: max_pool2d(np.zeros((1, 1, 4, 4)), 2).shape[2:],
                "that is the shape with stride 2, MaxPool2d's default when the stride is left out; "
                "here the windows move 1 pixel and overlap.",
            ),
        ),
        "The windows move one pixel at a time: how many positions fit into 4?",
    ),
    # conv2d.md
    Exercise(
        "conv2d-1",
        "Output shape (batch, channels, height, width)",
        lambda: _shape(nn.Conv2d(3, 16, kernel_size=5, stride=2, padding=2)(torch.zeros(8, 3, 32, 32))),
        (
            Mistake(
                "forgot the padding",
                lambda: _shape(nn.Conv2d(3, 16, kernel_size=5, stride=2)(torch.zeros(8, 3, 32, 32))),
                "that is the shape without padding: padding=2 adds 2 pixels on each side.",
            ),
            Mistake(
                "forgot the stride",
                lambda: _shape(nn.Conv2d(3, 16, kernel_size=5, padding=2)(torch.zeros(8, 3, 32, 32))),
                "that is the shape with stride 1: stride=2 halves the positions, roughly.",
            ),
            Mistake(
                "rounded up", lambda: (8, 16, _ceil_output_size(32, 5, 2, 2), _ceil_output_size(32, 5, 2, 2)), NO_FLOOR
            ),
        ),
        "Keep the batch, take the channels from out_channels, and use the formula for height and width.",
    ),
    Exercise(
        "conv2d-2",
        "Number of parameters",
        lambda: count_parameters(nn.Conv2d(64, 128, 3)),
        (
            Mistake(
                "forgot the bias",
                lambda: count_parameters(nn.Conv2d(64, 128, 3, bias=False)),
                NO_BIAS + "Each of the 128 filters adds one bias to its 3 × 3 × 64 weights.",
            ),
            Mistake(
                "forgot the input channels",
                lambda: count_parameters(nn.Conv2d(1, 128, 3)),
                "each filter spans all 64 input channels: it has 3 × 3 × 64 weights, not 3 × 3.",
            ),
            Mistake(
                "one filter",
                lambda: count_parameters(nn.Conv2d(64, 1, 3)),
                "that is one filter with its bias; the layer has 128 of them.",
            ),
            Mistake(
                "one filter's weights",
                lambda: count_parameters(nn.Conv2d(64, 1, 3, bias=False)),
                "that is the weights of one filter; the layer has 128 filters, each with a bias too.",
            ),
        ),
        "Count the weights of one filter (it covers every input channel), times the filters, plus the biases.",
    ),
    Exercise(
        "conv2d-3",
        "Weight shape",
        lambda: _shape(nn.Conv2d(3, 16, kernel_size=5).weight),
        (
            Mistake(
                "in and out swapped",
                lambda: _shape(nn.Conv2d(3, 16, kernel_size=5).weight.transpose(0, 1)),
                "PyTorch lists the output channels first: (out_channels, in_channels, kh, kw).",
            ),
            Mistake(
                "forgot the input channels",
                lambda: _shape(nn.Conv2d(3, 16, kernel_size=5).weight[:, 0]),
                "each of the 16 filters spans all 3 input channels, so the weight has 4 axes.",
            ),
        ),
        "One 5×5 kernel per pair of (output channel, input channel).",
    ),
    # architecture.md
    Exercise(
        "architecture-1",
        "LeNet-5's parameters in total",
        lambda: count_parameters(LeNet5()),
        (
            Mistake(
                "forgot the biases",
                lambda: _weights_only(LeNet5()),
                NO_BIAS + "Every output channel of a convolution and every output of a fully connected layer has one.",
            ),
        ),
        "Add up weights plus biases of the two convolutions and the three fully connected layers.",
    ),
    Exercise(
        "architecture-2",
        "Inputs of the Linear layer",
        lambda: _flat_features(_blocks((1, 16, 32, 64)), (1, 28, 28)),
        (
            Mistake(
                "rounded up",
                lambda: _flat_features(_blocks((1, 16, 32, 64), ceil_mode=True), (1, 28, 28)),
                "pooling 7 by 2 leaves 3, not 4: " + NO_FLOOR,
            ),
            Mistake(
                "forgot the third pooling",
                lambda: _flat_features(_blocks((1, 16, 32, 64), pool_last=False), (1, 28, 28)),
                "the third block pools too: 7 → 3.",
            ),
            Mistake(
                "forgot the channels",
                lambda: _flat_features(_blocks((1, 16, 32, 64)), (1, 28, 28)) // 64,
                "the flattened vector holds every channel: 64 maps of 3 × 3.",
            ),
        ),
        "Follow the side through the three poolings, then multiply by the channels.",
    ),
    Exercise(
        "architecture-3",
        "Receptive field of conv3 (input pixels)",
        lambda: receptive_fields(_conv3_specs())[-1].size,
        (
            Mistake(
                "no jump",
                lambda: receptive_fields(spec._replace(stride=1) for spec in _conv3_specs())[-1].size,
                "each layer after a pooling steps over 2 (then 4) input pixels per pixel of its own input: "
                "a kernel adds (k − 1) × jump, not k − 1.",
            ),
            Mistake(
                "pool1's jump only",
                lambda: (
                    receptive_fields(
                        spec._replace(stride=1) if spec.name == "pool2" else spec for spec in _conv3_specs()
                    )[-1].size
                ),
                "after pool2 the jump doubles again, to 4: conv3 adds (3 − 1) × 4.",
            ),
            Mistake(
                "stopped at pool2",
                lambda: receptive_fields(_conv3_specs())[-2].size,
                "that is pool2's field; conv3 adds (3 − 1) × 4 more.",
            ),
            Mistake(
                "stopped at conv2",
                lambda: receptive_fields(_conv3_specs())[-3].size,
                "that is conv2's field; pool2 and conv3 widen it further.",
            ),
        ),
        "Go layer by layer: each adds (kernel − 1) × jump, and each pooling doubles the jump.",
        side=True,
    ),
    # mnist.md
    Exercise(
        "mnist-2",
        "fc1's input size",
        lambda: _flat_features(_blocks((1, 32, 64), padding=0), (1, 28, 28)),
        (
            Mistake(
                "rounded up",
                lambda: _flat_features(_blocks((1, 32, 64), padding=0, ceil_mode=True), (1, 28, 28)),
                "pooling 11 by 2 leaves 5, not 6: " + NO_FLOOR,
            ),
            Mistake(
                "kept the padding",
                lambda: MNISTNet().fc1.in_features,
                "that is the size with padding=1; without it each 3×3 convolution trims 2 pixels.",
            ),
            Mistake(
                "forgot the channels",
                lambda: _flat_features(_blocks((1, 32, 64), padding=0), (1, 28, 28)) // 64,
                "fc1 takes all 64 maps, flattened.",
            ),
        ),
        "Follow the side: conv (28 → ?), pool, conv, pool; then multiply by the 64 channels.",
    ),
    # feature-maps.md
    Exercise(
        "feature-maps-1",
        "Shape of conv2's maps for one digit (channels, height, width)",
        lambda: _conv2_maps(MNISTNet()),
        (
            Mistake(
                "forgot pool1",
                lambda: _conv2_maps(MNISTNet(), pool=False),
                "conv2 sees the first block's output, which pool1 has already halved.",
            ),
            Mistake(
                "no padding",
                lambda: _shape(nn.Conv2d(32, 64, 3)(torch.zeros(1, 32, 14, 14)))[1:],
                "conv2 has padding=1, which keeps the size.",
            ),
            Mistake(
                "conv1's channels",
                lambda: (MNISTNet().conv1.out_channels, *_conv2_maps(MNISTNet())[1:]),
                "that is conv1's channel count: conv2 makes 64 maps.",
            ),
            Mistake(
                "channels last",
                lambda: _shape(MNISTNet().conv2(torch.zeros(1, 32, 14, 14)).permute(0, 2, 3, 1))[1:],
                "PyTorch puts the channels first: (channels, height, width).",
            ),
        ),
        "Follow the digit through conv1, pool1 and conv2, with their padding.",
    ),
    # batchnorm.md
    Exercise(
        "batchnorm-1",
        "Parameters added",
        lambda: count_parameters(nn.BatchNorm2d(32)) + count_parameters(nn.BatchNorm2d(64)),
        (
            Mistake(
                "counted the running statistics",
                lambda: (
                    count_parameters(nn.BatchNorm2d(32)) + count_parameters(nn.BatchNorm2d(64)) + _bn_buffers(32, 64)
                ),
                "the running mean and variance are buffers: updated by averaging, not learned.",
            ),
            Mistake(
                "one per channel",
                lambda: nn.BatchNorm2d(32).weight.numel() + nn.BatchNorm2d(64).weight.numel(),
                "batch norm learns two numbers per channel, γ and β.",
            ),
        ),
        "Which of batch norm's numbers does the optimizer update, and how many per channel?",
    ),
    # cifar10.md
    Exercise(
        "cifar10-2",
        "fc1's input size",
        lambda: _flat_features(_blocks((3, 32, 64)), (3, 32, 32)),
        (
            Mistake(
                "kept MNIST's size",
                lambda: MNISTNet().fc1.in_features,
                "that is 64 × 7 × 7, for 28×28 digits; a 32×32 image is 8×8 after two poolings.",
            ),
            Mistake(
                "times the colour channels",
                lambda: 3 * _flat_features(_blocks((3, 32, 64)), (3, 32, 32)),
                "conv1 has already summed the 3 colour channels into each of its maps.",
            ),
            Mistake(
                "CIFAR10Net's size",
                lambda: _flat_features(CIFAR10Net().features, CIFAR10Net.input_shape),
                "that is CIFAR10Net's, whose last block makes 128 maps; this network's conv2 makes 64.",
            ),
        ),
        "Follow a 32×32 image through two poolings; the channels are conv2's 64.",
    ),
    Exercise(
        "cifar10-3",
        "Multiply-adds of conv2 for one image",
        lambda: _cifar10_macs(1),
        (
            Mistake(
                "one input channel or one map",
                lambda: _cifar10_macs(1) // 64,
                "that is 64 times too few: each output element sums over all 64 input channels "
                "(3 × 3 × 64 multiply-adds), and conv2 makes 64 maps of 32 × 32.",
            ),
            Mistake(
                "the colour channels",
                lambda: _cifar10_macs(0),
                "conv2's input is conv1's 64 maps, not the image's 3 colour channels.",
            ),
            Mistake(
                "after the pooling",
                lambda: _cifar10_macs(1) // 4,
                "conv2 comes before the first pooling: its maps are still 32 × 32.",
            ),
            Mistake(
                "the parameters",
                lambda: count_parameters(_convs(CIFAR10Net())[1]),
                "that is conv2's parameter count: each weight is used once per output position, 32 × 32 times.",
            ),
        ),
        "Count conv2's output elements (maps × height × width), then the multiply-adds of each: "
        "one per weight of a filter.",
    ),
    # summary.md
    Exercise(
        "summary-2",
        "Shape before flatten (channels, height, width)",
        lambda: _summary_maps(),
        (
            Mistake(
                "conv2 keeps the size",
                lambda: _summary_maps(conv2_padding=1),
                "conv2 has no padding: its 3×3 kernel trims one pixel on each side, 32 → 30.",
            ),
            Mistake(
                "channels last",
                lambda: _summary_maps()[1:] + _summary_maps()[:1],
                "PyTorch puts the channels first: (channels, height, width).",
            ),
            Mistake(
                "forgot a pooling",
                lambda: _summary_maps(pools=1),
                "both blocks end in MaxPool2d(2): the side is halved twice.",
            ),
            Mistake(
                "no padding in conv1",
                lambda: _summary_maps(conv1_padding=0),
                "conv1's padding=2 keeps 64: a 5×5 kernel with 2 zeros on each side.",
            ),
        ),
        "Follow the side: conv1 (with its padding), pool, conv2 (without), pool; the channels are conv2's.",
    ),
)

_BY_ID = {exercise.id: exercise for exercise in EXERCISES}


# ---- the keys ----------------------------------------------------------------------------------

_BY_ID = {exercise.id: exercise for exercise in EXERCISES}
# The page reads a key's numbers as JavaScript numbers, exact below 2**53.
_LARGEST_KEY = 2**53


def numbers(value: object) -> tuple[int | float, ...]:
    """A computed key (an int, a float, a shape, a NumPy or torch scalar) as a tuple of plain numbers."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        value = value.tolist()
    values = list(value) if isinstance(value, (tuple, list, torch.Size)) else [value]
    out: list[int | float] = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"an answer key must be a number or a shape, got {type(v).__name__} in it")
        if not math.isfinite(v) or abs(v) >= _LARGEST_KEY:
            raise ValueError(f"an answer key's numbers must be finite and below 2**53, got {v}")
        out.append(int(v) if float(v).is_integer() else float(v))
    return tuple(out)


def _asks(exercise: Exercise, count: int) -> str:
    """What the box takes, for an answer with the wrong number of values."""
    if count == 1:
        return "one number, the side" if exercise.side else "one number"
    axes = exercise.label[exercise.label.find("(") :] if "(" in exercise.label else ""
    return f"a shape of {count} numbers" + (f": {axes}" if axes else "")


def key(exercise_id: str) -> dict:
    """The key of one exercise, computed now from the package: what the page carries.

    Raises:
        TypeError: If `exercise_id` is not a string.
        KeyError: For an unknown id.
        ValueError: If a mistake's value equals the answer or another mistake's.
    """
    exercise = _lookup(exercise_id)
    answer = numbers(exercise.answer())
    mistakes = [{"name": m.name, "value": list(numbers(m.value())), "hint": m.hint} for m in exercise.mistakes]
    values = [answer] + [tuple(m["value"]) for m in mistakes]
    if len(set(values)) != len(values):
        raise ValueError(
            f"exercise {exercise_id!r}: a mistake's value equals the answer or another "
            f"mistake's, so the box could not tell them apart: {values}"
        )
    return {
        "id": exercise.id,
        "label": exercise.label,
        "answer": list(answer),
        "mistakes": mistakes,
        "nudge": exercise.nudge,
        "side": exercise.side,
        "asks": _asks(exercise, len(answer)),
    }


def _lookup(exercise_id: str) -> Exercise:
    if not isinstance(exercise_id, str):
        raise TypeError(f"exercise_id: expected an exercise id such as 'conv2d-2', got {type(exercise_id).__name__}")
    try:
        return _BY_ID[exercise_id]
    except KeyError:
        raise KeyError(f"exercise_id: no exercise {exercise_id!r}; expected one of {sorted(_BY_ID)}") from None


# ---- verdicts -------------------------------------------------------------------------------

CORRECT = "Correct."
UNREADABLE = "Type a number, like 3136, or a shape, like (64, 7, 7)."
TOO_LONG = f"Type a number or a shape: an answer here is at most {MAX_CHARS} characters."
# A right value in another form: the verdict says which form it read.
AS_SIDE = "Correct. One number is enough: the side of the square."
AS_BATCH = "Correct. The shape asked for leaves out the leading axes of size 1 (a batch of one)."
AS_PRODUCT = "Correct: that works out to the answer."
COUNT_OFF = "Not yet: this box takes {asks}."


def _exact(value: object) -> Fraction | None:
    """One number given in Python as an exact fraction, or None (a bool, text, NaN, infinity, anything else)."""
    if isinstance(value, torch.Tensor):
        if value.ndim != 0 or value.dtype == torch.bool or value.is_complex() or value.device.type == "meta":
            return None
        value = value.item()
    elif isinstance(value, np.ndarray):
        if value.ndim != 0 or value.dtype.kind not in "iuf":
            return None
        value = value.item()
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return Fraction(int(value))
    if isinstance(value, (float, np.floating)):
        # repr is the shortest text that reads back as this float, as JavaScript's String() writes it.
        return Fraction(repr(float(value))) if math.isfinite(value) else None
    return None


def _items(answer: object) -> list[answers.Item] | None:
    """An answer given in Python (a number, a shape, a tensor) as the items typed text reads into."""
    if isinstance(answer, (torch.Tensor, np.ndarray)) and answer.ndim == 1:
        answer = list(answer)
    values = [_exact(v) for v in answer] if isinstance(answer, (tuple, list, torch.Size)) else [_exact(answer)]
    if not values or any(v is None for v in values):
        return None
    return [[[v]] for v in values if v is not None]


def _reading(items: list[answers.Item], k: dict) -> tuple[list[Fraction] | None, str, bool]:
    """(values, the verdict if they are right, tentative) for an answer's items under key `k`.

    Tentative values have the wrong count for the answer (a shape too long or
    too short, several numbers for one): they can still be a named mistake or,
    for one number, a shape whose product it is; if not, the count is off.
    None: the count is off whatever the values.
    """
    n = len(k["answer"])
    flat = [factor for item in items for term in item for factor in term]
    one_product = len(items) == 1 and len(items[0]) == 1 and len(items[0][0]) > 1
    if n == 1:
        if k["side"] and (one_product or (answers.plain(items) and len(items) > 1)):
            return ([flat[0]], AS_SIDE, False) if len(set(flat)) == 1 else (None, "", True)
        if len(items) == 1:
            return [answers.evaluate(items[0])], CORRECT if answers.plain(items) else AS_PRODUCT, False
        if answers.plain(items) and not k["side"]:
            # Several numbers for one: a shape, whose product may be the count asked for.
            return [answers.evaluate([flat])], AS_PRODUCT, True
        return None, "", True
    if not (one_product or answers.plain(items)):
        return None, "", True  # a sum or product inside a shape
    extra = len(flat) - n
    if extra > 0 and all(v == 1 for v in flat[:extra]):
        return flat[extra:], AS_BATCH, False
    return flat, CORRECT, len(flat) != n


def _same(given: Sequence[Fraction], values: Sequence[int | float]) -> bool:
    return len(given) == len(values) and all(g == _exact(v) for g, v in zip(given, values))


def verdict(exercise_id: str, answer: object, key_: dict | None = None) -> tuple[str, str]:
    """(kind, message) for an answer: kind is "correct", "mistake", "wrong", "count" or "unreadable".

    "count" is an answer with the wrong number of values: several for one number, or a shape too short or too long.
    """
    k = key_ if key_ is not None else key(exercise_id)
    if isinstance(answer, str):
        if answers.units(answer) > MAX_CHARS:
            return "unreadable", TOO_LONG
        items = answers.read(answer, grouped=len(k["answer"]) == 1)
    else:
        items = _items(answer)
    if items is None:
        return "unreadable", UNREADABLE
    given, right, tentative = _reading(items, k)
    count_off = ("count", COUNT_OFF.format(asks=k["asks"]))
    if given is None:
        return count_off
    if _same(given, k["answer"]):
        return "correct", right
    for mistake in k["mistakes"]:
        if _same(given, mistake["value"]):
            return "mistake", "Not quite: " + mistake["hint"]
    return count_off if tentative else ("wrong", "Not yet. " + k["nudge"])


def check(exercise_id: str, answer: object) -> None:
    """Print whether `answer` to exercise `exercise_id` is right, as the page's answer box says it.

    `None` (no answer yet) prints nothing.

    Args:
        exercise_id: The exercise's id, as in the page's code cell (``"conv2d-2"``).
        answer: A number, a shape (tuple, list, ``torch.Size``) or the text you would type into the page.
    """
    if answer is None:
        _lookup(exercise_id)
        return
    print(verdict(exercise_id, answer)[1])
