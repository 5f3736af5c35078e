"""Benchmark: cnnlesson's trainer against the lesson's own training loop, same steps.

Both train MNISTNet with Adam (lr 0.001, batch 64) for one epoch over the same
digits. The lesson's loop reads them through torchvision's MNIST with
`ToTensor`/`Normalize` per sample and a shuffling DataLoader, as section 5
writes it; the trainer decodes them once into tensors (on the GPU when there
is one) and draws shuffled batches from memory.

Both contestants time the same work: one epoch, with their data already set
up (the lesson's `datasets.MNIST` and `DataLoader`, the trainer's decoded
tensors). Each setup is timed apart, once, and a second ratio counts it into
a single epoch. Each contestant is timed in its own block (warm-up epoch,
then rounds, median).
"""

import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from benchmarks.realdata import timing_digits
from benchmarks.timing import time_alone
from cnnlesson.data import get_dataloaders
from cnnlesson.models import MNISTNet
from cnnlesson.train import train

TARGETS = {"cpu": 1.0, "cuda": 10.0}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def lesson_loader(root: Path) -> DataLoader:
    """The lesson's section-5 data: torchvision's MNIST with ToTensor + Normalize, shuffled batches of 64."""
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train_data = datasets.MNIST(root, train=True, download=True, transform=transform)
    return DataLoader(train_data, batch_size=64, shuffle=True)


def lesson_epoch(train_loader: DataLoader, device: torch.device) -> int:
    """One epoch of the lesson's section-5 loop (plus `.to(device)`); returns the images seen."""
    model = MNISTNet().to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    for images, labels in train_loader:
        images, labels = images.to(device), labels.to(device)
        outputs = model(images)
        loss = criterion(outputs, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    _sync(device)
    return len(train_loader.dataset)


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(out_dir: Path, quick: bool = False, work: Path | None = None, device: str = "cpu") -> dict:
    """Time both on `device`; return images/s of each, the ratio and the target."""
    device = torch.device(device)
    work = Path(work or out_dir)
    root, data = timing_digits(work, quick, "standin-trainer", num_train=512)

    loaders = {}
    lesson_setup = _seconds(lambda: loaders.setdefault("lesson", lesson_loader(root)))

    def decode():
        loaders["trainer"], _ = get_dataloaders("mnist", root, batch_size=64, in_memory=True, device=device)
        _sync(device)

    trainer_setup = _seconds(decode)
    train_loader = loaders["trainer"]
    images = len(train_loader.X)
    if images != len(loaders["lesson"].dataset):
        raise RuntimeError(
            f"the two contestants see different data: {images} and {len(loaders['lesson'].dataset)} images"
        )

    def trainer_epoch():
        train(MNISTNet(), train_loader, num_epochs=1, device=device, progress=False)
        _sync(device)

    rounds, warmup = (1, 0) if quick else (3, 1)
    lesson_s = time_alone(lambda: lesson_epoch(loaders["lesson"], device), rounds, warmup, 0.0)["median_ms"] / 1e3
    trainer_s = time_alone(trainer_epoch, rounds, warmup, 0.0)["median_ms"] / 1e3
    lesson_ips, trainer_ips = images / lesson_s, images / trainer_s
    return {
        "device": str(device),
        "data": data,
        "images_per_epoch": images,
        "steps": len(train_loader),
        "batch_size": 64,
        "rounds": rounds,
        "warmup": warmup,
        "lesson_images_per_second": round(lesson_ips, 1),
        "trainer_images_per_second": round(trainer_ips, 1),
        "ratio": round(trainer_ips / lesson_ips, 3),
        "lesson_setup_seconds": round(lesson_setup, 3),
        "decode_seconds": round(trainer_setup, 3),
        "ratio_first_epoch_with_setup": round((lesson_setup + lesson_s) / (trainer_setup + trainer_s), 3),
        "target": TARGETS.get(device.type),
    }
