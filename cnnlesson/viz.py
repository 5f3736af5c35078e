"""Figures: the lesson's feature maps, plus filters, training curves and predictions.

Every function returns the matplotlib Figure and saves it (atomically) when
given a `path`. The backend is matplotlib's own choice (Agg with no display).
"""

import math
import os
from collections.abc import Mapping, Sequence

# No backend is chosen here: matplotlib picks one itself (Agg when there is
# no display) and honours MPLBACKEND, matplotlib.use() and Jupyter's inline.
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from matplotlib.figure import Figure

from cnnlesson.files import atomic_path


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> None:
    """Save `fig` to `path` atomically; the format follows the file's suffix."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")


def close(fig: Figure) -> None:
    """Release a figure these functions returned (pyplot keeps each one until closed)."""
    plt.close(fig)


def _finish(fig: Figure, path, layout: bool = True) -> Figure:
    if layout:
        fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def _numpy(array) -> np.ndarray:
    """A NumPy copy of an array, list or tensor on any device (a GPU tensor is copied to the CPU first)."""
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def _as_batch(image, name: str = "image") -> torch.Tensor:
    """Accept (H, W), (C, H, W) or (1, C, H, W) and return a batch of one."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(image).__name__}")
    if image.dim() == 2:
        image = image[None, None]
    elif image.dim() == 3:
        image = image[None]
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"{name}: expected shape (H, W), (C, H, W) or (1, C, H, W), got {tuple(image.shape)}")
    return image


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The model's first Conv layer: `model.conv1` as the lesson names it, else the first Conv2d."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    conv = getattr(model, "conv1", None)
    if not isinstance(conv, nn.Conv2d):
        conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ValueError(f"model: expected a model with a Conv2d layer, {type(model).__name__} has none")
    return conv


def visualize_feature_maps(model: nn.Module, image: torch.Tensor, path: str | os.PathLike | None = None) -> Figure:
    """Visualize feature maps from the first Conv layer, in a 4x8 grid (the lesson's function).

    Unlike the lesson's, it finds the first conv layer itself (`first_conv`),
    moves the image to that layer's device, and draws every map on one
    colour scale, from 0 to the largest response, with a colour bar: a map
    that is bright here responds strongly compared with the others, not only
    compared with itself.
    """
    conv = first_conv(model)
    image = _as_batch(image)
    model.eval()
    with torch.no_grad():
        # First Conv output
        x = conv(image.to(conv.weight.device))
        x = F.relu(x)
    x = x.cpu()
    top = float(x.max()) or 1.0
    # Display in grid
    fig, axes = plt.subplots(4, 8, figsize=(12, 6))
    shown = None
    for i, ax in enumerate(axes.flat):
        if i < x.shape[1]:
            shown = ax.imshow(x[0, i].numpy(), cmap="viridis", vmin=0.0, vmax=top)
        ax.axis("off")
    # Large type: the page shrinks this 12-inch figure to its text column.
    return _finish_with_colour_bar(fig, axes, shown, "response after ReLU", fontsize=16, fraction=0.02, path=path)


def _finish_with_colour_bar(fig, axes, shown, label: str, fontsize: int, fraction: float, path) -> Figure:
    """Lay out the grid of images, then add one colour bar beside it for the scale they share."""
    fig.tight_layout()
    if shown is not None:
        bar = fig.colorbar(shown, ax=axes, fraction=fraction, pad=0.02)
        bar.set_label(label, fontsize=fontsize)
        bar.ax.tick_params(labelsize=fontsize - 1)
    return _finish(fig, path, layout=False)


