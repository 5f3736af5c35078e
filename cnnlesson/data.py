"""MNIST and CIFAR-10 through torchvision's real dataset classes.

The transforms are the lesson's (`Normalize((0.1307,), (0.3081,))` for
MNIST, per-channel mean and std for CIFAR-10). For offline tests and doc
pages, `write_standin_mnist` and `write_standin_cifar10` write small,
learnable stand-in data sets in the real on-disk formats, so torchvision's
own parsers read them exactly as they read the real files.
"""

import math
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets, transforms

from cnnlesson.device import get_device
from cnnlesson.files import atomic_path, write_text_atomic

MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
# Per-channel statistics of the 50,000 CIFAR-10 training images.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
DATASETS = ("mnist", "cifar10")

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# A file of this name marks a folder as stand-in data written by this module.
STAND_IN_MARKER = "STAND_IN.txt"


class DataNotFoundError(FileNotFoundError):
    """A data set is missing and could not be downloaded; the message says how to get it."""


def mnist_padding(input_shape: tuple[int, ...]) -> int:
    """Border that turns a 28x28 digit into a model's input size (2 for LeNet-5's 32x32)."""
    border, odd = divmod(input_shape[-1] - 28, 2)
    if border < 0 or odd:
        raise ValueError(f"input_shape: expected a square side of 28 + 2k pixels, got {tuple(input_shape)}")
    return border


def mnist_transform(pad: int = 0) -> transforms.Compose:
    """The lesson's MNIST transform; `pad=2` gives LeNet-5 its 32x32 input."""
    steps = [transforms.ToTensor(), transforms.Normalize(MNIST_MEAN, MNIST_STD)]
    if pad:
        # Pad the PIL image with black before Normalize, so the border is the digit's own
        # background (-0.4242 once normalised), not a light frame of normalised 0.
        steps.insert(0, transforms.Pad(pad, fill=0))
    return transforms.Compose(steps)


def cifar10_transform() -> transforms.Compose:
    """ToTensor and per-channel Normalize for CIFAR-10."""
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)])


class StandInCIFAR10(datasets.CIFAR10):
    """torchvision's CIFAR10 without its md5 checks, for stand-in files only.

    torchvision checks every CIFAR-10 batch file against the md5 of the real
    download, so stand-in files fail with "Dataset not found or corrupted".
    `load_cifar10` uses this subclass only for a folder that
    `write_standin_cifar10` marked with `STAND_IN.txt`; the real data set is
    always read, and checked, by the real class.
    """

    train_list = [[name, None] for name, _ in datasets.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in datasets.CIFAR10.test_list]
    meta = {**datasets.CIFAR10.meta, "md5": None}


def _check_root(root) -> Path:
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root: expected a folder path (str or os.PathLike), got {type(root).__name__}")
    return Path(root)


def _open(cls, name: str, where: Path, files: str, root: Path, **kwargs) -> Dataset:
    """Build a torchvision dataset; turn a missing-data failure into one clear line."""
    try:
        return cls(root, **kwargs)
    except (RuntimeError, OSError) as err:  # torchvision's "Dataset not found", URLError, ...
        how = (
            f"the download failed ({err}); copy {files} there by hand"
            if kwargs.get("download")
            else f"pass download=True (cnnlesson: --download) to fetch it, or copy {files} there"
        )
        raise DataNotFoundError(f"{name} not found in {where}: {how}") from None


def load_mnist(root: str | os.PathLike, train: bool = True, download: bool = False, pad: int = 0) -> datasets.MNIST:
    """MNIST from `root/MNIST/raw` with the lesson's transform.

    Raises:
        DataNotFoundError: the IDX files are missing and were not downloaded.
    """
    root = _check_root(root)
    files = "the four IDX files (" + ", ".join(MNIST_FILES) + ")"
    return _open(
        datasets.MNIST, "MNIST", root / "MNIST" / "raw", files, root,
        train=train, download=download, transform=mnist_transform(pad),
    )  # fmt: skip


def load_cifar10(root: str | os.PathLike, train: bool = True, download: bool = False) -> datasets.CIFAR10:
    """CIFAR-10 from `root/cifar-10-batches-py` with per-channel normalisation.

    Raises:
        DataNotFoundError: the batch files are missing and were not downloaded.
    """
    root = _check_root(root)
    folder = root / "cifar-10-batches-py"
    cls = StandInCIFAR10 if (folder / STAND_IN_MARKER).exists() else datasets.CIFAR10
    files = "data_batch_1..5, test_batch and batches.meta"
    return _open(cls, "CIFAR-10", folder, files, root, train=train, download=download, transform=cifar10_transform())


class TensorLoader:
    """Batches of in-memory tensors: a DataLoader without per-sample work.

    Shuffling draws from torch's global RNG (like DataLoader) unless `seed`
    gives the loader its own generator.
    """

    def __init__(self, X: torch.Tensor, y: torch.Tensor, batch_size: int = 64, shuffle: bool = False, seed: int | None = None):
        if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError(f"X, y: expected torch.Tensors, got {type(X).__name__} and {type(y).__name__}")
        if len(X) != len(y):
            raise ValueError(f"X, y: expected the same length, got {len(X)} and {len(y)}")
        _check_batch_size(batch_size)
        self.X, self.y = X, y
        self.batch_size, self.shuffle = batch_size, shuffle
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.X) / self.batch_size)

    def __iter__(self):
        n = len(self.X)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.X.device)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.X[idx], self.y[idx]


