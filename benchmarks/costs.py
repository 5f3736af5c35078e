"""Benchmark: what the project itself costs, the site build and the whole test suite."""

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.realdata import REPO


def _timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n" + "\n".join(tail))
    return seconds, done.stdout


def run(out_dir: Path, quick: bool = False) -> dict:
    """Time `mkdocs build --strict` and `pytest`; skipped in quick mode (the tests call quick mode)."""
    if quick:
        return {"skipped": "quick mode does not rebuild the site or rerun the suite"}
    with tempfile.TemporaryDirectory() as site:
        build_seconds, _ = _timed([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", site])
    test_seconds, output = _timed([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"])
    summary = re.findall(r"^=*\s*(\d+ passed.*?) in [\d.]+s", output, flags=re.M)
    return {
        "mkdocs_build_seconds": round(build_seconds, 1),
        "pytest_seconds": round(test_seconds, 1),
        "pytest_summary": summary[-1] if summary else output.strip().splitlines()[-1],
    }
