"""Collect the suite's records of runs of the page blocks into docs/results/runs.json.

    pytest tests/test_docs.py tests/test_simulated_gpu.py   # each writes a record to .runs/
    python -m benchmarks.runs                               # newest complete run of each page, each device

Each record (written by tests/test_docs.py's RunRecord) names its device
(`cpu`, `cuda: <GPU>`, `mps`, `simulated GPU`), the software, the system, the
commit and the date, and for each page how many blocks ran and passed, their
seconds and a hash of the page's blocks. For every page and device this keeps
the newest record in which all of the page's blocks ran. It also writes the
versions of the newest CPU run into the package (`cnnlesson/ran_with.json`),
which `cnnlesson doctor` compares with what a reader has installed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from benchmarks.realdata import REPO
from cnnlesson.doctor import PACKAGES
from cnnlesson.files import write_text_atomic

RUNS_DIR = REPO / ".runs"
OUT = REPO / "docs" / "results" / "runs.json"
RAN_WITH = REPO / "cnnlesson" / "ran_with.json"
# What describes a run (everything in a record but its pages).
RUN_FIELDS = ("device", "python", *PACKAGES, "os", "os_release", "commit", "dirty", "code_hash", "date")


def read_record(path: Path) -> dict:
    """One record, checked to hold what runs.json needs; ValueError naming the file and the field otherwise."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a run record ({err})") from None
    missing = [field for field in (*RUN_FIELDS, "pages") if field not in record]
    if missing:
        raise ValueError(f"{path}: not a run record (no {', '.join(missing)})")
    return record


def collect(records: dict[str, dict]) -> dict:
    """runs.json from records by id: for each page and device, the newest record in which all its blocks ran."""
    chosen: dict[tuple[str, str], str] = {}
    for run_id, record in sorted(records.items(), key=lambda item: (item[1]["date"], item[0])):
        for page, entry in record["pages"].items():
            if entry["ran"] == entry["blocks"]:
                chosen[(page, record["device"])] = run_id  # newer records come later and win
    pages: dict[str, list[dict]] = {}
    for (page, _), run_id in sorted(chosen.items()):
        pages.setdefault(page, []).append({"run": run_id, **records[run_id]["pages"][page]})
    used = sorted({entry["run"] for entries in pages.values() for entry in entries})
    return {
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.runs",
        "runs": {run_id: {field: records[run_id][field] for field in RUN_FIELDS} for run_id in used},
        "pages": pages,
    }


def ran_with(runs: dict) -> dict | None:
    """The versions of the newest CPU run in `runs`, or None when none ran on the CPU."""
    cpu = sorted((run["date"], run_id) for run_id, run in runs["runs"].items() if run["device"] == "cpu")
    if not cpu:
        return None
    run_id = cpu[-1][1]
    run = runs["runs"][run_id]
    return {"run": run_id, "date": run["date"], "os": run["os"], **{k: run[k] for k in ("python", *PACKAGES)}}


def main(argv: list[str] | None = None) -> int:
    """Read the chosen records (default: every one in .runs/), write runs.json and the package's ran_with.json."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runs", description=__doc__.split("\n")[0])
    parser.add_argument("records", nargs="*", type=Path, help="record files to collect; default: every .runs/*.json")
    parser.add_argument("--out", type=Path, default=OUT, help=f"default: {OUT.relative_to(REPO)}")
    parser.add_argument("--ran-with", type=Path, default=RAN_WITH, help=f"default: {RAN_WITH.relative_to(REPO)}")
    args = parser.parse_args(argv)
    paths = args.records or sorted(RUNS_DIR.glob("*.json"))
    if not paths:
        parser.error(
            f"no records: run `pytest tests/test_docs.py tests/test_simulated_gpu.py` first (they write {RUNS_DIR})"
        )
    try:
        records = {path.stem: read_record(path) for path in paths}
    except ValueError as err:
        parser.error(str(err))
    runs = collect(records)
    write_text_atomic(args.out, json.dumps(runs, indent=1) + "\n")
    versions = ran_with(runs)
    if versions is not None:
        write_text_atomic(args.ran_with, json.dumps(versions, indent=1) + "\n")
    for run_id, run in runs["runs"].items():
        count = sum(entry["run"] == run_id for entries in runs["pages"].values() for entry in entries)
        print(f"{run_id}: {run['device']}, {count} page(s)")
    print(f"wrote {args.out}" + (f" and {args.ran_with}" if versions else " (no CPU run: ran_with.json kept)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
