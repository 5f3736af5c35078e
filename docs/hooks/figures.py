"""Build-time figures: the lesson's diagrams and a trained MNISTNet's insides.

`mkdocs build` and `mkdocs serve` run this hook (`hooks:` in mkdocs.yml). It
imports cnnlesson (the package never imports the site) and writes every
figure the pages show, so none is a committed PNG:

- `conv-relu-pool.png` and `lenet5.png`: the section 3 diagrams, drawn with
  matplotlib; LeNet-5's shapes are those its layers really produce.
- `sobel.png`: a digit and its Sobel edges (`conv2d_numpy`, section 7).
- `im2col.png`: the lesson's 3x4 example as one matrix product (`plot_im2col`).
- `training-curves.png`, `feature-maps.png`, `filters.png`,
  `predictions.png`: an MNISTNet trained here for a few epochs on stand-in
  digits, or on real MNIST when `$CNNLESSON_DOCS_DATA` is a data root
  holding `MNIST/raw`.

Everything lands in `.cache/figures/<key>/` (gitignored), keyed by a hash
of this file, the package's source, the data and the library versions, so
a rebuild that changed none of them trains nothing. The PNGs join the site
as generated files under `figures/`.
"""

import hashlib
import logging
import os
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
from torch.utils.data import DataLoader, Subset  # noqa: E402
from torchvision import datasets  # noqa: E402

import cnnlesson  # noqa: E402
from cnnlesson.conv import conv2d_numpy  # noqa: E402
from cnnlesson.data import load_mnist, write_standin_mnist  # noqa: E402
from cnnlesson.models import LeNet5, MNISTNet  # noqa: E402
from cnnlesson.train import load_checkpoint, save_checkpoint, train  # noqa: E402
from cnnlesson.viz import (  # noqa: E402
    plot_filters, plot_history, plot_im2col, plot_images, plot_predictions, save_figure, visualize_feature_maps,
)

log = logging.getLogger("mkdocs.hooks.figures")

DATA_ENV = "CNNLESSON_DOCS_DATA"
SITE_FOLDER = "figures"
# Small on purpose: the figures need a model that has learned strokes, not a
# good score, and a fresh build should train in a few seconds on a laptop CPU.
TRAIN_IMAGES, TEST_IMAGES, NUM_EPOCHS, SEED = 1000, 200, 3, 0
FIGURES = (
    "conv-relu-pool.png", "lenet5.png", "sobel.png", "training-curves.png",
    "feature-maps.png", "filters.png", "predictions.png", "im2col.png",
)  # fmt: skip
# The lesson's 3x4 example (section 1), as the lesson prints it.
LESSON_IMAGE = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 0, 1, 2]])
LESSON_KERNEL = np.array([[1, 0], [0, 1]])

# The lesson's Sobel filter (section 7).
SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])

COLOURS = {"data": "#e8eaf6", "conv": "#90caf9", "relu": "#ffe082", "pool": "#a5d6a7", "fc": "#f48fb1"}


def cache_key(data_id: str) -> str:
    """Hash of everything the figures depend on."""
    digest = hashlib.sha256()
    sources = [Path(__file__)] + sorted(Path(cnnlesson.__file__).parent.glob("*.py"))
    for source in sources:
        digest.update(source.name.encode() + source.read_bytes())
    versions = (torch.__version__, matplotlib.__version__, np.__version__, data_id)
    digest.update(repr(versions).encode())
    return digest.hexdigest()[:16]


def data_source() -> tuple[Path | None, str]:
    """The real MNIST root from `$CNNLESSON_DOCS_DATA`, or (None, "stand-in")."""
    root = os.environ.get(DATA_ENV)
    if not root:
        return None, "stand-in"
    if not (Path(root) / "MNIST" / "raw").is_dir():
        raise PluginError(f"${DATA_ENV}={root} holds no MNIST/raw folder with MNIST's IDX files")
    return Path(root), f"mnist:{Path(root).resolve()}"


# --- Diagrams ----------------------------------------------------------------


def _box(ax, x, y, w, h, text, colour, **kwargs):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08", fc=colour, ec="#37474f", lw=1.2, **kwargs))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=12)


def _arrow(ax, x0, x1, y):
    ax.add_patch(FancyArrowPatch((x0, y), (x1, y), arrowstyle="-|>", mutation_scale=14, color="#37474f", lw=1.2))


