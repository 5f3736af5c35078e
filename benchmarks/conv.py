"""Benchmark: `cnnlesson.conv` (NumPy) against `torch.nn.functional` on the CPU, float32.

Headline: a batch of 64 RGB 32x32 images through 64 3x3 filters with padding 1,
the first layer of the lesson's CIFAR-10 CNN; the target is NumPy taking at
most twice torch's time. Around it:

- a grid of the lesson's layer shapes, with the geometric mean of the ratios;
- for each grid shape, `conv2d`'s own matrix product, the same `np.matmul` on
  the same operands that `conv2d` builds (`cnnlesson.conv._product_operands`),
  timed in the same rounds as `conv2d` itself: what `conv2d` costs on top of
  that product (im2col, the views) is the part its code controls. PyTorch's
  oneDNN runs direct convolution kernels without such a product, so the
  product alone is also compared with torch's whole convolution;
- the headline at one thread and at every core;
- the lesson's own double loop `conv2d_numpy` against `conv2d` and torch on
  one small image (the loop is far too slow for a batch);
- `conv2d_backward` against torch autograd's convolution backward;
- `max_pool2d` and `avg_pool2d` against torch's;
- two sweeps (batch size, image size), plotted to ``conv_scaling.png``;
- the headline once more in a fresh process with the C library's default
  allocator (`python -m benchmarks` pins it, see `benchmarks.timing`).

Every contestant is timed alone (`benchmarks.timing.time_alone`), both
libraries on the same number of threads, read back with threadpoolctl;
`conv2d` and its product, one library, share their rounds
(`benchmarks.timing.time_rounds`), and their ratio is taken round by round,
with its spread. Results are checked to agree before their times are kept.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from benchmarks.realdata import REPO
from benchmarks.timing import same_threads, summary, time_alone, time_rounds
from cnnlesson import conv
from cnnlesson.conv import avg_pool2d, conv2d, conv2d_backward, conv2d_numpy, max_pool2d
from cnnlesson.viz import save_figure

TARGET_RATIO = 2.0
# Each a ratio of times, at most: conv2d against torch (headline, geometric mean over the grid),
# conv2d against its own matrix product (every grid shape, and their geometric mean), each
# pooling against torch's, and conv2d_backward against torch autograd at the headline.
TARGETS = {
    "headline": TARGET_RATIO,
    "grid_geometric_mean": 2.0,
    "over_product_slowest": 2.0,
    "over_product_geometric_mean": 1.5,
    "pooling_slowest": 2.0,
    "backward": 2.0,
}


class Layer(NamedTuple):
    """One convolution: where it comes from, input (N, C, H, W), filters, kernel side, stride, padding."""

    name: str
    shape: tuple[int, int, int, int]
    filters: int
    kernel: int = 3
    stride: int = 1
    padding: int = 1


HEADLINE = Layer("CIFAR10Net conv1 (headline)", (64, 3, 32, 32), 64)
GRID = (
    HEADLINE,
    Layer("MNISTNet conv1", (64, 1, 28, 28), 32),
    Layer("MNISTNet conv2", (64, 32, 14, 14), 64),
    Layer("CIFAR10Net conv2: 64 -> 64 channels", (16, 64, 32, 32), 64),
    Layer("1x1 convolution", (256, 16, 8, 8), 32, kernel=1, padding=0),
    Layer("LeNet-5 conv1", (64, 1, 32, 32), 6, kernel=5, padding=0),
    Layer("stride 2", (64, 32, 16, 16), 64, stride=2),
)
LOOP_IMAGES = ((28, 3), (64, 5))  # (image side, kernel side) for the lesson's double loop
POOLS = (("MNISTNet pool", (64, 32, 28, 28), 2), ("CIFAR10Net pool", (64, 64, 32, 32), 2))


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _ms(value: float) -> float:
    """Milliseconds to 4 significant digits: enough for timings, and a ratio of two stays accurate."""
    return float(f"{value:.4g}")


class _Timer:
    """Times NumPy and torch on the same work, each alone, with one setting of rounds."""

    def __init__(self, rounds: int, warmup: int, warmup_seconds: float):
        self.settings = {"rounds": rounds, "warmup": warmup, "warmup_seconds": warmup_seconds}

    def ms(self, fn: Callable[[], object]) -> dict[str, float]:
        return time_alone(fn, **self.settings)

    def pair(
        self,
        numpy_fn: Callable[[], object],
        torch_fn: Callable[[], object],
        product_fn: Callable[[], object] | None = None,
    ) -> dict:
        """Median ms of each (torch first, then NumPy, each in its own block) and their ratio.

        With `product_fn`, NumPy's block times it and `numpy_fn` in the same rounds: also its
        median ms and ``over_product``, the median over rounds of numpy_fn's time over its own.
        """
        with torch.no_grad():
            t = self.ms(torch_fn)
        times = time_rounds({"numpy": numpy_fn, **({"product": product_fn} if product_fn else {})}, **self.settings)
        n = summary(times["numpy"])
        row = {
            "numpy_ms": _ms(n["median_ms"]),
            "torch_ms": _ms(t["median_ms"]),
            "ratio": round(n["median_ms"] / t["median_ms"], 3),
            "numpy_range_ms": [_ms(n["min_ms"]), _ms(n["max_ms"])],
            "torch_range_ms": [_ms(t["min_ms"]), _ms(t["max_ms"])],
        }
        if product_fn is not None:
            p = summary(times["product"])
            over = summary([whole / part for whole, part in zip(times["numpy"], times["product"], strict=True)])
            row |= {
                "product_ms": _ms(p["median_ms"]),
                "product_range_ms": [_ms(p["min_ms"]), _ms(p["max_ms"])],
                "over_product": round(over["median_ms"], 3),
                "over_product_range": [round(over["min_ms"], 3), round(over["max_ms"], 3)],
            }
        return row


def _describe(layer: Layer) -> dict:
    """A grid row's layer, as the results table names it."""
    return {
        "layer": layer.name,
        "shape": list(layer.shape),
        "filters": layer.filters,
        "kernel": layer.kernel,
        "stride": layer.stride,
        "padding": layer.padding,
    }


