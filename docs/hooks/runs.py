"""Where each page's code last ran: one line per page, from docs/results/runs.json.

The suite (tests/test_docs.py, tests/test_simulated_gpu.py) writes a record
of each run of the page blocks to `.runs/` (gitignored); `python -m
benchmarks.runs` collects them into `docs/results/runs.json`. This hook:

- adds one line at the foot of every page that has python blocks, saying
  where they all ran (the CPU, a real GPU) and when, or that they have not
  run on a GPU yet; a page whose blocks changed since its record (their hash
  differs) says it has not run since the last change;
- replaces `{{ runs-table }}` (on the results page) with a table of every
  page's runs, and `{{ runs-machines }}` with the runs' software.

The simulated GPU is shown as what it is, never as a GPU run.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from pathlib import Path

from mkdocs.exceptions import PluginError
from pytest_codeblocks.main import extract_from_file

RUNS_JSON = Path("results") / "runs.json"
# The device kinds of runs.json, in the order pages name them.
CPU, SIMULATED, GPU = "cpu", "simulated GPU", "gpu"
RESULTS_ANCHOR = "results.md#runs-of-the-pages"
_runs: dict = {}


def block_codes(path: Path) -> list[str]:
    """The code of each python block of a page, continued blocks merged (as the suite runs them)."""
    return [block.code for block in extract_from_file(path) if block.syntax == "python"]


def code_hash(codes: list[str]) -> str:
    """SHA-256 over a page's python blocks: what tells a later build that the page's code changed."""
    digest = hashlib.sha256()
    for code in codes:
        digest.update(code.encode() + b"\0")
    return digest.hexdigest()


def kind(device: str) -> str:
    """The kind of a run's device: `cpu`, `simulated GPU`, or `gpu` (`cuda: <name>`, `mps`)."""
    return device if device in (CPU, SIMULATED) else GPU


def load(docs_dir) -> dict:
    """runs.json under `docs_dir`; empty (every page "not yet run") when there is none."""
    path = Path(docs_dir) / RUNS_JSON
    if not path.exists():
        return {"runs": {}, "pages": {}}
    try:
        runs = json.loads(path.read_text(encoding="utf-8"))
        runs["runs"], runs["pages"]  # noqa: B018 - the two parts every reader needs
    except (ValueError, KeyError, TypeError) as err:
        raise PluginError(f"{path}: not a runs file ({err}); re-run `python -m benchmarks.runs`") from None
    return runs


def on_config(config):
    _runs.clear()
    _runs.update(load(config["docs_dir"]))
    return config


def _device_name(device: str) -> str:
    """`cuda: NVIDIA H200` -> `an NVIDIA H200`; `mps` -> `Apple's MPS`."""
    if device.startswith("cuda: "):
        name = device.removeprefix("cuda: ")
        word = name.split()[0] if name.split() else name
        # "an" before a vowel sound: a vowel, or an acronym's letter that is said with one (NVIDIA, RTX).
        vowel = word[:1] in "AEIOUaeiou" or (word.isupper() and word[:1] in "AEFHILMNORSX")
        return ("an " if vowel else "a ") + name
    return {"mps": "Apple's MPS"}.get(device, device)


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 1 else "under 1 s"


def _entries(runs: dict, page: str, current: str) -> dict[str, list[dict]]:
    """The page's runs of the current code by kind, each with its run's details."""
    found: dict[str, list[dict]] = {}
    for entry in runs["pages"].get(page, []):
        run = runs["runs"].get(entry["run"])
        if run is None:
            raise PluginError(f"{RUNS_JSON}: page {page} names run {entry['run']!r}, which is not in 'runs'")
        if entry["code_hash"] == current:
            found.setdefault(kind(run["device"]), []).append({**run, **entry})
    return found


def _result(entry: dict) -> str:
    if entry["passed"] == entry["blocks"]:
        return _seconds(entry["seconds"])
    return f"{entry['blocks'] - entry['passed']} of {entry['blocks']} blocks failed"


