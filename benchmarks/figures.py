"""Figures of real MNIST digits and of an MNISTNet trained on them, with the run that made them.

The lesson's pages show training curves, predictions, feature maps, learned
filters, a digit with its Sobel edges, and the same digit through both conv
layers with their receptive fields (the hierarchy). They must show real handwritten
digits, never the font-drawn stand-ins the tests use, so they are made here,
by a recorded run, not at build time: MNISTNet (seed 0, Adam, lr 0.001,
batch 64, CPU) trains for 5 epochs, as the MNIST page's code does, on the
first 8,000 of MNIST's 10,000 test digits and is tested on the last 2,000.
The PNGs land next to results.json (docs/results/), this part of
results.json records the run, and the site's build hook fails when either
is missing. Without ../shared (a fresh clone) the part is skipped and the
committed figures stay as they are.

It also measures the pages' claim that learned filters look like Sobel
filters: the share of first-layer filters whose best Pearson correlation
with one of the eight compass rotations of the Sobel kernel reaches
SOBEL_THRESHOLD (the filters figure frames those). The predictions figure
shows the model's real mistakes: the first SHOWN_RIGHT held-out digits it
gets right, then the first SHOWN_WRONG it gets wrong.
"""

import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures go to files; the benchmark machine may have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from torchvision import datasets  # noqa: E402

from benchmarks import livenet  # noqa: E402
from benchmarks.realdata import MISSING, real_mnist_root  # noqa: E402
from cnnlesson.conv import conv2d_numpy  # noqa: E402
from cnnlesson.data import TensorLoader, get_dataloaders  # noqa: E402
from cnnlesson.models import MNISTNet  # noqa: E402
from cnnlesson.receptive import layer_specs, receptive_fields  # noqa: E402
from cnnlesson.train import train  # noqa: E402
from cnnlesson.viz import plot_filters, plot_history, plot_images, plot_predictions, save_figure, visualize_feature_maps  # noqa: E402

EPOCHS, SEED, LR, BATCH_SIZE = 5, 0, 0.001, 64
# The files the site shows (docs/hooks/figures.py serves them as figures/<name without "mnist-">).
FIGURES = (
    "mnist-sobel.png", "mnist-training-curves.png", "mnist-predictions.png",
    "mnist-feature-maps.png", "mnist-filters.png", "mnist-hierarchy.png",
)  # fmt: skip
SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)  # the lesson's, section 7
SOBEL_THRESHOLD = 0.8
SHOWN_RIGHT, SHOWN_WRONG = 8, 8  # the predictions figure: one row of each
HIERARCHY_MAPS = 4  # the hierarchy figure: the strongest maps of each conv layer


def compass_sobels() -> list[np.ndarray]:
    """The Sobel-x kernel turned by 0, 45, ..., 315 degrees (its outer ring shifted one step at a time)."""
    ring = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0)]  # clockwise around the centre
    values = [SOBEL_X[r, c] for r, c in ring]
    kernels = []
    for turn in range(8):
        kernel = np.zeros((3, 3))
        for k, (r, c) in enumerate(ring):
            kernel[r, c] = values[(k - turn) % 8]
        kernels.append(kernel)
    return kernels


def sobel_likeness(weight: torch.Tensor) -> list[float]:
    """Each 3x3 filter's best Pearson correlation with a compass Sobel kernel."""
    if weight.dim() != 4 or tuple(weight.shape[1:]) != (1, 3, 3):
        raise ValueError(f"weight: expected first-layer filters of shape (out, 1, 3, 3), got {tuple(weight.shape)}")
    filters = weight.detach().cpu().double().reshape(weight.shape[0], 9).numpy()
    filters = filters - filters.mean(axis=1, keepdims=True)
    sobels = np.stack([k.ravel() for k in compass_sobels()])  # each has mean 0 already
    norms = np.linalg.norm(filters, axis=1, keepdims=True) * np.linalg.norm(sobels, axis=1)
    correlation = (filters @ sobels.T) / np.where(norms == 0, 1.0, norms)
    return [round(float(c), 4) for c in correlation.max(axis=1)]