def _inputs(layer: Layer, rng: np.random.Generator):
    x = rng.standard_normal(layer.shape, dtype=np.float32)
    w = rng.standard_normal((layer.filters, layer.shape[1], layer.kernel, layer.kernel), dtype=np.float32)
    b = rng.standard_normal(layer.filters, dtype=np.float32)
    return x, w, b


def _forward(layer: Layer, timer: _Timer, rng: np.random.Generator, product: bool = False) -> dict:
    """conv2d against F.conv2d on one layer shape; they must agree before the times count.

    With `product`, also time conv2d's own matrix product (its operands, its np.matmul) in
    conv2d's rounds, and compare it with torch too.
    """
    x, w, b = _inputs(layer, rng)
    xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
    s, p = layer.stride, layer.padding
    with torch.no_grad():
        out = F.conv2d(xt, wt, bt, stride=s, padding=p)
        np.testing.assert_allclose(conv2d(x, w, b, stride=s, padding=p), out.numpy(), rtol=1e-4, atol=1e-3)
    matmul = None
    if product:
        geo = conv._conv_geometry(x.shape, w.shape, s, p, 1)
        filters, cols = conv._product_operands(x, w, b, geo, groups=1)
        matmul = lambda: np.matmul(filters, cols)  # noqa: E731
    times = timer.pair(
        lambda: conv2d(x, w, b, stride=s, padding=p), lambda: F.conv2d(xt, wt, bt, stride=s, padding=p), matmul
    )
    row = {**_describe(layer), **times}
    if product:
        row["product_ratio"] = round(row["product_ms"] / row["torch_ms"], 3)
        # im2col's runs hold a few columns no output needs (see cnnlesson.conv); the product computes them.
        row["product_columns_over_outputs"] = round(cols.shape[-1] / (out.shape[0] * out.shape[2] * out.shape[3]), 3)
    return row


def headline_alone(threads: int, rounds: int, warmup: int, warmup_seconds: float, quick: bool = False) -> dict:
    """The headline pair on `threads` threads each, as this process's allocator has it."""
    layer = _small(HEADLINE) if quick else HEADLINE
    with same_threads(threads):
        return _forward(layer, _Timer(rounds, warmup, warmup_seconds), np.random.default_rng(0))


