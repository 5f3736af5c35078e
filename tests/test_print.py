"""The whole lesson as one printable document (mkdocs-print-site-plugin's print_page/), printed to PDF.

Chromium prints the page with ``page.pdf`` (what "Save as PDF" does); pypdf
reads the PDF back. Every lesson page's heading must be in it, in the order of
the navigation, with the exercises, rendered math, and every figure the lesson
pages show. The site, server and Chromium come from tests/conftest.py.

    pytest tests/test_print.py -q            # needs /usr/bin/chromium
"""

from __future__ import annotations

import io
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
from explorer_page import script
from mkdocs.utils import yaml_load

ROOT = Path(__file__).resolve().parents[1]
# mkdocs-print-site-plugin's page: print_page/ with directory URLs, print_page.html without (offline builds).
PRINT_PAGES = ("print_page/", "print_page.html")


def _built(site: Path, page: str) -> Path:
    """The HTML file of a page path (either URL style)."""
    return site / page / "index.html" if page.endswith("/") or not page else site / page


class _Page(HTMLParser):
    """The first <h1>'s text and the <img> sources inside a page's <article>."""

    def __init__(self):
        super().__init__()
        self.h1, self.images, self._in_h1, self._in_article = None, [], False, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "article":
            self._in_article = True
        elif tag == "h1" and self._in_article and self.h1 is None:
            self._in_h1, self.h1 = True, ""
        elif tag == "img" and self._in_article:
            self.images.append(attrs.get("src", ""))

    def handle_endtag(self, tag):
        if tag == "h1":
            self._in_h1 = False

    def handle_data(self, data):
        if self._in_h1:
            self.h1 += data


def _words(text: str) -> str:
    """Text with whitespace collapsed and hyphenation joins undone, for searching a PDF's text."""
    return re.sub(r"\s+", " ", text.replace("\u00ad", "")).strip()


@pytest.fixture(scope="module")
def lesson_pages(built_site):
    """[(heading, [figure file names], has exercises)] of each page of the nav's "Lesson" section, in nav order."""
    nav = yaml_load((ROOT / "mkdocs.yml").read_text("utf-8"))["nav"]
    section = next(item["Lesson"] for item in nav if isinstance(item, dict) and "Lesson" in item)
    pages = []
    for entry in section:
        (source,) = entry.values() if isinstance(entry, dict) else (entry,)
        stem = Path(source).with_suffix("").as_posix()
        html = next(
            (f for f in (built_site / stem / "index.html", built_site / f"{stem}.html") if f.exists()),
            built_site / stem / "index.html",
        )
        parser = _Page()
        parser.feed(html.read_text("utf-8"))
        assert parser.h1, f"{html} has no <h1>"
        pages.append(
            (
                _words(parser.h1).rstrip("¶").strip(),
                [Path(src).name for src in parser.images],
                'id="exercises"' in html.read_text("utf-8"),
            )
        )
    assert len(pages) >= 5, f"the Lesson section lists only {len(pages)} pages"
    return pages


@pytest.fixture(scope="module")
def printed(browser, site_url, built_site, tmp_path_factory):
    """The printed lesson: the print page's DOM report, the PDF's outline, page texts and image sizes."""
    pypdf = pytest.importorskip("pypdf")
    print_page = next((p for p in PRINT_PAGES if _built(built_site, p).exists()), None)
    assert print_page, "mkdocs-print-site-plugin wrote no print page"
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(site_url + print_page, wait_until="load")
        page.wait_for_function(script("math_typeset"), timeout=30000)
        report = page.evaluate(script("page_report"))  # also waits for every image to decode
        page.emulate_media(media="print")
        # outline=True: the PDF gets bookmarks from the headings, as "Save as PDF" does.
        pdf = page.pdf(format="A4", print_background=True, outline=True, tagged=True)
    finally:
        context.close()
    (tmp_path_factory.mktemp("print") / "lesson.pdf").write_bytes(pdf)  # kept for a look after a failure
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    outline = []  # (depth, title, page index), in document order

    def walk(items, depth):
        for item in items:
            if isinstance(item, list):
                walk(item, depth + 1)
            else:
                outline.append((depth, _words(item.title), reader.get_destination_page_number(item)))

    walk(reader.outline, 0)
    texts = [_words(p.extract_text() or "") for p in reader.pages]
    sizes = [_pixels(image) for page in reader.pages for image in _page_images(page)]
    return {"report": report, "outline": outline, "texts": texts, "sizes": sizes}


