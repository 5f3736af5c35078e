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

Answers may be written as numbers (``3136``, ``"3,136"``) or shapes
(``(64, 7, 7)``, ``"64x7x7"``, ``"64×7×7"``, a ``torch.Size``).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from cnnlesson.conv import conv2d, max_pool2d, output_size
from cnnlesson.models import CIFAR10Net, LeNet5, MNISTNet, count_parameters

Numbers = tuple[float, ...]

CORRECT = "Correct."
UNREADABLE = "Type a number, like 3136, or a shape, like (64, 7, 7)."

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
    # mnist.md
    Exercise(
        "mnist-1",
        "Parameters of the layer that holds the most",
        lambda: count_parameters(MNISTNet().fc1),
        (
            Mistake(
                "forgot the bias",
                lambda: count_parameters(nn.Linear(64 * 7 * 7, 128, bias=False)),
                NO_BIAS + "Each of the 128 outputs of fc1 has one.",
            ),
            Mistake(
                "forgot the pooling",
                lambda: count_parameters(nn.Linear(64 * 28 * 28, 128, device="meta")),
                "fc1 sees the maps after two poolings: 64 maps of 7 × 7, not 28 × 28.",
            ),
        ),
        "fc1 connects every input to every output, plus one bias per output.",
    ),
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
        "cifar10-1",
        "Parameters of classifier",
        lambda: count_parameters(CIFAR10Net().classifier),
        (
            Mistake(
                "forgot the biases",
                lambda: _weights_only(CIFAR10Net().classifier),
                NO_BIAS + "Both Linear layers have one per output.",
            ),
            Mistake(
                "forgot the pooling",
                lambda: (
                    count_parameters(nn.Linear(128 * 32 * 32, 256, device="meta"))
                    + count_parameters(nn.Linear(256, 10))
                ),
                "the classifier sees 128 maps of 8 × 8, after two poolings.",
            ),
        ),
        "Two Linear layers (dropout and ReLU have no parameters): weights plus biases.",
    ),
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
        ),
        "Follow a 32×32 image through two poolings; the channels are conv2's 64.",
    ),
    # summary.md
    Exercise(
        "summary-1a",
        "Parameters of the convolution",
        lambda: count_parameters(nn.Conv2d(3, 64, kernel_size=3, padding=1)),
        (
            Mistake(
                "forgot the bias",
                lambda: count_parameters(nn.Conv2d(3, 64, kernel_size=3, bias=False)),
                NO_BIAS + "Each of the 64 filters has one.",
            ),
            Mistake(
                "forgot the input channels",
                lambda: count_parameters(nn.Conv2d(1, 64, kernel_size=3)),
                "each filter spans the 3 colour channels: 3 × 3 × 3 weights.",
            ),
        ),
        "Weights of one filter across all input channels, times the filters, plus the biases.",
    ),
    Exercise(
        "summary-1b",
        "Parameters of the fully connected layer",
        lambda: count_parameters(nn.Linear(3 * 32 * 32, 64 * 32 * 32, device="meta")),
        (
            Mistake(
                "forgot the bias",
                lambda: count_parameters(nn.Linear(3 * 32 * 32, 64 * 32 * 32, bias=False, device="meta")),
                NO_BIAS + "Each of the 65,536 outputs has one.",
            ),
        ),
        "Every one of the 3 × 32 × 32 inputs connects to every one of the 64 × 32 × 32 outputs.",
    ),
)

_BY_ID = {exercise.id: exercise for exercise in EXERCISES}


# ---- reading answers -----------------------------------------------------------------------

# A number written with thousands separators: 3,136 or 3 136 or 201_392_128.
_GROUPED = re.compile(r"[+-]?\d{1,3}(?:[,_\s\u00a0\u202f']\d{3})+(?:\.\d+)?")
_SEPARATORS = re.compile(r"[\s,;x×*]+")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?")