def pick_predictions(net: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[list[int], int]:
    """Indices of the first SHOWN_RIGHT right and first SHOWN_WRONG wrong predictions, and the number wrong.

    With fewer mistakes than SHOWN_WRONG, more right ones fill the figure.
    """
    net.eval()
    with torch.no_grad():
        predicted = torch.cat([net(X[k : k + 500]).argmax(1) for k in range(0, len(X), 500)])
    right = (predicted == y).nonzero().flatten().tolist()
    wrong = (predicted != y).nonzero().flatten().tolist()
    shown_wrong = wrong[:SHOWN_WRONG]
    shown_right = right[: SHOWN_RIGHT + SHOWN_WRONG - len(shown_wrong)]
    return shown_right + shown_wrong, len(wrong)


def hierarchy(net: MNISTNet, image: torch.Tensor) -> dict:
    """Where one conv1 and one conv2 unit look at `image` (1, 28, 28), and which maps each layer shows.

    Each layer's unit is the strongest response of its strongest map; its field
    is the square of input pixels that unit can see (cnnlesson.receptive).
    """
    net.eval()
    with torch.no_grad():
        conv1 = F.relu(net.conv1(image[None]))[0]
        conv2 = F.relu(net.conv2(net.pool1(conv1[None])))[0]
    fields = {field.name: field for field in receptive_fields(layer_specs(net))}
    layers = {}
    for name, maps in (("conv1", conv1), ("conv2", conv2)):
        strongest = maps.flatten(1).amax(1).argsort(descending=True)[:HIERARCHY_MAPS].tolist()
        row, col = divmod(int(maps[strongest[0]].argmax()), maps.shape[-1])
        field = fields[name]
        layers[name] = {
            "maps": strongest,
            "unit": [row, col],
            "field_size": field.size,
            # The field's first input row and column (negative: it reaches into the zero padding).
            "field_start": [field.start + row * field.jump, field.start + col * field.jump],
            "shape": list(maps.shape),
        }
    return {"conv1": (conv1, layers["conv1"]), "conv2": (conv2, layers["conv2"])}


def plot_hierarchy(image: torch.Tensor, layers: dict):
    """One row per conv layer: the digit with one unit's receptive field, then that layer's strongest maps."""
    fig, axes = plt.subplots(len(layers), 1 + HIERARCHY_MAPS, figsize=(2.2 * (1 + HIERARCHY_MAPS), 2.9 * len(layers)))
    digit = image[0].cpu().numpy()
    for (name, (maps, info)), row_axes in zip(layers.items(), axes):
        size, (top, left) = info["field_size"], info["field_start"]
        ax = row_axes[0]
        ax.imshow(digit, cmap="gray")
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), size, size, fill=False, ec="tab:red", lw=2.5))
        ax.set_title(f"input: a {name} unit\nsees {size}×{size} pixels", fontsize=12)
        ax.axis("off")
        shown = maps[info["maps"]].cpu().numpy()
        for k, (ax, index) in enumerate(zip(row_axes[1:], info["maps"])):
            ax.imshow(shown[k], cmap="viridis", vmin=0.0, vmax=float(shown.max()) or 1.0)
            h, w = shown[k].shape
            ax.set_title(f"{name} map {index} ({h}×{w})", fontsize=12)
            ax.axis("off")
        unit_row, unit_col = info["unit"]
        row_axes[1].add_patch(Rectangle((unit_col - 0.5, unit_row - 0.5), 1, 1, fill=False, ec="tab:red", lw=2.5))
    fig.tight_layout()
    return fig


def _save(fig, path: Path) -> None:
    save_figure(fig, path)
    plt.close(fig)