def to_tensors(dataset: Dataset, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Decode a whole dataset once (its own transform applied) into two tensors."""
    X, y = [], []
    for images, labels in DataLoader(dataset, batch_size=1000):
        X.append(images)
        y.append(labels)
    return torch.cat(X).to(device), torch.cat(y).to(device)


def _mnist_tensors(dataset: datasets.MNIST, pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole MNIST split through `mnist_transform(pad)` at once: Pad with black, /255, Normalize."""
    X = dataset.data.unsqueeze(1)
    if pad:  # black uint8 pixels, before Normalize: the border is background, as in mnist_transform
        X = torch.nn.functional.pad(X, (pad, pad, pad, pad), value=0)
    X = (X.float().div(255) - MNIST_MEAN[0]) / MNIST_STD[0]
    return X.to(device), dataset.targets.clone().to(device)


def _check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")


def get_dataloaders(
    dataset: str,
    root: str | os.PathLike,
    batch_size: int = 64,
    download: bool = False,
    pad: int = 0,
    in_memory: bool = False,
    device: str | torch.device | None = None,
):
    """Return `(train_loader, test_loader)` for "mnist" or "cifar10".

    With `in_memory=True` each split is decoded once into tensors on `device`
    (as `cnnlesson.device.get_device` picks it: "auto" or nothing takes the
    GPU when there is one) and served by a `TensorLoader` (faster: no
    per-sample PIL work each epoch); otherwise they are the lesson's
    `DataLoader`s, whose batches stay on the CPU until the trainer moves them.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset: expected one of {DATASETS}, got {dataset!r}")
    _check_batch_size(batch_size)
    if dataset == "mnist":
        train_data, test_data = (load_mnist(root, train=t, download=download, pad=pad) for t in (True, False))
    else:
        if pad:
            raise ValueError(f"pad: only MNIST is padded (for LeNet-5), got pad={pad} with cifar10")
        train_data, test_data = (load_cifar10(root, train=t, download=download) for t in (True, False))
    if in_memory:
        device = get_device(device)
        # MNIST's whole split is one uint8 tensor: transform it in one go, not image by image.
        decode = (lambda d: _mnist_tensors(d, pad, device)) if dataset == "mnist" else (lambda d: to_tensors(d, device))
        train_loader = TensorLoader(*decode(train_data), batch_size=batch_size, shuffle=True)
        test_loader = TensorLoader(*decode(test_data), batch_size=1000)
        return train_loader, test_loader
    train_loader = DataLoader(train_data, batch_size=batch_size, shuffle=True)
    test_loader = DataLoader(test_data, batch_size=1000)
    return train_loader, test_loader


# --- Stand-in data in the real formats -------------------------------------


def _check_counts(**counts) -> None:
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")


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
        canvas = canvas.rotate(float(rng.uniform(-15, 15)), resample=Image.BILINEAR)
        images[k] = np.asarray(canvas.resize((28, 28), Image.BILINEAR))
    return images


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the IDX format MNIST ships in (big-endian header)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with atomic_path(path) as tmp:
        tmp.write_bytes(header + array.astype(np.uint8).tobytes())


def write_standin_mnist(root: str | os.PathLike, num_train: int = 1000, num_test: int = 200, seed: int = 0) -> Path:
    """Write stand-in MNIST (digits drawn from a font) as IDX files under `root/MNIST/raw`.

    The digits are learnable, so a model trained on them scores far above
    chance; they are not handwritten, so accuracies on them say nothing
    about real MNIST. Returns the `raw` folder.
    """
    _check_counts(num_train=num_train, num_test=num_test)
    raw = _check_root(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", num_train), ("t10k", num_test)):
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        _write_idx(raw / f"{split}-images-idx3-ubyte", _render_digits(labels, rng))
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    write_text_atomic(raw.parent / STAND_IN_MARKER, f"Stand-in MNIST written by cnnlesson (seed {seed}): font digits, not real data.\n")
    return raw


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


def write_standin_cifar10(root: str | os.PathLike, num_train: int = 500, num_test: int = 100, seed: int = 0) -> Path:
    """Write stand-in CIFAR-10 pickles under `root/cifar-10-batches-py`.

    The layout is the real one (`data_batch_1..5`, `test_batch`,
    `batches.meta`; str keys, uint8 rows of 3072 values in CHW order), plus
    `STAND_IN.txt`, the marker that lets `load_cifar10` read these files
    with `StandInCIFAR10`. Returns the folder.
    """
    _check_counts(num_train=num_train, num_test=num_test)
    folder = _check_root(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_labels = rng.permutation(np.arange(num_train) % 10)
    test_labels = rng.permutation(np.arange(num_test) % 10)
    batches = [(f"data_batch_{i + 1}", part) for i, part in enumerate(np.array_split(train_labels, 5))]
    for name, labels in batches + [("test_batch", test_labels)]:
        data = _colour_images(labels, rng).reshape(len(labels), 3 * 32 * 32)
        _write_pickle(folder / name, {"data": data, "labels": labels.tolist(), "batch_label": name})
    _write_pickle(folder / "batches.meta", {"label_names": list(CIFAR10_CLASSES), "num_vis": 3072})
    write_text_atomic(folder / STAND_IN_MARKER, f"Stand-in CIFAR-10 written by cnnlesson (seed {seed}): synthetic, not real data.\n")
    return folder
