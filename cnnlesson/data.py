"""MNIST and CIFAR-10 through torchvision's real dataset classes.

The transforms are the lesson's (`Normalize((0.1307,), (0.3081,))` for
MNIST, per-channel mean and std for CIFAR-10). Files are checked before any
training: a damaged file, or a path that is not a file, is reported naming
the file and what is wrong. Offline, tests read stand-in data sets written
in the real formats by `cnnlesson.standin`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets, transforms
from torchvision.datasets.vision import VisionDataset

import cnnlesson.device
from cnnlesson import _formats
from cnnlesson._checks import check_folder, check_int, is_int
from cnnlesson._formats import NUM_CLASSES, DataCorruptError, DataNotFoundError
from cnnlesson._tensorloader import TensorLoader

__all__ = [
    "MNIST_MEAN", "MNIST_STD", "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR10_CLASSES", "DATASETS", "MNIST_FILES",
    "DataNotFoundError", "DataCorruptError", "mnist_transform", "cifar10_transform", "mnist_padding",
    "load_mnist", "load_cifar10", "StandInCIFAR10", "get_dataloaders", "to_tensors",
]  # fmt: skip

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
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


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


def mnist_padding(input_shape: tuple[int, ...]) -> int:
    """Border that turns a 28x28 digit into a model's input size (2 for LeNet-5's 32x32)."""
    border, odd = divmod(input_shape[-1] - 28, 2)
    if border < 0 or odd:
        raise ValueError(f"input_shape: expected a square side of 28 + 2k pixels, got {tuple(input_shape)}")
    return border


def load_mnist(root: str | os.PathLike, train: bool = True, download: bool = False, pad: int = 0) -> datasets.MNIST:
    """MNIST from `root/MNIST/raw` with the lesson's transform.

    Raises:
        DataNotFoundError: the IDX files are missing and were not downloaded.
        DataCorruptError: an IDX file is damaged (header, size, no images, a label out of 0..9)
            or is not a regular file.
    """
    root, pad = check_folder("root", root), _check_pad(pad)
    _formats.check_mnist_files(root / "MNIST" / "raw", MNIST_FILES, train)
    files = "the four IDX files (" + ", ".join(MNIST_FILES) + ")"
    return _open(datasets.MNIST, "MNIST", root / "MNIST" / "raw", files, root,
                 train=train, download=download, transform=mnist_transform(pad))  # fmt: skip


def load_cifar10(
    root: str | os.PathLike, train: bool = True, download: bool = False, standin: bool = False
) -> datasets.CIFAR10:
    """CIFAR-10 from `root/cifar-10-batches-py` with per-channel normalisation.

    The real data set is md5-checked file by file. `standin=True` reads
    stand-in files from `cnnlesson.standin.write_standin_cifar10` instead
    (`StandInCIFAR10`: no md5, an unpickler that cannot run code); only the
    caller can choose that.

    Raises:
        DataNotFoundError: the batch files are missing and were not downloaded.
        DataCorruptError: a file is not the real CIFAR-10's, a stand-in file is damaged,
            or a path is not a regular file.
    """
    root = check_folder("root", root)
    if standin:
        return StandInCIFAR10(root, train=train, download=download, transform=cifar10_transform())
    folder, cls = root / "cifar-10-batches-py", datasets.CIFAR10
    meta = [[cls.meta["filename"], cls.meta["md5"]]]
    for name, _ in cls.train_list + cls.test_list + meta:  # torchvision looks at every file
        _formats.check_regular_file(folder / name, "CIFAR-10")
    if not download:  # a download replaces what fails its md5
        _formats.check_real_cifar10(folder, (cls.train_list if train else cls.test_list) + meta)
    files = "data_batch_1..5, test_batch and batches.meta"
    return _open(cls, "CIFAR-10", folder, files, root, train=train, download=download, transform=cifar10_transform())


def get_dataloaders(
    dataset: str,
    root: str | os.PathLike,
    batch_size: int = 64,
    download: bool = False,
    pad: int = 0,
    in_memory: bool = False,
    device: str | torch.device | None = None,
    standin: bool = False,
):
    """Return `(train_loader, test_loader)` for "mnist" or "cifar10".

    With `in_memory=True` each split is decoded once into tensors on `device`
    (as `cnnlesson.device.get_device` picks it: "auto" or nothing takes the
    GPU when there is one) and served in batches from there (faster: no
    per-sample PIL work each epoch); otherwise they are the lesson's
    `DataLoader`s, whose batches stay on the CPU until the trainer moves them.
    `standin=True` reads stand-in CIFAR-10 (see `load_cifar10`).
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset: expected one of {DATASETS}, got {dataset!r}")
    batch_size, pad = check_int("batch_size", batch_size, 1), _check_pad(pad)
    if dataset == "mnist":
        train_data, test_data = (load_mnist(root, train=t, download=download, pad=pad) for t in (True, False))
    else:
        if pad:
            raise ValueError(f"pad: only MNIST is padded (for LeNet-5), got pad={pad} with cifar10")
        train_data, test_data = (load_cifar10(root, train=t, download=download, standin=standin) for t in (True, False))
    if in_memory:
        device = cnnlesson.device.get_device(device)
        # MNIST's whole split is one uint8 tensor: transform it in one go, not image by image.
        decode = (lambda d: _mnist_tensors(d, pad, device)) if dataset == "mnist" else (lambda d: to_tensors(d, device))
        return (
            TensorLoader(*decode(train_data), batch_size=batch_size, shuffle=True),
            TensorLoader(*decode(test_data), batch_size=1000),
        )
    return DataLoader(train_data, batch_size=batch_size, shuffle=True), DataLoader(test_data, batch_size=1000)