def draw_conv_relu_pool(path: Path) -> None:
    """Input → [Conv → ReLU → Pool] × N → Flatten → FC → Output, as boxes and arrows."""
    steps = [("Input", "data"), ("Conv", "conv"), ("ReLU", "relu"), ("Pool", "pool"), ("Flatten", "data"), ("FC", "fc"), ("Output", "data")]
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
        for name, layer in [("Conv1 5×5", lambda t: F.relu(net.conv1(t))), ("MaxPool 2×2", net.pool1),
                            ("Conv2 5×5", lambda t: F.relu(net.conv2(t))), ("MaxPool 2×2", net.pool2),
                            ("Flatten", lambda t: torch.flatten(t, 1)), ("FC", lambda t: F.relu(net.fc1(t))),
                            ("FC", lambda t: F.relu(net.fc2(t))), ("FC", net.fc3)]:
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
                ax.add_patch(Rectangle((x + 0.07 * k, centre - side / 2 + 0.07 * k), side, side, fc=COLOURS[kind], ec="#37474f", lw=0.8))
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


# --- Figures of data and of a trained MNISTNet ---------------------------------


def draw_sobel(root: Path, path: Path) -> None:
    """The first training digit and its Sobel-x edges, as the convolution page computes them."""
    digits = datasets.MNIST(root, train=True, download=False)
    image = np.asarray(digits[0][0], dtype=np.float64)
    edges = conv2d_numpy(image, SOBEL_X)
    plt.close(plot_images({"digit": image, "Sobel x (vertical edges)": edges}, path=path))


def train_mnistnet(root: Path, folder: Path) -> tuple[MNISTNet, list[dict]]:
    """Train MNISTNet on the first TRAIN_IMAGES digits, CPU, seeded; cache weights and history."""
    checkpoint = folder / "mnistnet.pt"  # written atomically: a killed build leaves no half file
    torch.manual_seed(SEED)
    net = MNISTNet()
    if checkpoint.exists():
        return net.eval(), load_checkpoint(checkpoint, net)["history"]
    train_data, test_data = (load_mnist(root, train=t) for t in (True, False))
    train_loader = DataLoader(Subset(train_data, range(min(TRAIN_IMAGES, len(train_data)))), batch_size=64, shuffle=True)
    test_loader = DataLoader(Subset(test_data, range(min(TEST_IMAGES, len(test_data)))), batch_size=1000)
    log.info("figures: training MNISTNet for %d epochs on %d images (cached afterwards)", NUM_EPOCHS, len(train_loader.dataset))
    history = train(net, train_loader, test_loader, num_epochs=NUM_EPOCHS, lr=0.001, device="cpu", seed=SEED, progress=False)
    save_checkpoint(checkpoint, net, history=history)
    return net.eval(), history


def draw_model_figures(root: Path, folder: Path) -> None:
    net, history = train_mnistnet(root, folder)
    test_data = load_mnist(root, train=False)
    images, labels = next(iter(DataLoader(test_data, batch_size=16)))
    for fig, name in [
        (plot_history(history), "training-curves.png"),
        (visualize_feature_maps(net, images[0]), "feature-maps.png"),
        (plot_filters(net.conv1), "filters.png"),
        (plot_predictions(net, images, labels), "predictions.png"),
    ]:
        save_figure(fig, folder / name)
        plt.close(fig)


def build_figures(cache: Path) -> Path:
    """Make (or reuse) the figures; return the folder holding them."""
    real_root, data_id = data_source()
    folder = cache / cache_key(data_id)
    if all((folder / name).exists() for name in FIGURES):
        return folder
    # Drop figures of older sources; keep nothing that no build will read again.
    if cache.is_dir():
        for stale in cache.iterdir():
            if stale != folder:
                shutil.rmtree(stale, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    root = real_root
    if root is None:
        root = folder / "data"
        write_standin_mnist(root, num_train=TRAIN_IMAGES, num_test=TEST_IMAGES, seed=SEED)
    draw_conv_relu_pool(folder / "conv-relu-pool.png")
    draw_lenet5(folder / "lenet5.png")
    draw_sobel(root, folder / "sobel.png")
    plt.close(plot_im2col(LESSON_IMAGE, LESSON_KERNEL, position=(1, 2), path=folder / "im2col.png"))
    draw_model_figures(root, folder)
    return folder


# Before hooks/notebook.py (which embeds these figures) and mkdocs-jupyter.
@event_priority(60)
def on_files(files, config):
    cache = Path(config.config_file_path).parent / ".cache" / "figures"
    folder = build_figures(cache)
    for name in FIGURES:
        files.append(File.generated(config, f"{SITE_FOLDER}/{name}", abs_src_path=str(folder / name)))
    return files
