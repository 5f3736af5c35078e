"""Stand-in data read by torchvision's real classes; the lesson's transforms; clear errors."""

import os
import pickle
import re
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import datasets

from cnnlesson.data import (
    CIFAR10_CLASSES,
    DataCorruptError,
    DataNotFoundError,
    StandInCIFAR10,
    TensorLoader,
    get_dataloaders,
    load_cifar10,
    load_mnist,
    mnist_padding,
    mnist_transform,
    to_tensors,
)
from cnnlesson.standin import write_standin_mnist


def test_standin_mnist_is_read_by_torchvision_mnist(mnist_root):
    # The real class, the real IDX parser; download=True finds the files and fetches nothing.
    train = datasets.MNIST(mnist_root, train=True, download=True)
    test = datasets.MNIST(mnist_root, train=False)
    assert (len(train), len(test)) == (512, 256)
    assert train.data.shape == (512, 28, 28) and train.data.dtype == torch.uint8
    assert sorted(train.targets.unique().tolist()) == list(range(10))
    # Digits: white ink on black, neither empty nor full.
    ink = (train.data > 128).float().mean().item()
    assert 0.05 < ink < 0.4
    assert train.data[:, 0, :].max() < 50  # the top row is background


def test_standin_mnist_is_deterministic(tmp_path):
    a = write_standin_mnist(tmp_path / "a", num_train=20, num_test=10, seed=3)
    b = write_standin_mnist(tmp_path / "b", num_train=20, num_test=10, seed=3)
    c = write_standin_mnist(tmp_path / "c", num_train=20, num_test=10, seed=4)
    name = "train-images-idx3-ubyte"
    assert (a / name).read_bytes() == (b / name).read_bytes() != (c / name).read_bytes()


def test_lesson_transform_normalises_with_mnist_statistics(mnist_root):
    image, label = load_mnist(mnist_root, train=False)[0]
    raw = datasets.MNIST(mnist_root, train=False).data[0].float() / 255
    assert image.shape == (1, 28, 28) and isinstance(label, int)
    torch.testing.assert_close(image[0], (raw - 0.1307) / 0.3081)


def test_pad_gives_lenet5_its_32x32_input(mnist_root):
    image, _ = load_mnist(mnist_root, pad=2)[0]
    assert image.shape == (1, 32, 32)
    assert image[0, :2].max() == image[0, :2].min() == image[0, 2:-2, 2:-2].min()  # the added border: background
    assert len(mnist_transform(pad=2).transforms) == 3


def test_standin_cifar10_is_read_through_the_documented_subclass(cifar_root):
    train = load_cifar10(cifar_root, train=True, standin=True)
    test = load_cifar10(cifar_root, train=False, download=True, standin=True)  # nothing to download
    assert isinstance(train, StandInCIFAR10) and isinstance(train, datasets.CIFAR10)
    assert (len(train), len(test)) == (200, 100)
    assert tuple(train.classes) == CIFAR10_CLASSES
    image, label = train[0]
    assert image.shape == (3, 32, 32) and 0 <= label < 10


def test_real_cifar10_class_still_checks_md5(cifar_root):
    # The md5 check is skipped only through StandInCIFAR10, never for torchvision's own class.
    with pytest.raises(RuntimeError, match="corrupted"):
        datasets.CIFAR10(cifar_root, train=True)


def test_a_marker_file_does_not_switch_off_the_md5_check(cifar_root):
    assert (cifar_root / "cifar-10-batches-py" / "STAND_IN.txt").exists()
    with pytest.raises(
        DataCorruptError, match=r"data_batch_1 is corrupt: its md5 is not the real CIFAR-10's \(stand-in"
    ):
        load_cifar10(cifar_root)