def run(out_dir: Path, quick: bool = False, work: Path | None = None) -> dict:
    """Train MNISTNet on the real split, write the pages' figures to out_dir, and return the run's record."""
    root = real_mnist_root(Path(work or out_dir))
    if root is None:
        return {"skipped": MISSING}
    out_dir = Path(out_dir)
    epochs = 1 if quick else EPOCHS
    # MNIST's first test digit (the split's first training digit: it trains on the t10k set's start)
    # and its Sobel-x edges, as the convolution page computes them from datasets.MNIST(..., train=False)[0].
    digit = np.asarray(datasets.MNIST(root, train=True)[0][0], dtype=np.float64)
    _save(plot_images({"digit": digit, "Sobel x (vertical edges)": conv2d_numpy(digit, SOBEL_X)}), out_dir / FIGURES[0])

    train_loader, test_loader = get_dataloaders("mnist", root, batch_size=BATCH_SIZE, in_memory=True, device="cpu")
    if quick:  # a few batches: the code path, not the picture
        train_loader = TensorLoader(train_loader.X[:512], train_loader.y[:512], batch_size=BATCH_SIZE, shuffle=True)
        test_loader = TensorLoader(test_loader.X[:256], test_loader.y[:256], batch_size=256)
    torch.manual_seed(SEED)
    net = MNISTNet()
    untrained = sobel_likeness(net.conv1.weight)  # the baseline: how Sobel-like random filters already are
    history = train(net, train_loader, test_loader, num_epochs=epochs, lr=LR, device="cpu", seed=SEED, progress=False)
    net.eval()
    shown, num_wrong = pick_predictions(net, test_loader.X, test_loader.y)
    likeness = sobel_likeness(net.conv1.weight)
    sobel_like = sum(c >= SOBEL_THRESHOLD for c in likeness)
    _save(plot_history(history), out_dir / FIGURES[1])
    _save(plot_predictions(net, test_loader.X[shown], test_loader.y[shown]), out_dir / FIGURES[2])
    _save(visualize_feature_maps(net, test_loader.X[0]), out_dir / FIGURES[3])
    marked = [k for k, c in enumerate(likeness) if c >= SOBEL_THRESHOLD]
    _save(plot_filters(net.conv1, marked=marked), out_dir / FIGURES[4])
    layers = hierarchy(net, test_loader.X[0])
    _save(plot_hierarchy(test_loader.X[0], layers), out_dir / FIGURES[5])

    return {
        "data": (
            f"real MNIST digits: the first {len(train_loader.X):,} of the t10k set to train, "
            f"the last {len(test_loader.X):,} to test"
        ),
        "model": "mnistnet",
        "train_images": len(train_loader.X),
        "test_images": len(test_loader.X),
        "epochs": epochs,
        "seed": SEED,
        "lr": LR,
        "batch_size": BATCH_SIZE,
        "device": "cpu",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "final_test_accuracy": round(history[-1]["test_accuracy"], 4),
        "predictions": {
            "shown": shown,  # indices into the held-out digits, right ones first
            "shown_wrong": min(num_wrong, SHOWN_WRONG),
            "wrong": num_wrong,  # of all the held-out digits
        },
        "feature_map_digit": 0,  # the first held-out digit
        "sobel": {
            "threshold": SOBEL_THRESHOLD,
            "filters": len(likeness),
            "sobel_like": sobel_like,
            "share": round(sobel_like / len(likeness), 4),
            "best_correlation": likeness,
            "untrained_sobel_like": sum(c >= SOBEL_THRESHOLD for c in untrained),
            "untrained_share": round(sum(c >= SOBEL_THRESHOLD for c in untrained) / len(untrained), 4),
        },
        # The hierarchy figure: the same digit's strongest maps and one unit's receptive field per conv layer.
        "hierarchy": {name: info for name, (_, info) in layers.items()},
        "figures": list(FIGURES),
        "livenet": livenet.export(net, test_loader, out_dir, quick=quick, first_index=len(train_loader.X)),
    }