def _page_images(page) -> list:
    """The image objects a PDF page draws (its /XObject resources of subtype /Image)."""
    objects = page.get("/Resources", {}).get("/XObject", {})
    return [o for o in (objects[name].get_object() for name in objects) if o.get("/Subtype") == "/Image"]


def _pixels(image) -> tuple[int, int]:
    """An image object's size in pixels, read from its dictionary (decoding it would take seconds)."""
    return int(image["/Width"]), int(image["/Height"])


def _lesson_sections(printed, lesson_pages):
    """For each lesson page, its top-level outline entry's index, plus the entries under it."""
    outline = printed["outline"]
    tops = [(k, title) for k, (depth, title, _) in enumerate(outline) if depth == 0]
    found = []
    for heading, _, _ in lesson_pages:
        k = next((k for k, title in tops if title == heading), None)
        assert k is not None, f"lesson heading {heading!r} is not a section of the PDF: {[t for _, t in tops]}"
        end = next((j for j, _ in tops if j > k), len(outline))
        found.append((k, outline[k + 1 : end]))
    return found


@pytest.mark.browser
def test_pdf_has_every_lesson_heading_in_nav_order(printed, lesson_pages):
    sections = _lesson_sections(printed, lesson_pages)
    order = [k for k, _ in sections]
    assert order == sorted(order), f"lesson pages are out of nav order in the PDF: {[h for h, _, _ in lesson_pages]}"
    for (heading, _, _), (k, _) in zip(lesson_pages, sections, strict=True):
        page = printed["outline"][k][2]
        assert heading in printed["texts"][page], f"{heading!r} is not printed on PDF page {page + 1}"


@pytest.mark.browser
def test_pdf_has_every_figure_exercise_and_rendered_math(printed, lesson_pages, built_site):
    report, sizes = printed["report"], printed["sizes"]
    figures = {name for _, names, _ in lesson_pages for name in names}
    assert figures, "the lesson pages show no figures: nothing to check"
    loaded = {Path(src).name for src, width in report["images"] if width > 0}
    assert figures <= loaded, f"figures missing or broken on the print page: {sorted(figures - loaded)}"
    # Each figure is embedded in the PDF at its own pixel size.
    for name in sorted(figures):
        png = (built_site / "figures" / name).read_bytes()
        size = (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big"))
        assert size in sizes, f"figure {name} ({size[0]}x{size[1]} px) is not in the PDF"
    assert report["math"] > 0, "the print page has no math: the lesson's formulas are missing"
    assert not report["raw"] and report["unrendered"] == 0, f"math left as TeX on the print page: {report['raw'][:3]}"
    assert not report["errors"], f"KaTeX could not render on the print page: {report['errors'][:3]}"
    # Each page's exercises are a section of that page in the PDF.
    assert any(has for _, _, has in lesson_pages), "no lesson page has exercises: nothing to check"
    missing = [
        heading
        for (heading, _, has), (_, entries) in zip(lesson_pages, _lesson_sections(printed, lesson_pages), strict=True)
        if has and not any(title == "Exercises" for _, title, _ in entries)
    ]
    assert not missing, f"the exercises of these pages are missing from the PDF: {missing}"


def test_print_page_code_line_links_point_at_their_own_lines(built_site):
    """Every code line's link on the print page names an id that is there, and no line id repeats across pages."""
    print_page = next((p for p in PRINT_PAGES if _built(built_site, p).exists()), None)
    assert print_page, "mkdocs-print-site-plugin wrote no print page"
    html = _built(built_site, print_page).read_text("utf-8")
    ids = Counter(re.findall(r"""\bid=["']([^"']+)["']""", html))
    links = re.findall(r'href="#([^"]*__codelineno-[^"]*)"', html)
    assert len(links) > 100, "the lesson's code blocks have line anchors"
    missing = sorted(set(links) - set(ids))
    assert not missing, f"{len(missing)} of {len(links)} code-line links point nowhere, e.g. {missing[:3]}"
    repeated = sorted(name for name, n in ids.items() if n > 1 and "__codelineno-" in name)
    assert not repeated, f"{len(repeated)} code-line ids repeat, e.g. {repeated[:3]}"
