"""`cnnlesson train | evaluate | visualize | doctor`: the command line, wiring the modules.

Every mistake gets one line on stderr, before any training where it can be
known up front: bad flags exit with status 2; missing or corrupt data, a bad
checkpoint, an unwritable `--out`, a locked `--out` or a run that diverges
exit with status 1. Ctrl-C ends it by SIGINT, after one line on what was saved.
"""

import argparse
import contextlib
import json
import math
import os
import sys
from pathlib import Path
from typing import cast

import torch

import cnnlesson
import cnnlesson.device
from cnnlesson import models
from cnnlesson._interrupt import end_by_sigint, wraps_ctrl_c
from cnnlesson.checkpoint import load_model
from cnnlesson.files import atomic_path, check_can_create, lock_folder, what_is, write_text_atomic
from cnnlesson.train import EPOCHS_MAX, SEED_MAX, evaluate, train, write_history

# `data` (torchvision) and `viz` (matplotlib) are imported by the commands that
# use them, so that a mistake on the command line is reported in a second, not
# after seconds of imports. The keys are data.DATASETS (a test checks).
CHANNELS = {"mnist": 1, "cifar10": 3}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (the usage is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive(kind, most=math.inf):
    def parse(text: str):
        value = kind(text)
        # not 0 < value < inf also catches nan, which compares False to everything
        if not 0 < value <= most or value == math.inf:
            finite = " finite" if kind is float else ""
            up_to = f" up to {most}" if most < math.inf else ""
            raise argparse.ArgumentTypeError(f"expected a positive{finite} {kind.__name__}{up_to}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected an int from 0 to {SEED_MAX}, got {text}")
    return value


def _folder(text: str) -> Path:
    if not text:
        raise argparse.ArgumentTypeError("expected a folder, got an empty name")
    return Path(text)


_seed.__name__ = "int"
_folder.__name__ = "folder"


def _add_common(p: argparse.ArgumentParser, data_root_required: bool = False) -> None:
    p.add_argument(
        "--data-root", type=_folder, required=data_root_required,
        help="folder holding MNIST/ or cifar-10-batches-py/" + (" (required)" if data_root_required else "; default: the checkpoint's"),
    )  # fmt: skip
    p.add_argument(
        "--device", default=None,
        help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps; default: $CNNLESSON_DEVICE, else auto",
    )  # fmt: skip
    p.add_argument("--download", action="store_true", help="download the data set if it is missing")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `cnnlesson` command."""
    parser = _Parser(prog="cnnlesson", description="Train, evaluate and look inside the lesson's CNNs.")
    parser.add_argument("--version", action="version", version=f"cnnlesson {cnnlesson.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = commands.add_parser("train", help="train a model; write OUT/history.json and OUT/checkpoint.pt")
    p.add_argument(
        "--model", required=True, choices=sorted(models.MODELS), help="the lesson's model to train (required)"
    )
    p.add_argument(
        "--dataset", required=True, choices=list(CHANNELS), help="mnist (1 channel) or cifar10 (3 channels) (required)"
    )
    p.add_argument(
        "--epochs", type=_positive(int, EPOCHS_MAX), required=True,
        help=f"passes over the training set, 1 to {EPOCHS_MAX:,} (required)",
    )  # fmt: skip
    p.add_argument(
        "--batch-size", type=_positive(int), default=64,
        help="images per optimizer step; under torchrun the global batch, split evenly between the processes; "
        "default: %(default)s",
    )  # fmt: skip
    p.add_argument("--lr", type=_positive(float), default=0.001, help="Adam's learning rate; default: %(default)s")
    p.add_argument(
        "--seed", type=_seed, default=None,
        help="seed the weights and each epoch, 0 to 2**63-1: a reproducible run on the CPU; on a GPU add "
        "--deterministic; default: none (each run differs)",
    )  # fmt: skip
    p.add_argument(
        "--deterministic", action="store_true",
        help="deterministic GPU algorithms, no cuDNN autotuning, no TF32: seeded GPU runs repeat exactly, "
        "but train slower (no effect on the CPU, which is deterministic already)",
    )  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if it exists")
    p.add_argument("--overwrite", action="store_true", help="start afresh over an earlier run in OUT")
    p.add_argument(
        "--dataloader", action="store_true",
        help="feed batches with the lesson's DataLoader (per-sample transforms every epoch) "
        "instead of tensors decoded once into memory",
    )  # fmt: skip
    p.add_argument(
        "--standin", action="store_true",
        help="read stand-in CIFAR-10 written by cnnlesson.standin.write_standin_cifar10 (tests and docs)",
    )  # fmt: skip
    p.add_argument("--out", type=_folder, required=True, help="folder for history.json and checkpoint.pt (required)")
    _add_common(p, data_root_required=True)

    p = commands.add_parser("evaluate", help="print the test accuracy of a checkpoint")
    p.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint.pt written by train (required)")
    _add_common(p)

    p = commands.add_parser(
        "export", help="write an MNIST model's layers and weights as JSON, for the feature-maps page's live network"
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint.pt written by train (required)")
    p.add_argument("--out", type=_folder, required=True, help="the JSON file to write, such as my-net.json (required)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(device="cpu")  # nothing runs on a device: the weights are read and written

    p = commands.add_parser("visualize", help="write feature-map, filter, curve and prediction PNGs")
    p.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint.pt written by train (required)")
    p.add_argument("--out", type=_folder, required=True, help="folder for the four PNG files (required)")
    _add_common(p)

    p = commands.add_parser("doctor", help="check Python, torch, the device and the data; say what to fix")
    p.add_argument("--data-root", type=_folder, default=Path("data"), help="data folder to check; default: data")
    return parser


def _check_flags(args, parser):
    """Everything about `train`'s flags and environment that is wrong before any file is read; return the torchrun launch."""
    if models.MODELS[args.model].input_shape[0] != CHANNELS[args.dataset]:
        fits = [m for m, cls in sorted(models.MODELS.items()) if cls.input_shape[0] == CHANNELS[args.dataset]]
        parser.error(f"--model {args.model} does not take {args.dataset} images; for {args.dataset} use one of {fits}")
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite contradict each other; pass one")
    if args.standin and args.dataset != "cifar10":
        parser.error("--standin reads stand-in CIFAR-10; stand-in MNIST needs no flag")
    from cnnlesson import distributed  # torch.distributed: imported once the other flags are fine

    try:
        launch = distributed.torchrun_launch()
    except ValueError as err:
        parser.error(str(err))
    if launch is not None and args.batch_size % launch.world_size:
        parser.error(
            f"--batch-size: expected a multiple of the world size {launch.world_size} (WORLD_SIZE), "
            f"so that each process takes the same share; got {args.batch_size}"
        )
    return launch


def _check_earlier_run(args, parser) -> None:
    """Refuse to train over a run in --out unless --resume or --overwrite says what to do with it."""
    earlier = []
    for path in (args.out / "checkpoint.pt", args.out / "history.json"):
        if os.path.lexists(path) and not path.is_file():
            raise OSError(f"--out: {path} is not a file ({what_is(path)}); move it out of the way")
        if path.exists():
            earlier.append(path.name)
    if earlier and not (args.resume or args.overwrite):
        parser.error(
            f"--out {args.out} already holds a run ({', '.join(earlier)}); pass --resume to continue it or --overwrite to replace it"
        )


def _check_writable(folder: Path) -> None:
    """Create `folder` if missing and a new file in it, so a bad --out fails before any work."""
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"--out: {folder} is a file, not a folder")
    try:
        check_can_create(folder)  # a probe file of a new name: no file already in --out is touched
    except OSError as err:
        raise OSError(f"--out: cannot create files in {folder} ({err.strerror or err})") from None


