"""The exercises' answer keys: computed from the package, carried by the built pages and the notebook.

`cnnlesson.exercises` defines each key once, as the calls into the package that
produce the answer and each typical mistake's value; docs/hooks/exercises.py
writes them into the pages. Here every key is recomputed from the package and
compared with what the built offline copy carries, the pages' check cells are
matched with the registry, and the generated notebook's check cells are run
with the solutions' values and with each mistake's.
"""

from __future__ import annotations

import contextlib
import functools
import html
import io
import json
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlesson import exercises
from cnnlesson.answers import MAX_CHARS, read
from cnnlesson.exercises import AS_BATCH, AS_PRODUCT, AS_SIDE, CORRECT, TOO_LONG, UNREADABLE, check, key, verdict

DOCS = Path(__file__).resolve().parents[1] / "docs"
# (exercise id, typed text, expected kind): read by this file and by the page's own reading in Chromium.
CASES_FILE = Path(__file__).with_name("answer_cases.json")
IDS = [exercise.id for exercise in exercises.EXERCISES]
BOX = re.compile(r'<form class="cnn-answer" data-exercise="([\w-]+)" data-key="([^"]*)"')
CHECK_CELL = re.compile(r'check\("([\w-]+)", None\)')


def printed(exercise_id: str, answer) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        check(exercise_id, answer)
    return out.getvalue().strip()


def wrong_answer(k: dict) -> list[float]:
    """An answer of the right length that is neither the answer nor a named mistake."""
    taken = [k["answer"]] + [m["value"] for m in k["mistakes"]]
    candidate = [v + 7919 for v in k["answer"]]  # a prime far from any key here
    assert candidate not in taken
    return candidate


def as_text(values) -> str:
    return values[0] if len(values) == 1 else "(" + ", ".join(str(v) for v in values) + ")"


@functools.cache
def cached_key(exercise_id: str) -> dict:
    """key(exercise_id), computed once per session: the table's cases share it."""
    return key(exercise_id)


def answer_cases() -> list[tuple[str, str, str]]:
    """The shared table of cases: (exercise id, the text typed, the kind of verdict expected)."""
    rows = json.loads(CASES_FILE.read_text("utf-8"))
    return [(r["id"], r["text"] * r.get("times", 1) + r.get("then", ""), r["kind"]) for r in rows]


# ---- the registry -----------------------------------------------------------------------------


@pytest.mark.parametrize("exercise_id", IDS)
def test_key_has_named_mistakes_with_their_own_hints(exercise_id):
    k = key(exercise_id)  # raises if a mistake equals the answer or another mistake
    assert k["mistakes"], f"{exercise_id}: every answer box names at least one typical mistake"
    hints = [m["hint"] for m in k["mistakes"]]
    assert len(set(hints)) == len(hints), f"{exercise_id}: each mistake needs its own hint"
    # The nudge for other wrong answers does not give the answer away.
    if len(k["answer"]) > 1 or k["answer"][0] >= 10:
        assert not re.search(
            rf"\b{as_text(k['answer'])}\b".replace("(", r"\(").replace(")", r"\)"), k["nudge"].replace(",", "")
        ), k["nudge"]


@pytest.mark.parametrize("exercise_id", IDS)
def test_check_prints_correct_each_hint_and_a_nudge(exercise_id):
    k = key(exercise_id)
    assert printed(exercise_id, k["answer"] if len(k["answer"]) > 1 else k["answer"][0]) == CORRECT
    assert printed(exercise_id, as_text(k["answer"])) == CORRECT
    for mistake in k["mistakes"]:
        assert printed(exercise_id, mistake["value"]) == "Not quite: " + mistake["hint"]
    nudge = printed(exercise_id, wrong_answer(k))
    assert nudge == "Not yet. " + k["nudge"]
    assert not any(m["hint"] in nudge for m in k["mistakes"])
    assert printed(exercise_id, None) == ""  # a notebook cell with no answer yet


@pytest.mark.parametrize(
    "text, grouped, expected",
    [
        ("(64, 7, 7)", False, [[[64]], [[7]], [[7]]]),
        ("64x7x7", False, [[[64, 7, 7]]]),
        ("torch.Size([64, 7, 7])", False, [[[64]], [[7]], [[7]]]),
        ("3,136", True, [[[3136]]]),
        ("3,136", False, [[[3]], [[136]]]),
        ("201_392_128", True, [[[201392128]]]),
        ("64×3×3 + 1", True, [[[64, 3, 3], [1]]]),
        ("3.5", True, [[[Fraction(7, 2)]]]),
        ("5.76e2", True, [[[576]]]),
        ("\u22121", True, [[[-1]]]),
        ("", True, None),
        ("(,)", False, None),
        ("3136 parameters", True, None),
        ("128 × (576 + 1)", True, None),
        ("1e999", True, None),
    ],
)
def test_read_gives_exact_items_or_none(text, grouped, expected):
    assert read(text, grouped) == expected


@pytest.mark.parametrize("exercise_id, text, kind", answer_cases())
def test_answer_cases(exercise_id, text, kind):
    assert verdict(exercise_id, text, cached_key(exercise_id))[0] == kind


