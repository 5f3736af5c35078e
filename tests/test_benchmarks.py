"""The benchmarks' quick mode runs every part; the results page only quotes what they measured."""

import json
import math
import re
import sys
import time
from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_info

from benchmarks import accuracy, conv
from benchmarks.__main__ import main as run_benchmarks
from benchmarks.provenance import code_hash, provenance
from benchmarks.realdata import MISSING, SHARED_ENV
from benchmarks.timing import same_threads, time_alone

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    """One `python -m benchmarks --quick` run: (results, its output folder)."""
    out = tmp_path_factory.mktemp("bench")
    return run_benchmarks(["--quick", "--out", str(out)]), out


def test_quick_mode_runs_every_part(quick_results):
    results, out = quick_results
    assert json.loads((out / "results.json").read_text()) == results
    assert results["quick"] is True and results["machine"]["torch"]
    part = results["conv"]
    # Quick mode keeps every layer of the grid, on a batch of 2.
    assert [(case["layer"], case["shape"][1:]) for case in part["grid"]] == [
        (layer.name, list(layer.shape[1:])) for layer in conv.GRID
    ]
    assert part["headline"] == {**part["grid"][0], "target": 2.0}
    for case in part["grid"] + part["by_threads"] + part["pooling"] + [part["backward"]]:
        assert case["ratio"] == pytest.approx(case["numpy_ms"] / case["torch_ms"], rel=0.01, abs=1e-3), case
    ratios = [case["ratio"] for case in part["grid"]]
    assert part["geometric_mean_ratio"] == pytest.approx(math.prod(ratios) ** (1 / len(ratios)), rel=0.01)
    assert part["slowest_ratio"] == max(ratios)
    assert {(row["pool"], row["layer"]) for row in part["pooling"]} == {
        (kind, name) for kind in ("max", "avg") for name, _, _ in conv.POOLS
    }
    loop = part["loop"][0]
    assert loop["loop_over_conv2d"] == pytest.approx(loop["loop_ms"] / loop["conv2d_ms"], rel=0.05, abs=0.1)
    # Both libraries on the same threads, as threadpoolctl read them while timing.
    assert {pool["num_threads"] for pool in part["thread_pools"]} == {part["threads"]}
    assert {pool["user_api"] for pool in part["thread_pools"]} >= {"blas", "torch"}
    cpu = results["trainer"]["cpu"]
    assert cpu["ratio"] == pytest.approx(cpu["trainer_images_per_second"] / cpu["lesson_images_per_second"], rel=0.01)
    assert cpu["images_per_epoch"] == 512 and cpu["steps"] == 8  # the quick stand-in: 512 digits, batches of 64
    for case in part["grid"]:  # the bare matrix product, against torch's whole convolution
        assert case["product_ratio"] == pytest.approx(case["product_ms"] / case["torch_ms"], rel=0.01, abs=1e-3), case
    over = [case["over_product"] for case in part["grid"]]  # conv2d over its own product, round by round
    for case in part["grid"]:
        low, high = case["over_product_range"]
        assert low <= case["over_product"] <= high and case["product_columns_over_outputs"] >= 1
    assert part["over_product_geometric_mean"] == pytest.approx(math.prod(over) ** (1 / len(over)), rel=0.01)
    assert part["targets_met"] == {
        name: measured <= part["targets"][name]
        for name, measured in (
            ("headline", ratios[0]),
            ("grid_geometric_mean", part["geometric_mean_ratio"]),
            ("over_product_slowest", max(over)),
            ("over_product_geometric_mean", part["over_product_geometric_mean"]),
            ("pooling_slowest", max(case["ratio"] for case in part["pooling"])),
            ("backward", part["backward"]["ratio"]),
        )
    }
    unpinned = part["unpinned_headline"]  # timed again in a fresh process
    assert unpinned["shape"] == part["headline"]["shape"] and unpinned["numpy_ms"] > 0 and unpinned["torch_ms"] > 0
    assert results["machine"]["allocator"].startswith("left as it is")  # --quick measures nothing worth pinning for
    if "skipped" in results["distributed"]:  # Windows: no dependable gloo
        assert sys.platform == "win32", results["distributed"]
    else:
        runs = results["distributed"]["cpu"]["runs"]
        assert [r["processes"] for r in runs] == [1, 2] and all(r["images_per_second"] > 0 for r in runs)
        speedup = runs[1]["images_per_second"] / runs[0]["images_per_second"]
        assert results["distributed"]["cpu"]["speedup"] == pytest.approx(speedup, rel=0.01)
    assert "skipped" in results["costs"]
    if "skipped" not in results["accuracy"]:
        models = results["accuracy"]["models"]
        assert set(models) == {"mnistnet", "cnnwithbn", "lenet5"}
        for m in models.values():
            seeds = m["final_test_accuracy_by_seed"]
            assert len(seeds) == len(results["accuracy"]["seeds"]) >= 2
            assert m["final_test_accuracy"] == pytest.approx(sum(seeds) / len(seeds), abs=1e-4)
    for part in ("conv", "accuracy"):
        for figure in results[part].get("figures", []):
            assert (out / figure).read_bytes()[:4] == b"\x89PNG"