@contextlib.contextmanager
def _locked(folder: Path):
    """`lock_folder(folder)`, its errors naming --out."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(lock_folder(folder))
        except OSError as err:
            raise type(err)(f"--out: {err}") from None
        yield folder


def _cmd_train(args, parser, device) -> int:
    launch = _check_flags(args, parser)
    args.saved_before = _stamp(args.out / "checkpoint.pt")  # to tell, on Ctrl-C, whether this run saved one
    if launch is not None:
        device = launch.device(device)  # this rank's own GPU
    # Only rank 0 of a torchrun job writes --out, so it alone holds the lock;
    # any other run holds it, or stops here.
    with _locked(args.out) if launch is None or launch.rank == 0 else contextlib.nullcontext():
        # Both checks under the lock: a run that ended a moment ago has written
        # its files by now, and an existing lock file says nothing about
        # whether new files can be made (a folder made read-only since).
        _check_earlier_run(args, parser)
        if launch is None or launch.rank == 0:
            _check_writable(args.out)
        from cnnlesson import data, distributed

        if args.deterministic:
            cnnlesson.device.set_deterministic()
        if args.seed is not None:
            torch.manual_seed(args.seed)  # the initial weights
        net = models.build_model(args.model)
        pad = data.mnist_padding(cast(tuple[int, ...], net.input_shape)) if args.dataset == "mnist" else 0
        train_loader, test_loader = data.get_dataloaders(
            args.dataset, args.data_root, args.batch_size, download=args.download,
            pad=pad, in_memory=not args.dataloader, device=device, standin=args.standin,
        )  # fmt: skip
        meta = {
            "model": args.model, "dataset": args.dataset, "pad": pad, "seed": args.seed, "standin": args.standin,
            "data_root": str(args.data_root.resolve()),  # absolute: evaluate may run from another folder
            "batch_size": args.batch_size,  # a resumed run says when it changes, as it does for --lr
        }  # fmt: skip
        fit = train if launch is None else distributed.train
        history = fit(
            net, train_loader, test_loader, num_epochs=args.epochs, lr=args.lr, device=device, seed=args.seed,
            checkpoint=args.out / "checkpoint.pt", resume=args.resume, meta=meta, history_file=args.out / "history.json",
        )  # fmt: skip
        if launch is not None and launch.rank != 0:
            return 0  # rank 0 alone writes and prints
        write_history(args.out / "history.json", history)  # also when a resumed run had no epoch left to do
    last = history[-1]
    seconds = sum(r["seconds"] for r in history)
    print(
        f"test accuracy {last['test_accuracy']:.4f} after {last['epoch']} epochs ({seconds:.1f} s of training on {device})"
    )
    print(f"wrote {args.out / 'history.json'} and {args.out / 'checkpoint.pt'}")
    return 0


def _stamp(path: Path):
    """What tells whether `path` was written since: its inode and change time, or None."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns


