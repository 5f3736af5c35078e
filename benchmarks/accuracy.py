"""Benchmark: test accuracy of MNISTNet, CNNWithBN and LeNet5 on real handwritten digits.

Each model trains for 3 epochs (the CLI's defaults: Adam, lr 0.001, batch 64,
seed 0) on the first 8,000 of the 10,000 real MNIST test digits and is
tested on the other 2,000 after every epoch. Without ../shared (a fresh
clone) this part says so and is skipped.
"""

from pathlib import Path

import torch
from tqdm.auto import tqdm

from benchmarks.realdata import MISSING, real_mnist_root
from cnnlesson.data import TensorLoader, get_dataloaders, mnist_padding
from cnnlesson.models import build_model, count_parameters
from cnnlesson.train import train

MODELS = ("mnistnet", "cnnwithbn", "lenet5")


def _plot(models: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    from cnnlesson.viz import save_figure

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, result in models.items():
        accuracy = result["test_accuracy"]
        ax.plot(range(1, len(accuracy) + 1), [100 * a for a in accuracy], "o-", label=name)
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="Real MNIST digits: 8,000 train / 2,000 test")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def run(out_dir: Path, quick: bool = False, work: Path | None = None) -> dict:
    """Train each model on the real split; return per-epoch test accuracy and time."""
    root = real_mnist_root(Path(work or out_dir))
    if root is None:
        return {"skipped": MISSING}
    epochs = 1 if quick else 3
    loaders = {}  # decoded once per padding: LeNet-5 wants 32x32
    results = {}
    for name in tqdm(MODELS, desc="accuracy", unit="model"):
        torch.manual_seed(0)
        net = build_model(name)
        pad = mnist_padding(net.input_shape)
        if pad not in loaders:
            loaders[pad] = get_dataloaders("mnist", root, batch_size=64, in_memory=True, pad=pad)
        train_loader, test_loader = loaders[pad]
        if quick:  # a few batches: the code path, not the number
            train_loader = TensorLoader(train_loader.X[:512], train_loader.y[:512], batch_size=64, shuffle=True)
            test_loader = TensorLoader(test_loader.X[:256], test_loader.y[:256], batch_size=256)
        history = train(net, train_loader, test_loader, num_epochs=epochs, device="cpu", seed=0, progress=False)
        results[name] = {
            "parameters": count_parameters(net),
            "test_accuracy": [round(r["test_accuracy"], 4) for r in history],
            "final_test_accuracy": round(history[-1]["test_accuracy"], 4),
            "train_seconds": round(sum(r["seconds"] for r in history), 1),
        }
    _plot(results, out_dir / "accuracy_curves.png")
    return {
        "data": "real MNIST digits: first 8,000 of the t10k set to train, last 2,000 to test",
        "train_images": len(train_loader.X),
        "test_images": len(test_loader.X),
        "epochs": epochs,
        "models": results,
        "figures": ["accuracy_curves.png"],
    }