def test_quick_results_fill_every_table_and_token(quick_results, docs_hook):
    """Every table renders from a fresh run: the schemas in the hook match what the benchmarks write."""
    hook = docs_hook("results")
    results, _ = quick_results
    for name, spec in hook.TABLES.items():
        rendered = hook.table(results, name)
        if (
            "skipped" in results[spec.source.split(".")[0]]
        ):  # costs in quick mode; accuracy without ../shared; distributed on Windows
            assert rendered.startswith("*Not measured in this run"), name
        else:
            assert rendered.count("\n") >= 2, (name, rendered)  # header, rule, rows
    # The pages quote the real-digit parts too, so they render only when those ran.
    if not any("skipped" in results[part] for part in ("accuracy", "figures")):
        for page in sorted((REPO / "docs").rglob("*.md")):
            assert "{{ results" not in hook.render(page.read_text(), results, page.name), page


def test_pageweight_weighs_what_each_page_loads(quick_results, tmp_path):
    """Quick mode weighs a two-page stand-in in Chromium: the script a page inserts counts, on that page only."""
    from benchmarks import pageweight

    part = quick_results[0]["pageweight"]
    if "skipped" in part:
        pytest.skip(part["skipped"])
    site = pageweight._tiny_site(tmp_path / "site")  # the same files, to weigh by hand
    rows = {row["page"]: row for row in part["pages"]}
    assert set(rows) == {"/", "math/"}
    home, math_page = rows["/"], rows["math/"]
    css, script = pageweight.gzipped(site / "style.css"), pageweight.gzipped(site / "katex.min.js")
    assert home["html"] == pageweight.gzipped(site / "index.html") and home["stylesheets"] == css
    assert home["scripts"] == 0 and not home["math"] and home["kind"] == "without math" and home["target_kb"] == 150
    assert math_page["scripts"] == script and math_page["math"] and math_page["kind"] == "with math"
    assert home["data"] == 0 and math_page["data"] == pageweight.gzipped(site / "index.json")  # a worker's fetch
    for row in rows.values():
        assert row["total"] == sum(row[column] for column in pageweight.COLUMNS)
    # Each file once; what the site cannot answer, and images, are not weighed.
    again = pageweight.weigh(
        site, "math/", ["math/", "style.css", "katex.min.js", "index.json", "style.css", "gone.js"]
    )
    assert again["total"] == math_page["total"]
    assert pageweight.weigh(site, "feature-maps/", [])["kind"] == "feature maps, with its weights"