def _interrupted(args) -> str:
    """What an interrupted command left, and how to go on."""
    if args.command != "train" or not hasattr(args, "saved_before"):
        return "interrupted; nothing was written"
    checkpoint = args.out / "checkpoint.pt"
    saved = _stamp(checkpoint)
    if saved is not None and (args.resume or saved != args.saved_before):
        return f"interrupted; the last checkpoint is {checkpoint}: to go on, run the command again with --resume"
    if saved is not None:
        return f"interrupted before this run saved an epoch; {args.out} holds the earlier run, unchanged"
    return "interrupted before the first epoch ended; nothing was saved"


def _dataset_of(model: str) -> str:
    """The data set whose images `model` takes, by its input channels (MNIST 1, CIFAR-10 3)."""
    channels = models.MODELS[model].input_shape[0]
    return next(name for name, count in CHANNELS.items() if count == channels)


def _restore(args, device):
    """Rebuild the checkpoint's model (one read of the file) and its test loader."""
    from cnnlesson import data

    net, state = load_model(args.checkpoint)  # also checks the weights, the history and meta's types
    meta = state["meta"]
    if "dataset" not in meta:
        # train(..., checkpoint=...) records only the model and seed; the model says which images it takes.
        meta["dataset"] = _dataset_of(meta["model"])
        if args.data_root is None:
            folder = "MNIST/" if meta["dataset"] == "mnist" else "cifar-10-batches-py/"
            raise ValueError(
                f"checkpoint: {args.checkpoint} records no data set or data folder (saved by cnnlesson.train.train?); "
                f"pass --data-root, the folder holding {folder}"
            )
    if meta["dataset"] not in CHANNELS:
        raise ValueError(
            f"checkpoint: {args.checkpoint} holds data set {meta['dataset']!r}, expected one of {list(CHANNELS)}"
        )
    if meta["dataset"] != _dataset_of(meta["model"]):
        raise ValueError(
            f"checkpoint: {args.checkpoint} holds model {meta['model']}, which does not take {meta['dataset']} images"
        )
    # Checked before any image is read: a crafted pad would make every image enormous.
    pad = data.mnist_padding(cast(tuple[int, ...], net.input_shape)) if meta["dataset"] == "mnist" else 0
    if meta.get("pad", pad) != pad:
        raise ValueError(
            f"checkpoint: {args.checkpoint} has meta['pad']={meta['pad']}, but {meta['model']} on {meta['dataset']} takes pad={pad}"
        )
    root = args.data_root or meta.get("data_root")
    if root is None:
        raise ValueError(
            f"checkpoint: {args.checkpoint} does not record where its data is (meta['data_root']); pass --data-root"
        )
    _, test_loader = data.get_dataloaders(
        meta["dataset"], root, download=args.download, pad=pad, standin=meta.get("standin", False)
    )  # fmt: skip
    return state, net.to(device), test_loader


