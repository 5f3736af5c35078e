"""The answer boxes in the offline copy, opened from disk (file://) in Chromium.

For every box: the right answer (typed in a forgiving form) says "Correct.",
every named mistake shows its own hint, and a wrong answer matching none shows
a nudge, neither "Correct" nor a hint; each verdict is the one that
`cnnlesson.exercises.check` prints. Also: the keyboard alone works, verdicts are
announced (a polite live region), axe-core finds no violation in either
palette, and the boxes fit a 390 px phone.

    pytest tests/test_exercises_browser.py -q               # needs /usr/bin/chromium
    CNNLESSON_SCREENSHOTS=/tmp pytest tests/test_exercises_browser.py -q -k screenshots
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import PALETTES, PHONE
from explorer_page import skip_math
from playwright.sync_api import expect
from test_exercises import BOX, answer_cases, as_text, cached_key, wrong_answer

from cnnlesson.answers import MAX_CHARS
from cnnlesson.exercises import CORRECT, UNREADABLE, key, verdict

pytestmark = pytest.mark.browser


@pytest.fixture(scope="session")
def box_pages(offline_site) -> dict[str, list[str]]:
    """{page file: [exercise ids of its answer boxes, in page order]} in the offline copy."""
    pages = {}
    for page in sorted(offline_site.glob("*.html")):
        ids = [exercise_id for exercise_id, _ in BOX.findall(page.read_text("utf-8"))]
        if ids and page.name != "print_page.html":
            pages[page.name] = ids
    assert pages, "no answer boxes in the offline copy"
    return pages


def typed_forms(values: list) -> str:
    """An answer as a learner might type it: 3,136 for a number, 64×7×7 for a shape."""
    if len(values) == 1:
        v = values[0]
        return f"{v:,}" if float(v).is_integer() else str(v)
    return "×".join(str(v) for v in values)


@pytest.fixture
def open_page(page, offline_site, watch_browser):
    """open_page(name): the offline copy's page in a tab allowed only file://; browser problems fail the test."""
    problems: list[str] = []
    watch_browser(page, problems)
    page.route("http://**/*", lambda route: (problems.append(f"network: {route.request.url}"), route.abort()))
    page.route("https://**/*", lambda route: (problems.append(f"network: {route.request.url}"), route.abort()))

    def go(name: str):
        page.goto((offline_site / name).as_uri())
        page.locator("form.cnn-answer[data-ready]").first.wait_for(state="attached")
        return page

    yield go
    page.wait_for_timeout(100)
    assert not problems, "browser problems:\n" + "\n".join(problems)


def answer(form, text: str, *, by_button: bool = False) -> str:
    """Type text into a box, submit it (Enter, or the Check button) and return the verdict shown."""
    form.locator("input").fill(text)
    if by_button:
        form.locator("button").click()
    else:
        form.locator("input").press("Enter")
    out = form.locator('[data-testid="answer-verdict"]')
    expect(out).not_to_be_empty()
    return out.inner_text().strip()


def test_every_box_says_correct_names_each_mistake_and_nudges_otherwise(open_page, box_pages):
    seen = 0
    for name, ids in box_pages.items():
        page = open_page(name)
        for exercise_id in ids:
            k = key(exercise_id)
            form = page.locator(f'form.cnn-answer[data-exercise="{exercise_id}"]')
            assert form.is_visible(), exercise_id
            right = typed_forms(k["answer"])
            assert answer(form, right) == CORRECT == verdict(exercise_id, right)[1], (exercise_id, right)
            assert form.get_attribute("data-verdict") == "correct"
            assert (
                answer(form, as_text(k["answer"]) if len(k["answer"]) > 1 else str(k["answer"][0]), by_button=True)
                == CORRECT
            )
            hints = [m["hint"] for m in k["mistakes"]]
            for mistake in k["mistakes"]:
                shown = answer(form, typed_forms(mistake["value"]))
                assert shown == "Not quite: " + mistake["hint"], (exercise_id, mistake["name"], shown)
                assert shown == verdict(exercise_id, typed_forms(mistake["value"]))[1]
            other = answer(form, typed_forms(wrong_answer(k)))
            assert other.startswith("Not yet.") and "correct" not in other.lower(), (exercise_id, other)
            assert not any(h in other for h in hints), (exercise_id, other)
            assert form.get_attribute("data-verdict") == "wrong"
            seen += 1
    assert seen == sum(len(ids) for ids in box_pages.values())


def test_keyboard_only_and_announced(open_page, box_pages):
    name, ids = next(iter(box_pages.items()))
    page = open_page(name)
    form = page.locator(f'form.cnn-answer[data-exercise="{ids[0]}"]')
    field, out = form.locator("input"), form.locator('[data-testid="answer-verdict"]')
    # The label names the field, and the verdict is a polite live region.
    assert form.locator(f'label[for="{field.get_attribute("id")}"]').inner_text() == key(ids[0])["label"]
    assert out.get_attribute("role") == "status" and out.get_attribute("aria-live") == "polite"
    field.focus()
    page.keyboard.type(typed_forms(key(ids[0])["answer"]))
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.testid") == "answer-check"
    page.keyboard.press("Space")
    expect(out).to_have_text(CORRECT)
    assert field.get_attribute("aria-invalid") == "false"
    # Typing again clears the old verdict; a wrong answer marks the field invalid.
    field.focus()
    page.keyboard.type("0")
    expect(out).to_be_empty()
    page.keyboard.press("Enter")
    expect(out).not_to_be_empty()
    assert field.get_attribute("aria-invalid") == "true"


