"""Benchmark: cnnlesson's trainer against the lesson's own training loop, same steps.

Both train MNISTNet with Adam (lr 0.001, batch 64) for one epoch over the same
digits. The lesson's loop reads them through torchvision's MNIST with
`ToTensor`/`Normalize` per sample and a shuffling DataLoader, as section 5
writes it; the trainer decodes them once into tensors (on the GPU when there
is one) and draws shuffled batches from memory. The ratio is images/s of the
trainer over images/s of the lesson's loop, timed side by side.
"""

import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from benchmarks.realdata import real_mnist_root
from benchmarks.timing import time_side_by_side
from cnnlesson.data import get_dataloaders, write_standin_mnist
from cnnlesson.models import MNISTNet
from cnnlesson.train import train

TARGETS = {"cpu": 1.0, "cuda": 10.0}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def lesson_epoch(root: Path, device: torch.device) -> int:
    """One epoch of the lesson's section-5 loop (plus `.to(device)`); returns the images seen."""
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train_data = datasets.MNIST(root, train=True, download=True, transform=transform)
    train_loader = DataLoader(train_data, batch_size=64, shuffle=True)
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
    return len(train_data)


def run(out_dir: Path, quick: bool = False, work: Path | None = None, device: str = "cpu") -> dict:
    """Time both on `device`; return images/s of each, the ratio and the target."""
    device = torch.device(device)
    work = Path(work or out_dir)
    root = None if quick else real_mnist_root(work)
    data = "real MNIST digits (../shared split)" if root else "stand-in digits"
    if root is None:
        root = work / "standin-trainer"
        write_standin_mnist(root, num_train=512 if quick else 4000, num_test=64)
    start = time.perf_counter()
    train_loader, _ = get_dataloaders("mnist", root, batch_size=64, in_memory=True, device=device)
    _sync(device)
    decode_seconds = time.perf_counter() - start
    images = len(train_loader.X)

    def trainer_epoch():
        train(MNISTNet(), train_loader, num_epochs=1, device=device, progress=False)
        _sync(device)

    seconds = time_side_by_side(
        {"lesson": lambda: lesson_epoch(root, device), "trainer": trainer_epoch},
        repeat=1 if quick else 3,
        warmup=0 if quick else 1,
    )
    lesson_ips, trainer_ips = images / seconds["lesson"], images / seconds["trainer"]
    return {
        "device": str(device),
        "data": data,
        "images_per_epoch": images,
        "steps": len(train_loader),
        "batch_size": 64,
        "lesson_images_per_second": round(lesson_ips, 1),
        "trainer_images_per_second": round(trainer_ips, 1),
        "ratio": round(trainer_ips / lesson_ips, 3),
        "decode_seconds": round(decode_seconds, 3),
        "ratio_first_epoch_with_decode": round(seconds["lesson"] / (seconds["trainer"] + decode_seconds), 3),
        "target": TARGETS.get(device.type),
    }
