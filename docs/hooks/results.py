"""Build-time numbers: every measured figure on the site comes from results.json.

`python -m benchmarks` writes `docs/results/results.json`. Pages never type a
measured number; they name it, and this hook puts in the value:

- `{{ results:accuracy.models.mnistnet.final_test_accuracy:pct }}` -> `98.45 %`
  (formats: `pct` a fraction as a percentage, `x` a ratio as `4.44×`, `x0`
  a large ratio as `1,234×`, `int` a count with thousands separators, `ms`
  with three significant digits, `s`, `commit` the first 10 characters of a
  commit, `list` items joined by commas, `met` a target's true/false as
  "met"/"not met"; `about` a mean fraction as a percentage rounded to
  what the standard deviation recorded beside it (`<name>_std`) supports,
  `98 %` for 0.9798 ± 0.0064; none: as stored). A number in a path indexes a list
  (`conv.loop.0.loop_ms`). A measured value carries a tooltip naming the
  run that measured it (date and commit);
- `{{ results-table:NAME }}` -> a Markdown table, one of `TABLES`.

Each table's schema (where its rows are in the file, its columns and how
each cell is written) is declared once, in `TABLES`. A name that is not in
the file, or a row that lacks a column's field, stops the build with an
error that says which, so a page cannot quote a number that the benchmarks
did not produce.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from mkdocs.exceptions import PluginError

TOKEN = re.compile(r"\{\{\s*results(-table)?:([\w.\-]+)(?::(\w+))?\s*\}\}")
# Top-level keys that describe the run rather than measure something: quoted without a tooltip.
RUN_KEYS = {"generated", "command", "quick", "provenance", "machine"}
ABSENT = "__absent__"
_results: dict = {}


def load(docs_dir) -> dict:
    """The results file that `python -m benchmarks` wrote under `docs_dir`."""
    return json.loads((Path(docs_dir) / "results" / "results.json").read_text(encoding="utf-8"))


def on_config(config):
    _results.clear()
    _results.update(load(config["docs_dir"]))
    return config


def lookup(results: dict, dotted: str):
    """The value at a dotted path such as `trainer.cpu.ratio` or `conv.loop.0.loop_ms` (list index).

    Raises KeyError naming the path when it leads nowhere.
    """
    value = results
    for key in dotted.split("."):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            raise KeyError(dotted)
    return value


def _digits(value: float) -> str:
    """Three significant digits, whole numbers from 100 up: 0.0312, 4.82, 1,234."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _ms(value: float) -> str:
    return _digits(value) + " ms"


FORMATS = {
    None: str,
    "pct": lambda v: f"{100 * v:.2f} %",
    "x": lambda v: f"{v:.2f}×",
    "x0": lambda v: f"{v:,.0f}×",
    "int": lambda v: f"{v:,}",
    "ms": lambda v: _ms(v),
    "s": lambda v: f"{v:.0f} s",
    "commit": lambda v: "unknown" if v is None else str(v)[:10],
    "list": lambda v: ", ".join(map(str, v)),
    "met": lambda v: {True: "met", False: "not met"}[v],
    "about": lambda pair: about(*pair),  # render() passes the mean and its `_std` sibling
}


STD_SUFFIX = "_std"  # where a mean's standard deviation is recorded: beside it, under the mean's name + this


def about(mean: float, std: float) -> str:
    """A mean fraction as a percentage, rounded to the decimal place that its standard deviation reaches.

    A digit finer than the spread is noise: 0.9798 ± 0.0064 (97.98 ± 0.64 %) is `98 %`,
    0.9798 ± 0.0004 is `98.0 %`. Whole percent is the coarsest; a spread of 0 keeps two decimals.
    """
    mean, std = 100 * float(mean), 100 * float(std)
    if not (math.isfinite(mean) and math.isfinite(std)) or std < 0:
        raise ValueError(f"expected a finite mean and a finite, non-negative standard deviation, got {mean}, {std}")
    # The last digit kept is the finest one at least as large as the spread: whole percent to two decimals.
    place = min(max(math.ceil(math.log10(std)), -2), 0) if std > 0 else -2
    step = 10.0**place
    return f"{math.floor(mean / step + 0.5) * step:.{-place}f} %"


