"""The lines of a page, walked once: its fenced blocks as pytest-codeblocks reads them, and the prose between.

One reading for every reader of the pages: the notebook hook (which fence
becomes which cell, and the prose around them) and tests/test_docs.py (which
fences run, and how they open) both use it, and it takes what a block is
from pytest-codeblocks' own parser, the one that runs the pages in the suite:
where fences open, which fences a `<!--pytest-codeblocks:cont-->` joins into
one test, and which fence is a block's expected output. All this module adds
is where each fence closes, so that its lines can be shown as written (blank
lines kept; pytest-codeblocks drops them inside indented fences), and the
lines outside every fence and marker (`walk`).

Not a mkdocs hook itself (mkdocs.yml does not list it); notebook.py loads it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import NamedTuple

from pytest_codeblocks.main import extract_from_buffer

# The HTML comments pytest-codeblocks acts on (markers, pytest marks).
MARKER = re.compile(r"<!--[-\s]*(?:pytest-codeblocks:|pytest\.mark\.)")


class Fence(NamedTuple):
    """One fenced block of a page.

    `role` is "block" for a fence that opens a test block of its own, "cont"
    for one joined to the block before it, and "output" for a block's
    expected output; `block` is the opening line of that test block (its id).
    """

    start: int
    end: int
    info: str
    indent: int
    ticks: int
    lines: list[str]
    role: str
    block: int

    @property
    def language(self) -> str:
        """The first word of the info string: `text` for ```text title="Output"."""
        return self.info.split(" ")[0]


def page_fences(text: str) -> tuple[list[Fence], set[int]]:
    """Every fence of a page in order, and the line numbers of pytest-codeblocks' markers.

    Raises RuntimeError (pytest-codeblocks') when a fence never closes.
    """
    lines = text.splitlines()
    markers = {k for k, line in enumerate(lines, 1) if MARKER.match(line.strip())}
    blocks = {block.lineno: block for block in extract_from_buffer(io.StringIO(text))}
    # With the markers blanked out, pytest-codeblocks reports every fence on its own.
    unmarked = "\n".join("" if k in markers else line for k, line in enumerate(lines, 1)) + "\n"
    fences: list[Fence] = []
    head = None
    for single in extract_from_buffer(io.StringIO(unmarked)):
        opening = lines[single.lineno - 1]
        indent = len(opening) - len(opening.lstrip())
        ticks = len(opening.lstrip()) - len(opening.lstrip().lstrip("`"))
        end = next(k for k in range(single.lineno + 1, len(lines) + 1) if lines[k - 1].lstrip()[:ticks] == "`" * ticks)
        body = [line[min(indent, len(line) - len(line.lstrip())) :] for line in lines[single.lineno : end - 1]]
        if single.lineno in blocks:
            role, head = "block", blocks[single.lineno]
        elif (
            head is not None
            and head.expected_output == single.code
            and not any(f.role == "output" and f.block == head.lineno for f in fences)
        ):
            role = "output"
        else:
            role = "cont"
        block = head.lineno if head is not None else single.lineno
        fences.append(Fence(single.lineno, end, single.syntax or "", indent, ticks, body, role, block))
    return fences, markers


class Prose(NamedTuple):
    """One line of a page outside every fence, other than a pytest-codeblocks marker."""

    lineno: int
    text: str


def walk(text: str) -> Iterator[Fence | Prose]:
    """The page in order: each fence once (as `page_fences` reads it), and each line outside them as Prose.

    pytest-codeblocks' markers are left out: they are instructions to the
    test runner, not text of the page.
    """
    found, markers = page_fences(text)
    opening = {fence.start: fence for fence in found}
    lines = text.splitlines()
    lineno = 1
    while lineno <= len(lines):
        if lineno in opening:
            yield opening[lineno]
            lineno = opening[lineno].end + 1  # past the closing fence
            continue
        if lineno not in markers:
            yield Prose(lineno, lines[lineno - 1])
        lineno += 1
