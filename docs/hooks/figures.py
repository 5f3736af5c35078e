"""Build-time figures: the lesson's diagrams here, the real-MNIST figures from a recorded run.

`mkdocs build` and `mkdocs serve` run this hook (`hooks:` in mkdocs.yml). It
imports cnnlesson (the package never imports the site) and adds every
figure the pages show under `figures/`:

- `conv-relu-pool.png` and `lenet5.png`: the section 3 diagrams, drawn with
  matplotlib; LeNet-5's shapes are those its layers really produce.
- `im2col.png`: the lesson's 3x4 example as one matrix product (`plot_im2col`).
  These three need no data; they land in `.cache/figures/<key>/`
  (gitignored), keyed by a hash of this file, the package's source and the
  library versions, so a rebuild that changed none of them draws nothing.
- `sobel.png`, `training-curves.png`, `predictions.png`, `feature-maps.png`,
  `filters.png`, `hierarchy.png`: real MNIST digits and an MNISTNet trained on them. The
  build never trains: `python -m benchmarks` (its `figures` part, see
  benchmarks/figures.py) made them from real digits and recorded the run in
  docs/results/results.json, and the pages' captions quote that record.
  Without them the build stops with one line saying so, because no build
  may show stand-in digits as MNIST.
"""

import hashlib
import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # build machines have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402
from mkdocs.exceptions import PluginError  # noqa: E402
from mkdocs.plugins import event_priority  # noqa: E402
from mkdocs.structure.files import File  # noqa: E402

import cnnlesson  # noqa: E402
from cnnlesson.models import LeNet5  # noqa: E402
from cnnlesson.viz import plot_im2col, save_figure  # noqa: E402

SITE_FOLDER = "figures"
DIAGRAMS = ("conv-relu-pool.png", "lenet5.png", "im2col.png")  # drawn here, no data needed
# Made from real MNIST by `python -m benchmarks` (benchmarks/figures.py), which records the run
# under "figures" in results.json; shown on the site as figures/<name without "mnist-">.
RESULTS_PART = "figures"
REAL_FIGURES = (
    "mnist-sobel.png", "mnist-training-curves.png", "mnist-predictions.png",
    "mnist-feature-maps.png", "mnist-filters.png", "mnist-hierarchy.png",
)  # fmt: skip
RUN_THEM = "run `python -m benchmarks` (its figures part) with the real MNIST digits (../shared or $CNNLESSON_SHARED) beside the clone"
# The lesson's 3x4 example (section 1), as the lesson prints it.
LESSON_IMAGE = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 0, 1, 2]])
LESSON_KERNEL = np.array([[1, 0], [0, 1]])

COLOURS = {"data": "#e8eaf6", "conv": "#90caf9", "relu": "#ffe082", "pool": "#a5d6a7", "fc": "#f48fb1"}


def cache_key() -> str:
    """Hash of everything the diagrams depend on."""
    digest = hashlib.sha256()
    sources = [Path(__file__)] + sorted(Path(cnnlesson.__file__).parent.glob("*.py"))
    for source in sources:
        digest.update(source.name.encode() + source.read_bytes())
    versions = (torch.__version__, matplotlib.__version__, np.__version__)
    digest.update(repr(versions).encode())
    return digest.hexdigest()[:16]