def stamp(results: dict) -> str:
    """Which run measured the numbers: command, date and commit (dirty tree said so)."""
    prov = results.get("provenance") or {}
    commit = FORMATS["commit"](prov.get("commit"))
    dirty = " with uncommitted changes" if prov.get("dirty") else ""
    return f"Measured by {results.get('command', 'python -m benchmarks')} on {results.get('generated', '?')}, commit {commit}{dirty}"


# ---- tables: one schema each --------------------------------------------------------------


def _shape(row: dict) -> str:
    return "×".join(map(str, row["shape"]))


def _filters(row: dict) -> str:
    text = f"{row['filters']} of {row['kernel']}×{row['kernel']}"
    return (
        text
        + (f", stride {row['stride']}" if row["stride"] != 1 else "")
        + (f", pad {row['padding']}" if row["padding"] else "")
    )


def _pm(mean_key: str, std_key: str) -> Callable[[dict], str]:
    return lambda row: f"{100 * row[mean_key]:.2f} ± {100 * row[std_key]:.2f} %"


def _sweeps(part: dict) -> list[dict]:
    """Both sweeps' rows as measured (the batch sweep's 64 repeats the headline's shape: compare them)."""
    return [*part["batch_sweep"], *part["size_sweep"]]


def _costs(part: dict) -> list[dict]:
    if part["pytest_exit_code"] != 0:  # a failing suite is not a cost to publish
        raise PluginError(
            f"costs: the test suite failed in the measuring run ({part['pytest_summary']}); "
            "fix it and re-run `python -m benchmarks`"
        )
    return [
        {"what": "mkdocs build --strict", "seconds": part["mkdocs_build_seconds"]},
        {"what": f"pytest (the whole suite: {part['pytest_summary']})", "seconds": part["pytest_seconds"]},
    ]


def _machine_value(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, dict):  # the allocator's settings
        return ", ".join(f"{key} {_machine_value(item)}" for key, item in value.items())
    if isinstance(value, list):  # thread pools as threadpoolctl read them
        return "; ".join(f"{p.get('internal_api')} ({p.get('prefix')}): {p.get('num_threads')} threads" for p in value)
    return str(value)


def _named(part: dict) -> list[dict]:
    """A dict of name -> row as rows with a `name` field; a None row is marked absent."""
    return [{"name": name, ABSENT: True} if row is None else {"name": name, **row} for name, row in part.items()]


def _runs(part: dict) -> list[dict]:
    """Each device's runs (1, 2, ... processes) as rows; a device the machine lacked is marked absent."""
    return [
        {"name": device, ABSENT: True} if run is None else {"name": device, "data": run["data"], **r}
        for device, run in part.items()
        for r in ([None] if run is None else run["runs"])
    ]


class Table(NamedTuple):
    """Where a table's rows are in results.json, and its columns.

    `source` is a dotted path; `rows` turns what is there into a list of dicts
    (default: the list itself). A column is (header, cell): `cell` is a format
    string over a row's fields (`"{numpy_ms:.1f}"`) or a function of the row.
    A row marked ABSENT (a device the machine did not have) is written as
    its name and `absent`.
    """

    source: str
    columns: list[tuple[str, str | Callable[[dict], str]]]
    rows: Callable[[object], list] = list
    absent: str = "not measured"


RATIO = [
    ("NumPy conv2d (ms)", lambda row: _digits(row["numpy_ms"])),
    ("torch (ms)", lambda row: _digits(row["torch_ms"])),
    ("NumPy ÷ torch", "{ratio:.2f}×"),
]