def _cmd_evaluate(args, parser, device) -> int:
    state, net, test_loader = _restore(args, device)
    accuracy = evaluate(net, test_loader, device)
    print(
        f"test accuracy {accuracy:.4f} ({len(test_loader.dataset)} {state['meta']['dataset']} test images, {state['meta']['model']})"
    )
    return 0


def _cmd_visualize(args, parser, device) -> int:
    from cnnlesson import data, viz

    state, net, test_loader = _restore(args, device)  # a bad checkpoint makes no --out folder
    created = not os.path.lexists(args.out)
    _check_writable(args.out)
    images, labels = next(iter(test_loader))
    classes = data.CIFAR10_CLASSES if state["meta"]["dataset"] == "cifar10" else None
    figures = {
        "feature_maps.png": lambda p: viz.visualize_feature_maps(net, images[0], p),
        "filters.png": lambda p: viz.plot_filters(viz.first_conv(net), p),
        "predictions.png": lambda p: viz.plot_predictions(net, images[:16], labels[:16], classes, p),
        "history.png": lambda p: viz.plot_history(state["history"], p),
    }
    # All or nothing: each figure goes to a temporary file, and they replace the
    # real names only once every one of them is drawn.
    try:
        with contextlib.ExitStack() as stack:
            for name, draw in figures.items():
                viz.close(draw(stack.enter_context(atomic_path(args.out / name))))
    except BaseException:
        if created:
            with contextlib.suppress(OSError):  # not empty: something else wrote there meanwhile
                args.out.rmdir()
        raise
    for name in figures:
        print(f"wrote {args.out / name}")
    return 0


def _cmd_export(args, parser, device) -> int:
    from cnnlesson import export

    out = args.out
    if os.path.lexists(out) and not out.is_file():
        raise IsADirectoryError(f"--out: {out} is not a file (a folder?); name a file such as my-net.json")
    if out.exists() and not args.overwrite:
        parser.error(f"--out {out} already exists; pass --overwrite to replace it")
    net, state = load_model(args.checkpoint)  # also checks the weights are finite and fit the model
    model = state["meta"]["model"]
    dataset = state["meta"].get("dataset", _dataset_of(model))
    if dataset != "mnist" or _dataset_of(model) != "mnist":
        raise ValueError(
            f"checkpoint: {args.checkpoint} holds {model} trained on {dataset}; the page runs MNIST models "
            "(mnistnet, lenet5, cnnwithbn trained with --dataset mnist)"
        )
    text = json.dumps(export.export_net(net))  # every check passed: only now is anything written
    write_text_atomic(out, text)
    size = len(text) / 1e6
    print(f"wrote {out} ({model}, {size:.1f} MB); open it with 'Load your own network' on the feature-maps page")
    return 0


def _one_line(message: str) -> str:
    """`message` on one line, with control characters (a NUL in a crafted path) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in " ".join(message.split()))


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "doctor":  # before get_device: a bad CNNLESSON_DEVICE is one of its diagnoses
        from cnnlesson import doctor

        return doctor.run(args.data_root)
    try:
        device = cnnlesson.device.get_device(args.device)
    except ValueError as err:
        # get_device names the value "device" (the argument) or CNNLESSON_DEVICE; here the argument is --device.
        parser.error(str(err) if args.device is None else "--device: " + str(err).removeprefix("device: "))
    commands = {"train": _cmd_train, "evaluate": _cmd_evaluate, "visualize": _cmd_visualize, "export": _cmd_export}
    command = commands[args.command]
    try:
        return command(args, parser, device)
    except KeyboardInterrupt:
        pass
    # OSError: unwritable --out, full disk, a lock, missing data; RuntimeError: a diverged run, torch refusing a value.
    except (OSError, ValueError, RuntimeError) as err:
        if not wraps_ctrl_c(err):
            print(f"cnnlesson {args.command}: error: {_one_line(str(err))}", file=sys.stderr)
            return 1
    # Ctrl-C: the lock and temporary files are gone by now.
    print(f"cnnlesson {args.command}: {_one_line(_interrupted(args))}", file=sys.stderr)
    return 130


def run() -> None:
    """The `cnnlesson` program: run `main()` and exit with its status, or by SIGINT after Ctrl-C."""
    try:
        status = main()
    except BaseException as err:  # a Ctrl-C outside the command's own handler (building the parser, parsing)
        if not wraps_ctrl_c(err):
            raise
        print("cnnlesson: interrupted; nothing was written", file=sys.stderr)
        status = 130
    if status == 130:
        end_by_sigint()
    sys.exit(status)


if __name__ == "__main__":
    run()
