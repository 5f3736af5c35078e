"""Site-wide browser checks of the built site: every page, its images, math, notebook link, search.

The site, server and Chromium come from tests/conftest.py; the script that
reports on a page is tests/js/page_report.js.

    pytest tests/test_site.py -q            # needs /usr/bin/chromium
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]


def test_every_page_loads_cleanly(crawl, site_pages):
    problems = crawl.problems
    bad = {path or "/": seen for path, seen in problems.items() if seen}
    assert not bad, "pages with console errors or failed requests:\n" + json.dumps(bad, indent=1)
    # The crawl covered every page written in docs/ (a page missing from the build fails here).
    docs = ROOT / "docs"
    written = {
        (md.parent if md.name == "index.md" else md.with_suffix("")).relative_to(docs).as_posix() + "/"
        for md in docs.rglob("*.md")
    }
    written = {"" if path == "./" else path for path in written}
    assert written <= set(problems), f"pages of docs/ not built: {sorted(written - set(problems))}"


def test_math_is_rendered(crawl):
    reports = crawl.reports
    assert sum(r["math"] for r in reports.values()) > 0, "no math found on any page"
    bad = {
        path or "/": {"unrendered": r["unrendered"], "raw": r["raw"][:5], "katex errors": r["errors"][:5]}
        for path, r in reports.items()
        if r["unrendered"] or r["raw"] or r["errors"]
    }
    assert not bad, "math left as raw TeX or rendered as a KaTeX error:\n" + json.dumps(bad, indent=1)


def test_math_renderer_loads_only_on_pages_with_math(crawl):
    """KaTeX is requested by the pages with formulas and the notebook ($ math), no other."""
    reports = crawl.reports
    loaded = {path for path, r in reports.items() if r["math_renderer"]}
    with_math = {path for path, r in reports.items() if r["math"]} | {"lesson/"}
    assert loaded == with_math, (
        f"KaTeX requested without math: {sorted(loaded - with_math)}; missing: {sorted(with_math - loaded)}"
    )
    assert {"", "distributed/", "reference/"} <= set(reports) - loaded  # home, several GPUs, the reference


def test_widget_scripts_load_only_on_pages_that_show_the_widget(crawl):
    """The explorer's, the live network's and the answer boxes' scripts are requested where their widget is, only."""
    script_of = {".cnn-explorer": "explorer.js", ".livenet": "livenet-ui.js", "form.cnn-answer": "exercises.js"}
    wrong = {
        path: (r["widgets"], r["widget_scripts"])
        for path, r in crawl.reports.items()
        if sorted(script_of[w] for w in r["widgets"]) != sorted(r["widget_scripts"])
    }
    assert not wrong, f"widget scripts requested without the widget, or missing: {wrong}"
    assert any(r["widgets"] for r in crawl.reports.values())
    assert not crawl.reports[""]["widget_scripts"]  # the home page has none


def test_math_renders_after_instant_navigation(clean_page, site_url):
    """From a page without math, Material's instant navigation to pages with math still typesets them."""
    from explorer_page import script

    page = clean_page
    requested: list[str] = []
    page.on("request", lambda request: request.url.endswith("/katex.min.js") and requested.append(request.url))
    page.goto(site_url, wait_until="load")
    assert not requested, "the home page has no math"
    for path, math in (("convolution/", ".arithmatex"), ("lesson/", ".jupyter-wrapper .jp-MarkdownOutput")):
        page.locator(f'a.md-nav__link[href$="{path}"]').first.evaluate("a => a.click()")  # the nav may be folded
        page.wait_for_function("url => location.href === url", arg=site_url + path)  # no load event: instant
        page.locator(math).first.wait_for(state="attached")
        page.wait_for_function(script("math_typeset"), timeout=30000)
    assert len(requested) == 1, requested  # loaded once, by the first page with math


def test_every_image_loads(crawl):
    reports = crawl.reports
    broken = {path or "/": [src for src, width in r["images"] if not width] for path, r in reports.items()}
    broken = {path: srcs for path, srcs in broken.items() if srcs}
    assert not broken, "images that did not load:\n" + json.dumps(broken, indent=1)


def test_notebook_download_link(crawl, page, site_url):
    reports = crawl.reports
    # The site's own copies (the "Open in Colab" links point outside it).
    links = sorted({link for r in reports.values() for link in r["notebooks"] if link.startswith(site_url)})
    assert links, "no page links to a .ipynb notebook"
    for link in links:
        response = page.request.get(link)
        assert response.status == 200, f"{link}: HTTP {response.status}"
        notebook = json.loads(response.body())
        assert notebook.get("cells") and "nbformat" in notebook, f"{link} is not a notebook"


def test_search_finds_stride(page, site_url):
    page.goto(site_url)
    box = page.locator("input.md-search__input")
    box.click()
    box.press_sequentially("stride", delay=20)  # Material's search listens to key events
    result = page.locator(".md-search-result__item").first
    result.wait_for(timeout=10000)
    assert "stride" in page.locator(".md-search-result").inner_text().lower()


# --- no empty band between a page title and its first line ----------------------------------------

TITLE_GAP = """() => {
  const h1 = document.querySelector("article h1"), next = h1.nextElementSibling;
  const title = h1.getBoundingClientRect(), below = next.getBoundingClientRect();
  const margins = Math.max(parseFloat(getComputedStyle(h1).marginBottom), parseFloat(getComputedStyle(next).marginTop));
  const lines = new Set();  // the lines the title's visible text takes (the permalink is hidden until hover)
  for (const node of h1.childNodes) {
    if (node.nodeType !== Node.TEXT_NODE) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    for (const r of range.getClientRects()) if (r.width > 0) lines.add(Math.round(r.top));
  }
  return {height: title.height, lineHeight: parseFloat(getComputedStyle(h1).lineHeight), lines: lines.size,
          gap: below.top - title.bottom, margins};
}"""


@pytest.mark.parametrize("viewport", [(1280, 900), (1440, 900)])
def test_home_title_has_no_empty_band_below_it(browser, site_url, viewport):
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    page.goto(site_url, wait_until="load")
    box = page.evaluate(TITLE_GAP)
    context.close()
    # The title's box holds exactly its text lines (the hidden permalink once wrapped onto a line of its own)
    # and nothing but the usual margin separates it from the first paragraph.
    assert box["height"] <= box["lines"] * box["lineHeight"] + 1, box
    assert box["gap"] <= box["margins"] + 1, box
