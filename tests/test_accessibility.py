"""Accessibility of the built site: axe-core on every page in both palettes, images, figures, a phone.

axe-core (npm's, pinned in package-lock.json: ``axe_script`` in conftest.py) runs in
Debian's Chromium on every page, once with the light palette and once with the
dark one; any violation of impact serious or critical fails, and so does any
moderate or minor one not listed in ``ACCEPTED`` with its reason. The phone
test loads every page at 390x844 (an iPhone 12-14 viewport). The site, server
and Chromium come from tests/conftest.py.

    pytest tests/test_accessibility.py -q            # needs /usr/bin/chromium
"""

from __future__ import annotations

import io
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from conftest import AXE_RUN, PALETTES, PHONE
from matplotlib.text import Text

from cnnlesson import viz
from cnnlesson.models import MNISTNet

ROOT = Path(__file__).resolve().parents[1]

# Moderate or minor axe rules this site accepts, each with its reason. Empty:
# every rule axe-core reported on this site has been fixed.
ACCEPTED: dict[str, str] = {}


# Material's content column on a 1280 px wide desktop window (both sidebars
# shown), measured in Chromium: figures wider than this are scaled down to it.
CONTENT_PX = 688
# Smallest text a figure may show at that rendered size, in CSS pixels.
READABLE_PX = 9.0


# ---- axe-core ------------------------------------------------------------------------------


@pytest.mark.browser
def test_axe_every_page_both_palettes(crawl, site_pages):
    """axe-core's violations on every page (tests/conftest.py's crawl), in the light palette and the dark."""
    failures = []
    for path in site_pages:
        assert set(crawl.violations[path]) == set(PALETTES), path
        for palette, violations in crawl.violations[path].items():
            for v in violations:
                if v["impact"] in ("serious", "critical") or v["id"] not in ACCEPTED:
                    failures.append(
                        f"/{path} [{palette}] {v['id']} ({v['impact']}, {len(v['nodes'])}x): "
                        f"{v['help']}\n    " + "\n    ".join(v["nodes"][:5])
                    )
    assert not failures, f"{len(failures)} axe-core violations:\n" + "\n".join(failures)


@pytest.mark.browser
def test_the_palette_follows_the_system(browser, site_url):
    """A reader whose system is dark gets the dark palette on arrival (the crawl toggles it by hand)."""
    context = browser.new_context(color_scheme="dark")
    try:
        page = context.new_page()
        page.goto(site_url + "summary/", wait_until="domcontentloaded")
        assert page.evaluate("document.body.dataset.mdColorScheme") == PALETTES["dark"]
    finally:
        context.close()


@pytest.mark.browser
def test_axe_reports_what_it_finds(page, axe_script):
    """The crawl's axe run sees a planted violation (an empty result means a clean page, not a silent axe)."""
    page.set_content('<html lang="en"><title>t</title><main><img src="data:,"></main></html>')
    page.evaluate(axe_script)
    assert "image-alt" in {v["id"] for v in page.evaluate(AXE_RUN, {})}


# ---- images ----------------------------------------------------------------------------------


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[dict] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))


def test_every_image_says_what_it_shows(built_site):
    """Every <img> has alt text of a few words that is not its file name."""
    bad, seen = [], 0
    for html in sorted(built_site.rglob("*.html")):
        if html.relative_to(built_site).parts[0] == "assets":
            continue
        parser = _Images()
        parser.feed(html.read_text("utf-8"))
        for img in parser.images:
            seen += 1
            alt = (img.get("alt") or "").strip()
            src = img.get("src", "")[:60]
            name = Path(src.split("?")[0]).stem.lower()
            if len(alt.split()) < 3 or alt.lower().replace(" ", "-") in (name, name + ".png"):
                bad.append(f"{html.relative_to(built_site)}: {src!r} alt={alt!r}")
    assert seen, "no images found in the built site"
    assert not bad, "images without alt text that says what they show:\n" + "\n".join(bad)


