"""Benchmark: test accuracy of MNISTNet, CNNWithBN and LeNet5 on real handwritten digits.

Each model trains for 3 epochs (the CLI's defaults: Adam, lr 0.001, batch 64)
on the first 8,000 of the 10,000 digits of MNIST's test set (t10k) and is
tested on the other 2,000 after every epoch, once per seed (0, 1, 2).
One run on 2,000 test digits has a standard error of about 0.3 %, so the
results are the mean and the sample standard deviation over the seeds.
Without ../shared (a fresh clone) this part says so and is skipped.
"""

import math
import statistics
from pathlib import Path

import torch
from tqdm.auto import tqdm

from benchmarks.realdata import MISSING, real_mnist_root
from cnnlesson.data import TensorLoader, get_dataloaders, mnist_padding
from cnnlesson.models import build_model, count_parameters
from cnnlesson.train import train

MODELS = ("mnistnet", "cnnwithbn", "lenet5")
SEEDS = (0, 1, 2)


def _plot(models: dict, path: Path, split: tuple[int, int] | None = None) -> None:
    import matplotlib.pyplot as plt

    from cnnlesson.viz import save_figure

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, result in models.items():
        mean, std = result["test_accuracy"], result["test_accuracy_std"]
        epochs = range(1, len(mean) + 1)
        ax.errorbar(epochs, [100 * a for a in mean], yerr=[100 * s for s in std], fmt="o-", capsize=3, label=name)
    seeds = len(next(iter(models.values()))["final_test_accuracy_by_seed"])
    ax.set(
        xlabel="epoch",
        ylabel=f"test accuracy (%), mean ± std over {seeds} seeds",
        title="MNIST's test set, split" + (f": {split[0]:,} digits to train, {split[1]:,} to test" if split else ""),
    )
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def run(out_dir: Path, quick: bool = False, work: Path | None = None) -> dict:
    """Train each model on the real split once per seed; return per-epoch mean and std of test accuracy."""
    root = real_mnist_root(Path(work or out_dir))
    if root is None:
        return {"skipped": MISSING}
    epochs = 1 if quick else 3
    loaders = {}  # decoded once per padding: LeNet-5 wants 32x32
    seeds = SEEDS[:2] if quick else SEEDS
    runs = [(name, seed) for name in MODELS for seed in seeds]
    histories: dict[str, list] = {name: [] for name in MODELS}
    for name, seed in tqdm(runs, desc="accuracy", unit="run"):
        torch.manual_seed(seed)
        net = build_model(name)
        pad = mnist_padding(net.input_shape)
        if pad not in loaders:
            loaders[pad] = get_dataloaders("mnist", root, batch_size=64, in_memory=True, pad=pad)
        train_loader, test_loader = loaders[pad]
        if quick:  # a few batches: the code path, not the number
            train_loader = TensorLoader(train_loader.X[:128], train_loader.y[:128], batch_size=64, shuffle=True)
            test_loader = TensorLoader(test_loader.X[:64], test_loader.y[:64], batch_size=64)
        history = train(net, train_loader, test_loader, num_epochs=epochs, device="cpu", seed=seed, progress=False)
        histories[name].append((count_parameters(net), history))
    results = {}
    for name, seen in histories.items():
        per_epoch = list(zip(*[[r["test_accuracy"] for r in history] for _, history in seen]))
        finals = [history[-1]["test_accuracy"] for _, history in seen]
        results[name] = {
            "parameters": seen[0][0],
            "test_accuracy": [round(statistics.mean(accs), 4) for accs in per_epoch],
            "test_accuracy_std": [round(_spread(accs), 4) for accs in per_epoch],
            "final_test_accuracy": round(statistics.mean(finals), 4),
            "final_test_accuracy_std": round(_spread(finals), 4),
            "final_test_accuracy_by_seed": [round(a, 4) for a in finals],
            "train_seconds": round(statistics.mean(sum(r["seconds"] for r in history) for _, history in seen), 1),
        }
    split = (len(train_loader.X), len(test_loader.X))
    for result in results.values():
        # One run's binomial standard error on this many test digits: the noise in a single accuracy.
        p = result["final_test_accuracy"]
        result["standard_error"] = round(math.sqrt(p * (1 - p) / split[1]), 4)
    _plot(results, out_dir / "accuracy_curves.png", split)
    return {
        "data": (
            f"real MNIST digits: MNIST's test set (t10k), its first {split[0]:,} digits to train, "
            f"the last {split[1]:,} to test"
        ),
        "seeds": list(seeds),
        "train_images": split[0],
        "test_images": split[1],
        "epochs": epochs,
        "models": results,
        "figures": ["accuracy_curves.png"],
    }
