"""Browser tests of the built site: the convolution explorer and site-wide checks.

The site is built once with ``mkdocs build --strict`` into a temporary folder
(``CNNLESSON_MKDOCS_YML`` picks another config), served on 127.0.0.1 by
``http.server`` in a thread and driven by pytest-playwright's ``page`` with
Debian's Chromium (Playwright's own browser download is not used).

    pytest tests/test_browser.py -q            # needs /usr/bin/chromium
    CNNLESSON_SCREENSHOTS=/tmp pytest tests/test_browser.py -q -k palette

The explorer's numbers are read back from its ``data-value`` attributes and
compared with ``cnnlesson.conv`` computed here in Python.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from cnnlesson.conv import avg_pool2d, conv2d, max_pool2d

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CNNLESSON_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    # In CI (CI=true, where .ci/run installs Chromium) a missing browser is a failure, never a skip.
    pytest.mark.skipif(not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
                       reason=f"Chromium not found at {CHROMIUM}: install it with "
                              "`apt-get install -y chromium` to run the browser tests"),
]

LESSON_INPUT = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 0, 1, 2], [3, 4, 5, 6]], dtype=float)
KERNELS = {
    "lesson": np.array([[1, 0], [0, 1]], dtype=float),
    "identity": np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=float),
    "sobel-x": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=float),
    "sobel-y": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=float),
    "blur": np.full((3, 3), 1 / 9),
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=float),
}


# ---- fixtures: Chromium, the built site, a server ------------------------------------------


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch arguments, pointed at Debian's Chromium."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".ipynb": "application/x-ipynb+json", ".js": "text/javascript"}

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # The browser drops connections it no longer needs; that is not a failure.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


# `mkdocs build --strict` with site_url pointed at the local server: Material's
# instant navigation only takes over links whose URL (port included) is listed
# in sitemap.xml, and sitemap.xml is written from site_url.
_BUILD = """
import logging, sys
from mkdocs import config, exceptions
from mkdocs.__main__ import _enable_warnings
from mkdocs.commands import build
logging.basicConfig(format="%(levelname)s %(message)s", level=logging.WARNING)  # what `mkdocs` prints
_enable_warnings()
cfg = config.load_config(sys.argv[1], site_url=sys.argv[2], site_dir=sys.argv[3], strict=True)
cfg.plugins.on_startup(command="build", dirty=False)
try:
    build.build(cfg)
except exceptions.Abort as err:
    sys.exit(f"mkdocs build --strict: {err}")
finally:
    cfg.plugins.on_shutdown()