def _unpinned_headline(threads: int, settings: dict, quick: bool) -> dict:
    """`headline_alone` in a fresh Python process, whose allocator nobody pinned."""
    code = (
        "import json, sys; from benchmarks import conv; "
        "print(json.dumps(conv.headline_alone(**json.loads(sys.argv[1]))))"
    )
    arguments = json.dumps({"threads": threads, "quick": quick, **settings})
    done = subprocess.run(
        [sys.executable, "-c", code, arguments], cwd=REPO, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError("the headline in a fresh process failed:\n" + done.stderr.strip()[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _backward(layer: Layer, timer: _Timer, rng: np.random.Generator) -> dict:
    """conv2d_backward against torch autograd's gradients of F.conv2d (input, weight, bias)."""
    x, w, b = _inputs(layer, rng)
    xt, wt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    s, p = layer.stride, layer.padding
    out = F.conv2d(xt, wt, bt, stride=s, padding=p)
    grad = rng.standard_normal(tuple(out.shape), dtype=np.float32)
    gt = torch.from_numpy(grad)
    ours = conv2d_backward(grad, x, w, stride=s, padding=p)
    theirs = torch.autograd.grad(out, (xt, wt, bt), gt, retain_graph=True)
    for mine, other in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(mine, other.numpy(), rtol=1e-3, atol=1e-2)
    # pair() turns gradients off for torch's forward-only work; the backward needs them.
    t = timer.ms(lambda: torch.autograd.grad(out, (xt, wt, bt), gt, retain_graph=True))
    n = timer.ms(lambda: conv2d_backward(grad, x, w, stride=s, padding=p))
    return {
        **_describe(layer),
        "numpy_ms": _ms(n["median_ms"]),
        "torch_ms": _ms(t["median_ms"]),
        "ratio": round(n["median_ms"] / t["median_ms"], 3),
    }


def _pooling(name: str, shape: tuple, kernel: int, timer: _Timer, rng: np.random.Generator) -> list[dict]:
    x = rng.standard_normal(shape, dtype=np.float32)
    xt = torch.from_numpy(x)
    rows = []
    for kind, ours, theirs in (("max", max_pool2d, F.max_pool2d), ("avg", avg_pool2d, F.avg_pool2d)):
        np.testing.assert_allclose(ours(x, kernel), theirs(xt, kernel).numpy(), rtol=1e-5, atol=1e-6)
        times = timer.pair(lambda ours=ours: ours(x, kernel), lambda theirs=theirs: theirs(xt, kernel))
        rows.append({"pool": kind, "layer": name, "shape": list(shape), "kernel": kernel, **times})
    return rows


def _loop(side: int, kernel: int, timer: _Timer, rng: np.random.Generator) -> dict:
    """The lesson's double loop, conv2d and torch on one image and one kernel (no padding, stride 1)."""
    image = rng.standard_normal((side, side), dtype=np.float32)
    k = rng.standard_normal((kernel, kernel), dtype=np.float32)
    x, w = image[None, None], k[None, None]
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    expected = F.conv2d(xt, wt)[0, 0].numpy()
    np.testing.assert_allclose(conv2d_numpy(image, k), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(conv2d(x, w)[0, 0], expected, rtol=1e-4, atol=1e-4)
    loop = timer.ms(lambda: conv2d_numpy(image, k))["median_ms"]
    vectorised = timer.ms(lambda: conv2d(x, w))["median_ms"]
    with torch.no_grad():
        torch_ms = timer.ms(lambda: F.conv2d(xt, wt))["median_ms"]
    return {
        "image": [side, side],
        "kernel": [kernel, kernel],
        "loop_ms": _ms(loop),
        "conv2d_ms": _ms(vectorised),
        "torch_ms": _ms(torch_ms),
        "loop_over_conv2d": round(loop / vectorised, 1),
        "loop_over_torch": round(loop / torch_ms, 1),
    }


def _plot(batch_sweep: list[dict], size_sweep: list[dict], threads: int, path: pathlib.Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, sweep, index, xlabel in (
        (axes[0], batch_sweep, 0, "batch size (32x32 images)"),
        (axes[1], size_sweep, 2, "image side, pixels (batch 16)"),
    ):
        xs = [case["shape"][index] for case in sweep]
        for key, label, marker in (
            ("numpy_ms", "cnnlesson.conv.conv2d (NumPy)", "o"),
            ("torch_ms", "torch.nn.functional.conv2d", "s"),
        ):
            ax.plot(xs, [case[key] for case in sweep], marker=marker, label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(xs, [str(v) for v in xs])
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.yaxis.set_major_formatter(ticker.LogFormatter())  # 20, not 2x10^1
        ax.yaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"median time per call (ms), {threads} thread{'s' * (threads > 1)} each")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    axes[0].set_title("3 -> 64 channels, 3x3, padding 1: vs batch size")
    axes[1].set_title("3 -> 64 channels, 3x3, padding 1: vs image size")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def _geometric_mean(values: list[float]) -> float:
    return round(math.exp(sum(map(math.log, values)) / len(values)), 3)


def _small(layer: Layer) -> Layer:
    """The same layer on a batch of 2, for quick mode."""
    return layer._replace(shape=(min(2, layer.shape[0]), *layer.shape[1:]))


def run(out_dir: pathlib.Path, quick: bool = False) -> dict:
    """Run the benchmark, write ``conv_scaling.png`` into ``out_dir`` and return the results.

    Args:
        out_dir: Folder for the figure (created if missing).
        quick: Batches of 2, few rounds and sweep points, for tests (a few seconds).

    Returns:
        JSON-able dict: ``headline`` (a grid case plus ``target``), ``grid`` and its
        ``geometric_mean_ratio``, ``by_threads``, ``loop``, ``backward``, ``pooling``,
        ``batch_sweep``, ``size_sweep``, ``threads`` and ``thread_pools`` (as read
        by threadpoolctl while timing), ``method``, ``targets`` and ``figures``.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timer = _Timer(*((2, 1, 0.0) if quick else (20, 3, 0.2)))
    loop_timer = _Timer(*((1, 0, 0.0) if quick else (5, 1, 0.0)))  # the loop is slow enough on its own
    grid = [_small(layer) for layer in GRID] if quick else list(GRID)
    batches = [1, 2] if quick else [1, 8, 32, 64, 128]
    sizes = [8, 16] if quick else [16, 32, 64, 128]
    loops = ((8, 3),) if quick else LOOP_IMAGES
    pools = [(name, (2, *shape[1:]), k) for name, shape, k in POOLS] if quick else POOLS
    rng = np.random.default_rng(0)
    # Quick mode checks code paths; one thread keeps it quick on a busy machine.
    cores = 1 if quick else available_cores()

    by_threads = []
    for threads in sorted({1, cores}):
        with same_threads(threads):
            by_threads.append({"threads": threads, **_forward(grid[0], timer, rng)})

    # Everything else on every core, the same number for both libraries.
    with same_threads(cores) as pools_read:
        steps = (
            [("grid", layer) for layer in grid]
            + [("backward", grid[0])]
            + [("pooling", pool) for pool in pools]
            + [("loop", case) for case in loops]
            + [("batch", b) for b in batches]
            + [("size", s) for s in sizes]
        )
        found: dict[str, list] = {key: [] for key in ("grid", "backward", "pooling", "loop", "batch", "size")}
        for kind, what in tqdm(steps, desc="conv", unit="case"):
            if kind == "grid":
                found[kind].append(_forward(what, timer, rng, product=True))
            elif kind == "backward":
                found[kind].append(_backward(what, timer, rng))
            elif kind == "pooling":
                found[kind].extend(_pooling(*what, timer, rng))
            elif kind == "loop":
                found[kind].append(_loop(*what, loop_timer, rng))
            else:
                batch, size = (what, 32) if kind == "batch" else (16, what)
                found[kind].append(_forward(Layer(f"sweep {kind}", (batch, 3, size, size), 64), timer, rng))

    unpinned = _unpinned_headline(cores, timer.settings, quick)
    _plot(found["batch"], found["size"], cores, out_dir / "conv_scaling.png")
    ratios = [case["ratio"] for case in found["grid"]]
    products = [case["product_ratio"] for case in found["grid"]]
    over = [case["over_product"] for case in found["grid"]]
    measured = {
        "headline": found["grid"][0]["ratio"],
        "grid_geometric_mean": _geometric_mean(ratios),
        "over_product_slowest": max(over),
        "over_product_geometric_mean": _geometric_mean(over),
        "pooling_slowest": max(case["ratio"] for case in found["pooling"]),
        "backward": found["backward"][0]["ratio"],
    }
    return {
        "method": "each contestant timed alone: warm-up calls, then rounds; the median counts",
        **timer.settings,
        "threads": cores,
        "thread_pools": pools_read,
        "headline": {**found["grid"][0], "target": TARGET_RATIO},
        "grid": found["grid"],
        "geometric_mean_ratio": measured["grid_geometric_mean"],
        "slowest_ratio": max(ratios),
        # conv2d's own matrix product alone, against torch's whole convolution: NumPy's floor.
        "product_geometric_mean_ratio": _geometric_mean(products),
        "product_slowest_ratio": max(products),
        # conv2d against that product, per shape the median over rounds of their ratio.
        "over_product_geometric_mean": measured["over_product_geometric_mean"],
        "over_product_slowest": measured["over_product_slowest"],
        "pooling_slowest_ratio": measured["pooling_slowest"],
        "unpinned_headline": unpinned,
        "by_threads": by_threads,
        "backward": found["backward"][0],
        "pooling": found["pooling"],
        "loop": found["loop"],
        "batch_sweep": found["batch"],
        "size_sweep": found["size"],
        "targets": TARGETS,
        "targets_met": {name: measured[name] <= target for name, target in TARGETS.items()},
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "figures": ["conv_scaling.png"],
    }
