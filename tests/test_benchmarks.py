"""The benchmarks' quick mode runs every part; the results page only quotes what they measured."""

import json
import re
from pathlib import Path

import pytest

from benchmarks import accuracy
from benchmarks.timing import time_side_by_side
from benchmarks.__main__ import main as run_benchmarks

REPO = Path(__file__).resolve().parents[1]


def test_quick_mode_runs_every_part(tmp_path):
    results = run_benchmarks(["--quick", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert results["quick"] is True and results["machine"]["torch"]
    assert results["conv"]["headline"]["shape"] == [64, 3, 32, 32]
    headline = results["conv"]["headline"]
    assert headline["target"] == 2.0
    assert headline["ratio"] == pytest.approx(headline["numpy_ms"] / headline["torch_ms"], rel=0.01)
    assert results["conv"]["batch_sweep"] and results["conv"]["size_sweep"]
    cpu = results["trainer"]["cpu"]
    assert cpu["ratio"] == pytest.approx(cpu["trainer_images_per_second"] / cpu["lesson_images_per_second"], rel=0.01)
    runs = results["distributed"]["cpu"]["runs"]
    assert [r["processes"] for r in runs] == [1, 2] and all(r["images_per_second"] > 0 for r in runs)
    assert results["distributed"]["cpu"]["speedup"] == pytest.approx(runs[1]["images_per_second"] / runs[0]["images_per_second"], rel=0.01)
    assert "skipped" in results["costs"]
    if "skipped" not in results["accuracy"]:
        assert set(results["accuracy"]["models"]) == {"mnistnet", "cnnwithbn", "lenet5"}
    for part in ("conv", "accuracy"):
        for figure in results[part].get("figures", []):
            assert (tmp_path / figure).read_bytes()[:4] == b"\x89PNG"


def test_time_side_by_side_interleaves_and_reports_medians():
    calls = []
    result = time_side_by_side({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeat=4, warmup=1)
    assert calls == ["a", "b"] * 5  # round-robin, warm-up included
    assert list(result) == ["a", "b"] and all(0 <= t < 0.1 for t in result.values())
    with pytest.raises(ValueError, match="repeat"):
        time_side_by_side({"a": lambda: None}, repeat=0)


def test_accuracy_part_is_skipped_cleanly_without_shared(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLESSON_SHARED", str(tmp_path / "nowhere"))
    result = accuracy.run(tmp_path, quick=True)
    assert result == {"skipped": accuracy.MISSING}
    assert "../shared/data/mnist-t10k" in result["skipped"]


def test_every_results_token_on_the_site_resolves(docs_hook):
    hook = docs_hook("results")
    results = json.loads((REPO / "docs" / "results" / "results.json").read_text())
    used = 0
    for page in sorted((REPO / "docs").rglob("*.md")):
        text = page.read_text()
        used += len(hook.TOKEN.findall(text))
        rendered = hook.render(text, results, page.name)
        assert "{{ results" not in rendered, page
    assert used >= 10


def test_results_tokens_render_values_and_refuse_unknown_names(docs_hook):
    hook = docs_hook("results")
    results = {"trainer": {"cpu": {"ratio": 1.4567}}, "accuracy": {"models": {"m": {"final_test_accuracy": 0.98451}}}}
    assert hook.render("{{ results:trainer.cpu.ratio:x }}", results) == "1.46×"
    assert hook.render("{{ results:accuracy.models.m.final_test_accuracy:pct }}", results) == "98.45 %"
    with pytest.raises(Exception, match=r"names nothing in docs/results/results.json"):
        hook.render("{{ results:trainer.gpu.ratio }}", results)
    with pytest.raises(Exception, match="unknown results format 'pc'"):
        hook.render("{{ results:trainer.cpu.ratio:pc }}", results)


def test_committed_results_are_a_full_run():
    results = json.loads((REPO / "docs" / "results" / "results.json").read_text())
    assert results["quick"] is False, "docs/results must come from `python -m benchmarks`, not --quick"
    assert re.match(r"\d{4}-\d\d-\d\d", results["generated"])
    for part in ("conv", "accuracy"):
        for figure in results[part].get("figures", []):
            assert (REPO / "docs" / "results" / figure).is_file()
