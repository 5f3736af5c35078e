"""The pages' MNIST figures: made from real digits by benchmarks/figures.py, recorded, and required by the build."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmarks import figures
from cnnlesson.models import MNISTNet

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"


def test_committed_figures_come_from_a_recorded_real_mnist_run(docs_hook):
    hook = docs_hook("figures")
    assert hook.REAL_FIGURES == figures.FIGURES  # the build serves exactly what the benchmark makes
    record = json.loads((RESULTS / "results.json").read_text())["figures"]
    assert "skipped" not in record
    assert record["data"].startswith("real MNIST digits")
    assert (record["train_images"], record["test_images"]) == (8000, 2000)  # the full split, not --quick
    assert record["epochs"] == figures.EPOCHS and record["seed"] == figures.SEED and record["date"]
    for name in figures.FIGURES:
        assert name in record["figures"] and (RESULTS / name).read_bytes()[:4] == b"\x89PNG"
    sobel = record["sobel"]
    assert sobel["filters"] == len(sobel["best_correlation"]) == 32
    assert sobel["sobel_like"] == sum(c >= sobel["threshold"] for c in sobel["best_correlation"])
    assert sobel["share"] == pytest.approx(sobel["sobel_like"] / sobel["filters"], abs=1e-4)


@pytest.mark.parametrize("case", ["no part", "skipped", "png missing", "no file", "quick run"])
def test_hook_refuses_a_build_without_the_real_figures(docs_hook, tmp_path, case):
    hook = docs_hook("figures")
    record = json.loads((RESULTS / "results.json").read_text())
    if case == "no part":
        del record["figures"]
    elif case == "skipped":
        record["figures"] = {"skipped": "no real digits here"}
    elif case == "quick run":  # a few hundred digits, one epoch: a code check, not a picture to show
        record["quick"] = True
    if case != "no file":
        (tmp_path / "results.json").write_text(json.dumps(record))
    for name in figures.FIGURES[: -1 if case == "png missing" else None]:
        (tmp_path / name).write_bytes((RESULTS / name).read_bytes())
    with pytest.raises(hook.PluginError) as raised:
        hook.real_figures(tmp_path)
    message = str(raised.value)
    assert "\n" not in message and "python -m benchmarks" in message
    if case == "png missing":
        assert figures.FIGURES[-1] in message
    if case == "quick run":
        assert "--quick" in message
    # With everything in place the same folder is accepted.
    (tmp_path / "results.json").write_text(json.dumps(json.loads((RESULTS / "results.json").read_text())))
    for name in figures.FIGURES:
        (tmp_path / name).write_bytes((RESULTS / name).read_bytes())
    assert sorted(hook.real_figures(tmp_path)) == sorted(n.removeprefix("mnist-") for n in figures.FIGURES)


def test_mkdocs_build_strict_fails_with_one_clear_line_without_the_figures(tmp_path, build_with_hook):
    record = json.loads((RESULTS / "results.json").read_text())
    del record["figures"]
    done, _ = build_with_hook(tmp_path, "figures", record)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "no real-MNIST figures recorded" in errors[0] and "python -m benchmarks" in errors[0]
    assert not (tmp_path / ".cache").exists()  # it stopped before drawing, let alone training, anything


def test_sobel_likeness_finds_sobel_kernels_and_not_noise():
    kernels = figures.compass_sobels()
    assert len({k.tobytes() for k in kernels}) == 8
    np.testing.assert_array_equal(kernels[0], figures.SOBEL_X)
    np.testing.assert_array_equal(kernels[2], [[-1, -2, -1], [0, 0, 0], [1, 2, 1]])  # turned 90 degrees: Sobel y
    weight = torch.tensor(np.stack([kernels[3] * 0.1 + 0.05, -figures.SOBEL_X, np.ones((3, 3))]))[:, None]
    scores = figures.sobel_likeness(weight)
    assert scores[0] == pytest.approx(1.0) and scores[1] == pytest.approx(1.0)  # scale, offset, sign
    assert scores[2] == 0.0  # a flat filter correlates with nothing
    noise = torch.randn(200, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    assert np.mean(np.array(figures.sobel_likeness(noise)) >= figures.SOBEL_THRESHOLD) < 0.2
    with pytest.raises(
        ValueError, match=r"weight: expected first-layer filters of shape \(out, 1, 3, 3\), got \(4, 2, 3, 3\)"
    ):
        figures.sobel_likeness(torch.zeros(4, 2, 3, 3))


def test_figures_part_is_skipped_cleanly_without_shared(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLESSON_SHARED", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    assert figures.run(tmp_path, quick=True) == {"skipped": figures.MISSING}
    assert not list(tmp_path.glob("*.png"))


class _Reads(torch.nn.Module):
    """A 'model' that predicts the class written in each image's first pixel."""

    def forward(self, x):
        return torch.nn.functional.one_hot(x[:, 0, 0, 0].long(), 10).float()


def test_predictions_figure_shows_real_mistakes_after_right_ones():
    predicted = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4] * 3)
    X = predicted.float()[:, None, None, None].expand(-1, 1, 2, 2).clone()
    y = predicted.clone()
    wrong_at = [2, 7, 11, 30, 31, 40, 41, 42, 50, 55]
    y[wrong_at] = (y[wrong_at] + 1) % 10
    shown, num_wrong = figures.pick_predictions(_Reads(), X, y)
    right = [k for k in range(len(y)) if k not in wrong_at][: figures.SHOWN_RIGHT]
    assert shown == right + wrong_at[: figures.SHOWN_WRONG] and num_wrong == len(wrong_at)
    # Fewer mistakes than a row: more right ones fill the figure, the mistakes still last.
    y = predicted.clone()
    y[5] = (y[5] + 1) % 10
    shown, num_wrong = figures.pick_predictions(_Reads(), X, y)
    assert num_wrong == 1 and len(shown) == figures.SHOWN_RIGHT + figures.SHOWN_WRONG and shown[-1] == 5


def test_hierarchy_frames_each_units_true_receptive_field():
    torch.manual_seed(0)
    net = MNISTNet()
    image = torch.randn(1, 28, 28)
    layers = figures.hierarchy(net, image)
    assert [info["field_size"] for _, info in layers.values()] == [3, 8]
    for name, (maps, info) in layers.items():
        strongest = maps.flatten(1).amax(1)
        assert info["maps"] == strongest.argsort(descending=True)[: figures.HIERARCHY_MAPS].tolist()
        row, col = info["unit"]
        assert maps[info["maps"][0], row, col] == strongest.max()  # the unit is the strongest response
        # The input pixels that can change the unit (non-zero gradient) lie inside the framed square.
        x = image[None].clone().requires_grad_(True)
        out = F.relu(net.conv1(x))
        if name == "conv2":
            out = F.relu(net.conv2(net.pool1(out)))
        out[0, info["maps"][0], row, col].backward()
        rows, cols = x.grad[0, 0].nonzero(as_tuple=True)
        top, left = info["field_start"]
        size = info["field_size"]
        assert (
            len(rows)
            and top <= rows.min()
            and rows.max() < top + size
            and left <= cols.min()
            and cols.max() < left + size
        )
        if name == "conv1":  # one 3x3 window: every pixel of it (inside the image) counts
            assert len(rows) == len(
                {(r, c) for r in range(max(top, 0), min(top + 3, 28)) for c in range(max(left, 0), min(left + 3, 28))}
            )
    fig = figures.plot_hierarchy(image, layers)
    assert len(fig.axes) == 2 * (1 + figures.HIERARCHY_MAPS)
    figures.plt.close(fig)