"""


@pytest.fixture(scope="session")
def _server():
    """A local HTTP server, bound first (so the site can be built for its URL)."""
    server = _QuietServer(("127.0.0.1", 0), _QuietHandler)
    yield server
    server.server_close()


@pytest.fixture(scope="session")
def built_site(_server, tmp_path_factory) -> Path:
    """The site, built once per session with ``mkdocs build --strict``."""
    config_file = Path(os.environ.get("CNNLESSON_MKDOCS_YML", ROOT / "mkdocs.yml"))
    if not config_file.exists():
        pytest.fail(f"{config_file} is missing: nothing to build")
    out = tmp_path_factory.mktemp("site")
    url = f"http://127.0.0.1:{_server.server_port}/"
    proc = subprocess.run([sys.executable, "-c", _BUILD, str(config_file), url, str(out)],
                          cwd=config_file.parent, capture_output=True, text=True,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


@pytest.fixture(scope="session")
def site_url(_server, built_site):
    """Base URL (ending in /) of the built site, served from a thread."""
    _server.RequestHandlerClass = functools.partial(_QuietHandler, directory=str(built_site))
    thread = threading.Thread(target=_server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{_server.server_port}/"
    _server.shutdown()
    thread.join(5)


@pytest.fixture(scope="session")
def site_pages(built_site) -> list[str]:
    """Every page of the built site, as a path relative to the site root."""
    pages = []
    for html in sorted(built_site.rglob("*.html")):
        rel = html.relative_to(built_site).as_posix()
        if rel == "404.html" or rel.startswith("assets/"):
            continue
        pages.append(rel[: -len("index.html")] if rel.endswith("index.html") else rel)
    assert pages, f"no pages found in {built_site}"
    return pages


@pytest.fixture(scope="session")
def explorer_paths(built_site, site_pages) -> dict[str, str]:
    """The page holding each explorer mode: {"conv": "convolution/", "pool": ...}."""
    found = {}
    for path in site_pages:
        html = (built_site / (path + "index.html" if path.endswith("/") or not path else path)).read_text("utf-8")
        for mode in ("conv", "pool"):
            if re.search(rf'class="cnn-explorer"[^>]*data-mode="{mode}"', html):
                found.setdefault(mode, path)
    assert set(found) == {"conv", "pool"}, f"explorer placeholders found only for {sorted(found)}"
    return found


def _watch(page, problems) -> None:
    """Record console errors, page errors, failed requests and HTTP errors."""
    page.on("console", lambda msg: msg.type == "error" and problems.append(f"console: {msg.text}"))
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url} ({req.failure})"))
    page.on("response", lambda res: res.status >= 400 and problems.append(f"HTTP {res.status}: {res.url}"))


# ---- the explorer ----------------------------------------------------------------------------

_SELECTS = {"input-preset", "kernel-preset", "pool-type"}

# One round trip for everything a test looks at (the browser is the slow part).
_STATE = """root => {
  const cells = (testid, sel) => [...root.querySelectorAll(`[data-testid="${testid}"] ${sel}`)]
    .map(c => [+c.dataset.row, +c.dataset.col, parseFloat(c.dataset.value)]);
  const text = testid => { const e = root.querySelector(`[data-testid="${testid}"]`); return e ? e.innerText : null; };
  const error = root.querySelector('[data-testid="error"]');
  return {
    input: cells("input", "[data-row]:not(.is-pad)"), pad: cells("input", "[data-row].is-pad"),
    kernel: cells("kernel", "[data-row]"), output: cells("output", "[data-row]"),
    window: cells("input", "[data-row].is-window"), current: cells("output", "[data-row].is-current"),
    calc: text("calc"), formula: text("formula"), position: text("position"),
    error: error.hidden ? null : error.innerText,
    outputHidden: root.querySelector('[data-testid="output"]').checkVisibility() === false,
  };
}"""


def _array(cells) -> np.ndarray:
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
        return self.root.locator(f'[data-testid="{name}"]')

    def set(self, **controls) -> None:
        """Set controls like a reader would: set(stride=2, input_preset="digit")."""
        for name, value in controls.items():
            name = name.replace("_", "-")
            if name in _SELECTS:
                self.tid(name).select_option(str(value))
            else:
                self.tid(name).fill(str(value))

    def state(self) -> dict:
        st = self.root.evaluate(_STATE)
        for key in ("window", "current"):
            st[key] = {(r, c) for r, c, _ in st[key]}
        return st

    def grid(self, name: str = "output") -> np.ndarray:
        """A grid's values (padding excluded) as a 2-D array."""
        return _array(self.state()[name])


# MathJax is the slowest part of a page load and the widget tests do not need
# it: they get an empty script instead (the site-wide tests load the real one).
_MATHJAX = re.compile(r"/mathjax/.*\.js$|/tex-(mml-)?(chtml|svg)(-full)?\.js$", re.IGNORECASE)


@pytest.fixture
def explorer(page, site_url, explorer_paths):
    """Opens the page of an explorer mode; fails the test on any browser problem."""
    problems: list[str] = []
    _watch(page, problems)

    def open_explorer(mode: str = "conv", mathjax: bool = False) -> Explorer:
        if not mathjax:
            page.route(_MATHJAX, lambda route: route.fulfill(body="", content_type="text/javascript"))
        page.goto(site_url + explorer_paths[mode])
        ex = Explorer(page, mode)
        ex.tid("output").locator("[data-row]").first.wait_for()
        return ex

    yield open_explorer
    assert not problems, "browser problems:\n" + "\n".join(problems)


def conv_ref(x, w, stride=1, padding=0, dilation=1) -> np.ndarray:
    return conv2d(x[None, None], w[None, None], stride=stride, padding=padding, dilation=dilation)[0, 0]


def _last_number(text: str) -> float:
    return float(text.rsplit("=", 1)[1].strip().replace("\u2212", "-"))