def parse(text: str, count: int = 1) -> Numbers | None:
    """The numbers in a typed answer, or None if it is not a number or a shape.

    `count` is how many numbers the key holds: for one, ``3,136`` is three
    thousand one hundred and thirty-six; for more, it is the shape (3, 136).
    The page's exercises.js reads answers by the same rules.
    """
    s = text.strip().lower().replace("\u2212", "-").replace("torch.size", "")
    s = re.sub(r"[()\[\]{}]", " ", s).strip()
    if count == 1 and _GROUPED.fullmatch(s):
        s = re.sub(r"[,_\s\u00a0\u202f']", "", s)
    tokens = [t for t in _SEPARATORS.split(s) if t]
    if not tokens or not all(_NUMBER.fullmatch(t) for t in tokens):
        return None
    return tuple(float(t) for t in tokens)


def numbers(value: object) -> Numbers:
    """A computed key (an int, a float, a shape, a NumPy or torch scalar) as a tuple of numbers."""
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return (float(value),)
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 1:
        value = value.tolist()
    if isinstance(value, (tuple, list, torch.Size)):
        return tuple(float(v) for v in value)
    raise TypeError(f"an answer key must be a number or a shape, got {type(value).__name__}: {value!r}")


def _plain(values: Numbers) -> list[int | float]:
    return [int(v) if float(v).is_integer() else v for v in values]


def key(exercise_id: str) -> dict:
    """The key of one exercise, computed now from the package: what the page carries.

    Raises:
        KeyError: For an unknown id.
        ValueError: If a mistake's value equals the answer or another mistake's.
    """
    exercise = _lookup(exercise_id)
    answer = numbers(exercise.answer())
    mistakes = [{"name": m.name, "value": _plain(numbers(m.value())), "hint": m.hint} for m in exercise.mistakes]
    values = [tuple(answer)] + [tuple(m["value"]) for m in mistakes]
    if len({tuple(float(v) for v in vs) for vs in values}) != len(values):
        raise ValueError(
            f"exercise {exercise_id!r}: a mistake's value equals the answer or another "
            f"mistake's, so the box could not tell them apart: {values}"
        )
    return {
        "id": exercise.id,
        "label": exercise.label,
        "answer": _plain(answer),
        "mistakes": mistakes,
        "nudge": exercise.nudge,
    }


def _lookup(exercise_id: str) -> Exercise:
    try:
        return _BY_ID[exercise_id]
    except KeyError:
        raise KeyError(f"exercise_id: no exercise {exercise_id!r}; expected one of {sorted(_BY_ID)}") from None


def _same(a: Numbers, b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9) for x, y in zip(a, b))


def verdict(exercise_id: str, answer: object, key_: dict | None = None) -> tuple[str, str]:
    """(kind, message) for an answer: kind is "correct", "mistake", "wrong" or "unreadable"."""
    k = key_ if key_ is not None else key(exercise_id)
    if isinstance(answer, str):
        given = parse(answer, len(k["answer"]))
    else:
        try:
            given = numbers(answer)
        except TypeError:
            given = None
    if given is None:
        return "unreadable", UNREADABLE
    if _same(given, k["answer"]):
        return "correct", CORRECT
    for mistake in k["mistakes"]:
        if _same(given, mistake["value"]):
            return "mistake", "Not quite: " + mistake["hint"]
    return "wrong", "Not yet. " + k["nudge"]


def check(exercise_id: str, answer: object) -> None:
    """Print whether `answer` to exercise `exercise_id` is right, as the page's answer box says it.

    `None` (no answer yet) prints nothing.

    Args:
        exercise_id: The exercise's id, as in the page's code cell (``"mnist-1"``).
        answer: A number, a shape (tuple, list, ``torch.Size``) or the text you would type into the page.
    """
    if answer is None:
        _lookup(exercise_id)
        return
    print(verdict(exercise_id, answer)[1])
