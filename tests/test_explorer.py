"""The convolution and pooling explorer in the built site, driven in Chromium.

Its numbers are read back from the widget's ``data-value`` attributes and
compared with ``cnnlesson.conv`` computed here in Python. The site, server and
Chromium come from tests/conftest.py; the page object from tests/explorer_page.py.

    pytest tests/test_explorer.py -q            # needs /usr/bin/chromium
    CNNLESSON_SCREENSHOTS=/tmp pytest tests/test_explorer.py -q -k palette
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import forkserver
import numpy as np
import pytest
from explorer_page import Explorer, click_link_to, grid_array, open_explorer

from cnnlesson.conv import avg_pool2d, conv2d, max_pool2d

pytestmark = pytest.mark.browser

LESSON_INPUT = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 0, 1, 2]], dtype=float)  # the lesson's section 1: 3x4
KERNELS = {
    "lesson": np.array([[1, 0], [0, 1]], dtype=float),
    "identity": np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=float),
    "sobel-x": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=float),
    "sobel-y": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=float),
    "blur": np.full((3, 3), 1 / 9),
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=float),
}


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


@pytest.fixture
def explorer(clean_page, site_url, explorer_paths):
    """explorer(mode="conv", math=False) opens that mode's page; browser problems fail the test."""
    return lambda mode="conv", math=False: open_explorer(clean_page, site_url + explorer_paths[mode], mode, math)


def conv_ref(x, w, stride=1, padding=0, dilation=1) -> np.ndarray:
    return conv2d(x[None, None], w[None, None], stride=stride, padding=padding, dilation=dilation)[0, 0]


def _last_number(text: str) -> float:
    return float(text.rsplit("=", 1)[1].strip().replace("\u2212", "-"))


