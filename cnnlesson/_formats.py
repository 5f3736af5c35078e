"""The data files' formats, checked before any training: one clear error naming the file and what is wrong.

MNIST's IDX files (header, size, labels), CIFAR-10's pickles (read by an
unpickler that cannot run code) and the real CIFAR-10's md5 sums. Private:
`cnnlesson.data` and `cnnlesson.standin` use it.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
import stat
from pathlib import Path

import numpy as np

NUM_CLASSES = 10
# A note for people: a folder of stand-in data holds this file.
# No code reads it to decide anything (a file must never switch off a check).
STAND_IN_MARKER = "STAND_IN.txt"


class DataNotFoundError(FileNotFoundError):
    """A data set is missing and could not be downloaded; the message says how to get it."""


class DataCorruptError(ValueError):
    """A data file is present but damaged or not a file; the message names the file and what is wrong."""


def check_regular_file(path: Path, what: str) -> bool:
    """True if `path` is a regular file, False if nothing is there; otherwise raise saying what it is.

    Looked at with stat, never opened: reading a FIFO would block, /dev/zero never ends.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise DataCorruptError(
                f"{what} file {path} is a symbolic link to a missing file ({os.readlink(path)})"
            ) from None
        return False
    except OSError as err:  # a symlink loop (ELOOP), a path through a file (ENOTDIR), no permission, ...
        raise DataCorruptError(f"{what} file {path} cannot be read: {err.strerror}") from None
    if stat.S_ISREG(mode):
        return True
    kinds = {
        stat.S_ISDIR: "a directory",
        stat.S_ISFIFO: "a FIFO (named pipe)",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    kind = next((name for test, name in kinds.items() if test(mode)), "not a regular file")
    raise DataCorruptError(f"{what} file {path} is {kind}, not a regular file")


# --- MNIST: IDX files ------------------------------------------------------------------------

_IDX_SHAPES = {"images": 3, "labels": 1}


def check_idx(path: Path, kind: str) -> int:
    """Check an MNIST IDX file's header against its size; return its item count (at least 1)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(4 + 4 * 3)
    ndim = _IDX_SHAPES[kind]
    if len(header) < 4 or header[:3] != b"\x00\x00\x08" or header[3] != ndim:
        raise DataCorruptError(f"MNIST file {path} is corrupt: its header {header[:4].hex()} is not 00000{800 + ndim} "
                               f"(uint8 {kind}, {ndim}-D)")  # fmt: skip
    if len(header) < 4 + 4 * ndim:
        raise DataCorruptError(
            f"MNIST file {path} is corrupt: {size} bytes, shorter than its {4 + 4 * ndim}-byte header"
        )
    dims = [int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if kind == "images" and dims[1:] != [28, 28]:
        raise DataCorruptError(f"MNIST file {path} is corrupt: images of {dims[1]}x{dims[2]} pixels, expected 28x28")
    expected = 4 + 4 * ndim + math.prod(dims)
    if size != expected:
        raise DataCorruptError(f"MNIST file {path} is corrupt: its header promises {expected} bytes "
                               f"({' x '.join(map(str, dims))} values), the file has {size}")  # fmt: skip
    if dims[0] == 0:
        raise DataCorruptError(f"MNIST file {path} is empty or corrupt: its header says it holds 0 {kind}")
    memory = _physical_memory()
    if memory is not None and 2 * size > memory:  # torchvision reads the file, then copies it into a tensor
        raise DataCorruptError(
            f"MNIST file {path} is corrupt or too large to load: its header says it holds {dims[0]:,} {kind} "
            f"(MNIST's files hold 60,000 and 10,000), a file of {size:,} bytes; torchvision reads it into memory "
            f"twice over, and this machine has {memory:,} bytes"
        )
    return dims[0]


def _physical_memory() -> int | None:
    """This machine's memory in bytes; None where the OS does not say (Windows has no sysconf)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_mnist_files(raw: Path, files: tuple[str, ...], train: bool) -> None:
    """Each of the four files is a regular file or absent (torchvision reports absent ones);
    check the split's two when both are there."""
    present = {name: check_regular_file(raw / name, "MNIST") for name in files}
    split = "train" if train else "t10k"
    images, labels = raw / f"{split}-images-idx3-ubyte", raw / f"{split}-labels-idx1-ubyte"
    if not (present[images.name] and present[labels.name]):
        return
    n_images, n_labels = check_idx(images, "images"), check_idx(labels, "labels")
    if n_images != n_labels:
        raise DataCorruptError(
            f"MNIST files {images.name} and {labels.name} in {raw} are corrupt: {n_images} images but {n_labels} labels"
        )
    values = np.frombuffer(labels.read_bytes(), dtype=np.uint8, offset=8)
    bad = np.flatnonzero(values >= NUM_CLASSES)
    if bad.size:
        raise DataCorruptError(
            f"MNIST file {labels} is corrupt: label {values[bad[0]]} at index {bad[0]}, expected 0..{NUM_CLASSES - 1}"
        )


# --- CIFAR-10: pickles and md5 sums --------------------------------------------------------------

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


def read_cifar_pickle(path: Path) -> dict:
    """Unpickle one stand-in CIFAR-10 file without running any code it may hold."""
    if not check_regular_file(path, "CIFAR-10 stand-in"):
        raise DataNotFoundError(f"CIFAR-10 stand-in file {path} not found; write it with write_standin_cifar10")
    try:
        entry = _CIFARUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except Exception as err:  # truncated or forged pickles fail in many ways
        raise DataCorruptError(f"CIFAR-10 file {path} is corrupt: not a CIFAR-10 pickle ({err})") from None
    if not isinstance(entry, dict):
        raise DataCorruptError(f"CIFAR-10 file {path} is corrupt: expected a dict, got {type(entry).__name__}")
    return entry


def check_cifar_batch(path: Path, entry: dict) -> tuple[np.ndarray, list[int]]:
    """The images (N, 3072) uint8 and the labels of one batch file, checked."""
    data, labels = entry.get("data"), entry.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        got = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataCorruptError(
            f"CIFAR-10 file {path} is corrupt: 'data' should be a uint8 array of shape (N, 3072), got {got}"
        )
    if not isinstance(labels, list) or len(labels) != len(data):
        raise DataCorruptError(f"CIFAR-10 file {path} is corrupt: 'labels' should be a list of {len(data)} ints")
    for k, label in enumerate(labels):
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < NUM_CLASSES:
            raise DataCorruptError(
                f"CIFAR-10 file {path} is corrupt: label {label!r} at index {k}, expected 0..{NUM_CLASSES - 1}"
            )
    return data, labels


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_real_cifar10(folder: Path, entries: list[tuple[str, str]]) -> None:
    """Name the first of `entries` (file name, md5) that is not the real CIFAR-10's, when all are present."""
    if not all([check_regular_file(folder / name, "CIFAR-10") for name, _ in entries]):
        return  # missing: torchvision reports it, or downloads it
    for name, md5 in entries:
        if _md5(folder / name) != md5:
            hint = (
                " (stand-in data? read it with standin=True, cnnlesson: --standin)"
                if (folder / STAND_IN_MARKER).exists()
                else ""
            )
            raise DataCorruptError(
                f"CIFAR-10 file {folder / name} is corrupt: its md5 is not the real CIFAR-10's{hint}"
            )
