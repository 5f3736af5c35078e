"""Where each page's code last ran: the suite's records, `python -m benchmarks.runs`, and each page's line."""

import io
import json
import re

import pytest
from pytest_codeblocks.main import extract_from_buffer
from test_docs import BLOCKS, DOCS, RUNS_DIR_ENV, RunRecord

from benchmarks import runs as collector
from cnnlesson import doctor

PAGE = """# A page

```python
x = 1
```

<!--pytest-codeblocks:cont-->

```python
print(x)
```
"""
RESULTS_PAGE = "# Results\n\n## Runs of the pages\n\n{{ runs-table }}\n\n{{ runs-machines }}\n"


def run(run_id: str, device: str, date: str, pages: dict, **software) -> tuple[str, dict]:
    """A record as RunRecord writes it (software: overrides of this machine's versions)."""
    fields = {**doctor.installed_versions(), "os": "Linux", "os_release": "6.1", "commit": "a" * 40}
    fields.update(dirty=False, code_hash="c" * 64, date=date, device=device, **software)
    return run_id, {**fields, "pages": pages}


def entry(hook, codes: list[str], ran=None, passed=None, seconds=12.4) -> dict:
    ran = len(codes) if ran is None else ran
    return {"ran": ran, "passed": ran if passed is None else passed, "seconds": seconds,
            "blocks": len(codes), "code_hash": hook.code_hash(codes)}  # fmt: skip


@pytest.fixture
def hook(docs_hook):
    return docs_hook("runs")


# --- the records --------------------------------------------------------------------


def test_a_record_names_each_page_its_blocks_and_the_software(tmp_path, monkeypatch, hook):
    monkeypatch.setenv(RUNS_DIR_ENV, str(tmp_path))
    index = [block for block_id, block in BLOCKS if block_id.startswith("index.md:")]
    record = RunRecord("cuda: NVIDIA H200")
    record.run("index.md:1", lambda: None)
    with pytest.raises(ZeroDivisionError):  # a failing block fails its test, and is recorded as failed
        record.run("index.md:2", lambda: 1 / 0)
    path = record.save()
    assert path.parent == tmp_path and path.name.endswith("-cuda-nvidia-h200-" + path.name.rsplit("-", 1)[1])
    saved = json.loads(path.read_text())
    assert saved["device"] == "cuda: NVIDIA H200"
    assert {k: saved[k] for k in ("python", *doctor.PACKAGES)} == doctor.installed_versions()
    assert saved["os"] and saved["date"] and "commit" in saved and "dirty" in saved
    page = saved["pages"]["index.md"]
    assert (page["ran"], page["passed"], page["blocks"]) == (2, 1, len(index))
    assert page["code_hash"] == hook.code_hash(hook.block_codes(DOCS / "index.md"))
    assert list(saved["pages"]) == ["index.md"]
    assert RunRecord("cpu").save() is None  # no block ran: no record


# --- the collector --------------------------------------------------------------------


def test_the_newest_complete_run_of_each_page_and_device_is_kept(hook, tmp_path):
    codes = ["x = 1\n"]
    records = dict(
        [
            run(
                "old-cpu", "cpu", "2026-01-01T00:00:00+00:00", {"a.md": entry(hook, codes), "b.md": entry(hook, codes)}
            ),
            run("new-cpu", "cpu", "2026-02-01T00:00:00+00:00", {"a.md": entry(hook, codes)}, torch="9.9.0"),
            run("partial", "cpu", "2026-03-01T00:00:00+00:00", {"a.md": entry(hook, ["1", "2"], ran=1)}),
            run("sim", "simulated GPU", "2026-01-02T00:00:00+00:00", {"a.md": entry(hook, codes, passed=0)}),
        ]
    )
    runs = collector.collect(records)
    assert {page: [e["run"] for e in entries] for page, entries in runs["pages"].items()} == {
        "a.md": ["new-cpu", "sim"],  # the partial run (1 of 2 blocks ran) is no run of the page
        "b.md": ["old-cpu"],
    }
    assert sorted(runs["runs"]) == ["new-cpu", "old-cpu", "sim"] and "pages" not in runs["runs"]["sim"]
    assert collector.ran_with(runs) == {
        "run": "new-cpu", "date": "2026-02-01T00:00:00+00:00", "os": "Linux",
        **{**doctor.installed_versions(), "torch": "9.9.0"},
    }  # fmt: skip
    # The command: the chosen records in, runs.json and the package's versions out.
    for run_id, record in records.items():
        (tmp_path / f"{run_id}.json").write_text(json.dumps(record))
    out, ran_with = tmp_path / "runs.json", tmp_path / "ran_with.json"
    chosen = [tmp_path / "old-cpu.json", tmp_path / "sim.json"]
    assert collector.main([*map(str, chosen), "--out", str(out), "--ran-with", str(ran_with)]) == 0
    assert sorted(json.loads(out.read_text())["runs"]) == ["old-cpu", "sim"]
    assert json.loads(ran_with.read_text())["run"] == "old-cpu"
    (tmp_path / "bad.json").write_text('{"device": "cpu"}')
    with pytest.raises(SystemExit):
        collector.main([str(tmp_path / "bad.json"), "--out", str(out)])