TABLES: dict[str, Table] = {
    "machine": Table(
        "machine",
        [("what", "{name}"), ("value", lambda row: _machine_value(row["value"]))],
        rows=lambda part: [{"name": key, "value": value} for key, value in part.items()],
    ),
    "conv-grid": Table(
        "conv.grid",
        [
            ("layer", "{layer}"),
            ("input (N×C×H×W)", _shape),
            ("filters", _filters),
            *RATIO,
            ("its matrix product alone ÷ torch", "{product_ratio:.2f}×"),
            (
                "conv2d ÷ its product (spread)",
                lambda row: (
                    f"{row['over_product']:.2f}× "
                    f"({row['over_product_range'][0]:.2f}–{row['over_product_range'][1]:.2f})"
                ),
            ),
        ],
    ),
    "conv-threads": Table(
        "conv.by_threads", [("threads, each library", "{threads}"), ("input (N×C×H×W)", _shape), *RATIO]
    ),
    "conv-loop": Table(
        "conv.loop",
        [
            ("image", lambda row: "×".join(map(str, row["image"]))),
            ("kernel", lambda row: "×".join(map(str, row["kernel"]))),
            ("lesson's loop conv2d_numpy (ms)", lambda row: _digits(row["loop_ms"])),
            ("conv2d (ms)", lambda row: _digits(row["conv2d_ms"])),
            ("torch (ms)", lambda row: _digits(row["torch_ms"])),
            ("loop ÷ conv2d", "{loop_over_conv2d:,.0f}×"),
            ("loop ÷ torch", "{loop_over_torch:,.0f}×"),
        ],
    ),
    "conv-backward": Table(
        "conv",
        [
            ("input (N×C×H×W)", lambda part: _shape(part["backward"])),
            ("filters", lambda part: _filters(part["backward"])),
            ("conv2d_backward (ms)", lambda part: _digits(part["backward"]["numpy_ms"])),
            ("torch autograd (ms)", lambda part: _digits(part["backward"]["torch_ms"])),
            (
                "NumPy ÷ torch",
                lambda part: f"{part['backward']['ratio']:.2f}× (target ≤ {part['targets']['backward']:g}×)",
            ),
        ],
        rows=lambda part: [part],
    ),
    "conv-pooling": Table(
        "conv.pooling",
        [
            ("pooling", "{pool}_pool2d"),
            ("layer", "{layer}"),
            ("input (N×C×H×W)", _shape),
            ("window", "{kernel}×{kernel}"),
            ("NumPy (ms)", lambda row: _digits(row["numpy_ms"])),
            ("torch (ms)", lambda row: _digits(row["torch_ms"])),
            ("NumPy ÷ torch", "{ratio:.2f}×"),
        ],
    ),
    "conv-sweeps": Table("conv", [("input (N×C×H×W), 64 3×3 filters", _shape), *RATIO], rows=_sweeps),
    "trainer": Table(
        "trainer",
        [
            ("device", "{name}"),
            ("lesson's loop (images/s)", "{lesson_images_per_second:,.0f}"),
            ("cnnlesson.train (images/s)", "{trainer_images_per_second:,.0f}"),
            ("speed-up, one epoch", "{ratio:.2f}× (target ≥ {target:g}×)"),
            ("counting the setup", "{ratio_first_epoch_with_setup:.2f}×"),
            ("data", "{images_per_epoch:,} {data}, {steps} steps of {batch_size}"),
        ],
        rows=_named,
        absent="not measured (no such device on the machine that ran the benchmarks)",
    ),
    "accuracy": Table(
        "accuracy.models",
        [
            ("model", "{name}"),
            ("parameters", "{parameters:,}"),
            ("final test accuracy, mean ± std", _pm("final_test_accuracy", "final_test_accuracy_std")),
            ("each seed", lambda row: ", ".join(f"{100 * a:.2f} %" for a in row["final_test_accuracy_by_seed"])),
            ("per epoch, mean (%)", lambda row: " → ".join(f"{100 * a:.2f}" for a in row["test_accuracy"])),
            ("training time per run", "{train_seconds:.0f} s"),
        ],
        rows=_named,
    ),
    "distributed": Table(
        "distributed",
        [
            ("device", "{name}"),
            ("processes", "{processes}"),
            ("threads each", lambda row: str(row["threads_per_process"]) if row["name"] == "cpu" else ""),
            ("images/s (all processes)", "{images_per_second:,.0f}"),
            ("data", "{data}"),
        ],
        rows=_runs,
        absent="not measured (no such device on the machine that ran the benchmarks)",
    ),
    "costs": Table("costs", [("what", "{what}"), ("time", "{seconds:.0f} s")], rows=_costs),
    "pageweight": Table(
        "pageweight.pages",
        [
            ("page", "{page}"),
            ("HTML (KB)", lambda row: f"{row['html'] / 1000:,.0f}"),
            ("scripts (KB)", lambda row: f"{row['scripts'] / 1000:,.0f}"),
            ("stylesheets (KB)", lambda row: f"{row['stylesheets'] / 1000:,.0f}"),
            ("fonts (KB)", lambda row: f"{row['fonts'] / 1000:,.0f}"),
            ("other (KB)", lambda row: f"{row['data'] / 1000:,.0f}"),
            ("total (KB)", lambda row: f"**{row['total'] / 1000:,.0f}**"),
            (
                "target",
                lambda row: (
                    f"{row['kind']}: none"
                    if row["target_kb"] is None
                    else f"{row['kind']}: ≤ {row['target_kb']:,} KB, {'met' if row['met'] else 'not met'}"
                ),
            ),
        ],
    ),
}


