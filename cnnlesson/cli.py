"""`cnnlesson train | evaluate | visualize`: the command line, wiring the modules.

Bad flags exit with status 2 (argparse's message); missing data or a bad
checkpoint exit with status 1 and one line saying what is wrong.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from cnnlesson import data, models, viz
from cnnlesson.device import set_deterministic
from cnnlesson.files import write_text_atomic
from cnnlesson.train import evaluate, get_device, load_checkpoint, train

CHANNELS = {"mnist": 1, "cifar10": 3}


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", type=Path, help="folder holding MNIST/ or cifar-10-batches-py/")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")
    p.add_argument("--download", action="store_true", help="download the data set if it is missing")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `cnnlesson` command."""
    parser = argparse.ArgumentParser(prog="cnnlesson", description="Train, evaluate and look inside the lesson's CNNs.")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("train", help="train a model; write OUT/history.json and OUT/checkpoint.pt")
    p.add_argument("--model", required=True, choices=sorted(models.MODELS))
    p.add_argument("--dataset", required=True, choices=data.DATASETS)
    p.add_argument("--epochs", type=_positive(int), required=True)
    p.add_argument("--batch-size", type=_positive(int), default=64)
    p.add_argument("--lr", type=_positive(float), default=0.001)
    p.add_argument(
        "--seed", type=int, default=None,
        help="seed the weights and each epoch: a reproducible run on the CPU; on a GPU add --deterministic",
    )  # fmt: skip
    p.add_argument(
        "--deterministic", action="store_true",
        help="deterministic GPU algorithms, no cuDNN autotuning, no TF32: seeded GPU runs repeat exactly, "
        "but train slower (no effect on the CPU, which is deterministic already)",
    )  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if it exists")
    p.add_argument(
        "--dataloader", action="store_true",
        help="feed batches with the lesson's DataLoader (per-sample transforms every epoch) "
        "instead of tensors decoded once into memory",
    )  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="folder for history.json and checkpoint.pt")
    _add_common(p)

    p = commands.add_parser("evaluate", help="print the test accuracy of a checkpoint")
    p.add_argument("--checkpoint", type=Path, required=True)
    _add_common(p)

    p = commands.add_parser("visualize", help="write feature-map, filter, curve and prediction PNGs")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    _add_common(p)
    return parser


def _cmd_train(args, parser, device) -> int:
    if args.data_root is None:
        parser.error("train: the following arguments are required: --data-root")
    if models.MODELS[args.model].input_shape[0] != CHANNELS[args.dataset]:
        fits = [m for m, cls in sorted(models.MODELS.items()) if cls.input_shape[0] == CHANNELS[args.dataset]]
        parser.error(f"--model {args.model} does not take {args.dataset} images; for {args.dataset} use one of {fits}")
    if args.deterministic:
        set_deterministic()
    if args.seed is not None:
        torch.manual_seed(args.seed)  # the initial weights
    net = models.build_model(args.model)
    pad = data.mnist_padding(net.input_shape) if args.dataset == "mnist" else 0
    train_loader, test_loader = data.get_dataloaders(
        args.dataset, args.data_root, args.batch_size, download=args.download,
        pad=pad, in_memory=not args.dataloader, device=device,
    )  # fmt: skip
    meta = {"model": args.model, "dataset": args.dataset, "pad": pad, "data_root": str(args.data_root), "seed": args.seed}
    history = train(
        net, train_loader, test_loader, num_epochs=args.epochs, lr=args.lr, device=device,
        seed=args.seed, checkpoint=args.out / "checkpoint.pt", resume=args.resume, meta=meta,
    )  # fmt: skip
    write_text_atomic(args.out / "history.json", json.dumps(history, indent=2) + "\n")
    last = history[-1]
    seconds = sum(r["seconds"] for r in history)
    print(f"test accuracy {last['test_accuracy']:.4f} after {last['epoch']} epochs ({seconds:.1f} s of training on {device})")
    print(f"wrote {args.out / 'history.json'} and {args.out / 'checkpoint.pt'}")
    return 0


def _restore(args, device):
    """Rebuild the checkpoint's model and its test loader."""
    state = load_checkpoint(args.checkpoint)
    meta = state["meta"]
    net = models.build_model(meta["model"])
    load_checkpoint(args.checkpoint, net)
    root = args.data_root or meta["data_root"]
    _, test_loader = data.get_dataloaders(meta["dataset"], root, download=args.download, pad=meta["pad"])
    return state, net.to(device), test_loader


def _cmd_evaluate(args, parser, device) -> int:
    state, net, test_loader = _restore(args, device)
    accuracy = evaluate(net, test_loader, device)
    print(f"test accuracy {accuracy:.4f} ({len(test_loader.dataset)} {state['meta']['dataset']} test images, {state['meta']['model']})")
    return 0


def _cmd_visualize(args, parser, device) -> int:
    state, net, test_loader = _restore(args, device)
    images, labels = next(iter(test_loader))
    classes = data.CIFAR10_CLASSES if state["meta"]["dataset"] == "cifar10" else None
    figures = {
        "feature_maps.png": lambda p: viz.visualize_feature_maps(net, images[0], p),
        "filters.png": lambda p: viz.plot_filters(viz.first_conv(net), p),
        "predictions.png": lambda p: viz.plot_predictions(net, images[:16], labels[:16], classes, p),
        "history.png": lambda p: viz.plot_history(state["history"], p),
    }
    for name, draw in figures.items():
        viz.plt.close(draw(args.out / name))
        print(f"wrote {args.out / name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        device = get_device(args.device)
    except ValueError as err:
        parser.error(f"--device: {err}")
    command = {"train": _cmd_train, "evaluate": _cmd_evaluate, "visualize": _cmd_visualize}[args.command]
    try:
        return command(args, parser, device)
    except (data.DataNotFoundError, FileNotFoundError, ValueError) as err:
        print(f"cnnlesson {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