def to_tensors(dataset: Dataset, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Decode a whole dataset once (its own transform applied) into two tensors."""
    X, y = [], []
    for images, labels in DataLoader(dataset, batch_size=1000):
        X.append(images)
        y.append(labels)
    return torch.cat(X).to(device), torch.cat(y).to(device)


class StandInCIFAR10(datasets.CIFAR10):
    """CIFAR-10 in the real layout, read without md5 checks and without running code.

    torchvision checks every CIFAR-10 batch file against the md5 of the real
    download, so stand-in files fail with "Dataset not found or corrupted".
    This class reads them instead, through an unpickler that allows only the
    types the format holds (a pickle that names anything else is refused, so
    no code in it can run), and checks shapes and labels. It is used only
    when a caller asks for stand-in data (`standin=True`); no file in the
    folder can choose it.
    """

    def __init__(self, root, train: bool = True, transform=None, target_transform=None, download: bool = False):
        # download is accepted for the same calls as the real class, and ignored:
        # stand-in files are written by write_standin_cifar10, never fetched.
        VisionDataset.__init__(self, root, transform=transform, target_transform=target_transform)
        self.train = train
        folder = Path(self.root) / self.base_folder
        data, self.targets = [], []
        for name, _ in self.train_list if train else self.test_list:
            images, labels = _formats.check_cifar_batch(folder / name, _formats.read_cifar_pickle(folder / name))
            data.append(images)
            self.targets.extend(labels)
        self.data = np.vstack(data).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))  # HWC, as torchvision keeps it
        meta = _formats.read_cifar_pickle(folder / self.meta["filename"])
        classes = meta.get(self.meta["key"])
        if not isinstance(classes, list) or len(classes) != NUM_CLASSES or not all(isinstance(c, str) for c in classes):
            raise DataCorruptError(
                f"CIFAR-10 file {folder / self.meta['filename']} is corrupt: expected {NUM_CLASSES} class names"
            )
        self.classes = classes
        self.class_to_idx = {name: i for i, name in enumerate(classes)}


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


def _mnist_tensors(dataset: datasets.MNIST, pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole MNIST split through `mnist_transform(pad)` at once: Pad with black, /255, Normalize."""
    X = dataset.data.unsqueeze(1)
    if pad:  # black uint8 pixels, before Normalize: the border is background, as in mnist_transform
        X = torch.nn.functional.pad(X, (pad, pad, pad, pad), value=0)
    X = (X.float().div(255) - MNIST_MEAN[0]) / MNIST_STD[0]
    return X.to(device), dataset.targets.clone().to(device)


def _check_pad(pad: object) -> int:
    if not is_int(pad) or pad < 0:
        raise ValueError(f"pad: expected an int >= 0 (pixels added on each side), got {pad!r}")
    return int(pad)