def _cell(cell, row: dict) -> str:
    return cell(row) if callable(cell) else cell.format_map(row)


def table(results: dict, name: str) -> str:
    """A Markdown table; PluginError saying what is missing when the file does not fit the schema."""
    if name not in TABLES:
        raise PluginError(f"results-table:{name} is not a table; the tables are {', '.join(TABLES)}")
    spec = TABLES[name]
    part = results.get(spec.source.split(".")[0])
    if isinstance(part, dict) and "skipped" in part:
        return f"*Not measured in this run: {part['skipped']}.*"
    try:
        rows = spec.rows(lookup(results, spec.source))
    except KeyError as err:
        raise PluginError(
            f"results-table:{name}: docs/results/results.json has no {err.args[0]!r}; re-run `python -m benchmarks`"
        ) from None
    except (AttributeError, TypeError) as err:  # the part is there, but not in the shape TABLES expects
        raise PluginError(
            f"results-table:{name}: {spec.source} in docs/results/results.json does not fit the table "
            f"({type(err).__name__}: {err}); re-run `python -m benchmarks` or fix TABLES in "
            "docs/hooks/results.py"
        ) from None
    lines = ["| " + " | ".join(header for header, _ in spec.columns) + " |", "|" + " --- |" * len(spec.columns)]
    for i, row in enumerate(rows):
        if row.get(ABSENT):
            lines.append("| " + " | ".join([row["name"], spec.absent] + [""] * (len(spec.columns) - 2)) + " |")
            continue
        try:
            lines.append("| " + " | ".join(_cell(cell, row) for _, cell in spec.columns) + " |")
        except (KeyError, TypeError, ValueError) as err:
            raise PluginError(
                f"results-table:{name}: row {i} of {spec.source} in docs/results/results.json "
                f"does not fit the table ({type(err).__name__}: {err}); "
                "re-run `python -m benchmarks` or fix TABLES in docs/hooks/results.py"
            ) from None
    return "\n".join(lines)


def render(markdown: str, results: dict, where: str = "page", tooltips: bool = True) -> str:
    """Replace every results token in `markdown` with its value or table.

    With `tooltips`, a measured value is wrapped in a span whose title says
    which run measured it (the notebook leaves them out).
    """
    title = html.escape(stamp(results), quote=True)

    def replace(match):
        is_table, dotted, fmt = match.groups()
        if is_table:
            try:
                return table(results, dotted)
            except PluginError as err:
                raise PluginError(f"{where}: {err}") from None
        if fmt not in FORMATS:
            raise PluginError(f"{where}: unknown results format {fmt!r} in {match.group(0)}")
        try:
            value = lookup(results, dotted)
            if fmt == "about":
                value = (value, lookup(results, dotted + STD_SUFFIX))
        except KeyError as err:
            raise PluginError(
                f"{where}: {match.group(0)} names nothing in docs/results/results.json (no {err.args[0]!r})"
            ) from None
        try:
            text = FORMATS[fmt](value)
        except (TypeError, ValueError) as err:
            raise PluginError(
                f"{where}: {match.group(0)}: the value {value!r} does not take the format {fmt!r} ({err})"
            ) from None
        if not tooltips or dotted.split(".")[0] in RUN_KEYS:
            return text
        return f'<span class="cnn-measured" title="{title}">{text}</span>'

    return TOKEN.sub(replace, markdown)


def on_page_markdown(markdown, page, config, files):
    return render(markdown, _results, page.file.src_uri)