def test_time_alone_warms_up_then_reports_the_median():
    calls = []
    delays = iter([0.0] * 2 + [0.06, 0.0, 0.0])  # 2 warm-up calls, then 3 timed ones

    def work():
        calls.append(1)
        time.sleep(next(delays))

    result = time_alone(work, rounds=3, warmup=2, warmup_seconds=0.0)
    assert len(calls) == 5
    assert result["median_ms"] < 30 <= 60 <= result["max_ms"]  # the slow call is the max, not the median
    assert result["min_ms"] <= result["median_ms"]
    with pytest.raises(ValueError, match="rounds"):
        time_alone(lambda: None, rounds=0)


def test_same_threads_sets_both_libraries_and_restores_them():
    before_torch = torch.get_num_threads()
    before_blas = [pool["num_threads"] for pool in threadpool_info()]
    with same_threads(1) as pools:
        assert torch.get_num_threads() == 1
        assert {pool["num_threads"] for pool in pools} == {1}
        assert any(pool["user_api"] == "blas" for pool in pools)  # NumPy's BLAS is really there
    assert torch.get_num_threads() == before_torch
    assert [pool["num_threads"] for pool in threadpool_info()] == before_blas
    with pytest.raises(ValueError, match="threads"), same_threads(0):
        pass


def test_accuracy_part_is_skipped_cleanly_without_shared(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLESSON_SHARED", str(tmp_path / "nowhere"))
    result = accuracy.run(tmp_path, quick=True)
    assert result == {"skipped": accuracy.MISSING}
    assert "../shared/data/mnist-t10k" in result["skipped"]


def test_every_results_token_on_the_site_resolves(docs_hook):
    hook = docs_hook("results")
    results = json.loads((REPO / "docs" / "results" / "results.json").read_text())
    for page in sorted((REPO / "docs").rglob("*.md")):
        rendered = hook.render(page.read_text(), results, page.name)
        assert "{{ results" not in rendered, page


def test_results_tokens_render_values_and_refuse_unknown_names(docs_hook):
    hook = docs_hook("results")
    results = {
        "generated": "2026-01-02 03:04 UTC",
        "command": "python -m benchmarks",
        "provenance": {"commit": "0123456789abcdef", "dirty": False},
        "trainer": {"cpu": {"ratio": 1.4567}},
        "accuracy": {"models": {"m": {"final_test_accuracy": 0.98451}}},
        "conv": {"loop": [{"loop_over_torch": 1234.5}]},
    }
    assert hook.render("{{ results:trainer.cpu.ratio:x }}", results, tooltips=False) == "1.46×"
    assert hook.render("{{ results:accuracy.models.m.final_test_accuracy:pct }}", results, tooltips=False) == "98.45 %"
    assert hook.render("{{ results:conv.loop.0.loop_over_torch:x0 }}", results, tooltips=False) == "1,234×"
    for ms, text in ((0.03125, "0.0312 ms"), (4.8249, "4.82 ms"), (12.34, "12.3 ms"), (1234.5, "1,234 ms")):
        assert hook.render("{{ results:conv.loop.0.ms:ms }}", {"conv": {"loop": [{"ms": ms}]}}, tooltips=False) == text
    assert [hook.render("{{ results:t.ok:met }}", {"t": {"ok": ok}}, tooltips=False) for ok in (True, False)] == [
        "met",
        "not met",
    ]
    # A measured value names its run in a tooltip; the run's own fields do not.
    assert hook.render("{{ results:trainer.cpu.ratio:x }}", results) == (
        '<span class="cnn-measured" title="Measured by python -m benchmarks on 2026-01-02 03:04 UTC, '
        'commit 0123456789">1.46×</span>'
    )
    assert hook.render("{{ results:provenance.commit:commit }}", results) == "0123456789"
    with pytest.raises(Exception, match=r"names nothing in docs/results/results.json"):
        hook.render("{{ results:trainer.gpu.ratio }}", results)
    with pytest.raises(Exception, match=r"names nothing"):
        hook.render("{{ results:conv.loop.1.loop_ms }}", results)
    with pytest.raises(Exception, match="unknown results format 'pc'"):
        hook.render("{{ results:trainer.cpu.ratio:pc }}", results)


@pytest.mark.parametrize(
    "mean, std, text",
    [(0.9798, 0.0064, "98 %"), (0.9798, 0.0004, "98.0 %"), (0.9798, 0.00004, "97.98 %"), (0.9798, 0.0, "97.98 %"),
     (0.5, 0.12, "50 %"), (0.9688, 0.0028, "97 %")],
)  # fmt: skip
def test_about_rounds_a_mean_to_what_its_spread_supports(docs_hook, mean, std, text):
    hook = docs_hook("results")
    results = {"accuracy": {"m": {"final": mean, "final_std": std}, "n": {"final": mean}}}
    assert hook.render("{{ results:accuracy.m.final:about }}", results, tooltips=False) == text
    with pytest.raises(Exception, match=r"names nothing .*no 'accuracy.n.final_std'"):
        hook.render("{{ results:accuracy.n.final:about }}", results)


def test_results_tables_report_what_does_not_fit(docs_hook):
    hook = docs_hook("results")
    row = {
        "layer": "l",
        "shape": [1, 1, 4, 4],
        "filters": 1,
        "kernel": 3,
        "stride": 1,
        "padding": 0,
        "numpy_ms": 2.0,
        "torch_ms": 1.0,
        "ratio": 2.0,
        "product_ratio": 0.5,
        "over_product": 1.25,
        "over_product_range": [1.1, 1.4],
    }
    assert "| l | 1×1×4×4 | 1 of 3×3 | 2 | 1 | 2.00× | 0.50× | 1.25× (1.10–1.40) |" in hook.table(
        {"conv": {"grid": [row]}}, "conv-grid"
    )
    broken = {key: value for key, value in row.items() if key != "torch_ms"}
    with pytest.raises(Exception, match=r"conv-grid: row 0 of conv.grid .*KeyError: 'torch_ms'"):
        hook.table({"conv": {"grid": [row, broken][1:]}}, "conv-grid")
    with pytest.raises(Exception, match=r"results-table:conv-grid: docs/results/results.json has no 'conv.grid'"):
        hook.table({"conv": {}}, "conv-grid")
    with pytest.raises(Exception, match=r"results-table:nope is not a table; the tables are machine, conv-grid"):
        hook.render("{{ results-table:nope }}", {})
    assert hook.table({"accuracy": {"skipped": "no digits"}}, "accuracy") == "*Not measured in this run: no digits.*"
    trainer = hook.table({"trainer": {"cuda": None}}, "trainer")
    assert "| cuda | not measured (no such device" in trainer
    with pytest.raises(
        Exception, match=r"results-table:trainer: trainer in .* does not fit the table \(AttributeError"
    ):
        hook.table({"trainer": ["not", "a", "dict"]}, "trainer")
    costs = {
        "mkdocs_build_seconds": 6.0,
        "pytest_seconds": 200.0,
        "pytest_summary": "500 passed",
        "pytest_exit_code": 0,
    }
    assert "| pytest (the whole suite: 500 passed) | 200 s |" in hook.table({"costs": costs}, "costs")
    failed = {**costs, "pytest_summary": "1 failed, 499 passed", "pytest_exit_code": 1}
    with pytest.raises(Exception, match=r"costs: the test suite failed in the measuring run \(1 failed, 499 passed\)"):
        hook.table({"costs": failed}, "costs")


def test_costs_summary_names_the_failed_tests():
    from benchmarks.costs import summary

    passed = "....\n========== 858 passed, 1 skipped, 2 warnings in 741.42s (0:12:21) ==========\n"
    assert summary(passed) == "858 passed, 1 skipped, 2 warnings"
    failed = (
        "F...\n=========================== short test summary info ============================\n"
        "FAILED tests/test_cli.py::test_a - AssertionError: x\nERROR tests/test_b.py::test_c - boom\n"
        "====== 1 failed, 857 passed, 1 error in 700.00s (0:11:40) ======\n"
    )
    assert summary(failed) == "1 failed, 857 passed, 1 error (tests/test_cli.py::test_a, tests/test_b.py::test_c)"


def test_committed_results_are_a_full_run():
    results = json.loads((REPO / "docs" / "results" / "results.json").read_text())
    assert results["quick"] is False, "docs/results must come from `python -m benchmarks`, not --quick"
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC$", results["generated"])
    for part in ("conv", "trainer", "accuracy", "costs"):
        assert "skipped" not in results[part], f"{part}: {results[part].get('skipped')}"
    assert results["costs"]["pytest_exit_code"] == 0, (
        f"the suite failed in that run: {results['costs']['pytest_summary']}"
    )
    for part in ("conv", "accuracy"):
        for figure in results[part]["figures"]:
            assert (REPO / "docs" / "results" / figure).is_file()


def test_committed_results_match_the_code():
    """docs/results/results.json was measured on a clean checkout of the code as it is now."""
    recorded = json.loads((REPO / "docs" / "results" / "results.json").read_text()).get("provenance") or {}
    assert re.fullmatch(r"[0-9a-f]{40}", recorded.get("commit") or ""), f"no commit recorded: {recorded}"
    assert recorded.get("dirty") is False, (
        f"results measured on a checkout of {recorded['commit'][:10]} with uncommitted changes"
    )
    assert recorded.get("code_hash") == code_hash(), (
        f"benchmarks/ or cnnlesson/ changed since commit {recorded['commit'][:10]} was measured: "
        "re-run `python -m benchmarks` on a clean checkout and commit docs/results/"
    )


def test_provenance_hash_follows_the_code(tmp_path):
    for source in ("benchmarks", "cnnlesson"):
        (tmp_path / source / "__pycache__").mkdir(parents=True)
        (tmp_path / source / "a.py").write_text("x = 1\n")
    before = code_hash(tmp_path)
    (tmp_path / "cnnlesson" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"cache")
    (tmp_path / "cnnlesson" / "a.py").write_bytes(b"x = 1\r\n")  # a Windows checkout of the same code
    assert code_hash(tmp_path) == before
    (tmp_path / "benchmarks" / "a.py").write_text("x = 2\n")
    assert code_hash(tmp_path) != before
    here = provenance()
    assert here["code_hash"] == code_hash() and re.fullmatch(r"[0-9a-f]{40}", here["commit"])
    assert isinstance(here["dirty"], bool)
    assert provenance(tmp_path)["commit"] is None or provenance(tmp_path)["commit"] == here["commit"]


def test_only_keeps_the_other_parts_of_the_same_code(tmp_path, monkeypatch):
    # What is kept does not depend on what a part measures: two parts that return at once here
    # (costs is not measured in quick mode, figures not without the real digits) test it in seconds.
    monkeypatch.setenv(SHARED_ENV, str(tmp_path / "nowhere"))
    first = run_benchmarks(["--quick", "--out", str(tmp_path), "--only", "costs"])
    assert [key for key in first if key in ("figures", "costs")] == ["costs"]
    again = run_benchmarks(["--quick", "--out", str(tmp_path), "--only", "figures"])
    assert again["figures"] == {"skipped": MISSING}  # this run's part
    assert again["costs"] == first["costs"]  # same code hash: the other part kept
    stale = json.loads((tmp_path / "results.json").read_text())
    stale["provenance"]["code_hash"] = "0" * 64  # as if measured by other code
    (tmp_path / "results.json").write_text(json.dumps(stale))
    assert "costs" not in run_benchmarks(["--quick", "--out", str(tmp_path), "--only", "figures"])
