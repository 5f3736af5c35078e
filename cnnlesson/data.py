"""MNIST and CIFAR-10 through torchvision's real dataset classes.

The transforms are the lesson's (`Normalize((0.1307,), (0.3081,))` for
MNIST, per-channel mean and std for CIFAR-10). For offline tests and doc
pages, `write_standin_mnist` and `write_standin_cifar10` write small,
learnable stand-in data sets in the real on-disk formats. Stand-in MNIST is
read by torchvision's own parser; stand-in CIFAR-10 is read only when the
caller asks for it (`standin=True`), by `StandInCIFAR10`, whose unpickler
cannot run code. Files are checked before any training: a damaged file is
reported as corrupt, naming the file and what is wrong.
"""

import hashlib
import io
import math
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets, transforms
from torchvision.datasets.vision import VisionDataset

import cnnlesson.device
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
# A note for people: this folder holds stand-in data written by this module.
# No code reads it to decide anything (a file must never switch off a check).
STAND_IN_MARKER = "STAND_IN.txt"
NUM_CLASSES = 10


class DataNotFoundError(FileNotFoundError):
    """A data set is missing and could not be downloaded; the message says how to get it."""


class DataCorruptError(ValueError):
    """A data file is present but damaged; the message names the file and what is wrong."""


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


# What a CIFAR-10 pickle may name: numpy arrays and dtypes (by the functions that
# rebuild them, under numpy 1 and 2 names) and protocol 2's way of storing bytes.
_CIFAR_PICKLE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _CIFARUnpickler(pickle.Unpickler):
    """An unpickler that builds only dicts, lists, str, bytes, numbers and numpy arrays."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR-10 file never holds")
        return super().find_class(module, name)


def _read_cifar_pickle(path: Path) -> dict:
    """Unpickle one stand-in CIFAR-10 file without running any code it may hold."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataNotFoundError(f"CIFAR-10 stand-in file {path} not found; write it with write_standin_cifar10") from None
    try:
        entry = _CIFARUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as err:  # truncated or forged pickles fail in many ways
        raise DataCorruptError(f"CIFAR-10 file {path} is corrupt: not a CIFAR-10 pickle ({err})") from None
    if not isinstance(entry, dict):
        raise DataCorruptError(f"CIFAR-10 file {path} is corrupt: expected a dict, got {type(entry).__name__}")
    return entry


def _check_cifar_batch(path: Path, entry: dict) -> tuple[np.ndarray, list[int]]:
    data, labels = entry.get("data"), entry.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        got = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataCorruptError(f"CIFAR-10 file {path} is corrupt: 'data' should be a uint8 array of shape (N, 3072), got {got}")
    if not isinstance(labels, list) or len(labels) != len(data):
        raise DataCorruptError(f"CIFAR-10 file {path} is corrupt: 'labels' should be a list of {len(data)} ints")
    for k, label in enumerate(labels):
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < NUM_CLASSES:
            raise DataCorruptError(f"CIFAR-10 file {path} is corrupt: label {label!r} at index {k}, expected 0..{NUM_CLASSES - 1}")
    return data, labels


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
            images, labels = _check_cifar_batch(folder / name, _read_cifar_pickle(folder / name))
            data.append(images)
            self.targets.extend(labels)
        self.data = np.vstack(data).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))  # HWC, as torchvision keeps it
        meta = _read_cifar_pickle(folder / self.meta["filename"])
        classes = meta.get(self.meta["key"])
        if not isinstance(classes, list) or len(classes) != NUM_CLASSES or not all(isinstance(c, str) for c in classes):
            raise DataCorruptError(f"CIFAR-10 file {folder / self.meta['filename']} is corrupt: expected {NUM_CLASSES} class names")
        self.classes = classes
        self.class_to_idx = {name: i for i, name in enumerate(classes)}


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


_IDX_SHAPES = {"images": 3, "labels": 1}


