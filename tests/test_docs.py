"""Every code block of the site, run as a reader would run it, plus checks on the fences.

One harness for all pages (like pydantic's docs tests): pytest-codeblocks'
own parser collects every ```python block of every `docs/**/*.md` (blocks
after `<!--pytest-codeblocks:cont-->` merged into the one they continue,
expected outputs attached), and each becomes one test, named `page:line`.
A block runs in a fresh working directory whose `data/` holds small
stand-in MNIST and CIFAR-10 in the real on-disk formats, so the lesson's
`datasets.MNIST('data', ..., download=True)` reads them offline, fast.
Do not also pass `--codeblocks`: the pages would run twice.

pytest-codeblocks compares an expected output with everything the merged
block prints, so a chain of continued blocks shows its output once, after
the block that prints; the blocks after it in the chain print nothing.
"""

import datetime
import importlib.util
import json
import os
import platform
import re
import shutil
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import yaml
from pytest_codeblocks.main import CodeBlock, extract_from_file, stdout_io

from cnnlesson import data

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.relative_to(DOCS).parts)
# Where each run of the page blocks leaves its record (gitignored); `python -m benchmarks.runs` collects them.
RUNS_DIR_ENV = "CNNLESSON_RUNS_DIR"
# Fence languages the site may use: python runs; the others are shown only.
SHOWN_LANGUAGES = {"console", "text", "diff"}


def read_mkdocs_yml() -> dict:
    """mkdocs.yml as mkdocs reads it (its `!ENV` tags included)."""
    from mkdocs.utils.yaml import get_yaml_loader

    return yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=get_yaml_loader())


def page_id(path: Path) -> str:
    return path.relative_to(DOCS).as_posix() if path.is_relative_to(DOCS) else path.name


def collect(pages=PAGES) -> list[tuple[str, CodeBlock]]:
    """(page:line, block) for every python block, continued blocks merged."""
    return [
        (f"{page_id(page)}:{block.lineno}", block)
        for page in pages
        for block in extract_from_file(page)
        if block.syntax == "python"
    ]


def run_block(block: CodeBlock) -> str:
    """Run a block as pytest-codeblocks does; return its stdout, or raise with the code shown."""
    with stdout_io() as out:
        try:
            exec(compile(block.code, f"<block at line {block.lineno}>", "exec"), {"__name__": "__main__"})
        except Exception as err:
            raise AssertionError(
                f"block at line {block.lineno} raised {type(err).__name__}: {err}\n{block.code}"
            ) from err
        finally:
            plt.close("all")
    printed = out.getvalue()
    if block.expected_output is not None and printed != block.expected_output:
        raise AssertionError(
            f"block at line {block.lineno} printed\n{printed}\nbut the page shows\n{block.expected_output}"
        )
    return printed


@pytest.fixture(scope="session")
def docs_data(tmp_path_factory, mnist_root, cifar_root):
    """One data root with both stand-in data sets, as the pages' `data/` folder."""
    root = tmp_path_factory.mktemp("docs-data")
    shutil.copytree(mnist_root / "MNIST", root / "MNIST")
    shutil.copytree(cifar_root / "cifar-10-batches-py", root / "cifar-10-batches-py")
    return root


def read_cifar10_as_standin(monkeypatch) -> None:
    """Make `cnnlesson.data.load_cifar10` read stand-in files, for the pages' blocks.

    The pages load CIFAR-10 as a reader does (md5-checked, so stand-in files
    fail); under test the stand-in reader reads them. Only code chooses it,
    never a file in data/.
    """
    load_cifar10 = data.load_cifar10
    monkeypatch.setattr(
        data, "load_cifar10", lambda *args, **kwargs: load_cifar10(*args, **{**kwargs, "standin": True})
    )


@pytest.fixture
def forced_device(request, monkeypatch) -> str | None:
    """`pytest --torch-device cuda`: the device every page block gets as its default, checked to exist."""
    device = request.config.getoption("--torch-device")
    if device is not None:
        from cnnlesson.device import DEVICE_ENV, get_device

        get_device(device)  # ValueError when the machine lacks it: no silent run on the CPU
        monkeypatch.setenv(DEVICE_ENV, device)
    return device


