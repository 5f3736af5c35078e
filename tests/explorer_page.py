"""The convolution explorer as a page object, and the browser scripts the tests run.

The scripts live in tests/js/*.js (one function expression each) and are read
with ``script(name)``; ``Explorer`` drives one widget through its
``data-testid`` hooks and reads its grids back from their ``data-value``
attributes.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

JS = Path(__file__).resolve().parent / "js"

# KaTeX's scripts, which the widget tests do not need: skip_math() answers them
# with a stand-in that renders nothing (the site-wide tests load the real ones).
MATH_SCRIPTS = re.compile(r"/assets/katex/.*\.js$")
MATH_STUB = "window.renderMathInElement = function () {};"

_SELECTS = {"input-preset", "kernel-preset", "pool-type"}


@functools.cache
def script(name: str) -> str:
    """The JavaScript function expression in tests/js/<name>.js, for page.evaluate."""
    return (JS / f"{name}.js").read_text("utf-8")


def grid_array(cells) -> np.ndarray:
    """[row, col, value] triples, as read by explorer_state.js, as a 2-D array."""
    assert cells, "the grid is empty"
    out = np.full((max(c[0] for c in cells) + 1, max(c[1] for c in cells) + 1), np.nan)
    for r, c, v in cells:
        out[r, c] = v
    assert not np.isnan(out).any(), "the grid has holes"
    return out


class Explorer:
    """One explorer widget on a page, driven through its data-testid hooks."""

    def __init__(self, page, mode: str):
        self.page = page
        self.root = page.locator(f'.cnn-explorer[data-mode="{mode}"]').first

    def tid(self, name: str):
        """The widget's element with data-testid=name."""
        return self.root.locator(f'[data-testid="{name}"]')

    def wait_ready(self) -> Explorer:
        """Wait until the widget has drawn its output grid."""
        self.tid("output").locator("[data-row]").first.wait_for()
        return self

    def set(self, **controls) -> None:
        """Set controls like a reader would: set(stride=2, input_preset="digit")."""
        for name, value in controls.items():
            name = name.replace("_", "-")
            if name in _SELECTS:
                self.tid(name).select_option(str(value))
            else:
                self.tid(name).fill(str(value))

    def state(self) -> dict:
        """Grids, texts and error of the widget; window and current as sets of (row, col)."""
        st = self.root.evaluate(script("explorer_state"))
        for key in ("window", "current"):
            st[key] = {(r, c) for r, c, _ in st[key]}
        return st

    def grid(self, name: str = "output") -> np.ndarray:
        """A grid's values (padding excluded) as a 2-D array."""
        return grid_array(self.state()[name])


def skip_math(page) -> None:
    """Answer KaTeX's scripts on this page with the stand-in: formulas stay as TeX, the page loads faster."""
    page.route(MATH_SCRIPTS, lambda route: route.fulfill(body=MATH_STUB, content_type="text/javascript"))


def open_explorer(page, url: str, mode: str = "conv", math: bool = False) -> Explorer:
    """Load the page at url and return its explorer of this mode, drawn and ready."""
    if not math:
        skip_math(page)
    page.goto(url)
    return Explorer(page, mode).wait_ready()


def click_link_to(page, url: str) -> None:
    """Click a visible link to url and wait until Material has swapped the page in."""
    swaps = page.evaluate(script("count_swaps"))
    page.evaluate_handle(script("link_to"), url).as_element().click()
    page.wait_for_url(url)
    page.wait_for_function(script("swapped_since"), arg=swaps)
