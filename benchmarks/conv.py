"""Benchmark: `cnnlesson.conv.conv2d` (NumPy im2col) against `torch.nn.functional.conv2d` on CPU.

Headline: a batch of 64 RGB 32x32 images through 64 3x3 filters with padding 1 in float32,
the first layer of the lesson's CIFAR-10 CNN.  The target is NumPy taking at most twice
torch's time.  Two sweeps (batch size, image size) show how both scale; they are plotted
to ``conv_scaling.png``.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from benchmarks.timing import time_side_by_side
from cnnlesson.conv import conv2d
from cnnlesson.viz import save_figure

TARGET_RATIO = 2.0
CHANNELS, FILTERS, KERNEL = 3, 64, 3


def _numpy_threads() -> int:
    """Threads NumPy's OpenBLAS uses: its environment variables, else one per core."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return os.cpu_count() or 1


def _time_case(batch: int, size: int, repeat: int, warmup: int, rng: np.random.Generator) -> dict:
    """Time both implementations on one input shape; check they agree before trusting the times."""
    x = rng.standard_normal((batch, CHANNELS, size, size), dtype=np.float32)
    w = rng.standard_normal((FILTERS, CHANNELS, KERNEL, KERNEL), dtype=np.float32)
    b = rng.standard_normal(FILTERS, dtype=np.float32)
    xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
    with torch.no_grad():
        np.testing.assert_allclose(conv2d(x, w, b, padding=1), F.conv2d(xt, wt, bt, padding=1).numpy(),
                                   rtol=1e-4, atol=1e-4)
        secs = time_side_by_side({"numpy": lambda: conv2d(x, w, b, padding=1),
                                  "torch": lambda: F.conv2d(xt, wt, bt, padding=1)},
                                 repeat=repeat, warmup=warmup)
    numpy_ms, torch_ms = secs["numpy"] * 1e3, secs["torch"] * 1e3
    return {"shape": [batch, CHANNELS, size, size], "numpy_ms": round(numpy_ms, 3),
            "torch_ms": round(torch_ms, 3), "ratio": round(numpy_ms / torch_ms, 3)}


def _plot(batch_sweep: list[dict], size_sweep: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on CI or in tests
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, sweep, index, xlabel in ((axes[0], batch_sweep, 0, "batch size (32x32 images)"),
                                     (axes[1], size_sweep, 2, "image side, pixels (batch 16)")):
        xs = [case["shape"][index] for case in sweep]
        for key, label, marker in (("numpy_ms", "cnnlesson.conv.conv2d (NumPy)", "o"),
                                   ("torch_ms", "torch.nn.functional.conv2d", "s")):
            ax.plot(xs, [case[key] for case in sweep], marker=marker, label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(xs, [str(v) for v in xs])
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.yaxis.set_major_formatter(ticker.LogFormatter())  # 20, not 2x10^1
        ax.yaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("median time per call (ms)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    axes[0].set_title("3 -> 64 channels, 3x3, padding 1: vs batch size")
    axes[1].set_title("3 -> 64 channels, 3x3, padding 1: vs image size")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def run(out_dir: pathlib.Path, quick: bool = False) -> dict:
    """Run the benchmark, write ``conv_scaling.png`` into ``out_dir`` and return the results.

    Args:
        out_dir: Folder for the figure (created if missing).
        quick: Few repeats and sweep points, for tests (a few seconds).

    Returns:
        JSON-able dict with ``headline`` (shape, numpy_ms, torch_ms, ratio, target),
        ``batch_sweep`` and ``size_sweep`` (lists of cases like the headline),
        ``threads`` and ``figures`` (file names relative to ``out_dir``).
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    repeat, warmup = (3, 1) if quick else (20, 3)
    batches = [1, 8] if quick else [1, 8, 32, 64, 128]
    sizes = [16, 32] if quick else [16, 32, 64, 128]
    rng = np.random.default_rng(0)

    # Same thread count for both, so the ratio compares code, not parallelism.
    threads = _numpy_threads()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        headline = _time_case(64, 32, repeat, warmup, rng)
        points = [("batch", b, 32) for b in batches] + [("size", 16, s) for s in sizes]
        sweeps: dict[str, list[dict]] = {"batch": [], "size": []}
        for kind, batch, size in tqdm(points, desc="conv2d sweep", unit="shape"):
            sweeps[kind].append(_time_case(batch, size, repeat, warmup, rng))
    finally:
        torch.set_num_threads(previous_threads)

    _plot(sweeps["batch"], sweeps["size"], out_dir / "conv_scaling.png")
    return {"headline": {**headline, "target": TARGET_RATIO},
            "batch_sweep": sweeps["batch"], "size_sweep": sweeps["size"],
            "threads": {"numpy_openblas": threads, "torch": threads, "cpu_count": os.cpu_count()},
            "torch_version": torch.__version__, "numpy_version": np.__version__,
            "figures": ["conv_scaling.png"]}