@pytest.fixture
def reader_dir(tmp_path, monkeypatch, docs_data, forced_device):
    """A fresh working directory holding `data/`, with figures drawn off-screen."""
    shutil.copytree(docs_data, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    read_cifar10_as_standin(monkeypatch)
    return tmp_path


BLOCKS = collect()


def _runs_hook():
    """docs/hooks/runs.py, whose hash of a page's blocks the build compares with the records."""
    spec = importlib.util.spec_from_file_location("docs_hook_runs", DOCS / "hooks" / "runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RunRecord:
    """A record of one run of page blocks: per page, how many ran and passed and their seconds.

    Written on `save()` as one JSON file in `$CNNLESSON_RUNS_DIR` (default `.runs/`), with the
    device, the software, the system, the commit and the date; each page's entry carries the
    hash of its blocks, so a later build can tell that the page changed since.
    """

    def __init__(self, device: str):
        self.device = device
        self.pages: dict[str, dict] = {}
        self.started = datetime.datetime.now(datetime.timezone.utc)

    def add(self, block_id: str, passed: bool, seconds: float) -> None:
        page = block_id.rsplit(":", 1)[0]
        entry = self.pages.setdefault(page, {"ran": 0, "passed": 0, "seconds": 0.0})
        entry["ran"] += 1
        entry["passed"] += passed
        entry["seconds"] += seconds

    def run(self, block_id: str, run) -> None:
        """Call `run()` (one block), recording whether it passed and how long it took."""
        start, passed = time.perf_counter(), False
        try:
            run()
            passed = True
        finally:
            self.add(block_id, passed, time.perf_counter() - start)

    def save(self) -> Path | None:
        """Write the record (nothing when no block ran); return its path."""
        if not self.pages:
            return None
        from benchmarks.provenance import provenance
        from cnnlesson.doctor import installed_versions

        hook = _runs_hook()
        pages = {}
        for page, entry in sorted(self.pages.items()):
            codes = [block.code for block_id, block in BLOCKS if block_id.rsplit(":", 1)[0] == page]
            pages[page] = {**entry, "blocks": len(codes), "code_hash": hook.code_hash(codes)}
        prov = provenance()
        record = {
            "device": self.device,
            **installed_versions(),
            "os": platform.system(),
            "os_release": platform.release(),
            "commit": prov["commit"],
            "dirty": prov["dirty"],
            "code_hash": prov["code_hash"],
            "date": self.started.isoformat(timespec="seconds"),
            "pages": pages,
        }
        folder = Path(os.environ.get(RUNS_DIR_ENV) or ROOT / ".runs")
        folder.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^A-Za-z0-9]+", "-", self.device).strip("-").lower()
        path = folder / f"{self.started:%Y%m%dT%H%M%S}-{slug}-{os.getpid()}.json"
        path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        return path


def records_saved_at_end():
    """The records of a module's page blocks by device, written when the module's tests end."""
    records: dict[str, RunRecord] = {}
    yield records
    for record in records.values():
        record.save()


page_runs = pytest.fixture(records_saved_at_end, scope="module", name="page_runs")


def record_for(records: dict[str, RunRecord], device: str) -> RunRecord:
    return records.setdefault(device, RunRecord(device))


@pytest.mark.parametrize(("block_id", "block"), BLOCKS, ids=[block_id for block_id, _ in BLOCKS])
def test_page_block(block_id, block, reader_dir, page_runs):
    from cnnlesson.device import get_device
    from cnnlesson.doctor import describe_device

    record_for(page_runs, describe_device(get_device())).run(block_id, lambda: run_block(block))


# --- The harness itself --------------------------------------------------------


def test_forced_device_is_the_blocks_default(reader_dir, forced_device):
    """Under `pytest --torch-device D`, a block's `get_device()` (what the pages and the CLI use) is D."""
    from cnnlesson.device import get_device

    block = CodeBlock("from cnnlesson.device import get_device\nprint(get_device())\n", 1, "python")
    expected = str(get_device(forced_device)) if forced_device else str(get_device("auto"))
    assert run_block(block) == expected + "\n"


def test_device_option_reaches_the_blocks():
    """The option gets through pytest to the blocks: a forced CUDA runs them there, or fails them without one."""
    import torch

    class Reports:  # a pytest plugin that keeps each phase's report
        def __init__(self):
            self.seen = []

        def pytest_runtest_logreport(self, report):
            self.seen.append(report)

    reports = Reports()
    # In this process (pytester's in-process way): torch is imported already, so it takes seconds.
    pytest.main([__file__, "-q", "-p", "no:cacheprovider", "--torch-device", "cuda",
                 "-k", "test_forced_device_is_the_blocks_default or (test_page_block and index.md)"],
                plugins=[reports])  # fmt: skip
    ran = {r.nodeid.split("::")[-1].split("[")[0] for r in reports.seen}
    assert ran == {"test_forced_device_is_the_blocks_default", "test_page_block"}, ran
    if torch.cuda.is_available():
        assert all(r.passed for r in reports.seen), [r.longreprtext for r in reports.seen if not r.passed]
    else:  # never a silent fallback to the CPU: both fail at setup, naming the device
        failed = [r for r in reports.seen if r.failed]
        assert [r.when for r in failed] == ["setup", "setup"], [(r.nodeid, r.when) for r in reports.seen]
        assert all("'cuda' is not available" in r.longreprtext for r in failed)


def test_every_page_has_blocks_and_names_are_unique():
    ids = [block_id for block_id, _ in collect()]
    assert len(ids) == len(set(ids))
    lesson = {"convolution.md", "pooling.md", "architecture.md", "conv2d.md", "mnist.md",
              "feature-maps.md", "batchnorm.md", "cifar10.md", "summary.md"}  # fmt: skip
    assert lesson <= {block_id.split(":")[0] for block_id in ids}


def test_broken_page_fails_the_harness(tmp_path, reader_dir):
    page = tmp_path / "broken.md"
    page.write_text(
        "```python\nx = 1\n```\n\n<!--pytest-codeblocks:cont-->\n\n```python\nprint(x + 1)\n```\n\n"
        "<!--pytest-codeblocks:expected-output-->\n\n```text\n3\n```\n\n"
        "```python\nimport torch\ntorch.zeros(2) @ torch.zeros(3)\n```\n"
    )
    (_, wrong_output), (_, raises) = collect([page])
    assert wrong_output.code == "x = 1\nprint(x + 1)\n"  # continued blocks run as one
    with pytest.raises(AssertionError, match="printed\n2\n"):
        run_block(wrong_output)
    with pytest.raises(AssertionError, match="raised RuntimeError"):
        run_block(raises)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_fences_are_runnable_or_shown(page, docs_hook):
    """Python fences open exactly as ```python (others would not run); no other language slips in.

    The fences as docs/hooks/fences.py reads them with pytest-codeblocks, the
    reading the notebook uses too (a fence that never closes fails there).
    """
    found, _ = docs_hook("fences").page_fences(page.read_text(encoding="utf-8"))
    for fence in found:
        where = f"{page_id(page)}:{fence.start}"
        if fence.language == "python":
            assert fence.info == "python", f"{where}: ```{fence.info} would not be run; open it as ```python"
        else:
            assert fence.language in SHOWN_LANGUAGES, (
                f"{where}: ```{fence.info}: use python (run), console or text (shown)"
            )


def test_fence_reading_follows_pytest_codeblocks(docs_hook):
    """Roles of fences: their own block, joined by `cont`, or a block's expected output; a fence left open fails."""
    text = (
        "```python\nx = 1\n\ny = 2\n```\n\n<!--pytest-codeblocks:cont-->\n\n```python\nprint(x)\n```\n\n"
        '<!--pytest-codeblocks:expected-output-->\n\n```text title="Output"\n1\n```\n\n'
        "    ```console\n    $ ls\n    ```\n"
    )
    found, markers = docs_hook("fences").page_fences(text)
    assert [(f.start, f.end, f.role, f.block, f.language) for f in found] == [
        (1, 5, "block", 1, "python"),
        (9, 11, "cont", 1, "python"),
        (15, 17, "output", 1, "text"),
        (19, 21, "block", 19, "console"),
    ]
    assert found[0].lines == ["x = 1", "", "y = 2"] and found[3].lines == ["$ ls"]
    assert markers == {7, 13}
    with pytest.raises(RuntimeError, match="end-of-file"):
        docs_hook("fences").page_fences("```python\nx = 1\n")


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_no_block_is_skipped(page):
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"pytest\.mark\.|pytest-codeblocks:(skip|importorskip|expect-)", text), page_id(page)
    assert all(not block.marks and block.importorskip is None for block in extract_from_file(page))