def test_lesson_example_matches_conv2d(explorer):
    st = explorer("conv").state()
    np.testing.assert_array_equal(_array(st["input"]), LESSON_INPUT)
    out = _array(st["output"])
    np.testing.assert_allclose(out, conv_ref(LESSON_INPUT, KERNELS["lesson"]), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(out, [[7, 9, 11], [5, 7, 9], [13, 5, 7]])
    assert st["calc"].strip() == "1×1 + 2×0 + 5×0 + 6×1 = 7"
    assert st["current"] == {(0, 0)}
    assert st["window"] == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert st["error"] is None


def test_presets_match_conv2d(explorer):
    ex = explorer("conv")
    for image, kernel, stride, padding, dilation in [
        ("digit", "sobel-x", 1, 1, 1),
        ("digit", "sobel-y", 1, 0, 1),
        ("digit", "sharpen", 2, 1, 1),   # stride 2
        ("digit", "blur", 1, 1, 2),      # dilation 2, weights 1/9
        ("lesson", "identity", 3, 2, 1),
    ]:
        ex.set(input_preset=image, kernel_preset=kernel, stride=stride, padding=padding, dilation=dilation)
        st = ex.state()
        x = _array(st["input"])
        if image == "digit":
            assert x.shape in {(8, 8), (10, 10)} and set(np.unique(x)) <= set(range(10))
        np.testing.assert_array_equal(_array(st["kernel"]), KERNELS[kernel])
        expected = conv_ref(x, KERNELS[kernel], stride, padding, dilation)
        np.testing.assert_allclose(_array(st["output"]), expected, rtol=0, atol=1e-9,
                                   err_msg=f"{image} ⋆ {kernel}, s={stride} p={padding} d={dilation}")


def test_typed_input_and_kernel_match_conv2d(explorer):
    ex = explorer("conv")
    ex.set(input_text="1, 2.5, -3, 4, 0, 7\n-1 0 2 8 1 1\n3 3 3 -2 5 6\n0.5 1e1 -4 2 2 2\n9 8 7 6 5 4",
           kernel_text="1/2 -1 0\n2, 0.25, -3", stride=2, padding=1)
    assert ex.tid("input-preset").input_value() == "custom"
    assert ex.tid("kernel-preset").input_value() == "custom"
    x = np.array([[1, 2.5, -3, 4, 0, 7], [-1, 0, 2, 8, 1, 1], [3, 3, 3, -2, 5, 6],
                  [0.5, 10, -4, 2, 2, 2], [9, 8, 7, 6, 5, 4]])
    w = np.array([[0.5, -1, 0], [2, 0.25, -3]])
    st = ex.state()
    np.testing.assert_array_equal(_array(st["input"]), x)
    out = _array(st["output"])
    assert out.shape == (3, 3)
    np.testing.assert_allclose(out, conv_ref(x, w, 2, 1), rtol=0, atol=1e-9)


def test_stepping_highlights_the_window(explorer):
    ex = explorer("conv")
    s, p, d = 2, 1, 2
    ex.set(input_preset="digit", kernel_preset="sobel-x", stride=s, padding=p, dilation=d)
    out = ex.grid("output")
    oh, ow = out.shape
    assert (oh, ow) == (3, 3)

    def check(i: int, j: int) -> None:
        st = ex.state()
        assert st["current"] == {(i, j)}
        # Output (i, j) reads input (i*s - p + a*d, j*s - p + b*d); padding cells included.
        assert st["window"] == {(i * s - p + a * d, j * s - p + b * d) for a in range(3) for b in range(3)}
        assert _last_number(st["calc"]) == pytest.approx(out[i, j], abs=5e-4)
        assert f"step {i * ow + j + 1} of {oh * ow}" in st["position"]

    check(0, 0)
    assert ex.tid("prev").is_disabled()  # already at the start
    ex.tid("next").click()
    check(0, 1)
    for _ in range(3):
        ex.tid("next").click()
    check(1, 1)
    ex.tid("prev").click()
    check(1, 0)
    ex.tid("output").locator('[data-row="2"][data-col="2"]').click()
    check(2, 2)
    assert ex.tid("next").is_disabled()


def test_arrow_keys_and_play(explorer):
    ex = explorer("conv")  # lesson example: 3x3 output
    ex.tid("stage").focus()
    for key, where in [("ArrowRight", (0, 1)), ("ArrowDown", (1, 1)), ("ArrowLeft", (1, 0)),
                       ("End", (2, 2)), ("ArrowRight", (2, 2)), ("Home", (0, 0)), ("ArrowUp", (0, 0))]:
        ex.page.keyboard.press(key)
        assert ex.state()["current"] == {where}, key
    ex.tid("play").click()
    assert ex.tid("play").get_attribute("aria-pressed") == "true"
    ex.tid("output").locator('.is-current[data-row="0"][data-col="1"]').wait_for(timeout=5000)
    ex.tid("play").click()
    assert ex.tid("play").get_attribute("aria-pressed") == "false"


def test_formula_follows_the_settings(explorer):
    ex = explorer("conv")
    formula = ex.state()["formula"]
    assert "⌊(H + 2·P − D·(K − 1) − 1) / S⌋ + 1" in formula
    assert "⌊(4 + 2·0 − 1·(2 − 1) − 1) / 1⌋ + 1 = 3" in formula
    ex.set(stride=2, padding=1)
    formula = ex.state()["formula"]
    assert "⌊(4 + 2·1 − 1·(2 − 1) − 1) / 2⌋ + 1 = 3" in formula
    assert "⌊(4 + 2·0" not in formula
    ex.set(input_text="1 2 3 4 5 6\n6 5 4 3 2 1", dilation=2)  # 2 rows, 6 columns
    st = ex.state()
    lines = st["formula"].splitlines()
    assert any(line.startswith("height") and line.endswith("⌊(2 + 2·1 − 2·(2 − 1) − 1) / 2⌋ + 1 = 1")
               for line in lines), lines
    assert any(line.startswith("width") and line.endswith("⌊(6 + 2·1 − 2·(2 − 1) − 1) / 2⌋ + 1 = 3")
               for line in lines), lines
    assert _array(st["output"]).shape == (1, 3)


_GOOD = {"stride": 1, "dilation": 1, "padding": 0, "pool-kernel": 2, "kernel-text": "1 0\n0 1",
         "input-text": "1 2 3 4\n5 6 7 8\n9 0 1 2\n3 4 5 6"}


@pytest.mark.parametrize(("mode", "cases"), [
    ("conv", [({"stride": 0}, "Stride"),
              ({"stride": -1}, "Stride"),
              ({"dilation": 0}, "Dilation"),
              ({"padding": -1}, "Padding"),
              ({"kernel-text": "1 1 1 1 1\n" * 5}, "larger than the padded input"),
              ({"dilation": 4}, "larger than the padded input"),
              ({"input-text": "1 2 x\n3 4 5"}, "not a number"),
              ({"kernel-text": "1 2 3\n4 5"}, "same length"),
              ({"input-text": "  "}, "empty")]),
    ("pool", [({"pool-kernel": 2, "padding": 2}, "half"),
              ({"pool-kernel": 5}, "larger than the padded input"),
              ({"stride": 0}, "Stride")]),
])
def test_bad_settings_show_a_message_and_no_grid(explorer, mode, cases):
    ex = explorer(mode)
    for settings, message in cases:
        ex.set(**settings)
        st = ex.state()
        assert st["error"] and message.lower() in st["error"].lower(), (settings, st["error"])
        assert st["output"] == [] and st["outputHidden"], settings
        assert st["calc"] == ""
        ex.tid("next").click(force=True)  # disabled: does nothing, raises nothing
        ex.set(**{name: _GOOD[name] for name in settings})  # fixing it brings the grid back
        st = ex.state()
        assert st["error"] is None and st["output"], settings
    assert ex.tid("error").get_attribute("role") == "alert"


def test_pooling_matches_cnnlesson(explorer):
    ex = explorer("pool")
    ex.set(input_preset="digit")
    for pool, kernel, stride, padding in [("max", 2, None, 0), ("avg", 2, None, 1),
                                          ("max", 3, 1, 1), ("avg", 3, 2, 1)]:
        ex.set(pool_type=pool, pool_kernel=kernel)
        assert ex.tid("stride").input_value() == str(kernel)  # PyTorch: stride defaults to kernel_size
        ex.set(**({} if stride is None else {"stride": stride}), padding=padding)
        st = ex.state()
        x = _array(st["input"])
        fn = max_pool2d if pool == "max" else avg_pool2d
        expected = fn(x[None, None], kernel, stride=stride, padding=padding)[0, 0]
        np.testing.assert_allclose(_array(st["output"]), expected, rtol=0, atol=1e-9,
                                   err_msg=f"{pool} k={kernel} s={stride} p={padding}")
        # Max pooling pads with -inf (padding never wins), average pooling with counted zeros.
        assert {v for _, _, v in st["pad"]} == (set() if not padding else {-np.inf} if pool == "max" else {0.0})
        ex.set(stride="")  # back to "stride = kernel size"


def test_pooling_calc_text(explorer):
    ex = explorer("pool")
    assert ex.state()["calc"].strip() == "max(1, 2, 5, 6) = 6"
    ex.tid("next").click()
    assert ex.state()["calc"].strip() == "max(3, 4, 7, 8) = 8"
    ex.set(pool_type="avg")
    st = ex.state()
    assert st["calc"].strip() == "avg(3, 4, 7, 8) = (3 + 4 + 7 + 8) / 4 = 5.5"
    np.testing.assert_array_equal(_array(st["output"]), [[3.5, 5.5], [4, 3.5]])
    assert "⌊(4 + 2·0 − 2) / 2⌋ + 1 = 2" in st["formula"]


def _click_link_to(page, url: str) -> None:
    """Click a visible link to url and wait until Material has swapped the page in."""
    swaps = page.evaluate("""() => {
      if (window.__cnnxSwaps === undefined) {  // document$ emits once per (instant) page
        window.__cnnxSwaps = 0;
        document$.subscribe(() => { window.__cnnxSwaps++; });
      }
      return window.__cnnxSwaps;
    }""")
    link = page.evaluate_handle(
        "url => [...document.querySelectorAll('a[href]')].find(a => a.href === url && a.checkVisibility())", url)
    if link.as_element() is None:  # not in the visible nav: add a link to the content
        page.evaluate("url => { const a = Object.assign(document.createElement('a'), {href: url, "
                      "id: 'cnnx-test-link', textContent: 'go'}); document.querySelector('article').prepend(a); }",
                      url)
        link = page.locator("#cnnx-test-link")
    link.click()
    page.wait_for_url(url)
    # undefined: a full reload happened, which the caller reports.
    page.wait_for_function("n => window.__cnnxSwaps === undefined || window.__cnnxSwaps > n", arg=swaps)


def test_explorer_survives_instant_navigation(explorer, site_url, explorer_paths, site_pages):
    ex = explorer("conv", mathjax=True)  # the real page: MathJax also listens to document$
    page = ex.page
    page.evaluate("window.__cnnxNoReload = true")
    other = next(p for p in [explorer_paths["pool"], *site_pages] if p != explorer_paths["conv"])
    _click_link_to(page, site_url + other)
    _click_link_to(page, site_url + explorer_paths["conv"])
    assert page.evaluate("window.__cnnxNoReload === true"), "the page was reloaded: no instant navigation"
    ex = Explorer(page, "conv")
    ex.tid("output").locator("[data-row]").first.wait_for()
    assert page.locator('.cnn-explorer[data-mode="conv"]').count() == 1
    for name in ("output", "input", "stride", "next", "calc", "formula"):
        assert ex.tid(name).count() == 1, f"{name} built {ex.tid(name).count()} times"
    ex.tid("next").click()
    st = ex.state()
    assert st["current"] == {(0, 1)}
    assert st["calc"].strip() == "2×1 + 3×0 + 6×0 + 7×1 = 9"


# ---- the whole site --------------------------------------------------------------------------

_PAGE_REPORT = """async () => {
  // Load lazy images now and wait for every image to finish (or fail).
  const images = await Promise.all([...document.images].map(async (img) => {
    img.loading = "eager";
    try { await img.decode(); } catch (e) { /* reported as naturalWidth 0 */ }
    return [img.currentSrc || img.src, img.naturalWidth];
  }));
  // TeX left as text outside code: the math renderer did not run.
  const raw = [];
  const root = document.querySelector("article") || document.body;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (node.parentElement.closest("pre, code, script, style, textarea, mjx-container, .katex")) continue;
    if (/\\$\\$|\\\\\\[|\\\\\\(|\\\\begin\\{/.test(node.nodeValue)) raw.push(node.nodeValue.trim().slice(0, 80));
  }
  const math = [...document.querySelectorAll(".arithmatex")];
  return {
    images,
    raw,
    math: math.length,
    unrendered: math.filter((m) => !m.querySelector("mjx-container, .katex")).length,
    notebooks: [...document.querySelectorAll("a[href]")].map((a) => a.href)
      .filter((h) => /\\.ipynb$/i.test(new URL(h).pathname)),
  };
}"""


@pytest.fixture(scope="module")
def crawl(browser, site_url, site_pages):
    """Visits every page once (full loads); returns ({path: report}, {path: problems})."""
    context = browser.new_context()
    page = context.new_page()
    reports: dict[str, dict] = {}
    problems: dict[str, list[str]] = {path: [] for path in site_pages}
    current = [site_pages[0]]  # the page being visited, for the listeners
    _watch(page, _Sink(problems, current))
    for path in site_pages:
        current[0] = path
        page.goto(site_url + path, wait_until="load")
        if page.locator(".arithmatex").count():
            try:  # give the math renderer time to typeset
                page.wait_for_function("() => [...document.querySelectorAll('.arithmatex')]"
                                       ".every(m => m.querySelector('mjx-container, .katex'))", timeout=15000)
            except Exception:  # noqa: BLE001 - reported by test_math_is_rendered
                pass
        reports[path] = page.evaluate(_PAGE_REPORT)
    page.wait_for_timeout(100)  # late console errors of the last page
    context.close()
    return reports, problems


class _Sink:
    """A list-like target for _watch that files problems under the current page."""

    def __init__(self, problems: dict[str, list[str]], current: list[str]):
        self.problems, self.current = problems, current

    def append(self, problem: str) -> None:
        self.problems[self.current[0]].append(problem)


def test_every_page_loads_cleanly(crawl, site_pages):
    _, problems = crawl
    bad = {path or "/": seen for path, seen in problems.items() if seen}
    assert not bad, "pages with console errors or failed requests:\n" + json.dumps(bad, indent=1)
    assert len(problems) == len(site_pages)


def test_math_is_rendered(crawl):
    reports, _ = crawl
    assert sum(r["math"] for r in reports.values()) > 0, "no math found on any page"
    bad = {path or "/": {"unrendered": r["unrendered"], "raw": r["raw"][:5]}
           for path, r in reports.items() if r["unrendered"] or r["raw"]}
    assert not bad, "math left as raw TeX:\n" + json.dumps(bad, indent=1)


def test_every_image_loads(crawl):
    reports, _ = crawl
    broken = {path or "/": [src for src, width in r["images"] if not width]
              for path, r in reports.items()}
    broken = {path: srcs for path, srcs in broken.items() if srcs}
    assert not broken, "images that did not load:\n" + json.dumps(broken, indent=1)


def test_notebook_download_link(crawl, page):
    reports, _ = crawl
    links = sorted({link for r in reports.values() for link in r["notebooks"]})
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


_NO_HEADER = ".md-header, .md-tabs { visibility: hidden !important; }"  # sticky, would cover the widget


def test_palette_toggle_and_screenshots(explorer):
    ex = explorer("conv")
    page = ex.page
    body = page.locator("body")
    shots = os.environ.get("CNNLESSON_SCREENSHOTS")
    ex.set(input_preset="digit", kernel_preset="sobel-x", padding=1)
    for _ in range(9):
        ex.tid("next").click()
    page.mouse.move(0, 0)  # no hover effects in the pictures
    before = body.get_attribute("data-md-color-scheme")
    background = ex.root.evaluate("e => getComputedStyle(e).backgroundColor")
    if shots:
        ex.root.screenshot(path=str(Path(shots) / f"explorer-{'dark' if before == 'slate' else 'light'}.png"),
                           style=_NO_HEADER)
    page.locator('[data-md-component="palette"] label:visible').first.click()
    page.wait_for_function(
        "before => document.body.getAttribute('data-md-color-scheme') !== before", arg=before)
    after = body.get_attribute("data-md-color-scheme")
    assert {before, after} == {"default", "slate"}
    page.mouse.move(0, 0)
    # The widget follows the palette through Material's CSS variables.
    assert ex.root.evaluate("e => getComputedStyle(e).backgroundColor") != background
    if shots:
        ex.root.screenshot(path=str(Path(shots) / f"explorer-{'dark' if after == 'slate' else 'light'}.png"),
                           style=_NO_HEADER)
    assert ex.state()["current"] == {(1, 1)}  # state kept across the switch