def real_figures(results_dir: Path) -> dict[str, Path]:
    """Site name -> PNG for the real-MNIST figures; PluginError (one line) when they or their record are missing."""
    record_file = results_dir / "results.json"
    try:
        results = json.loads(record_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise PluginError(f"figures: cannot read {record_file} ({type(err).__name__}): {RUN_THEM}") from None
    if results.get("quick"):
        raise PluginError(
            f"figures: {record_file} comes from `python -m benchmarks --quick`, which trains on a few "
            f"hundred digits to check the code, not to show; {RUN_THEM}"
        )
    record = results.get(RESULTS_PART)
    if not isinstance(record, dict) or "skipped" in record:
        why = record["skipped"] if isinstance(record, dict) else f"it has no {RESULTS_PART!r} part"
        raise PluginError(f"figures: no real-MNIST figures recorded in {record_file} ({why}); {RUN_THEM}")
    missing = [
        name for name in REAL_FIGURES if name not in record.get("figures", []) or not (results_dir / name).is_file()
    ]
    if missing:
        raise PluginError(f"figures: real-MNIST figures missing from {results_dir}: {', '.join(missing)}; {RUN_THEM}")
    return {name.removeprefix("mnist-"): results_dir / name for name in REAL_FIGURES}


# --- Diagrams ----------------------------------------------------------------


def _box(ax, x, y, w, h, text, colour, **kwargs):
    ax.add_patch(
        FancyBboxPatch(
            (x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08", fc=colour, ec="#37474f", lw=1.2, **kwargs
        )
    )
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=12)


def _arrow(ax, x0, x1, y):
    ax.add_patch(FancyArrowPatch((x0, y), (x1, y), arrowstyle="-|>", mutation_scale=14, color="#37474f", lw=1.2))


def draw_conv_relu_pool(path: Path) -> None:
    """Input → [Conv → ReLU → Pool] × N → Flatten → FC → Output, as boxes and arrows."""
    steps = [
        ("Input", "data"),
        ("Conv", "conv"),
        ("ReLU", "relu"),
        ("Pool", "pool"),
        ("Flatten", "data"),
        ("FC", "fc"),
        ("Output", "data"),
    ]
    fig, ax = plt.subplots(figsize=(12, 2.4))
    w, h, gap, y = 1.2, 0.8, 0.55, 0.4
    for k, (text, kind) in enumerate(steps):
        x = k * (w + gap)
        _box(ax, x, y, w, h, text, COLOURS[kind])
        if k:
            _arrow(ax, x - gap + 0.04, x - 0.04, y + h / 2)
    # The repeated block: a dashed frame around Conv, ReLU and Pool.
    left, right = 1 * (w + gap) - 0.2, 3 * (w + gap) + w + 0.2
    ax.add_patch(Rectangle((left, y - 0.25), right - left, h + 0.5, fill=False, ls="--", lw=1.2, ec="#5c6bc0"))
    ax.text(right - 0.05, y + h + 0.32, "× N", ha="right", va="bottom", fontsize=13, color="#3949ab", weight="bold")
    ax.set(xlim=(-0.3, len(steps) * (w + gap) - gap + 0.3), ylim=(-0.1, 1.75), aspect="equal")
    ax.axis("off")
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def lenet5_stages() -> list[tuple[str, tuple[int, ...]]]:
    """Each LeNet-5 stage's name and output shape (without the batch axis), as computed."""
    net = LeNet5().eval()
    X = torch.zeros(1, *LeNet5.input_shape)
    stages = [("Input", X)]
    with torch.no_grad():
        for name, layer in [
            ("Conv1 5×5", lambda t: F.relu(net.conv1(t))),
            ("MaxPool 2×2", net.pool1),
            ("Conv2 5×5", lambda t: F.relu(net.conv2(t))),
            ("MaxPool 2×2", net.pool2),
            ("Flatten", lambda t: torch.flatten(t, 1)),
            ("FC", lambda t: F.relu(net.fc1(t))),
            ("FC", lambda t: F.relu(net.fc2(t))),
            ("FC", net.fc3),
        ]:
            X = layer(X)
            stages.append((name, X))
    return [(name, tuple(t.shape[1:])) for name, t in stages]


def draw_lenet5(path: Path) -> None:
    """Feature maps as stacks of squares (side ∝ height), vectors as bars (height ∝ √length)."""
    stages = lenet5_stages()
    fig, ax = plt.subplots(figsize=(13, 4.2))
    x, centre, prev_right = 0.0, 1.6, None
    for name, shape in stages:
        if len(shape) == 3:
            c, hgt, _ = shape
            side = 2.2 * hgt / 32
            layers = min(c, 6)
            kind = "data" if name == "Input" else "conv" if name.startswith("Conv") else "pool"
            for k in range(layers):
                ax.add_patch(
                    Rectangle(
                        (x + 0.07 * k, centre - side / 2 + 0.07 * k), side, side, fc=COLOURS[kind], ec="#37474f", lw=0.8
                    )
                )
            width = side + 0.07 * (layers - 1)
            label = f"{hgt}×{hgt}×{c}"
            top = centre + side / 2 + 0.07 * (layers - 1)
        else:
            (n,) = shape
            side = max(0.35, 2.6 * np.sqrt(n / 400))
            width = 0.22
            ax.add_patch(Rectangle((x, centre - side / 2), width, side, fc=COLOURS["fc"], ec="#37474f", lw=0.8))
            label, top = f"{n}", centre + side / 2
        ax.text(x + width / 2, max(top, centre + 0.6) + 0.15, name, ha="center", va="bottom", fontsize=10.5)
        ax.text(x + width / 2, centre - 1.55, label, ha="center", va="top", fontsize=10.5, family="monospace")
        if prev_right is not None:
            _arrow(ax, prev_right + 0.05, x - 0.05, centre)
        prev_right = x + width
        x += width + 0.55
    ax.set(xlim=(-0.2, x - 0.3), ylim=(-0.2, 3.6), aspect="equal")
    ax.axis("off")
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def build_diagrams(cache: Path) -> Path:
    """Draw (or reuse) the diagrams; return the folder holding them."""
    folder = cache / cache_key()
    if all((folder / name).exists() for name in DIAGRAMS):
        return folder
    # Drop diagrams of older sources; keep nothing that no build will read again.
    if cache.is_dir():
        for stale in cache.iterdir():
            if stale != folder:
                shutil.rmtree(stale, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    draw_conv_relu_pool(folder / "conv-relu-pool.png")
    draw_lenet5(folder / "lenet5.png")
    plt.close(plot_im2col(LESSON_IMAGE, LESSON_KERNEL, position=(1, 2), path=folder / "im2col.png"))
    return folder


# Before hooks/notebook.py (which embeds these figures) and mkdocs-jupyter.
@event_priority(60)
def on_files(files, config):
    figures = real_figures(Path(config.docs_dir) / "results")  # first: a build without them stops at once
    folder = build_diagrams(Path(config.config_file_path).parent / ".cache" / "figures")
    figures.update({name: folder / name for name in DIAGRAMS})
    for name, path in figures.items():
        files.append(File.generated(config, f"{SITE_FOLDER}/{name}", abs_src_path=str(path)))
    return files
