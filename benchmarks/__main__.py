"""Run every benchmark and write the results file the "Measured results" page shows.

    python -m benchmarks            # all of it, about 10 minutes on 2 cores
    python -m benchmarks --quick    # a few seconds a part: the code paths (the tests run this)

Writes OUT/results.json (with the machine it ran on) and the figures next to
it; OUT defaults to docs/results, which the site renders at build time.
"""

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy
import torch
import torchvision
from tqdm.auto import tqdm

from benchmarks import accuracy, conv, costs, figures, trainer
from benchmarks.realdata import REPO
from cnnlesson.files import write_text_atomic

PARTS = ("conv", "trainer", "accuracy", "figures", "costs")


def cpu_model() -> str:
    """The processor's name from /proc/cpuinfo, else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """What the numbers were measured on."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(terse=True),
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the chosen parts, write OUT/results.json, and return the results."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that every part runs")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results", help="folder for results.json and figures")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="run only these parts")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {
        "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m benchmarks" + (" --quick" if args.quick else ""),
        "quick": args.quick,
        "machine": machine(),
    }
    with tempfile.TemporaryDirectory() as work:
        runs = {
            "conv": lambda: conv.run(args.out, quick=args.quick),
            "trainer": lambda: {
                device: trainer.run(args.out, quick=args.quick, work=Path(work), device=device) if ok else None
                for device, ok in (("cpu", True), ("cuda", torch.cuda.is_available()))
            },
            "accuracy": lambda: accuracy.run(args.out, quick=args.quick, work=Path(work)),
            "figures": lambda: figures.run(args.out, quick=args.quick, work=Path(work)),
            "costs": lambda: costs.run(args.out, quick=args.quick),
        }
        for part in tqdm(args.only, desc="benchmarks", unit="part"):
            results[part] = runs[part]()
            tqdm.write(f"{part}: {json.dumps(results[part])[:300]}")
    write_text_atomic(args.out / "results.json", json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)
