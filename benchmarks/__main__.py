"""Run every benchmark and write the results file the "Measured results" page shows.

    python -m benchmarks            # all of it, about 15 minutes on 2 idle cores
    python -m benchmarks --quick    # a few seconds a part: the code paths (the tests run this)

Writes OUT/results.json (with the machine it ran on, the git commit, whether
the tree was dirty and a hash of the measured code) and the figures next to
it; OUT defaults to docs/results, which the site renders at build time.
"""

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy
import torch
import torchvision
from tqdm.auto import tqdm

from benchmarks import accuracy, conv, costs, distributed, figures, pageweight, trainer
from benchmarks.provenance import provenance
from benchmarks.realdata import REPO
from benchmarks.timing import pin_allocator, thread_pools
from cnnlesson.files import write_text_atomic

PARTS = ("conv", "trainer", "distributed", "accuracy", "figures", "pageweight", "costs")
# The parts that build the site, which quotes every part: they run last, on an interim results.json.
SITE_PARTS = ("pageweight", "costs")


def pending(part: str) -> dict:
    """What the interim results.json says of a site part not yet measured (with what the pages quote of it)."""
    return {"skipped": "still being measured by this run", **(pageweight.settings() if part == "pageweight" else {})}


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
        "thread_pools": thread_pools(),  # as threadpoolctl reads them, not guessed from the environment
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
    parser.add_argument(
        "--out", type=Path, default=REPO / "docs" / "results", help="folder for results.json and figures"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        help="run only these parts (the file keeps the others when they measured the same code)",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # Every part, both contestants alike: freed memory stays in the process (see benchmarks.timing).
    # Not for --quick, which measures nothing worth quoting (and runs inside the test suite's process).
    allocator = "left as it is (--quick)" if args.quick else pin_allocator() or "left as it is (not glibc)"
    results = {
        "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m benchmarks" + (" --quick" if args.quick else ""),
        "quick": args.quick,
        "provenance": provenance(),  # before anything is written: results.json and figures are tracked
        "machine": {**machine(), "allocator": allocator},
    }
    with tempfile.TemporaryDirectory() as work:
        runs = {
            "conv": lambda: conv.run(args.out, quick=args.quick),
            "trainer": lambda: {
                device: trainer.run(args.out, quick=args.quick, work=Path(work), device=device) if ok else None
                for device, ok in (("cpu", True), ("cuda", torch.cuda.is_available()))
            },
            "distributed": lambda: {
                device: distributed.run(args.out, quick=args.quick, work=Path(work), device=device) if ok else None
                for device, ok in (("cpu", True), ("cuda", torch.cuda.is_available()))
            },
            "accuracy": lambda: accuracy.run(args.out, quick=args.quick, work=Path(work)),
            "figures": lambda: figures.run(args.out, quick=args.quick, work=Path(work)),
            "pageweight": lambda: pageweight.run(args.out, quick=args.quick, work=Path(work)),
            "costs": lambda: costs.run(args.out, quick=args.quick),
        }
        for part in tqdm(args.only, desc="benchmarks", unit="part"):
            if part in SITE_PARTS and not args.quick:
                # These parts build the site (and costs runs the suite): let them read this
                # run's numbers, not the previous file's, which measured other code.
                previous = args.out / "results.json"
                interim = {
                    **(json.loads(previous.read_text()) if previous.exists() else {}),
                    **results,
                    **{later: pending(later) for later in SITE_PARTS if later in args.only and later not in results},
                    "wall_seconds": round(time.perf_counter() - start),
                }  # so far
                write_text_atomic(args.out / "results.json", json.dumps(interim, indent=2) + "\n")
            results[part] = runs[part]()
            tqdm.write(f"{part}: {json.dumps(results[part])[:300]}")
    kept = _kept_parts(args.out / "results.json", results, args.only)
    parts = {part: results.get(part, kept.get(part)) for part in PARTS if part in results or part in kept}
    results = {
        **{key: value for key, value in results.items() if key not in PARTS},
        **parts,
        "wall_seconds": round(time.perf_counter() - start),
    }  # the parts this command ran
    write_text_atomic(args.out / "results.json", json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out / 'results.json'}")
    return results


def _kept_parts(path: Path, results: dict, measured: list[str]) -> dict:
    """With --only, the other parts of the existing file, if that run measured this same code."""
    if set(measured) == set(PARTS) or not path.exists():
        return {}
    previous = json.loads(path.read_text())
    same = (
        previous.get("quick") == results["quick"]
        and (previous.get("provenance") or {}).get("code_hash") == results["provenance"]["code_hash"]
    )
    return {part: previous[part] for part in PARTS if part not in measured and part in previous} if same else {}


if __name__ == "__main__":
    main()
    sys.exit(0)
