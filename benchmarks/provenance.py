"""Which code measured the results: git commit, dirty flag and a hash of the measured code."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from benchmarks.realdata import REPO

# The code whose speed and accuracy results.json reports, and the code that measures it.
SOURCES = ("benchmarks", "cnnlesson")
# Written from a run's records after it (python -m benchmarks.runs), so it cannot be part of what the run measured.
DERIVED = {REPO / "cnnlesson" / "ran_with.json"}


def code_hash(repo: Path = REPO) -> str:
    """SHA-256 over the files of SOURCES (path and bytes, line endings as LF), caches left out."""
    digest = hashlib.sha256()
    for source in SOURCES:
        for path in sorted((repo / source).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc" or path in DERIVED:
                continue
            digest.update(path.relative_to(repo).as_posix().encode() + b"\0")
            digest.update(path.read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return digest.hexdigest()


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    except OSError:  # no git on this machine
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def provenance(repo: Path = REPO) -> dict:
    """The commit checked out, whether tracked files differ from it, and `code_hash`.

    ``commit`` and ``dirty`` are None outside a git checkout.
    """
    commit = _git(repo, "rev-parse", "HEAD")
    status = _git(repo, "status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "commit": commit,
        "dirty": None if status is None else bool(status),
        "code_hash": code_hash(repo),
        "hashed": [f"{source}/" for source in SOURCES],
    }