def _check_idx(path: Path, kind: str) -> int:
    """Check an MNIST IDX file's header against its size; return its item count."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(4 + 4 * 3)
    ndim = _IDX_SHAPES[kind]
    if len(header) < 4 or header[:3] != b"\x00\x00\x08" or header[3] != ndim:
        raise DataCorruptError(f"MNIST file {path} is corrupt: its header {header[:4].hex()} is not 00000{800 + ndim} "
                               f"(uint8 {kind}, {ndim}-D)")  # fmt: skip
    if len(header) < 4 + 4 * ndim:
        raise DataCorruptError(f"MNIST file {path} is corrupt: {size} bytes, shorter than its {4 + 4 * ndim}-byte header")
    dims = [int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if kind == "images" and dims[1:] != [28, 28]:
        raise DataCorruptError(f"MNIST file {path} is corrupt: images of {dims[1]}x{dims[2]} pixels, expected 28x28")
    expected = 4 + 4 * ndim + math.prod(dims)
    if size != expected:
        raise DataCorruptError(f"MNIST file {path} is corrupt: its header promises {expected} bytes "
                               f"({' x '.join(map(str, dims))} values), the file has {size}")  # fmt: skip
    return dims[0]


def _check_mnist_files(raw: Path, train: bool) -> None:
    """Check a split's two IDX files, when both are there (missing ones are torchvision's to report)."""
    split = "train" if train else "t10k"
    images, labels = raw / f"{split}-images-idx3-ubyte", raw / f"{split}-labels-idx1-ubyte"
    if not (images.is_file() and labels.is_file()):
        return
    n_images, n_labels = _check_idx(images, "images"), _check_idx(labels, "labels")
    if n_images != n_labels:
        raise DataCorruptError(f"MNIST files {images.name} and {labels.name} in {raw} are corrupt: {n_images} images but {n_labels} labels")
    values = np.frombuffer(labels.read_bytes(), dtype=np.uint8, offset=8)
    bad = np.flatnonzero(values >= NUM_CLASSES)
    if bad.size:
        raise DataCorruptError(f"MNIST file {labels} is corrupt: label {values[bad[0]]} at index {bad[0]}, expected 0..{NUM_CLASSES - 1}")


def load_mnist(root: str | os.PathLike, train: bool = True, download: bool = False, pad: int = 0) -> datasets.MNIST:
    """MNIST from `root/MNIST/raw` with the lesson's transform.

    Raises:
        DataNotFoundError: the IDX files are missing and were not downloaded.
        DataCorruptError: an IDX file is damaged (header, size or a label out of 0..9).
    """
    root = _check_root(root)
    _check_pad(pad)
    _check_mnist_files(root / "MNIST" / "raw", train)
    files = "the four IDX files (" + ", ".join(MNIST_FILES) + ")"
    return _open(
        datasets.MNIST, "MNIST", root / "MNIST" / "raw", files, root,
        train=train, download=download, transform=mnist_transform(pad),
    )  # fmt: skip


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_real_cifar10(folder: Path, train: bool) -> None:
    """Name the first file that is not the real CIFAR-10's (md5), when all are present."""
    cls = datasets.CIFAR10
    entries = (cls.train_list if train else cls.test_list) + [[cls.meta["filename"], cls.meta["md5"]]]
    if not all((folder / name).is_file() for name, _ in entries):
        return  # missing: torchvision reports it, or downloads it
    for name, md5 in entries:
        if _md5(folder / name) != md5:
            hint = " (stand-in data? read it with standin=True, cnnlesson: --standin)" if (folder / STAND_IN_MARKER).exists() else ""
            raise DataCorruptError(f"CIFAR-10 file {folder / name} is corrupt: its md5 is not the real CIFAR-10's{hint}")


def load_cifar10(root: str | os.PathLike, train: bool = True, download: bool = False, standin: bool = False) -> datasets.CIFAR10:
    """CIFAR-10 from `root/cifar-10-batches-py` with per-channel normalisation.

    The real data set is md5-checked file by file. `standin=True` reads
    stand-in files from `write_standin_cifar10` instead (`StandInCIFAR10`:
    no md5, an unpickler that cannot run code); only the caller can choose that.

    Raises:
        DataNotFoundError: the batch files are missing and were not downloaded.
        DataCorruptError: a file is not the real CIFAR-10's, or a stand-in file is damaged.
    """
    root = _check_root(root)
    folder = root / "cifar-10-batches-py"
    if standin:
        return StandInCIFAR10(root, train=train, download=download, transform=cifar10_transform())
    if not download:
        _check_real_cifar10(folder, train)
    files = "data_batch_1..5, test_batch and batches.meta"
    return _open(datasets.CIFAR10, "CIFAR-10", folder, files, root, train=train, download=download, transform=cifar10_transform())


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


def _check_pad(pad) -> None:
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad: expected an int >= 0 (pixels added on each side), got {pad!r}")


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
    standin: bool = False,
):
    """Return `(train_loader, test_loader)` for "mnist" or "cifar10".

    With `in_memory=True` each split is decoded once into tensors on `device`
    (as `cnnlesson.device.get_device` picks it: "auto" or nothing takes the
    GPU when there is one) and served by a `TensorLoader` (faster: no
    per-sample PIL work each epoch); otherwise they are the lesson's
    `DataLoader`s, whose batches stay on the CPU until the trainer moves them.
    `standin=True` reads stand-in CIFAR-10 (see `load_cifar10`).
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset: expected one of {DATASETS}, got {dataset!r}")
    _check_batch_size(batch_size)
    _check_pad(pad)
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
    `STAND_IN.txt`, a note for people. Read them with
    `load_cifar10(root, standin=True)`. Returns the folder.
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