def test_right_values_in_other_forms_say_which_form():
    assert verdict("convolution-1a", "24 × 24") == ("correct", AS_SIDE)
    assert verdict("feature-maps-1", "torch.Size([1, 64, 14, 14])") == ("correct", AS_BATCH)
    assert verdict("convolution-4a", "(1, 1, 4, 5)") == ("correct", AS_BATCH)
    assert verdict("architecture-2", "64*3*3") == ("correct", AS_PRODUCT)
    assert verdict("mnist-2", "(1, 64, 5, 5)") == ("correct", AS_PRODUCT)
    assert verdict("mnist-2", "1,600") == ("correct", CORRECT)


def test_a_count_off_says_what_the_box_takes():
    assert verdict("pooling-3", "3") == ("count", "Not yet: this box takes a shape of 2 numbers: (rows, columns).")
    assert verdict("convolution-1a", "(24, 23)") == ("count", "Not yet: this box takes one number, the side.")
    assert verdict("conv2d-1", "(8, 16, 16)")[0] == "count"


def test_answers_too_long_are_not_read():
    assert verdict("conv2d-2", "1" * MAX_CHARS)[0] == "wrong"
    assert verdict("conv2d-2", "1" * (MAX_CHARS + 1)) == ("unreadable", TOO_LONG)
    assert verdict("conv2d-2", "1" * 16000 + "a") == ("unreadable", TOO_LONG)
    assert verdict("conv2d-2", "1" * 10_000_000) == ("unreadable", TOO_LONG)
    # Counted in UTF-16 code units, as the box's maxlength counts: an emoji is two.
    assert verdict("conv2d-2", "1" * (MAX_CHARS - 1) + "\U0001f600") == ("unreadable", TOO_LONG)


class BadRepr:
    def __repr__(self):
        raise RuntimeError("no repr")


@pytest.mark.parametrize(
    "exercise_id, answer, kind",
    [
        ("conv2d-2", 73856, "correct"),
        ("conv2d-2", 73856.0, "correct"),
        ("conv2d-2", np.int64(73856), "correct"),
        ("conv2d-2", torch.tensor(73856), "correct"),
        ("conv2d-2", [73856], "correct"),
        ("feature-maps-1", torch.Size([1, 64, 14, 14]), "correct"),
        ("feature-maps-1", torch.tensor([64, 14, 14]), "correct"),
        ("feature-maps-1", np.array([64, 14, 14]), "correct"),
        ("convolution-1a", (24, 24), "correct"),
        ("conv2d-2", 73856.2, "wrong"),
        ("conv2d-2", 10**400, "wrong"),
        ("conv2d-2", [10**400], "wrong"),
        ("conv2d-2", -(10**400), "wrong"),
        ("conv2d-2", float("inf"), "unreadable"),
        ("conv2d-2", float("nan"), "unreadable"),
        ("conv2d-2", np.float64("-inf"), "unreadable"),
        ("feature-maps-1", [64, 14, float("nan")], "unreadable"),
        ("convolution-4b", True, "unreadable"),
        ("convolution-4b", [True], "unreadable"),
        ("convolution-4b", np.array([True]), "unreadable"),
        ("convolution-4b", torch.tensor([True]), "unreadable"),
        ("convolution-4b", np.bool_(True), "unreadable"),
        ("conv2d-3", ["16", "3", "5", "x"], "unreadable"),
        ("conv2d-3", ["16", "3", "5", "5"], "unreadable"),
        ("conv2d-2", BadRepr(), "unreadable"),
        ("conv2d-2", [BadRepr()], "unreadable"),
        ("conv2d-2", torch.zeros((), device="meta"), "unreadable"),
        ("conv2d-2", torch.zeros(3, device="meta"), "unreadable"),
        ("conv2d-2", 1j, "unreadable"),
        ("conv2d-2", torch.tensor(1j), "unreadable"),
        ("conv2d-2", np.array(["73856"]), "unreadable"),
        ("conv2d-2", [], "unreadable"),
        ("conv2d-2", [[73856]], "unreadable"),
        ("conv2d-2", {73856}, "unreadable"),
        ("conv2d-2", b"73856", "unreadable"),
    ],
)
def test_python_answers_are_read_or_unreadable_never_raise(exercise_id, answer, kind):
    assert verdict(exercise_id, answer)[0] == kind


def test_forms_a_learner_types():
    assert verdict("mnist-2", "1,600")[0] == verdict("mnist-2", "1600")[0] == "correct"
    assert verdict("feature-maps-1", "64x14x14")[0] == "correct"
    assert verdict("feature-maps-1", "64×14×14")[0] == "correct"
    assert verdict("feature-maps-1", torch.Size([64, 14, 14]))[0] == "correct"
    assert verdict("feature-maps-1", "(64, 28, 28)")[0] == "mistake"
    assert verdict("conv2d-2", "lots") == ("unreadable", UNREADABLE)


def test_unknown_exercise_names_the_argument():
    with pytest.raises(KeyError, match=r"exercise_id: no exercise 'mnist-99'"):
        check("mnist-99", 1)
    with pytest.raises(KeyError, match="exercise_id"):
        check("mnist-99", None)
    with pytest.raises(TypeError, match=r"exercise_id: expected an exercise id .*, got list"):
        check(["conv2d-2"], 5)


