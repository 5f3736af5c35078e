"""Style and types, checked by the suite: ruff (lint and format) over the repository, mypy over the package.

Their settings are in pyproject.toml ([tool.ruff], [tool.mypy]); the tools
come with the `test` extra. To fix what they find:

    ruff check --fix . && ruff format .     # then fix by hand what is left
    mypy                                    # the files are set in [tool.mypy]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tool(name: str) -> str:
    """The tool's command, from this interpreter's environment first; a skip saying how to install it otherwise."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.skip(f'{name} is not installed: pip install -e ".[test]" (the test extra) brings it')
    return found


def check(*command: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run a tool in the repository's root (so that it reads pyproject.toml); fail with what it printed."""
    proc = subprocess.run(command, cwd=ROOT, input=stdin, capture_output=True, text=True)
    shown = " ".join([Path(command[0]).name, *command[1:]])
    assert proc.returncode == 0, f"`{shown}` found problems:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_ruff_check():
    check(tool("ruff"), "check", "--output-format", "concise", ".")


def test_ruff_format():
    check(tool("ruff"), "format", "--check", ".")


MYPY = shutil.which("mypy", path=str(Path(sys.executable).parent)) or shutil.which("mypy")


# Half a minute in a fresh clone (the cache under .mypy_cache/, gitignored, makes later runs take seconds):
# started as the session begins, on the core the other tests leave idle (tests/conftest.py).
@(
    pytest.mark.run_early("mypy", [MYPY or "mypy"], cwd=ROOT)
    if MYPY
    else pytest.mark.skip(reason='mypy is not installed: pip install -e ".[test]" (the test extra) brings it')
)
def test_mypy(early):
    proc, _ = early.result("mypy")
    assert proc.returncode == 0, f"`mypy` found problems:\n{proc.stdout}\n{proc.stderr}"


PLANTED = """\
import os
from typing import List


def total(xs: List[int]) -> int:
    return sum(x for x in xs if x == None)
"""


def test_the_checks_can_fail(tmp_path):
    """The repository's settings catch an unused import, an outdated annotation, a bad layout and a type error."""
    ruff = tool("ruff")
    with pytest.raises(AssertionError) as found:
        check(
            ruff, "check", "--output-format", "concise", "--stdin-filename", "cnnlesson/planted.py", "-", stdin=PLANTED
        )
    for code in ("F401", "UP006", "E711"):  # unused import, List for list, `== None`
        assert f"{code} " in str(found.value), found.value
    with pytest.raises(AssertionError, match="ruff format --check"):
        check(ruff, "format", "--check", "--stdin-filename", "cnnlesson/planted.py", "-", stdin="x = {  'a':1 }\n")
    check(ruff, "format", "--check", "--stdin-filename", "cnnlesson/planted.py", "-", stdin='x = {"a": 1}\n')
    # In a function without annotations, which mypy reads only with pyproject.toml's check_untyped_defs.
    planted = tmp_path / "planted.py"
    planted.write_text("def count():\n    n: int = 'three'\n    return n\n", encoding="utf-8")
    with pytest.raises(AssertionError, match=r"planted\.py:2: error: Incompatible types in assignment"):
        check(tool("mypy"), str(planted))
