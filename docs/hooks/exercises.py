"""Turn each exercise's `check` cell into an answer box, with its key computed now.

An exercise whose answer is a number or a shape has, in the page's Markdown,
a Python fence that calls `cnnlesson.exercises.check` with no answer yet:

    ```python
    from cnnlesson.exercises import check

    check("conv2d-2", None)  # your answer in place of None
    ```

The test suite runs that fence like every other, and the notebook hook makes
it a code cell, where a learner fills in an answer. On the site this hook puts
an answer box in its place: a form per `check` call whose `data-key` holds the
key that `cnnlesson.exercises.key` computes from the package during this very
build (the answer and each named mistake's value, with its hint); the
input's `maxlength` is the longest answer `cnnlesson.answers` reads.
docs/javascripts/exercises.js reads it. A fence that names an unknown
exercise, or a key whose mistakes cannot be told apart, fails the build.
"""

import html
import json
import re

from cnnlesson import answers, exercises

# A top-level python fence; its body is read below.
FENCE = re.compile(r"^```python[ \t]*\n(?P<body>(?:(?!```).*\n)*?)```[ \t]*$", re.MULTILINE)
IMPORT = "from cnnlesson.exercises import check"
CALL = re.compile(r'^check\("(?P<id>[\w-]+)", None\)(?:\s*#.*)?$')


def check_ids(body: str) -> list[str] | None:
    """The exercise ids of a check fence's body, or None if the fence is ordinary code."""
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    if IMPORT not in lines:
        return None
    calls = [CALL.match(line) for line in lines if line != IMPORT]
    if not calls or not all(calls):
        raise ValueError(
            "a fence that imports cnnlesson.exercises.check may hold only "
            f'`check("id", None)` lines, to become answer boxes; got:\n{body}'
        )
    return [match["id"] for match in calls]


def answer_box(exercise_id: str) -> str:
    """The HTML form of one answer box, its key computed from the package."""
    key = exercises.key(exercise_id)
    field = f"answer-{exercise_id}"
    data = html.escape(json.dumps(key, ensure_ascii=False), quote=True)
    # `hidden` until exercises.js wires it up: without scripts the folded solution remains.
    return (
        f'<form class="cnn-answer" data-exercise="{exercise_id}" data-key="{data}" autocomplete="off" hidden>'
        f'<label class="cnn-answer__label" for="{field}">{html.escape(key["label"])}</label>'
        f'<span class="cnn-answer__row">'
        f'<input class="cnn-answer__input" id="{field}" name="answer" type="text" spellcheck="false" '
        f'autocapitalize="off" maxlength="{answers.MAX_CHARS}" data-testid="answer-input">'
        f'<button class="md-button cnn-answer__check" type="submit" data-testid="answer-check">Check</button>'
        f"</span>"
        f'<span class="cnn-answer__verdict" role="status" aria-live="polite" data-testid="answer-verdict"></span>'
        f"</form>"
    )


def render(markdown: str) -> str:
    """The page's Markdown with every check fence replaced by its answer boxes."""

    def replace(match: re.Match) -> str:
        ids = check_ids(match["body"])
        if ids is None:
            return match.group(0)
        calls = ", ".join(f'<code>check("{i}", answer)</code>' for i in ids)
        boxes = "".join(answer_box(i) for i in ids)
        return (
            f'<div class="cnn-answers" markdown="0">{boxes}'
            f'<p class="cnn-answer__python">In Python or the notebook: {calls}</p></div>'
        )

    return FENCE.sub(replace, markdown)


def on_page_markdown(markdown, page, config, files):
    return render(markdown)