class _Payload:
    """A pickle that, when loaded, creates the file `path`: proof that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.mark.parametrize("standin", [False, True])
@pytest.mark.parametrize("name", ["data_batch_1", "test_batch", "batches.meta"])
def test_a_forged_cifar_pickle_runs_no_code(tmp_path, cifar_root, standin, name):
    shutil.copytree(cifar_root, tmp_path / "root")
    proof = tmp_path / "code-ran"
    with open(tmp_path / "root" / "cifar-10-batches-py" / name, "wb") as f:
        pickle.dump(_Payload(proof), f)
    with pytest.raises(DataCorruptError, match="is corrupt") as info:
        load_cifar10(tmp_path / "root", train=name != "test_batch", standin=standin)
    assert not proof.exists()
    # The real class refuses the first file that fails its md5; the stand-in reader names the forged one.
    assert f"{name} is corrupt" in str(info.value) or not standin
    # Without the restriction the same file does run code: the test can fail.
    with open(tmp_path / "root" / "cifar-10-batches-py" / name, "rb") as f:
        pickle.load(f).close()
    assert proof.is_file()


def _rewrite(path, edit):
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(edit(data)))


CORRUPT_STANDIN_CIFAR = [
    ("truncated", "data_batch_2", lambda b: b[: len(b) // 2], "not a CIFAR-10 pickle"),
    ("not-a-dict", "data_batch_3", lambda b: pickle.dumps([1, 2, 3]), "expected a dict, got list"),
    (
        "no-labels",
        "data_batch_4",
        lambda b: pickle.dumps({"data": np.zeros((2, 3072), np.uint8)}),
        "'labels' should be a list of 2 ints",
    ),
    (
        "wrong-shape",
        "data_batch_5",
        lambda b: pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}),
        r"shape \(N, 3072\), got uint8 array of shape \(2, 100\)",
    ),
    (
        "label-10",
        "data_batch_1",
        lambda b: pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}),
        "label 10 at index 1, expected 0..9",
    ),
    ("meta", "batches.meta", lambda b: pickle.dumps({"label_names": ["cat"]}), "expected 10 class names"),
]


@pytest.mark.parametrize(
    "name, edit, message", [c[1:] for c in CORRUPT_STANDIN_CIFAR], ids=[c[0] for c in CORRUPT_STANDIN_CIFAR]
)
def test_corrupt_standin_cifar_names_the_file(tmp_path, cifar_root, name, edit, message):
    shutil.copytree(cifar_root, tmp_path, dirs_exist_ok=True)
    _rewrite(tmp_path / "cifar-10-batches-py" / name, edit)
    with pytest.raises(DataCorruptError, match=message) as info:
        load_cifar10(tmp_path, standin=True)
    assert f"{name} is corrupt" in str(info.value) and "\n" not in str(info.value)


CORRUPT_MNIST = [
    ("truncated", "train-images-idx3-ubyte", lambda b: b[:-100], "its header promises"),
    (
        "dimension-byte-9",
        "train-images-idx3-ubyte",
        lambda b: b[:3] + bytes([9]) + b[4:],
        "header 00000809 is not 00000803",
    ),
    (
        "not-28x28",
        "train-images-idx3-ubyte",
        lambda b: b[:8] + (14).to_bytes(4, "big") + (56).to_bytes(4, "big") + b[16:],
        "images of 14x56 pixels",
    ),
    (
        "label-200",
        "train-labels-idx1-ubyte",
        lambda b: b[: 8 + 7] + bytes([200]) + b[8 + 8 :],
        "label 200 at index 7, expected 0..9",
    ),
    (
        "count-mismatch",
        "train-labels-idx1-ubyte",
        lambda b: b[:4] + (511).to_bytes(4, "big") + b[8:-1],
        "512 images but 511 labels",
    ),
    ("empty", "train-labels-idx1-ubyte", lambda b: b"", "header  is not 00000801"),
    (
        "no-images",
        "train-images-idx3-ubyte",
        lambda b: b[:4] + bytes(4) + b[8:16],
        "is empty or corrupt: its header says it holds 0 images",
    ),
]


@pytest.mark.parametrize("download", [False, True])
@pytest.mark.parametrize("name, edit, message", [c[1:] for c in CORRUPT_MNIST], ids=[c[0] for c in CORRUPT_MNIST])
def test_corrupt_mnist_is_reported_as_corrupt_not_missing(tmp_path, mnist_root, name, edit, message, download):
    shutil.copytree(mnist_root, tmp_path, dirs_exist_ok=True)
    _rewrite(tmp_path / "MNIST" / "raw" / name, edit)
    with pytest.raises(DataCorruptError, match=message) as info:
        get_dataloaders("mnist", tmp_path, download=download, in_memory=True)
    assert "corrupt" in str(info.value) and "download" not in str(info.value)


def test_an_idx_pair_with_no_images_is_empty_not_an_offset_error(tmp_path, mnist_root):
    shutil.copytree(mnist_root, tmp_path, dirs_exist_ok=True)
    raw = tmp_path / "MNIST" / "raw"
    _rewrite(raw / "t10k-images-idx3-ubyte", lambda b: b[:4] + bytes(4) + b[8:16])
    _rewrite(raw / "t10k-labels-idx1-ubyte", lambda b: b[:4] + bytes(4))
    with pytest.raises(
        DataCorruptError, match=r"t10k-images-idx3-ubyte is empty or corrupt: its header says it holds 0 images$"
    ):
        load_mnist(tmp_path, train=False)


@pytest.mark.skipif(not hasattr(os, "sysconf"), reason="the memory size comes from sysconf (POSIX)")
def test_an_idx_header_claiming_more_images_than_memory_holds_is_refused_before_reading(tmp_path, mnist_root):
    # A well-formed header and a file of exactly the size it promises, sparse so it costs no disk:
    # at least the 60 million images of the report (47 GB), and at least twice this machine's memory.
    shutil.copytree(mnist_root, tmp_path, dirs_exist_ok=True)
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    count = min(max(60_000_000, 2 * memory // 784 + 1), 2**32 - 1)
    images.write_bytes(b"\x00\x00\x08\x03" + b"".join(n.to_bytes(4, "big") for n in (count, 28, 28)))
    os.truncate(images, 16 + count * 784)
    labels = images.with_name("train-labels-idx1-ubyte")  # as many labels (all 0), so the counts agree
    labels.write_bytes(b"\x00\x00\x08\x01" + count.to_bytes(4, "big"))
    os.truncate(labels, 8 + count)
    with pytest.raises(DataCorruptError) as info:
        load_mnist(tmp_path, train=True)
    assert str(info.value) == (
        f"MNIST file {images} is corrupt or too large to load: its header says it holds {count:,} images "
        f"(MNIST's files hold 60,000 and 10,000), a file of {16 + count * 784:,} bytes; torchvision reads it into "
        f"memory twice over, and this machine has {memory:,} bytes"
    )


def _not_a_file(kind, path):
    """Put something that is not a regular file at `path`."""
    path.unlink()
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink-loop":
        path.symlink_to(path.name)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "dangling-symlink":
        path.symlink_to(path.parent / "gone")


NOT_A_FILE = [
    ("directory", "is a directory, not a regular file"),
    ("fifo", r"is a FIFO \(named pipe\), not a regular file"),
    ("symlink-loop", "cannot be read: Too many levels of symbolic links"),
    ("dev-zero", "is a character device, not a regular file"),
    ("dangling-symlink", r"is a symbolic link to a missing file \(.*gone\)"),
]
unix_only = pytest.mark.skipif(sys.platform == "win32", reason="FIFOs, /dev/zero and symlinks are Unix's")


@pytest.fixture
def no_blocking():
    """Fail instead of hanging if a test opens a FIFO or reads /dev/zero."""

    def stuck(*_):
        raise TimeoutError("blocked reading a data file")

    previous = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@unix_only
@pytest.mark.parametrize("download", [False, True])
@pytest.mark.parametrize("name", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
@pytest.mark.parametrize("kind, message", NOT_A_FILE, ids=[k for k, _ in NOT_A_FILE])
def test_an_mnist_path_that_is_not_a_file_says_what_it_is(
    tmp_path, mnist_root, no_blocking, kind, message, name, download
):
    shutil.copytree(mnist_root, tmp_path, dirs_exist_ok=True)
    path = tmp_path / "MNIST" / "raw" / name
    _not_a_file(kind, path)
    with pytest.raises(DataCorruptError, match=f"^MNIST file {re.escape(str(path))} {message}") as info:
        load_mnist(tmp_path, train=True, download=download)  # the t10k file is looked at too
    assert "download" not in str(info.value) and "\n" not in str(info.value)


@unix_only
@pytest.mark.parametrize("standin", [False, True])
@pytest.mark.parametrize("kind, message", NOT_A_FILE, ids=[k for k, _ in NOT_A_FILE])
def test_a_cifar_path_that_is_not_a_file_says_what_it_is(tmp_path, cifar_root, no_blocking, kind, message, standin):
    shutil.copytree(cifar_root, tmp_path, dirs_exist_ok=True)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    _not_a_file(kind, path)
    with pytest.raises(DataCorruptError, match=f"^CIFAR-10 (stand-in )?file {re.escape(str(path))} {message}"):
        load_cifar10(tmp_path, standin=standin)


def test_missing_data_is_one_clear_line(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "download=True" in message and "train-images-idx3-ubyte" in message


@pytest.mark.parametrize("in_memory", [False, True])
@pytest.mark.parametrize("pad", [0, 2])
def test_get_dataloaders_serve_the_same_images(mnist_root, in_memory, pad):
    train_loader, test_loader = get_dataloaders(
        "mnist", mnist_root, batch_size=32, in_memory=in_memory, pad=pad, device="cpu"
    )
    X, y = next(iter(test_loader))  # the test split is not shuffled
    split = load_mnist(mnist_root, train=False, pad=pad)  # the lesson's per-image transform
    torch.testing.assert_close(X, torch.stack([split[i][0] for i in range(len(y))]), rtol=0, atol=1e-6)
    assert torch.equal(y, split.targets[: len(y)])
    assert len(train_loader) == 512 // 32
    assert isinstance(train_loader, TensorLoader if in_memory else DataLoader)


def test_tensor_loader_visits_every_item_once_per_epoch():
    X, y = torch.arange(10).float()[:, None], torch.arange(10)
    loader = TensorLoader(X, y, batch_size=4, shuffle=True, seed=0)
    batches = list(loader)
    assert [len(b[1]) for b in batches] == [4, 4, 2] and len(loader) == 3
    seen = torch.cat([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    assert all(torch.equal(bx[:, 0].long(), by) for bx, by in batches)  # pairs stay together


def test_to_tensors_decodes_the_dataset_once(cifar_root):
    X, y = to_tensors(load_cifar10(cifar_root, train=False, standin=True))
    assert X.shape == (100, 3, 32, 32) and y.shape == (100,)
    # The stand-in images are normalised roughly to zero mean.
    assert abs(X.mean().item()) < 1


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"dataset: expected one of \('mnist', 'cifar10'\), got 'svhn'"):
        get_dataloaders("svhn", "data")
    with pytest.raises(ValueError, match="batch_size: expected an int >= 1, got 0"):
        get_dataloaders("mnist", "data", batch_size=0)
    with pytest.raises(TypeError, match="root: expected a folder path"):
        load_mnist(42)
    with pytest.raises(ValueError, match="num_train: expected an int >= 1, got 0"):
        write_standin_mnist("unused", num_train=0)
    with pytest.raises(ValueError, match="pad: only MNIST is padded"):
        get_dataloaders("cifar10", "data", pad=2)
    with pytest.raises(ValueError, match=r"pad: expected an int >= 0 \(pixels added on each side\), got -2"):
        get_dataloaders("mnist", "data", pad=-2, in_memory=True)
    with pytest.raises(
        DataNotFoundError, match="CIFAR-10 stand-in file .*data_batch_1 not found; write it with write_standin_cifar10"
    ):
        load_cifar10(Path("nowhere"), standin=True, download=True)
    with pytest.raises(ValueError, match="X, y: expected the same length, got 3 and 2"):
        TensorLoader(torch.zeros(3), torch.zeros(2))
    with pytest.raises(TypeError, match="X, y: expected torch.Tensors, got ndarray"):
        TensorLoader(np.zeros(3), torch.zeros(3))
    with pytest.raises(TypeError, match="batch_size: expected an int, got True"):
        TensorLoader(torch.zeros(3), torch.zeros(3), batch_size=True)
    with pytest.raises(TypeError, match="num_test: expected an int, got 2.0"):
        write_standin_mnist("unused", num_test=2.0)


def test_mnist_padding_from_the_input_shape():
    assert mnist_padding((1, 28, 28)) == 0
    assert mnist_padding((1, 32, 32)) == 2
    with pytest.raises(ValueError, match=r"input_shape: expected a square side of 28 \+ 2k pixels, got \(3, 31, 31\)"):
        mnist_padding((3, 31, 31))


# --- LeNet-5's border is the digits' background, not a light frame ----------------------

MNIST_BACKGROUND = (0.0 - 0.1307) / 0.3081  # a black pixel once normalised, about -0.4242


@pytest.mark.parametrize("in_memory", [False, True])
def test_lenet5_border_is_the_background(mnist_root, in_memory):
    train_loader, _ = get_dataloaders("mnist", mnist_root, batch_size=32, in_memory=in_memory, pad=2)
    images, _ = next(iter(train_loader))
    assert images.shape[-2:] == (32, 32)
    frame = torch.ones(32, 32, dtype=torch.bool)
    frame[2:-2, 2:-2] = False
    border = images[:, 0][:, frame]
    torch.testing.assert_close(border, torch.full_like(border, MNIST_BACKGROUND), rtol=0, atol=1e-6)
    # The digit's own black corner is the same value: no frame shows.
    torch.testing.assert_close(
        images[:, 0, 2, 2], torch.full_like(images[:, 0, 2, 2], MNIST_BACKGROUND), rtol=0, atol=1e-6
    )