def test_a_key_that_cannot_tell_a_mistake_from_the_answer_fails(monkeypatch):
    bad = exercises.Exercise("bad-1", "x", lambda: 3, (exercises.Mistake("same", lambda: 3.0, "h"),), "n")
    monkeypatch.setitem(exercises._BY_ID, "bad-1", bad)
    with pytest.raises(ValueError, match="bad-1"):
        key("bad-1")


# ---- the pages ----------------------------------------------------------------------------------


def page_check_ids() -> dict[str, str]:
    """{exercise id: page} for every check("id", None) call in the pages' Markdown."""
    found: dict[str, str] = {}
    for page in sorted(DOCS.glob("*.md")):
        for exercise_id in CHECK_CELL.findall(page.read_text("utf-8")):
            assert exercise_id not in found, f"{exercise_id} on {found[exercise_id]} and {page.name}"
            found[exercise_id] = page.name
    return found


def test_every_key_has_one_box_and_every_box_a_key():
    found = page_check_ids()
    assert sorted(found) == sorted(IDS)
    for exercise_id, page in found.items():
        assert exercise_id.startswith(page.removesuffix(".md") + "-"), (exercise_id, page)


def test_hook_replaces_check_fences_only(docs_hook):
    hook = docs_hook("exercises")
    markdown = (
        'Text\n\n```python\nfrom cnnlesson.exercises import check\n\ncheck("conv2d-2", None)  # yours\n```\n\n'
        "```python\nprint(1)\n```\n"
    )
    out = hook.render(markdown)
    assert 'data-exercise="conv2d-2"' in out and "```python\nprint(1)\n```" in out
    assert f'maxlength="{MAX_CHARS}"' in out
    assert "from cnnlesson.exercises" not in out
    with pytest.raises(KeyError, match="nope-1"):
        hook.render('```python\nfrom cnnlesson.exercises import check\n\ncheck("nope-1", None)\n```\n')
    with pytest.raises(ValueError, match="may hold only"):
        hook.render('```python\nfrom cnnlesson.exercises import check\n\nx = 1\ncheck("conv2d-2", None)\n```\n')


def built_keys(site: Path) -> dict[str, dict]:
    """{exercise id: the key a built page carries} over every page of a built site."""
    keys: dict[str, dict] = {}
    for page in sorted(site.glob("*.html")):
        for exercise_id, data in BOX.findall(page.read_text("utf-8")):
            keys.setdefault(exercise_id, json.loads(html.unescape(data)))
    return keys


def test_built_pages_carry_the_keys_the_package_computes(offline_site):
    carried = built_keys(offline_site)
    assert sorted(carried) == sorted(IDS)
    for exercise_id in IDS:
        assert carried[exercise_id] == key(exercise_id), exercise_id


# ---- the notebook -------------------------------------------------------------------------------


def notebook_check_cells(site: Path) -> dict[str, str]:
    """{exercise id: the source of the generated notebook's code cell that checks it}."""
    nb = json.loads((site / "lesson.ipynb").read_text("utf-8"))
    cells = {}
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and "cnnlesson.exercises import check" in source:
            for exercise_id in CHECK_CELL.findall(source):
                cells[exercise_id] = source
    return cells


def run_cell(source: str, exercise_id: str, answer: str) -> str:
    """Run a check cell with `answer` typed in place of None for `exercise_id`; its printed text."""
    filled = source.replace(f'check("{exercise_id}", None)', f'check("{exercise_id}", {answer!r})')
    assert filled != source
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(filled, f"<notebook cell {exercise_id}>", "exec"), {})
    return out.getvalue().strip()


def test_notebook_check_cells_pass_with_solutions_and_fail_with_mistakes(offline_site):
    cells = notebook_check_cells(offline_site)
    assert sorted(cells) == sorted(IDS)
    for exercise_id, source in cells.items():
        k = key(exercise_id)
        out = run_cell(source, exercise_id, as_text(k["answer"]))
        assert out == CORRECT, (exercise_id, out)
        for mistake in k["mistakes"]:
            out = run_cell(source, exercise_id, as_text(mistake["value"]))
            assert out == "Not quite: " + mistake["hint"], (exercise_id, out)
        out = run_cell(source, exercise_id, as_text(wrong_answer(k)))
        assert out.startswith("Not yet.") and CORRECT not in out, (exercise_id, out)


def test_every_exercises_section_asks_why():
    """Not only arithmetic: each page's exercises ask at least one "why" question."""
    pages = [p for p in sorted(DOCS.glob("*.md")) if "\n## Exercises\n" in p.read_text("utf-8")]
    assert len(pages) >= 9
    for page in pages:
        section = page.read_text("utf-8").split("\n## Exercises\n", 1)[1]
        questions = re.findall(r"^\*\*\d+\..*?(?=\n\n)", section, re.MULTILINE | re.DOTALL)
        assert questions, page.name
        assert any(re.search(r"\bwhy\b", q, re.IGNORECASE) for q in questions), page.name
