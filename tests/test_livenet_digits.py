"""The live network's Python side: MNIST's preprocessing, the weights asset and its build check.

The browser side (the page's JavaScript against these) is tests/test_livenet.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from mkdocs.exceptions import PluginError

from benchmarks import livenet
from cnnlesson.digits import BOX, MIN_PEN, SIZE, STROKE, area_weights, pen_width, preprocess

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def _centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(image.shape) + 0.5
    return float((image * rows).sum() / image.sum()), float((image * cols).sum() / image.sum())


def test_area_weights_average_and_keep_mass():
    weights = area_weights(7, 3)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)  # each output cell is a mean
    np.testing.assert_allclose(weights.sum(axis=0) * 7 / 3, 1.0)  # each input cell counts once in all


@pytest.mark.parametrize("shape,place", [((150, 60), (10, 200)), ((40, 120), (230, 5)), ((8, 8), (100, 100))])
def test_preprocess_fits_the_box_and_centres_the_mass(shape, place):
    pad = np.zeros((280, 280))
    (h, w), (r, c) = shape, place
    pad[r : r + h, c : c + w] = 1.0
    out = preprocess(pad)
    assert out.shape == (SIZE, SIZE) and out.min() >= 0 and out.max() <= 1
    rows, cols = np.flatnonzero(out.max(axis=1)), np.flatnonzero(out.max(axis=0))
    assert max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) == BOX  # the longer side fills the box
    cy, cx = _centre_of_mass(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5  # whole-pixel shifts: within half a pixel
    assert out.sum() == pytest.approx(pad.sum() * (BOX / max(h, w)) ** 2, rel=0.1)  # area averaging keeps ink


def test_preprocess_keeps_an_mnist_digit_nearly_as_it_is():
    digit = np.zeros((28, 28))
    digit[4:24, 11:17] = 1.0  # a "1" already in MNIST's form: 20 tall, centred
    np.testing.assert_allclose(preprocess(digit), digit)


@pytest.mark.parametrize("extent", [30.0, 50.0, 120.0, 250.0])
def test_pen_width_makes_strokes_mnist_thick_after_scaling(extent):
    width = pen_width(extent)
    assert width * BOX / (extent + width) == pytest.approx(STROKE)  # the ink's box, scaled to BOX
    assert STROKE >= 2  # MNIST's strokes are 2-3 pixels of the 20x20 box


def test_pen_width_of_a_dot_and_of_nonsense():
    assert pen_width(0) == MIN_PEN  # a tap still leaves ink
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"^extent: expected a finite number >= 0"):
            pen_width(bad)


def test_preprocess_of_an_empty_pad_is_empty():
    assert not preprocess(np.zeros((50, 40))).any()


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((0, 3)), np.zeros((2, 2, 2))])
def test_preprocess_names_the_argument_on_bad_input(bad):
    with pytest.raises(ValueError, match=r"^ink: expected a non-empty 2-D array"):
        preprocess(bad)


def _with(value: float, row: int) -> np.ndarray:
    pad = np.zeros((60, 60))
    pad[10:50, 20:40] = 1.0
    pad[row, 30] = value
    return pad


@pytest.mark.parametrize(
    "ink,message",
    [
        (_with(np.nan, 10), "expected finite values, got 1 NaN or infinite"),  # the first inked row
        (_with(np.nan, 49), "expected finite values"),  # the last inked row
        (_with(np.inf, 30), "expected finite values"),  # inside the ink
        (_with(-np.inf, 30), "expected finite values"),
        (_with(-0.5, 30), "expected values from 0 to 1"),
        (np.full((20, 20), 128, dtype=np.uint8), r"expected values from 0 to 1 \(0-255 pixels divided by 255\)"),
    ],
)
def test_preprocess_refuses_values_it_cannot_read(ink, message):
    with pytest.raises(ValueError, match=rf"^ink: {message}"):
        preprocess(ink)


def test_preprocess_refuses_a_side_too_long_before_allocating():
    with pytest.raises(ValueError, match=r"^ink: expected at most 10000 pixels a side, got shape \(1, 100000000\)"):
        preprocess(np.broadcast_to(np.float64(0.5), (1, 10**8)))  # a view: no 800 MB array for the test


def test_preprocess_of_ink_that_averages_to_nothing_is_empty():
    pad = np.zeros((100, 10))
    pad[0, 0] = pad[99, 0] = 5e-324  # the smallest float: a fifth of it rounds to zero
    assert not preprocess(pad).any()


@pytest.mark.parametrize("n_in,n_out,name", [(5, 0, "n_out"), (0, 3, "n_in"), (5.0, 2, "n_in")])
def test_area_weights_name_the_bad_count(n_in, n_out, name):
    with pytest.raises((ValueError, TypeError), match=rf"^{name}: expected an int"):
        area_weights(n_in, n_out)


def test_committed_asset_is_the_recorded_run():
    """The asset in docs/results is the one results.json records, under the size the page can afford."""
    record = json.loads((RESULTS / "results.json").read_text("utf-8"))["figures"]["livenet"]
    path = RESULTS / livenet.ASSET
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"]
    assert path.stat().st_size == record["bytes"] <= 2.5e6
    asset = livenet.read_asset(path)
    assert asset["run"] == record["run"] == livenet.run_id(asset["net"])  # the format: tests/test_export.py
    digits = asset["digits"]
    assert sorted(set(digits["labels"])) == list(range(10))
    assert all(8000 <= k < 10000 for k in digits["indices"]), "the picker offers held-out digits only"


# ---- the build hook ---------------------------------------------------------------------------


def _results(folder: Path, sha: str | None) -> None:
    figures = {"figures": []} if sha is None else {"livenet": {"sha256": sha}}
    (folder / "results.json").write_text(json.dumps({"figures": figures}))


def test_hook_serves_the_recorded_asset(tmp_path, docs_hook):
    hook = docs_hook("livenet")
    (tmp_path / hook.ASSET).write_text("window.LIVENET_ASSET = {};\n")
    _results(tmp_path, hashlib.sha256((tmp_path / hook.ASSET).read_bytes()).hexdigest())
    assert hook.checked_asset(tmp_path) == tmp_path / hook.ASSET


@pytest.mark.parametrize(
    "case,message",
    [
        ("unrecorded", "no live-network weights recorded under figures.livenet"),
        ("missing", "livenet-weights.js is missing"),
        ("other-run", "belongs to another run than the figures"),
    ],
)
def test_hook_stops_the_build_with_one_line(tmp_path, docs_hook, case, message):
    hook = docs_hook("livenet")
    if case != "missing":
        (tmp_path / hook.ASSET).write_text("window.LIVENET_ASSET = {};\n")
    _results(tmp_path, None if case == "unrecorded" else "0" * 64)
    with pytest.raises(PluginError) as err:
        hook.checked_asset(tmp_path)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert "python -m benchmarks" in str(err.value)


def _tiny_site(build_with_hook, tmp_path: Path, asset_text: str | None, recorded_sha: str):
    files = {f"results/{livenet.ASSET}": asset_text} if asset_text is not None else {}
    return build_with_hook(tmp_path, "livenet", {"figures": {"livenet": {"sha256": recorded_sha}}}, files)


@pytest.mark.parametrize("case", ["missing", "other-run"])
def test_mkdocs_build_strict_stops_with_one_line(tmp_path, case, build_with_hook):
    done, _ = _tiny_site(
        build_with_hook, tmp_path, None if case == "missing" else "window.LIVENET_ASSET = {};\n", "0" * 64
    )
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert ("is missing" if case == "missing" else "belongs to another run than the figures") in errors[0]


def test_mkdocs_build_serves_the_asset_beside_the_script(tmp_path, build_with_hook):
    text = "window.LIVENET_ASSET = {};\n"
    done, site = _tiny_site(build_with_hook, tmp_path, text, hashlib.sha256(text.encode()).hexdigest())
    assert done.returncode == 0, done.stderr
    assert (site / "javascripts" / livenet.ASSET).read_text() == text
    assert not (site / "results" / livenet.ASSET).exists()  # served once