def ran_on_line(runs: dict, page: str, codes: list[str], results_link: str) -> str:
    """The one line of a page: where its code blocks last ran, from `runs`."""
    link = f"[Measured results]({results_link})"
    current = code_hash(codes)
    found = _entries(runs, page, current)
    if not found:
        if runs["pages"].get(page):
            return f"*The code on this page has not run since the last change to it; see {link}.*"
        return f"*The code on this page has not run yet; see {link}.*"
    parts = [
        f"on the CPU ({cpu['os']}, Python {'.'.join(cpu['python'].split('.')[:2])}, torch {cpu['torch']}, {_result(cpu)})"
        for cpu in found.get(CPU, [])
    ]
    parts += [f"on {_device_name(g['device'])} ({_result(g)})" for g in found.get(GPU, [])]
    if not parts:  # only the simulated GPU ran this code
        return f"*The code on this page has not run on the CPU or a GPU since the last change to it; see {link}.*"
    dates = sorted(e["date"][:10] for k in (CPU, GPU) for e in found.get(k, []))
    ever = {kind(runs["runs"][e["run"]]["device"]) for e in runs["pages"][page]}
    missing = [
        f"not run {what} since the last change" if k in ever else f"not yet run {what}"
        for k, what in ((CPU, "on the CPU"), (GPU, "on a GPU"))
        if not found.get(k)
    ]
    ran = [e for k in (CPU, GPU) for e in found.get(k, [])]
    blocks = "Every code block" if all(e["passed"] == e["blocks"] for e in ran) else "The code blocks"
    after = "".join(f"; {text}" for text in missing)
    return f"*{blocks} on this page ran {' and '.join(parts)}, {dates[-1]}{after}. More in {link}.*"


def _cell(entry: dict | None) -> str:
    if entry is None:
        return "not yet run"
    return f"{entry['passed']} of {entry['blocks']} passed, {_seconds(entry['seconds'])}, {entry['date'][:10]}"


def runs_table(runs: dict, docs_dir: Path) -> str:
    """A Markdown table: each page with blocks, and its newest run of the current code on each kind."""
    lines = ["| page | CPU | simulated GPU | GPU |", "| --- | --- | --- | --- |"]
    for page in sorted(runs["pages"]):
        path = docs_dir / page
        found = _entries(runs, page, code_hash(block_codes(path))) if path.exists() else {}
        ever = {kind(runs["runs"][e["run"]]["device"]) for e in runs["pages"][page]}
        cells = []
        for k in (CPU, SIMULATED, GPU):
            entries = found.get(k, [])
            if k == GPU and entries:
                cells.append("; ".join(f"{e['device']}: {_cell(e)}" for e in entries))
            elif entries:
                cells.append(_cell(entries[-1]))
            else:
                cells.append("not run since the last change" if k in ever else "not yet run")
        lines.append(f"| {page} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machines_table(runs: dict) -> str:
    """A Markdown table of the runs in runs.json: device, system and software, commit and date."""
    lines = [
        "| run | device | system | Python | torch | torchvision | NumPy | commit | date |",
        "|" + " --- |" * 9,
    ]
    for run_id, run in sorted(runs["runs"].items()):
        commit = (run.get("commit") or "unknown")[:10] + (" (uncommitted changes)" if run.get("dirty") else "")
        lines.append(
            f"| {run_id} | {run['device']} | {run['os']} | {run['python']} | {run['torch']} | "
            f"{run['torchvision']} | {run['numpy']} | {commit} | {run['date']} |"
        )
    return "\n".join(lines)


def on_page_markdown(markdown, page, config, files):
    docs_dir = Path(config["docs_dir"])
    markdown = markdown.replace("{{ runs-table }}", runs_table(_runs, docs_dir))
    markdown = markdown.replace("{{ runs-machines }}", machines_table(_runs))
    if page.file.abs_src_path is None:
        return markdown
    codes = block_codes(Path(page.file.abs_src_path))
    if not codes:
        return markdown
    link = posixpath.relpath(RESULTS_ANCHOR, posixpath.dirname(page.file.src_uri) or ".")
    return markdown.rstrip("\n") + "\n\n" + ran_on_line(_runs, page.file.src_uri, codes, link) + "\n"