def _smallest_text_px(fig, dpi: float) -> tuple[float, int]:
    """(smallest visible text height in the saved PNG's pixels, the PNG's width in pixels)."""
    sizes = [t.get_fontsize() * dpi / 72 for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    width = int.from_bytes(buffer.getvalue()[16:20], "big")  # the PNG header's IHDR width
    return (min(sizes) if sizes else float("inf")), width


def _figures(docs_hook, tmp_path, monkeypatch):
    """Every figure the site shows, drawn as the build hook and the benchmarks draw them: (name, Figure, dpi)."""
    saved = []
    figures = docs_hook("figures")
    monkeypatch.setattr(figures, "save_figure", lambda fig, path, dpi=100: saved.append((Path(path).name, fig, dpi)))
    # Keep the diagrams open to measure them; monkeypatch puts pyplot's close back for the other tests.
    monkeypatch.setattr(figures.plt, "close", lambda *args: None)
    figures.draw_conv_relu_pool(tmp_path / "conv-relu-pool.png")
    figures.draw_lenet5(tmp_path / "lenet5.png")
    torch.manual_seed(0)
    net = MNISTNet().eval()
    images, labels = torch.rand(16, 1, 28, 28), torch.arange(16) % 10
    history = [
        {"epoch": e, "train_loss": 1 / e, "train_accuracy": 0.8 + e / 100, "test_accuracy": 0.8} for e in range(1, 6)
    ]
    saved += [
        ("training-curves.png", viz.plot_history(history), 100),
        ("predictions.png", viz.plot_predictions(net, images, labels), 100),
        ("sobel.png", viz.plot_images({"digit": np.eye(28), "Sobel x (vertical edges)": np.eye(28)}), 100),
        ("im2col.png", viz.plot_im2col(figures.LESSON_IMAGE, figures.LESSON_KERNEL, position=(1, 2)), 100),
    ]
    # The results page's two plots, drawn by the benchmarks from numbers shaped like theirs.
    from benchmarks import accuracy, conv

    def capture(fig, path, dpi=100):
        saved.append((Path(path).name, fig, dpi))

    def sweep(index, sides):
        return [
            {"shape": [16, 3, s, s][:index] + [s] + [16, 3, s, s][index + 1 :], "numpy_ms": s / 8, "torch_ms": s / 10}
            for s in sides
        ]

    monkeypatch.setattr(conv, "save_figure", capture)
    monkeypatch.setattr(viz, "save_figure", capture)  # benchmarks.accuracy imports it when it draws
    conv._plot(sweep(0, [1, 8, 32, 64, 128]), sweep(2, [16, 32, 64, 128]), 2, tmp_path / "conv_scaling.png")
    models = {
        name: {
            "test_accuracy": [0.95, 0.97, 0.98],
            "test_accuracy_std": [0.004, 0.003, 0.002],
            "final_test_accuracy_by_seed": [0.98, 0.981, 0.979],
        }
        for name in ("mnistnet", "cnnwithbn", "lenet5")
    }
    accuracy._plot(models, tmp_path / "accuracy_curves.png", (8000, 2000))
    return saved


def test_figure_text_is_readable_at_page_size(docs_hook, tmp_path, monkeypatch):
    """Axis labels, ticks and titles stay >= READABLE_PX once the page scales the figure to its column."""
    small = []
    for name, fig, dpi in _figures(docs_hook, tmp_path, monkeypatch):
        text_px, width = _smallest_text_px(fig, dpi)
        rendered = text_px * min(1.0, CONTENT_PX / width)
        if rendered < READABLE_PX:
            small.append(f"{name}: {width} px wide, smallest text {text_px:.1f} px -> {rendered:.1f} px on the page")
        plt.close(fig)
    assert not small, f"figure text smaller than {READABLE_PX} px as rendered:\n" + "\n".join(small)


# ---- a phone ---------------------------------------------------------------------------------

# What overflows the phone's width, and the boxes that scroll on their own.
_PHONE_REPORT = """() => {
  const width = document.documentElement.clientWidth;
  const boxes = '.md-content pre > code, .md-content .md-typeset__scrollwrap, .md-content .highlight-ipynb';
  const scrollers = [...document.querySelectorAll(boxes)].filter(el => el.scrollWidth > el.clientWidth + 1);
  const inBox = 'pre, .md-typeset__scrollwrap, .highlight-ipynb, .arithmatex, .cnnx-stage';
  return {
    width, pageWidth: document.documentElement.scrollWidth,
    sticking: [...document.querySelectorAll('.md-content *')]
      .filter(el => el.getBoundingClientRect().right > width + 1 && !el.closest(inBox))
      .slice(0, 5).map(el => el.tagName.toLowerCase() + '.' + el.className),
    scrollers: scrollers.length,
    unreachable: scrollers.filter(el => el.tabIndex < 0 || el.getBoundingClientRect().right > width + 1)
      .map(el => el.tagName.toLowerCase() + '.' + el.className).slice(0, 5),
  };
}"""


@pytest.mark.browser
def test_phone_no_page_scrolls_sideways(browser, site_url, site_pages):
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    page = context.new_page()
    bad, scrolling = [], 0
    try:
        for path in site_pages:
            page.goto(site_url + path, wait_until="load")
            page.wait_for_timeout(50)  # a11y.js marks scrolling boxes on the next frame
            report = page.evaluate(_PHONE_REPORT)
            scrolling += report["scrollers"]
            if report["pageWidth"] > report["width"] or report["unreachable"]:
                bad.append(f"/{path}: {report}")
    finally:
        context.close()
    assert not bad, f"pages wider than {PHONE['width']} px, or wide boxes a keyboard cannot scroll:\n" + "\n".join(bad)
    # Wide code and tables exist at this width and scroll inside their own box.
    assert scrolling, "no code block or table scrolls in its own box at phone width: the check saw nothing"


@pytest.mark.browser
def test_phone_explorer_is_usable(browser, site_url, site_pages, built_site):
    def html(p):  # the page's file, with or without directory URLs
        return built_site / p / "index.html" if p.endswith("/") or not p else built_site / p

    path = next(p for p in site_pages if 'data-mode="conv"' in html(p).read_text("utf-8"))
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        page.goto(site_url + path, wait_until="load")
        root = page.locator('.cnn-explorer[data-mode="conv"]').first
        root.locator('[data-testid="output"] [data-row]').first.wait_for()
        root.scroll_into_view_if_needed()
        box = root.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], f"explorer box {box}"
        position = root.locator('[data-testid="position"]')
        before = position.inner_text()
        root.locator('[data-testid="next"]').tap()
        assert position.inner_text() != before and "step 2" in position.inner_text()
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        # Every control can be seen and reached by a thumb: inside the screen's width.
        for control in root.locator("select, input, textarea, button").all():
            b = control.bounding_box()
            assert b and b["x"] >= 0 and b["x"] + b["width"] <= PHONE["width"], control.get_attribute("data-testid")
    finally:
        context.close()
