"""The offline copy, opened from disk (file://) in Chromium, as the README tells a offline_reader to.

`CNNLESSON_OFFLINE=true mkdocs build --strict --site-dir site-offline` turns on
Material's `offline` plugin (see docs/hooks/offline.py). conftest's
`offline_site` builds it once per session, and this module checks, through
file:// URLs only, that a offline_reader can move between pages, search, read the
math, use the explorer, see the figures and download the notebook, and that
no page asks for anything outside the folder.

    pytest tests/test_offline.py -q            # needs /usr/bin/chromium and `npm ci`
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from explorer_page import Explorer, grid_array, script

from cnnlesson.conv import conv2d

pytestmark = pytest.mark.browser


def url(site: Path, path: str) -> str:
    return (site / path).as_uri()


def test_pages_are_files_not_folders(offline_site):
    # Directory URLs (convolution/) need a server; the offline copy links to .html files.
    assert (offline_site / "convolution.html").is_file()
    assert not (offline_site / "convolution").exists()
    assert (offline_site / "search" / "search_index.js").is_file()


def test_a_lesson_link_lands_on_its_page(offline_reader, offline_site):
    offline_reader.goto(url(offline_site, "index.html"))
    offline_reader.locator('article a[href="convolution.html"]').first.click()
    offline_reader.wait_for_url(url(offline_site, "convolution.html"))
    assert offline_reader.locator("article h1").first.inner_text().rstrip("¶ \n") == "Convolution"
    # And on from there, through the navigation.
    offline_reader.locator('nav a[href="pooling.html"]').first.click()
    offline_reader.wait_for_url(url(offline_site, "pooling.html"))


def test_search_finds_stride(offline_reader, offline_site):
    offline_reader.goto(url(offline_site, "index.html"))
    box = offline_reader.locator("input.md-search__input")
    box.click()
    box.press_sequentially("stride", delay=20)  # Material's search listens to key events
    offline_reader.locator(".md-search-result__item").first.wait_for(timeout=15000)
    assert "stride" in offline_reader.locator(".md-search-result").inner_text().lower()
    # A result is a link to a page of the copy.
    href = offline_reader.locator(".md-search-result__item a").first.get_attribute("href")
    assert href and ".html" in href and not href.startswith("http")


def test_explorer_draws_the_convolution(offline_reader, offline_site):
    offline_reader.goto(url(offline_site, "convolution.html"))
    st = Explorer(offline_reader, "conv").wait_ready().state()
    x, w = grid_array(st["input"]), grid_array(st["kernel"])
    np.testing.assert_allclose(grid_array(st["output"]), conv2d(x[None, None], w[None, None])[0, 0], atol=1e-9)


def test_math_figures_and_notebook_on_every_lesson_page(offline_reader, offline_site):
    """Every page: math typeset, every figure loaded; the notebook links point at the file in the copy."""
    pages = sorted(
        p.relative_to(offline_site).as_posix()
        for p in offline_site.rglob("*.html")
        if p.name != "404.html" and not p.relative_to(offline_site).as_posix().startswith("assets/")
    )
    reports = {}
    for path in pages:
        offline_reader.goto(url(offline_site, path), wait_until="load")
        if offline_reader.locator(".arithmatex, .jupyter-wrapper").count():
            offline_reader.wait_for_function(script("math_typeset"), timeout=15000)
        reports[path] = offline_reader.evaluate(script("page_report"))
    assert sum(r["math"] for r in reports.values()) > 0
    unrendered = {
        p: r["raw"][:3] + r["errors"][:3] for p, r in reports.items() if r["unrendered"] or r["raw"] or r["errors"]
    }
    assert not unrendered, f"math left as raw TeX or KaTeX errors: {unrendered}"
    assert sum(len(r["images"]) for r in reports.values()) > 0
    broken = {p: [src for src, width in r["images"] if not width] for p, r in reports.items()}
    assert not {p: b for p, b in broken.items() if b}, f"figures that did not load: {broken}"
    notebook = (offline_site / "lesson.ipynb").as_uri()
    links = {link for r in reports.values() for link in r["notebooks"] if link.startswith("file:")}
    assert links == {notebook}, links
    assert notebook in reports["convolution.html"]["notebooks"], "the lesson page links to the notebook"


def test_notebook_link_opens_the_notebook(offline_reader, offline_site):
    """From file:// Chromium ignores `download` (every file is its own origin) and shows the file,
    which the copy holds as lesson.ipynb next to its pages; the link must reach that file."""
    offline_reader.goto(url(offline_site, "convolution.html"))
    offline_reader.locator("a[download]", has_text="Download notebook").click()
    offline_reader.wait_for_url(url(offline_site, "lesson.ipynb"))
    notebook = json.loads(offline_reader.locator("pre").first.inner_text())
    assert notebook["nbformat"] == 4
    first_code = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")
    assert "".join(first_code["source"]).startswith("%pip install cnnlesson==")


def test_colab_link_derives_from_repo_url(offline_site, docs_hook):
    from test_docs import read_mkdocs_yml

    html = (offline_site / "convolution.html").read_text(encoding="utf-8")
    assert f'href="{docs_hook("notebook").colab_url(read_mkdocs_yml()["repo_url"])}"' in html
