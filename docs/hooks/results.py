"""Build-time numbers: every measured figure on the site comes from results.json.

`python -m benchmarks` writes `docs/results/results.json`. Pages never type a
measured number; they name it, and this hook puts in the value:

- `{{ results:accuracy.models.mnistnet.final_test_accuracy:pct }}` -> `98.45 %`
  (formats: `pct` a fraction as a percentage, `x` a ratio as `4.44×`,
  `int` a count with thousands separators, `ms`, `s`; none: as stored);
- `{{ results-table:NAME }}` -> a Markdown table built from a whole part
  (`machine`, `conv`, `trainer`, `distributed`, `accuracy`, `costs`).

A name that is not in the file stops the build, so a page cannot quote a
number that the benchmarks did not produce.
"""

import json
import re
from pathlib import Path

from mkdocs.exceptions import PluginError

TOKEN = re.compile(r"\{\{\s*results(-table)?:([\w.\-]+)(?::(\w+))?\s*\}\}")
_results: dict = {}


def load(docs_dir) -> dict:
    """The results file that `python -m benchmarks` wrote under `docs_dir`."""
    return json.loads((Path(docs_dir) / "results" / "results.json").read_text(encoding="utf-8"))


def on_config(config):
    _results.clear()
    _results.update(load(config["docs_dir"]))
    return config


def lookup(results: dict, dotted: str):
    """The value at a dotted path such as `trainer.cpu.ratio`."""
    value = results
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            raise KeyError(dotted)
        value = value[key]
    return value


FORMATS = {
    None: str,
    "pct": lambda v: f"{100 * v:.2f} %",
    "x": lambda v: f"{v:.2f}×",
    "int": lambda v: f"{v:,}",
    "ms": lambda v: f"{v:.1f} ms",
    "s": lambda v: f"{v:.0f} s",
}


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _skipped(part: dict) -> str | None:
    return f"*Not measured in this run: {part['skipped']}.*" if "skipped" in part else None


def table(results: dict, name: str) -> str:
    """A Markdown table of one part of the results."""
    part = results[name]
    if name == "machine":
        return _table(["what", "value"], [[k, v if v is not None else "none"] for k, v in part.items()])
    if _skipped(part):
        return _skipped(part)
    if name == "conv":
        cases = [part["headline"]] + part["batch_sweep"] + part["size_sweep"]
        seen, rows = set(), []
        for case in cases:
            shape = "×".join(map(str, case["shape"]))
            if shape not in seen:
                seen.add(shape)
                rows.append([shape, f"{case['numpy_ms']:.1f}", f"{case['torch_ms']:.1f}", f"{case['ratio']:.2f}×"])
        return _table(["input (N×C×H×W), 64 3×3 filters", "NumPy conv2d (ms)", "torch conv2d (ms)", "NumPy / torch"], rows)
    if name == "trainer":
        rows = []
        for device, run in part.items():
            if run is None:
                rows.append([device, "not measured (no such device on the machine that ran the benchmarks)", "", "", ""])
                continue
            rows.append([
                device,
                f"{run['lesson_images_per_second']:,.0f}",
                f"{run['trainer_images_per_second']:,.0f}",
                f"{run['ratio']:.2f}× (target ≥ {run['target']:g}×)",
                f"{run['images_per_epoch']:,} {run['data']}, {run['steps']} steps of {run['batch_size']}",
            ])  # fmt: skip
        return _table(["device", "lesson's loop (images/s)", "cnnlesson.train (images/s)", "speed-up", "data"], rows)
    if name == "distributed":
        rows = [
            [device, "not measured (no such device on the machine that ran the benchmarks)", "", "", ""]
            if run is None
            else [device, r["processes"], r["threads_per_process"] if device == "cpu" else "", f"{r['images_per_second']:,.0f}", run["data"]]
            for device, run in part.items()
            for r in ([None] if run is None else run["runs"])
        ]
        return _table(["device", "processes", "threads each", "images/s (all processes)", "data"], rows)
    if name == "accuracy":
        epochs = part["epochs"]
        header = ["model", "parameters"] + [f"epoch {e + 1}" for e in range(epochs)] + ["training time"]
        rows = [
            [name, f"{m['parameters']:,}"] + [f"{100 * a:.2f} %" for a in m["test_accuracy"]] + [f"{m['train_seconds']:.0f} s"]
            for name, m in part["models"].items()
        ]
        return _table(header, rows)
    if name == "costs":
        return _table(
            ["what", "time"],
            [["mkdocs build --strict", f"{part['mkdocs_build_seconds']:.0f} s"],
             [f"pytest (the whole suite: {part['pytest_summary']})", f"{part['pytest_seconds']:.0f} s"]],
        )  # fmt: skip
    raise KeyError(name)


def render(markdown: str, results: dict, where: str = "page") -> str:
    """Replace every results token in `markdown` with its value or table."""

    def replace(match):
        is_table, dotted, fmt = match.groups()
        try:
            if is_table:
                return table(results, dotted)
            if fmt not in FORMATS:
                raise PluginError(f"{where}: unknown results format {fmt!r} in {match.group(0)}")
            return FORMATS[fmt](lookup(results, dotted))
        except KeyError:
            raise PluginError(f"{where}: {match.group(0)} names nothing in docs/results/results.json") from None

    return TOKEN.sub(replace, markdown)


def on_page_markdown(markdown, page, config, files):
    return render(markdown, _results, page.file.src_uri)
