"""Stand-in MNIST and CIFAR-10 in the real on-disk formats, for offline tests.

Small, learnable data sets: digits drawn from a font (IDX files, read by
torchvision's own MNIST parser) and coloured stripes (CIFAR-10 pickles, read
by `cnnlesson.data.load_cifar10(root, standin=True)`). Each folder also gets
`STAND_IN.txt`, a note for people. Accuracies on stand-in data say nothing
about the real data sets.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cnnlesson._checks import check_folder, check_int
from cnnlesson._formats import STAND_IN_MARKER
from cnnlesson.data import CIFAR10_CLASSES
from cnnlesson.files import atomic_path, write_text_atomic


def write_standin_mnist(root: str | os.PathLike, num_train: int = 1000, num_test: int = 200, seed: int = 0) -> Path:
    """Write stand-in MNIST (digits drawn from a font) as IDX files under `root/MNIST/raw`.

    The digits are learnable, so a model trained on them scores far above
    chance; they are not handwritten, so accuracies on them say nothing
    about real MNIST. Returns the `raw` folder.
    """
    counts = {"train": check_int("num_train", num_train, 1), "t10k": check_int("num_test", num_test, 1)}
    raw = check_folder("root", root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        _write_idx(raw / f"{split}-images-idx3-ubyte", _render_digits(labels, rng))
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    write_text_atomic(
        raw.parent / STAND_IN_MARKER,
        f"Stand-in MNIST written by cnnlesson (seed {seed}): font digits, not real data.\n",
    )
    return raw


def write_standin_cifar10(root: str | os.PathLike, num_train: int = 500, num_test: int = 100, seed: int = 0) -> Path:
    """Write stand-in CIFAR-10 pickles under `root/cifar-10-batches-py`.

    The layout is the real one (`data_batch_1..5`, `test_batch`,
    `batches.meta`; str keys, uint8 rows of 3072 values in CHW order), plus
    `STAND_IN.txt`, a note for people. Read them with
    `load_cifar10(root, standin=True)`. Returns the folder.
    """
    num_train, num_test = check_int("num_train", num_train, 1), check_int("num_test", num_test, 1)
    folder = check_folder("root", root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_labels = rng.permutation(np.arange(num_train) % 10)
    test_labels = rng.permutation(np.arange(num_test) % 10)
    batches = [(f"data_batch_{i + 1}", part) for i, part in enumerate(np.array_split(train_labels, 5))]
    for name, labels in batches + [("test_batch", test_labels)]:
        data = _colour_images(labels, rng).reshape(len(labels), 3 * 32 * 32)
        _write_pickle(folder / name, {"data": data, "labels": labels.tolist(), "batch_label": name})
    _write_pickle(folder / "batches.meta", {"label_names": list(CIFAR10_CLASSES), "num_vis": 3072})
    write_text_atomic(
        folder / STAND_IN_MARKER, f"Stand-in CIFAR-10 written by cnnlesson (seed {seed}): synthetic, not real data.\n"
    )
    return folder


def _render_digits(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw each label as a 28x28 white-on-black digit, randomly sized, turned and shifted."""
    fonts = {size: ImageFont.load_default(size=size) for size in range(34, 47, 4)}
    images = np.empty((len(labels), 28, 28), dtype=np.uint8)
    for k, label in enumerate(labels):
        # Draw at twice the size, then shrink: smooth edges like MNIST's.
        canvas = Image.new("L", (56, 56))
        dx, dy = rng.integers(-4, 5, size=2)
        ImageDraw.Draw(canvas).text(
            (28 + dx, 28 + dy), str(label), fill=255, anchor="mm",
            font=fonts[int(rng.choice(list(fonts)))], stroke_width=int(rng.integers(0, 3)), stroke_fill=255,
        )  # fmt: skip
        canvas = canvas.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
        images[k] = np.asarray(canvas.resize((28, 28), Image.Resampling.BILINEAR))
    return images


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the IDX format MNIST ships in (big-endian header)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with atomic_path(path) as tmp:
        tmp.write_bytes(header + array.astype(np.uint8).tobytes())


def _colour_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """32x32 RGB images whose colour and stripe direction depend on the label."""
    n = len(labels)
    hues = np.stack([np.cos(labels * 0.63), np.cos(labels * 0.63 + 2.1), np.cos(labels * 0.63 + 4.2)], axis=1)
    base = 128 + 80 * hues[:, :, None, None]  # (n, 3, 1, 1)
    ramp = np.arange(32)
    stripes = np.where(labels[:, None, None] % 2 == 0, ramp[None, :, None], ramp[None, None, :])
    pattern = 30 * np.sin(stripes * (0.3 + 0.05 * labels[:, None, None]))[:, None]
    noise = rng.normal(0, 25, size=(n, 3, 32, 32))
    return np.clip(base + pattern + noise, 0, 255).astype(np.uint8)


def _write_pickle(path: Path, obj: dict) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(obj, f)