def _frame(ax, colour: str, width: float) -> None:
    """Hide an image's ticks and draw its border (axis("off") would hide the border too)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(width)


def plot_filters(
    conv: nn.Conv2d | torch.Tensor,
    path: str | os.PathLike | None = None,
    ncols: int = 8,
    marked: Sequence[int] = (),
) -> Figure:
    """Draw each filter of a conv layer (its first input channel) as a small image, with a colour bar.

    Args:
        conv: the layer, or its 4-D weight (out, in, kh, kw).
        path: where to save the figure, if anywhere.
        ncols: filters per row.
        marked: indices of filters to frame in black (e.g. the Sobel-like ones).
    """
    weight = conv.weight if isinstance(conv, nn.Conv2d) else conv
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise TypeError(f"conv: expected an nn.Conv2d or a 4-D weight (out, in, kh, kw), got {got}")
    weight = weight.detach().cpu()
    framed = set(marked)
    outside = sorted(k for k in framed if not (0 <= k < weight.shape[0]))
    if outside:
        raise ValueError(f"marked: expected filter indices in [0, {weight.shape[0]}), got {outside}")
    nrows = math.ceil(weight.shape[0] / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.2 * ncols, 1.2 * nrows), squeeze=False)
    # One colour scale for all filters, centred on 0: signs compare across filters.
    limit = float(weight[:, 0].abs().max()) or 1.0
    shown = None
    for i, ax in enumerate(axes.flat):
        if i < weight.shape[0]:
            shown = ax.imshow(weight[i, 0].numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
            if i in framed:
                _frame(ax, "black", 3.0)
            else:
                _frame(ax, "0.8", 0.5)
        else:
            ax.axis("off")
    return _finish_with_colour_bar(fig, axes, shown, "weight", fontsize=13, fraction=0.03, path=path)


def plot_history(history: Sequence[Mapping], path: str | os.PathLike | None = None) -> Figure:
    """Plot training loss and train/test accuracy per epoch from `train`'s history."""
    if not history or not all(isinstance(r, Mapping) and "train_loss" in r for r in history):
        raise ValueError("history: expected a non-empty list of dicts from cnnlesson.train.train")
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Loss")
    ax_acc.plot(epochs, [r["train_accuracy"] for r in history], "o-", label="train")
    tested = [(r["epoch"], r["test_accuracy"]) for r in history if r.get("test_accuracy") is not None]
    if tested:
        ax_acc.plot(*zip(*tested), "s-", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    ax_acc.legend()
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    return _finish(fig, path)


def _display(image: torch.Tensor) -> np.ndarray:
    """A normalised (C, H, W) tensor as an array imshow can draw (stretched to 0..1)."""
    array = image.detach().cpu().float()
    array = (array - array.min()) / (array.max() - array.min() + 1e-12)
    return array[0].numpy() if array.shape[0] == 1 else array.permute(1, 2, 0).numpy()


def plot_predictions(
    net: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    class_names: Sequence[str] | None = None,
    path: str | os.PathLike | None = None,
    ncols: int = 8,
) -> Figure:
    """Show images with the predicted and true label; wrong predictions in red."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(
            f"images: expected a 4-D batch (N, C, H, W), got {getattr(images, 'shape', type(images).__name__)}"
        )
    if len(images) != len(labels):
        raise ValueError(f"labels: expected {len(images)} labels (one per image), got {len(labels)}")
    net.eval()
    with torch.no_grad():
        predicted = net(images.to(next(net.parameters()).device)).argmax(1).cpu()
    name = (lambda k: class_names[k]) if class_names else str
    nrows = math.ceil(len(images) / ncols)
    # About as wide as a page's text column, so the titles are not shrunk to a blur.
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.05 * ncols, 1.45 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(_display(images[i]), cmap="gray")
            p, t = int(predicted[i]), int(labels[i])
            ax.set_title(f"{name(p)}\n(true {name(t)})", fontsize=11, color="tab:green" if p == t else "tab:red")
    return _finish(fig, path)


def plot_images(
    images: Mapping[str, np.ndarray | torch.Tensor], path: str | os.PathLike | None = None, cmap: str = "gray"
) -> Figure:
    """Draw 2-D arrays side by side, each titled by its key (e.g. a digit and its edges)."""
    if not images:
        raise ValueError("images: expected a non-empty mapping of title -> 2-D array")
    fig, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.2), squeeze=False)
    for ax, (title, array) in zip(axes.flat, images.items()):
        array = _numpy(array)
        if array.ndim != 2:
            raise ValueError(f"images[{title!r}]: expected a 2-D array, got shape {array.shape}")
        shown = ax.imshow(array, cmap=cmap)
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(title)
        ax.axis("off")
    return _finish(fig, path)


def _grid(ax, array: np.ndarray, title: str, marked=(), colour: str = "tab:orange") -> None:
    """Draw a small matrix as a table of numbers; shade the `marked` (row, col) cells."""
    rows, cols = array.shape
    shade = np.zeros((rows, cols))
    for r, c in marked:
        shade[r, c] = 1
    ax.imshow(shade, cmap=matplotlib.colors.ListedColormap(["white", colour]), vmin=0, vmax=1, alpha=0.55)
    for r in range(rows):
        for c in range(cols):
            ax.text(c, r, f"{array[r, c]:g}", ha="center", va="center", fontsize=12)
    for r in range(1, rows):
        ax.axhline(r - 0.5, color="0.5", linewidth=0.8)
    for c in range(1, cols):
        ax.axvline(c - 0.5, color="0.5", linewidth=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=12)


def plot_im2col(image, kernel, position: tuple[int, int] = (0, 0), path: str | os.PathLike | None = None) -> Figure:
    """Draw im2col on a 2-D image: a window, its column of the patch matrix, and the one matrix product.

    Every kh x kw window of `image` becomes one column of a (kh*kw, OH*OW)
    matrix; the kernel, flattened to one row, times that matrix gives every
    output value at once. The window at `position` and what it becomes are
    highlighted. `image` and `kernel` may be arrays, nested lists or tensors
    on any device.
    """
    image, kernel = _numpy(image).astype(float), _numpy(kernel).astype(float)
    if image.ndim != 2 or kernel.ndim != 2:
        raise ValueError(f"image, kernel: expected 2-D arrays, got shapes {image.shape} and {kernel.shape}")
    if kernel.shape[0] > image.shape[0] or kernel.shape[1] > image.shape[1]:
        raise ValueError(f"kernel: expected at most the image's size {image.shape}, got {kernel.shape}")
    kh, kw = kernel.shape
    windows = np.lib.stride_tricks.sliding_window_view(image, (kh, kw))  # (OH, OW, kh, kw)
    oh, ow = windows.shape[:2]
    i, j = position
    if not (0 <= i < oh and 0 <= j < ow):
        raise ValueError(f"position: expected a window index in [0, {oh}) x [0, {ow}), got {position}")
    columns = windows.reshape(oh * ow, kh * kw).T  # one column per output position
    output = (kernel.reshape(1, -1) @ columns).reshape(oh, ow)
    k = i * ow + j
    widths = [image.shape[1], kh * kw, oh * ow, ow]
    # 0.42 in a cell keeps the whole product near a page's text width (about 7 in at 100 dpi).
    fig, axes = plt.subplots(1, 4, figsize=(2.2 + 0.42 * sum(widths), 3.2), gridspec_kw={"width_ratios": widths})
    _grid(axes[0], image, f"input: window at ({i}, {j})", [(i + a, j + b) for a in range(kh) for b in range(kw)])
    _grid(axes[1], kernel.reshape(1, -1), "kernel as a row", [(0, c) for c in range(kh * kw)], "tab:blue")
    _grid(axes[2], columns, f"im2col: {kh * kw} × {oh * ow}, column {k}", [(r, k) for r in range(kh * kw)])
    _grid(axes[3], output, "output:\nrow @ im2col", [(i, j)], "tab:green")
    fig.tight_layout(w_pad=2.5)  # room between panels, so no title reaches over its neighbour
    return _finish(fig, path, layout=False)