def test_lesson_example_matches_conv2d(explorer):
    st = explorer("conv").state()
    np.testing.assert_array_equal(grid_array(st["input"]), LESSON_INPUT)
    out = grid_array(st["output"])
    np.testing.assert_allclose(out, conv_ref(LESSON_INPUT, KERNELS["lesson"]), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(out, [[7, 9, 11], [5, 7, 9]])  # 2x3: rows and columns counted apart
    assert st["calc"].strip() == "1×1 + 2×0 + 5×0 + 6×1 = 7"
    assert st["current"] == {(0, 0)}
    assert st["window"] == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert st["error"] is None


def test_presets_match_conv2d(explorer):
    ex = explorer("conv")
    for image, kernel, stride, padding, dilation in [
        ("digit", "sobel-x", 1, 1, 1),
        ("digit", "sobel-y", 1, 0, 1),
        ("digit", "sharpen", 2, 1, 1),  # stride 2
        ("digit", "blur", 1, 1, 2),  # dilation 2, weights 1/9
        ("lesson", "identity", 3, 2, 1),
    ]:
        ex.set(input_preset=image, kernel_preset=kernel, stride=stride, padding=padding, dilation=dilation)
        st = ex.state()
        x = grid_array(st["input"])
        if image == "digit":
            assert x.shape in {(8, 8), (10, 10)} and set(np.unique(x)) <= set(range(10))
        np.testing.assert_array_equal(grid_array(st["kernel"]), KERNELS[kernel])
        expected = conv_ref(x, KERNELS[kernel], stride, padding, dilation)
        np.testing.assert_allclose(
            grid_array(st["output"]),
            expected,
            rtol=0,
            atol=1e-9,
            err_msg=f"{image} ⋆ {kernel}, s={stride} p={padding} d={dilation}",
        )


def test_typed_input_and_kernel_match_conv2d(explorer):
    ex = explorer("conv")
    ex.set(
        input_text="1, 2.5, -3, 4, 0, 7\n-1 0 2 8 1 1\n3 3 3 -2 5 6\n0.5 1e1 -4 2 2 2\n9 8 7 6 5 4",
        kernel_text="1/2 -1 0\n2, 0.25, -3",
        stride=2,
        padding=1,
    )
    assert ex.tid("input-preset").input_value() == "custom"
    assert ex.tid("kernel-preset").input_value() == "custom"
    x = np.array(
        [[1, 2.5, -3, 4, 0, 7], [-1, 0, 2, 8, 1, 1], [3, 3, 3, -2, 5, 6], [0.5, 10, -4, 2, 2, 2], [9, 8, 7, 6, 5, 4]]
    )
    w = np.array([[0.5, -1, 0], [2, 0.25, -3]])
    st = ex.state()
    np.testing.assert_array_equal(grid_array(st["input"]), x)
    out = grid_array(st["output"])
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
    ex = explorer("conv")  # lesson example: 2x3 output
    ex.tid("stage").focus()
    for key, where in [
        ("ArrowRight", (0, 1)),
        ("ArrowDown", (1, 1)),
        ("ArrowLeft", (1, 0)),
        ("End", (1, 2)),
        ("ArrowRight", (1, 2)),
        ("Home", (0, 0)),
        ("ArrowUp", (0, 0)),
    ]:
        ex.page.keyboard.press(key)
        assert ex.state()["current"] == {where}, key
    ex.tid("play").click()
    assert ex.tid("play").get_attribute("aria-pressed") == "true"
    ex.tid("output").locator('.is-current[data-row="0"][data-col="1"]').wait_for(timeout=5000)
    ex.tid("play").click()
    assert ex.tid("play").get_attribute("aria-pressed") == "false"


def test_keyboard_only_and_live_output(explorer):
    """Tab reaches every control and the grids; keys step the window; the sum is announced (aria-live)."""
    ex = explorer("conv")
    page = ex.page
    live = ex.tid("calc")
    assert live.get_attribute("aria-live") == "polite" and live.get_attribute("aria-atomic") == "true"
    assert ex.tid("error").get_attribute("role") == "alert"
    # Dilation, the one setting the lesson does not teach, says what it does where it appears, tied to the control.
    hint = ex.tid("dilation").evaluate(
        "d => { const h = document.getElementById(d.getAttribute('aria-describedby') || '');"
        " return h && h.checkVisibility() ? h.textContent : ''; }"
    )
    assert "dilation" in hint.lower() and "pixel" in hint, f"the Dilation control's description: {hint!r}"
    ex.tid("input-preset").focus()
    reached = []
    for _ in range(12):  # the widget's controls, in reading order
        reached.append(page.evaluate("document.activeElement.dataset.testid || ''"))
        page.keyboard.press("Tab")
    wanted = [
        "input-preset",
        "kernel-preset",
        "stride",
        "padding",
        "dilation",
        "input-text",
        "kernel-text",
        "stage",
        "next",
    ]
    assert all(w in reached for w in wanted), f"Tab order reached {reached}"
    assert reached.index("stage") < reached.index("next")
    # Arrow keys on the focused grids step the window; the live region says the new sum.
    ex.tid("stage").focus()
    first = live.inner_text()
    page.keyboard.press("ArrowRight")
    assert live.inner_text() != first and live.inner_text().endswith(f"= {ex.grid()[0, 1]:g}")
    # Buttons work from the keyboard: Enter on Next, Space on Play (and again to pause).
    ex.tid("next").focus()
    page.keyboard.press("Enter")
    assert ex.state()["current"] == {(0, 2)}
    ex.tid("play").focus()
    page.keyboard.press("Space")
    assert ex.tid("play").get_attribute("aria-pressed") == "true"
    page.keyboard.press("Space")
    assert ex.tid("play").get_attribute("aria-pressed") == "false"
    # A typed preset choice from the keyboard redraws and announces too.
    ex.tid("kernel-preset").focus()
    page.keyboard.press("ArrowDown")
    assert ex.tid("kernel-preset").input_value() == "identity" and ex.state()["kernel"]


def test_formula_follows_the_settings(explorer):
    ex = explorer("conv")
    formula = ex.state()["formula"]
    assert "⌊(H + 2·P − D·(K − 1) − 1) / S⌋ + 1" in formula
    assert "⌊(3 + 2·0 − 1·(2 − 1) − 1) / 1⌋ + 1 = 2" in formula  # the lesson's 3 rows
    assert "⌊(4 + 2·0 − 1·(2 − 1) − 1) / 1⌋ + 1 = 3" in formula  # and 4 columns
    ex.set(stride=2, padding=1)
    formula = ex.state()["formula"]
    assert "⌊(3 + 2·1 − 1·(2 − 1) − 1) / 2⌋ + 1 = 2" in formula
    assert "⌊(4 + 2·1 − 1·(2 − 1) − 1) / 2⌋ + 1 = 3" in formula
    assert "⌊(4 + 2·0" not in formula
    ex.set(input_text="1 2 3 4 5 6\n6 5 4 3 2 1", dilation=2)  # 2 rows, 6 columns
    st = ex.state()
    lines = st["formula"].splitlines()
    assert any(
        line.startswith("height") and line.endswith("⌊(2 + 2·1 − 2·(2 − 1) − 1) / 2⌋ + 1 = 1") for line in lines
    ), lines
    assert any(
        line.startswith("width") and line.endswith("⌊(6 + 2·1 − 2·(2 − 1) − 1) / 2⌋ + 1 = 3") for line in lines
    ), lines
    assert grid_array(st["output"]).shape == (1, 3)


_GOOD = {
    "stride": 1,
    "dilation": 1,
    "padding": 0,
    "pool-kernel": 2,
    "kernel-text": "1 0\n0 1",
    "input-text": "1 2 3 4\n5 6 7 8\n9 0 1 2",
}


@pytest.mark.parametrize(
    ("mode", "cases"),
    [
        (
            "conv",
            [
                ({"stride": 0}, "Stride"),
                ({"stride": -1}, "Stride"),
                ({"dilation": 0}, "Dilation"),
                ({"padding": -1}, "Padding"),
                ({"kernel-text": "1 1 1 1 1\n" * 5}, "larger than the padded input"),
                ({"dilation": 4}, "larger than the padded input"),
                ({"input-text": "1 2 x\n3 4 5"}, "not a number"),
                ({"kernel-text": "1 2 3\n4 5"}, "same length"),
                ({"input-text": "  "}, "empty"),
            ],
        ),
        (
            "pool",
            [
                ({"pool-kernel": 2, "padding": 2}, "half"),
                ({"pool-kernel": 5}, "larger than the padded input"),
                ({"stride": 0}, "Stride"),
            ],
        ),
    ],
)
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
    for pool, kernel, stride, padding in [("max", 2, None, 0), ("avg", 2, None, 1), ("max", 3, 1, 1), ("avg", 3, 2, 1)]:
        ex.set(pool_type=pool, pool_kernel=kernel)
        assert ex.tid("stride").input_value() == str(kernel)  # PyTorch: stride defaults to kernel_size
        ex.set(**({} if stride is None else {"stride": stride}), padding=padding)
        st = ex.state()
        x = grid_array(st["input"])
        fn = max_pool2d if pool == "max" else avg_pool2d
        expected = fn(x[None, None], kernel, stride=stride, padding=padding)[0, 0]
        np.testing.assert_allclose(
            grid_array(st["output"]), expected, rtol=0, atol=1e-9, err_msg=f"{pool} k={kernel} s={stride} p={padding}"
        )
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
    np.testing.assert_array_equal(grid_array(st["output"]), [[3.5, 5.5]])  # the lesson's third row fits no window
    assert "⌊(3 + 2·0 − 2) / 2⌋ + 1 = 1" in st["formula"]
    assert "⌊(4 + 2·0 − 2) / 2⌋ + 1 = 2" in st["formula"]


def test_explorer_survives_instant_navigation(explorer, site_url, explorer_paths, site_pages):
    ex = explorer("conv", math=True)  # the real page: the math loader also listens to document$
    page = ex.page
    page.evaluate("window.__cnnxNoReload = true")
    other = next(p for p in [explorer_paths["pool"], *site_pages] if p != explorer_paths["conv"])
    click_link_to(page, site_url + other)
    click_link_to(page, site_url + explorer_paths["conv"])
    assert page.evaluate("window.__cnnxNoReload === true"), "the page was reloaded: no instant navigation"
    ex = Explorer(page, "conv").wait_ready()
    assert page.locator('.cnn-explorer[data-mode="conv"]').count() == 1
    for name in ("output", "input", "stride", "next", "calc", "formula"):
        assert ex.tid(name).count() == 1, f"{name} built {ex.tid(name).count()} times"
    ex.tid("next").click()
    st = ex.state()
    assert st["current"] == {(0, 1)}
    assert st["calc"].strip() == "2×1 + 3×0 + 6×0 + 7×1 = 9"


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
        ex.root.screenshot(
            path=str(Path(shots) / f"explorer-{'dark' if before == 'slate' else 'light'}.png"), style=_NO_HEADER
        )
    page.locator('[data-md-component="palette"] label:visible').first.click()
    page.wait_for_function("before => document.body.getAttribute('data-md-color-scheme') !== before", arg=before)
    after = body.get_attribute("data-md-color-scheme")
    assert {before, after} == {"default", "slate"}
    page.mouse.move(0, 0)
    # The widget follows the palette through Material's CSS variables.
    assert ex.root.evaluate("e => getComputedStyle(e).backgroundColor") != background
    if shots:
        ex.root.screenshot(
            path=str(Path(shots) / f"explorer-{'dark' if after == 'slate' else 'light'}.png"), style=_NO_HEADER
        )
    assert ex.state()["current"] == {(1, 1)}  # state kept across the switch


# ---- Copy as Python ----------------------------------------------------------------------------

# Explorer states whose Python must print the grid the page shows: (mode, settings).
COPY_STATES = [
    ("conv", {}),  # the lesson's example
    ("conv", {"input_preset": "digit", "kernel_preset": "sobel-x", "stride": 2, "padding": 1}),
    ("conv", {"input_preset": "digit", "kernel_preset": "blur", "dilation": 2, "padding": 2}),  # 1/9 weights
    (
        "conv",
        {
            "input_text": "1, 2.5, -3, 4, 0, 7\n-1 0 2 8 1 1\n3 3 3 -2 5 6\n0.5 1e1 -4 2 2 2",
            "kernel_text": "1/2 -1 0\n2, 0.25, -3",
            "stride": 2,
            "padding": 1,
            "dilation": 2,
        },
    ),  # 2x3 kernel
    ("pool", {"input_preset": "digit", "pool_kernel": 3, "stride": 2, "padding": 1}),
    ("pool", {"input_preset": "digit", "pool_type": "avg", "pool_kernel": 2, "stride": 1}),
]
# What a snippet may import: cnnlesson and what `pip install cnnlesson` brings with it.
SNIPPET_IMPORTS = {"numpy", "torch", "torch.nn.functional", "cnnlesson.conv"}


def run_snippet(code: str, python: forkserver.ForkServer | forkserver.Spawn, cwd: Path) -> str:
    """Run pasted code in a process of its own, as an isolated `python -I -c` (no PYTHONPATH); its stdout."""
    import ast

    imported = {
        alias.name for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {node.module for node in ast.walk(ast.parse(code)) if isinstance(node, ast.ImportFrom)}
    assert imported <= SNIPPET_IMPORTS, f"the snippet needs more than cnnlesson: {imported - SNIPPET_IMPORTS}"
    proc = python.run(code, ["-c"], dict(os.environ), cwd)
    assert proc.returncode == 0, f"the copied code failed:\n{code}\n{proc.stderr}"
    return proc.stdout


def printed_grid(stdout: str, shape: tuple[int, int]) -> np.ndarray:
    """The grid a snippet printed with print(ours), after its agreement line."""
    first, _, rest = stdout.partition("\n")
    assert first == "torch gives the same grid: True", stdout
    values = [float(t) for t in re.sub(r"[\[\]]", " ", rest).split()]
    return np.array(values).reshape(shape)


def test_copy_as_python_prints_the_grid_the_page_shows(explorer, tmp_path):
    """Each of COPY_STATES: the copied code, run in a Python process of its own, prints the grid the page shows."""
    copied = []  # (code, the grid shown)
    for mode, settings in COPY_STATES:
        ex = explorer(mode)
        ex.set(**settings)
        shown = ex.grid("output")
        ex.tid("copy-python").click()
        code = ex.tid("python").inner_text()
        ex.root.locator('[data-testid="copy-status"]:not(:empty)').wait_for()  # copied, or: select the code shown
        copied.append((code, shown))
        # The code shown follows the settings while it is open.
        padding = 0 if settings.get("padding") else 1
        ex.set(padding=padding)
        assert ex.tid("python").inner_text() != code and f"padding={padding}" in ex.tid("python").inner_text()
    # Each snippet in a process of its own (see tests/forkserver.py), which imports what a snippet may.
    python = forkserver.server(sorted(SNIPPET_IMPORTS), dict(os.environ), tmp_path, isolated=True)
    try:
        printed = [run_snippet(code, python, tmp_path) for code, _ in copied]
    finally:
        python.close()
    for (code, shown), stdout in zip(copied, printed):
        np.testing.assert_allclose(printed_grid(stdout, shown.shape), shown, rtol=1e-7, atol=1e-7, err_msg=code)


def test_copy_as_python_reaches_the_clipboard(explorer):
    ex = explorer("conv")
    ex.page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    ex.set(stride=2)
    ex.tid("copy-python").focus()
    ex.page.keyboard.press("Enter")  # from the keyboard
    ex.tid("copy-status").filter(has_text="Copied").wait_for()
    assert ex.page.evaluate("navigator.clipboard.readText()") == ex.tid("python").inner_text()
    assert ex.tid("copy-status").get_attribute("aria-live") == "polite"