# --- The notebook ----------------------------------------------------------------


def test_notebook_code_cells_are_the_pages_python_blocks(docs_hook):
    notebook = docs_hook("notebook")
    nav = read_mkdocs_yml()["nav"]
    pages = notebook.lesson_pages(nav)
    nb = notebook.build_notebook(DOCS, pages, lambda page, url: None, notebook.results_renderer(DOCS))
    # The measured numbers are put in, as on the pages.
    assert not any("{{ results" in cell.source for cell in nb.cells)

    # The one cell that is not a page's block: the first code cell installs
    # the version of cnnlesson that the site documents.
    import cnnlesson

    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    install = [cell for cell in code_cells if cell.metadata["cnnlesson"].get("install")]
    assert install == code_cells[:1], "exactly one install cell, and it comes first"
    assert install[0].source == f"%pip install cnnlesson=={cnnlesson.__version__}"

    in_notebook: dict[str, str] = {}
    outputs: dict[str, str] = {}
    for cell in code_cells[1:]:
        if cell.cell_type == "code":
            block_id = cell.metadata["cnnlesson"]["block"]
            in_notebook[block_id] = in_notebook.get(block_id, "") + cell.source + "\n"
            for output in cell.outputs:
                outputs[block_id] = output.text
    on_pages = {block_id: block for block_id, block in collect() if block_id.split(":")[0] in pages}

    def lines(code: str) -> list[str]:
        # pytest-codeblocks drops the blank lines of an indented fence (one
        # inside an admonition); the notebook keeps them for the reader.
        return [line for line in code.splitlines() if line.strip()]

    assert {i: lines(code) for i, code in in_notebook.items()} == {i: lines(b.code) for i, b in on_pages.items()}
    assert outputs == {i: b.expected_output for i, b in on_pages.items() if b.expected_output is not None}
    # Cells follow the nav's page order, and each page's own order.
    order = [(pages.index(i.split(":")[0]), int(i.split(":")[1])) for i in in_notebook]
    assert order == sorted(order)
    # Only the API reference and the results page stay out, and they have no python block.
    assert {block_id.split(":")[0] for block_id, _ in collect()} <= set(pages)


# --- Claims the pages make, checked on their own code ------------------------------


def page_block(page: str, starts_with: str) -> CodeBlock:
    """The python block of `page` whose code contains `starts_with` (exactly one)."""
    found = [block for block_id, block in collect([DOCS / page]) if starts_with in block.code]
    assert len(found) == 1, f"{page}: {len(found)} blocks contain {starts_with!r}"
    return found[0]


def test_learning_a_filter_recovers_the_lessons_filter():
    """The convolution page's gradient descent finds the filter that made the outputs, not just a low loss."""
    import torch

    block = page_block("convolution.md", "K_true = torch.tensor")
    namespace = {"__name__": "__main__"}
    with stdout_io():
        exec(compile(block.code, "<learning a filter>", "exec"), namespace)
    assert torch.allclose(namespace["K"].detach(), namespace["K_true"], atol=1e-4)
    assert not torch.allclose(torch.zeros(1, 1, 2, 2), namespace["K_true"], atol=1e-4)  # it started elsewhere