def test_the_package_carries_the_versions_of_runs_json():
    """One source: cnnlesson/ran_with.json is what the collector derives from the committed runs.json."""
    runs = json.loads((DOCS / "results" / "runs.json").read_text())
    assert doctor.ran_with() == collector.ran_with(runs)


# --- each page's line ------------------------------------------------------------------


def test_the_line_names_the_cpu_and_a_gpu_never_the_simulation(hook):
    codes = hook.block_codes(DOCS / "convolution.md")
    cpu = run("c", "cpu", "2026-12-06T01:00:00+00:00", {}, python="3.11.7", torch="2.14.1+cu130")[1]
    sim = run("s", "simulated GPU", "2026-12-07T01:00:00+00:00", {})[1]
    gpu = run("g", "cuda: NVIDIA H200", "2026-12-07T02:00:00+00:00", {})[1]
    page = lambda *ids, **kw: [{"run": i, **entry(hook, codes, **kw)} for i in ids]  # noqa: E731
    runs = {"runs": {"c": cpu, "s": sim, "g": gpu}, "pages": {"convolution.md": page("c", "s")}}
    link = "results.md#runs-of-the-pages"
    line = hook.ran_on_line(runs, "convolution.md", codes, link)
    assert line == (
        "*Every code block on this page ran on the CPU (Linux, Python 3.11, torch 2.14.1+cu130, 12 s), "
        f"2026-12-06; not yet run on a GPU. More in [Measured results]({link}).*"
    )
    runs["pages"]["convolution.md"] = page("c", "s", "g")
    assert hook.ran_on_line(runs, "convolution.md", codes, link).startswith(
        "*Every code block on this page ran on the CPU (Linux, Python 3.11, torch 2.14.1+cu130, 12 s) "
        "and on an NVIDIA H200 (12 s), 2026-12-07. More in"
    )
    # A page changed since: the line says so, whatever ran before.
    assert hook.ran_on_line(runs, "convolution.md", [*codes, "y = 2\n"], link) == (
        f"*The code on this page has not run since the last change to it; see [Measured results]({link}).*"
    )
    assert hook.ran_on_line(runs, "new.md", codes, link).startswith("*The code on this page has not run yet")
    runs["pages"]["convolution.md"] = page("c", passed=1)
    assert hook.ran_on_line(runs, "convolution.md", codes, link).startswith(
        "*The code blocks on this page ran on the CPU "
        f"(Linux, Python 3.11, torch 2.14.1+cu130, {len(codes) - 1} of {len(codes)} blocks failed), 2026-12-06;"
    )
    # A GPU that ran the page before its last change is not a GPU run of this code.
    old_gpu = {"run": "g", **entry(hook, ["old code\n"])}
    runs["pages"]["convolution.md"] = [*page("c"), old_gpu]
    assert "2026-12-06; not run on a GPU since the last change. More in" in (
        hook.ran_on_line(runs, "convolution.md", codes, link)
    )


def test_a_page_changed_after_its_record_says_so_in_the_build(tmp_path, hook, build_with_hook):
    """Built with the hook: one page as recorded, one whose copy then changed."""
    codes = ["x = 1\nprint(x)\n"]
    assert hook.code_hash(codes) == hook.code_hash([b.code for b in extract_from_buffer(io.StringIO(PAGE))])
    records = dict(
        [
            run(
                "cpu-run",
                "cpu",
                "2026-12-06T01:00:00+00:00",
                {"same.md": entry(hook, codes), "changed.md": entry(hook, codes)},
            )
        ]
    )
    files = {
        "same.md": PAGE,
        "changed.md": PAGE.replace("x = 1", "x = 2"),
        "plain.md": "# No code\n",
        "results.md": RESULTS_PAGE,
        "results/runs.json": json.dumps(collector.collect(records)),
    }
    done, site = build_with_hook(tmp_path, "runs", {}, files)
    assert done.returncode == 0, done.stderr
    same = (site / "same" / "index.html").read_text()
    changed = (site / "changed" / "index.html").read_text()
    assert "Every code block on this page ran on the CPU (Linux, Python " in same
    assert "not yet run on a GPU" in same and 'href="../results/#runs-of-the-pages"' in same
    assert "has not run since the last change to it" in changed and "Every code block" not in changed
    assert "ran on" not in (site / "plain" / "index.html").read_text()
    results = (site / "results" / "index.html").read_text()
    assert re.search(r"<td>changed.md</td>\s*<td>not run since the last change</td>", results)
    assert re.search(r"<td>same.md</td>\s*<td>1 of 1 passed, 12 s, 2026-12-06</td>\s*<td>not yet run</td>", results)


def test_every_page_with_code_shows_its_line_from_runs_json(built_site, hook):
    """The site as built: each page's line is the one runs.json gives for its current code."""
    runs = hook.load(DOCS)
    pages = sorted({block_id.split(":")[0] for block_id, _ in BLOCKS})
    for page in pages:
        line = hook.ran_on_line(runs, page, hook.block_codes(DOCS / page), "results.md#runs-of-the-pages")
        text = re.sub(r"\[Measured results\]\([^)]*\)", "Measured results", line).strip("*")
        built = built_site / ("index.html" if page == "index.md" else f"{page.removesuffix('.md')}/index.html")
        html = built.read_text(encoding="utf-8")
        shown = re.sub(r"<[^>]+>", "", html)
        assert text in shown, f"{page}: {text}"