def test_page_reads_every_answer_case_as_check_does(open_page, box_pages):
    """The shared table of cases (tests/answer_cases.json) through the page's own verdict, in one page load."""
    name, ids = next(iter(box_pages.items()))
    page = open_page(name)
    cases = answer_cases()
    keys = {exercise_id: cached_key(exercise_id) for exercise_id, _, _ in cases}
    shown = page.evaluate(
        "([keys, cases]) => cases.map(([id, text]) => window.cnnAnswers.verdict(keys[id], text))",
        [keys, [[exercise_id, text] for exercise_id, text, _ in cases]],
    )
    differ = [
        f"{exercise_id} {text[:40]!r}: page {tuple(got)}, check {verdict(exercise_id, text, keys[exercise_id])}"
        for (exercise_id, text, _), got in zip(cases, shown, strict=True)
        if tuple(got) != verdict(exercise_id, text, keys[exercise_id])
    ]
    assert not differ, "\n".join(differ)
    assert page.evaluate("window.cnnAnswers.MAX_CHARS") == MAX_CHARS
    form = page.locator(f'form.cnn-answer[data-exercise="{ids[0]}"]')
    assert form.locator("input").get_attribute("maxlength") == str(MAX_CHARS)
    # Typed for real: no number is infinite, and markup stays text.
    assert answer(form, "1e999") == UNREADABLE
    assert answer(form, "<b>1</b>") == UNREADABLE and form.locator("b").count() == 0


def test_axe_finds_nothing_on_answered_boxes_in_both_palettes(browser, offline_site, box_pages, axe_script):
    """axe-core on every page with answer boxes, each verdict showing, and on its explorers with their Python open."""
    failures = []
    for scheme, material in PALETTES.items():
        context = browser.new_context(color_scheme=scheme)
        page = context.new_page()
        skip_math(page)
        try:
            for name, ids in box_pages.items():
                page.goto((offline_site / name).as_uri())
                assert page.evaluate("document.body.dataset.mdColorScheme") == material
                # One box of each verdict, so that every state is audited.
                forms = page.locator("form.cnn-answer")
                for k, exercise_id in enumerate(ids):
                    kk = key(exercise_id)
                    text = [
                        typed_forms(kk["answer"]),
                        typed_forms(kk["mistakes"][0]["value"]),
                        typed_forms(wrong_answer(kk)),
                    ][k % 3]
                    answer(forms.nth(k), text)
                # The explorer's Copy as Python, open, is audited with the boxes.
                for copy in page.locator('[data-testid="copy-python"]').all():
                    copy.click()
                page.evaluate(axe_script)
                result = page.evaluate("""async () => (await axe.run({include: [['.cnn-answers'], ['.cnn-explorer']]},
                    {resultTypes: ['violations']})).violations.map(v => v.id + ': ' + v.help + ' ' +
                    v.nodes.map(n => n.target.join(' ')).join(', '))""")
                failures += [f"{name} [{scheme}] {v}" for v in result]
        finally:
            context.close()
    assert not failures, "\n".join(failures)


def test_boxes_fit_a_phone(browser, offline_site, box_pages):
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    bad = []
    try:
        for name, ids in box_pages.items():
            page.goto((offline_site / name).as_uri())
            forms = page.locator("form.cnn-answer")
            for k, exercise_id in enumerate(ids):
                answer(forms.nth(k), typed_forms(key(exercise_id)["mistakes"][0]["value"]))  # the longest text
                for part in ("input", "button", '[data-testid="answer-verdict"]'):
                    box = forms.nth(k).locator(part).bounding_box()
                    if box["x"] < 0 or box["x"] + box["width"] > PHONE["width"]:
                        bad.append(f"{name} {exercise_id} {part}: {box}")
            if page.evaluate("document.documentElement.scrollWidth") > PHONE["width"]:
                bad.append(f"{name}: the page scrolls sideways")
    finally:
        context.close()
    assert not bad, "\n".join(bad)


def test_screenshots(browser, offline_site, box_pages):
    """Pictures of a box with a hint and one marked correct, both palettes, desktop and phone (to look at)."""
    folder = os.environ.get("CNNLESSON_SCREENSHOTS")
    if not folder:
        pytest.skip("set CNNLESSON_SCREENSHOTS to a folder to take the pictures")
    name = "conv2d.html"
    ids = box_pages[name]
    for scheme in PALETTES:
        for label, viewport in (("desktop", {"width": 1280, "height": 900}), ("phone", PHONE)):
            context = browser.new_context(color_scheme=scheme, viewport=viewport, device_scale_factor=1)
            page = context.new_page()
            page.goto((offline_site / name).as_uri())
            forms = page.locator("form.cnn-answer")
            answer(forms.nth(0), typed_forms(key(ids[0])["mistakes"][0]["value"]))
            answer(forms.nth(1), typed_forms(key(ids[1])["answer"]))
            forms.nth(2).locator("input").focus()
            page.add_style_tag(content=".md-header, .md-tabs { visibility: hidden !important; }")
            page.locator(".cnn-answers").nth(0).scroll_into_view_if_needed()
            top = forms.nth(0).bounding_box()["y"] - 40
            page.screenshot(
                path=str(Path(folder) / f"answers-{scheme}-{label}.png"),
                full_page=True,
                clip={"x": 0, "y": top + page.evaluate("window.scrollY"), "width": viewport["width"], "height": 700},
            )
            context.close()
