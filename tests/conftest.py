"""Shared fixtures: stand-in data sets, and the built site served to a browser.

Data: small stand-in MNIST and CIFAR-10 in the real on-disk formats, written
once per session with cnnlesson's own writers and read offline: MNIST by
torchvision's own parser, CIFAR-10 by `load_cifar10(root, standin=True)`
(its md5 check would refuse stand-in files).

Site (for browser tests; see tests/test_explorer.py and tests/test_site.py):

- ``build_site(out, site_url=None, env=None)``: runs ``mkdocs build --strict`` into
  ``out`` through mkdocs' public Python API (``CNNLESSON_MKDOCS_YML`` picks
  another config); for tests that need a build of their own.
- ``built_site``: the site, built once per session into a temporary folder,
  with ``site_url`` set to the local server below.
- ``offline_reader``: pytest-playwright's ``page``, allowed only file://
  requests (for the offline copy); any browser problem fails the test.
- ``build_with_hook(folder, hook, results, files)``: a one-page site built with
  one hook of docs/hooks/, for the hooks' own refusals.
- ``offline_site``: the offline copy (``CNNLESSON_OFFLINE=true``), built once per session.
- ``early`` and the ``run_early`` mark: both builds above, and the commands that
  tests mark with ``run_early`` (mypy, the wheel's build), start in child
  processes as the session's first test starts; the test modules that wait
  on them run last, so that the builds use the core the other tests leave idle.
- ``site_url``: that folder served on 127.0.0.1 by ``http.server`` in a
  thread; the base URL, ending in ``/``.
- ``site_pages``: every page of ``built_site``, relative to the site root
  (``""`` for the home page, ``"convolution/"``, ...).
- ``crawl``: every page of ``built_site`` loaded once, with what the browser
  reported, tests/js/page_report.js's report and axe-core's violations in the
  light palette and, after the reader's palette toggle, in the dark one.
- ``watch_browser(page, problems)``: appends console errors, page errors,
  failed requests and HTTP errors of ``page`` to ``problems``.
- ``clean_page``: pytest-playwright's ``page``, failing the test at teardown
  if the browser reported any such problem.
- ``axe_script``: axe-core's script (npm's ``axe-core``, pinned in package-lock.json),
  to evaluate in a page before ``axe.run``.
- ``browser_type_launch_args``: points pytest-playwright at Debian's Chromium
  (``CNNLESSON_CHROMIUM`` picks another); Playwright's download is not used.

Mark browser test modules with ``pytestmark = pytest.mark.browser``: they are
skipped when Chromium is missing, except in CI (``CI=true``), where that fails.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import NamedTuple

import matplotlib
import pytest

# Figures are drawn off-screen in tests, whatever the machine has.
matplotlib.use("Agg")
# Tests pick their device explicitly; a CNNLESSON_DEVICE left in the shell
# would otherwise change what get_device() returns under test.
os.environ.pop("CNNLESSON_DEVICE", None)


def pytest_addoption(parser):
    parser.addoption(
        "--torch-device",
        default=None,
        # Not --device: pytest-playwright owns that one (an emulated phone or tablet).
        help="run every page block with this device (cpu, cuda, mps) as cnnlesson's default "
        "(CNNLESSON_DEVICE); an unavailable device fails the blocks instead of falling back",
    )


@pytest.fixture(autouse=True)
def _no_mps_unless_asked(request, monkeypatch):
    """On a Mac, "auto" would pick MPS; unit tests expect CUDA or the CPU unless `--torch-device mps` asks for it."""
    if request.config.getoption("--torch-device") != "mps":
        monkeypatch.setattr("cnnlesson.device._mps_available", lambda: False)


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory):
    """A data root holding stand-in MNIST under MNIST/raw (IDX files)."""
    from cnnlesson.standin import write_standin_mnist

    root = tmp_path_factory.mktemp("mnist-data")
    write_standin_mnist(root, num_train=512, num_test=256, seed=0)
    return root


@pytest.fixture(scope="session")
def digit_roots(mnist_root, tmp_path_factory):
    """Stand-in MNIST, plus MNIST's real test digits where ../shared has them (a fresh clone has not)."""
    from benchmarks.realdata import real_mnist_root

    real = real_mnist_root(tmp_path_factory.mktemp("real-mnist"))
    return [mnist_root] + ([real] if real is not None else [])


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory):
    """A data root holding stand-in CIFAR-10 under cifar-10-batches-py/."""
    from cnnlesson.standin import write_standin_cifar10

    root = tmp_path_factory.mktemp("cifar-data")
    write_standin_cifar10(root, num_train=200, num_test=100, seed=0)
    return root


@pytest.fixture(scope="session")
def docs_hook():
    """Import a build hook from docs/hooks/ the way mkdocs does: by its path."""
    import importlib.util
    from pathlib import Path

    hooks = Path(__file__).resolve().parents[1] / "docs" / "hooks"

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", hooks / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


# ---- the built site, served to Chromium --------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CNNLESSON_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="session")
def axe_script() -> str:
    """axe-core's script, as npm installed it; evaluate it in a page, then call axe.run."""
    assert AXE.is_file(), f"{AXE} is missing: run `npm ci` (package-lock.json pins axe-core)"
    return AXE.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch arguments, pointed at Debian's Chromium."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


def pytest_collection_modifyitems(config, items):
    """Browser tests fail without Chromium in CI (CI=true) and are skipped elsewhere.

    The test modules that wait on early work (see `run_early` below) run last,
    each module whole and in its own order, so that the work has had time.
    """
    if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):
        skip = pytest.mark.skip(
            reason=f"Chromium not found at {CHROMIUM}: install it with "
            "`apt-get install -y chromium` to run the browser tests"
        )
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(skip)
    waiting = {item.path for item in items if _waits_on_early_work(item)}
    items.sort(key=lambda item: item.path in waiting)  # stable: the order within each part is kept


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".ipynb": "application/x-ipynb+json",
        ".js": "text/javascript",
    }

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # The browser drops connections it no longer needs; that is not a failure.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


# The build runs in a child process: the hooks import the package, draw
# figures and set matplotlib's backend, none of which should leak into the
# test process. load_config + build.build is what `mkdocs build` itself runs;
# they are used instead of the command so that site_url can be set.
_BUILD = """
import logging, sys
from mkdocs import config, exceptions
from mkdocs.commands import build
logging.basicConfig(format="%(levelname)s %(message)s", level=logging.WARNING)  # what `mkdocs` prints
cfg = config.load_config(sys.argv[1], site_url=sys.argv[2] or None, site_dir=sys.argv[3], strict=True)
cfg.plugins.on_startup(command="build", dirty=False)
try:
    build.build(cfg)
except exceptions.Abort as err:
    sys.exit(f"mkdocs build --strict: {err}")
finally:
    cfg.plugins.on_shutdown()
"""


def _build_command(out: Path | str, site_url: str | None = None, env: dict[str, str] | None = None) -> dict:
    """The child process that builds the site into `out`, as subprocess arguments (args, cwd, env)."""
    config_file = Path(os.environ.get("CNNLESSON_MKDOCS_YML", ROOT / "mkdocs.yml"))
    if not config_file.exists():
        pytest.fail(f"{config_file} is missing: nothing to build")
    return {
        "args": [sys.executable, "-c", _BUILD, str(config_file), site_url or "", str(out)],
        "cwd": config_file.parent,
        "env": {**os.environ, "NO_MKDOCS_2_WARNING": "1", **(env or {})},
    }


def _built(proc: subprocess.CompletedProcess, out: Path) -> Path:
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return Path(out)


@pytest.fixture(scope="session")
def build_site():
    """A function: build_site(out, site_url=None, env=None) runs `mkdocs build --strict` into out.

    `env` adds environment variables to the build's (CNNLESSON_OFFLINE=true: the offline copy).
    """

    def build(out: Path, site_url: str | None = None, env: dict[str, str] | None = None) -> Path:
        return _built(subprocess.run(**_build_command(out, site_url, env), capture_output=True, text=True), out)

    return build


# ---- long work, started as the session begins ----------------------------------------------
#
# The two site builds, and the child processes that tests mark with
# `run_early` (mypy, the wheel's build), start as the first test starts; the
# test modules that wait on them run last (pytest_collection_modifyitems).
# Meanwhile they use the core that the other tests leave idle. What a test
# sees is the same as if it had run the command itself.


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "run_early(name, args, **popen): starts `args` in a child process as the session begins ({out} in an "
        "argument is a fresh folder); the test reads (CompletedProcess, out folder) with early.result(name)",
    )


class _Job:
    """One child process started early; it prints into files, so that it never waits on a full pipe."""

    def __init__(self, folder: Path, args: list[str], **popen):
        self.out = folder / "out"
        self.out.mkdir()
        self.args = [arg.replace("{out}", str(self.out)) for arg in args]
        self.logs = [(folder / name).open("w+", encoding="utf-8") for name in ("stdout.txt", "stderr.txt")]
        self.proc = subprocess.Popen(self.args, stdout=self.logs[0], stderr=self.logs[1], text=True, **popen)

    def result(self) -> tuple[subprocess.CompletedProcess, Path]:
        """Waits for the process: (its status and what it printed, its {out} folder)."""
        self.proc.wait()
        printed = []
        for log in self.logs:
            log.seek(0)
            printed.append(log.read())
        return subprocess.CompletedProcess(self.args, self.proc.returncode, *printed), self.out

    def stop(self) -> None:
        if self.proc.poll() is None:  # the session ended without waiting for it (-x, Ctrl-C)
            self.proc.kill()
            self.proc.wait()
        for log in self.logs:
            log.close()


class Early:
    """The session's early jobs, by name. `start` does nothing for a job already started."""

    def __init__(self, tmp_path_factory):
        self.tmp_path_factory, self.jobs = tmp_path_factory, {}

    def start(self, name: str, args: list[str], **popen) -> None:
        if name not in self.jobs:
            self.jobs[name] = _Job(self.tmp_path_factory.mktemp(f"early-{name}"), args, **popen)

    def result(self, name: str) -> tuple[subprocess.CompletedProcess, Path]:
        """Waits for the job: (its status and what it printed, its {out} folder)."""
        assert name in self.jobs, f"no early job {name!r} was started: mark its test with run_early"
        return self.jobs[name].result()

    def stop(self) -> None:
        for job in self.jobs.values():
            job.stop()


# The fixtures that wait on an early site build, and that build's name.
_SITE_FIXTURES = {"built_site": "site", "site_url": "site", "offline_site": "offline"}


def _waits_on_early_work(item) -> bool:
    fixtures = set(getattr(item, "fixturenames", ()))
    return bool(_SITE_FIXTURES.keys() & fixtures) or item.get_closest_marker("run_early") is not None


@pytest.fixture(scope="session")
def early(tmp_path_factory):
    """The session's early jobs (see the `run_early` mark); any still running at the end are stopped."""
    jobs = Early(tmp_path_factory)
    yield jobs
    jobs.stop()


@pytest.fixture(scope="session", autouse=True)
def _start_early_work(request, early):
    """As the first test starts: every early job that a test of this session (not skipped) waits on."""
    items = [item for item in request.session.items if item.get_closest_marker("skip") is None]
    builds = {
        _SITE_FIXTURES[name]
        for item in items
        for name in _SITE_FIXTURES.keys() & set(getattr(item, "fixturenames", ()))
    }
    if "site" in builds:
        _start_site_build(early, request.getfixturevalue("_server"))
    if "offline" in builds:
        _start_offline_build(early)
    for item in items:
        for mark in item.iter_markers("run_early"):
            early.start(*mark.args, **mark.kwargs)


def _start_site_build(early: Early, server) -> None:
    # Material's instant navigation only takes over links whose URL (port
    # included) is listed in sitemap.xml, and sitemap.xml is written from site_url.
    early.start("site", **_build_command("{out}", f"http://127.0.0.1:{server.server_port}/"))


def _start_offline_build(early: Early) -> None:
    early.start("offline", **_build_command("{out}", env={"CNNLESSON_OFFLINE": "true"}))


@pytest.fixture(scope="session")
def _server():
    """A local HTTP server, bound first (so the site can be built for its URL)."""
    server = _QuietServer(("127.0.0.1", 0), _QuietHandler)
    yield server
    server.server_close()


@pytest.fixture(scope="session")
def built_site(_server, early) -> Path:
    """The site, built once per session with `mkdocs build --strict`, for the local server's URL."""
    _start_site_build(early, _server)  # started already, unless this session's tests did not show it needed
    return _built(*early.result("site"))


@pytest.fixture(scope="session")
def site_url(_server, built_site) -> str:
    """Base URL (ending in /) of the built site, served from a thread."""
    _server.RequestHandlerClass = functools.partial(_QuietHandler, directory=str(built_site))
    thread = threading.Thread(target=_server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{_server.server_port}/"
    _server.shutdown()
    thread.join(5)


@pytest.fixture(scope="session")
def site_pages(built_site) -> list[str]:
    """Every page of the built site, as a path relative to the site root."""
    pages = []
    for html in sorted(built_site.rglob("*.html")):
        rel = html.relative_to(built_site).as_posix()
        if rel == "404.html" or rel.startswith("assets/"):
            continue
        pages.append(rel[: -len("index.html")] if rel.endswith("index.html") else rel)
    assert pages, f"no pages found in {built_site}"
    return pages


def _watch(page, problems) -> None:
    page.on("console", lambda msg: msg.type == "error" and problems.append(f"console: {msg.text}"))
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    # ERR_ABORTED is the browser cancelling a request itself (the next page load cut
    # off the last one's favicon); a missing file shows as an HTTP error below.
    page.on(
        "requestfailed",
        lambda req: req.failure != "net::ERR_ABORTED" and problems.append(f"request failed: {req.url} ({req.failure})"),
    )
    page.on("response", lambda res: res.status >= 400 and problems.append(f"HTTP {res.status}: {res.url}"))


@pytest.fixture(scope="session")
def watch_browser():
    """A function: watch_browser(page, problems) appends the page's errors to problems (anything with .append)."""
    return _watch


# The print page (mkdocs-print-site-plugin) is the lesson pages again, one
# after another, in the same CSS: their colours are audited on the pages
# themselves, and the contrast rule would add ~10 s a palette.
AXE_SKIPPED = {page: {"color-contrast": {"enabled": False}} for page in ("print_page/", "print_page.html")}
# axe's violations, each with where it was found and why.
AXE_RUN = """async rules => (await axe.run(document, {resultTypes: ['violations'], rules})).violations.map(v => ({
  id: v.id, impact: v.impact, help: v.help,
  nodes: v.nodes.map(n => n.target.join(' ') + ': ' + (n.failureSummary || '').split('\\n').slice(1, 2).join('').trim()),
}))"""
PALETTES = {"light": "default", "dark": "slate"}  # the reader's palette -> Material's scheme
PHONE = {"width": 390, "height": 844}  # an iPhone 12-14's viewport, in CSS pixels


class Crawl(NamedTuple):
    """What one visit of every page found, each a {page path: ...} dict."""

    reports: dict[str, dict]  # tests/js/page_report.js, once the math is typeset
    problems: dict[str, list[str]]  # console errors, failed requests and HTTP errors (watch_browser)
    violations: dict[str, dict[str, list[dict]]]  # axe-core's, by palette: {"light": [...], "dark": [...]}


@pytest.fixture(scope="session")
def crawl(browser, site_url, site_pages, axe_script) -> Crawl:
    """Visits every page once (a full load): reports on it, then runs axe-core in both palettes.

    Each page opens in the light palette, as for a reader whose system is
    light; the dark palette is then the reader's own toggle (Material does not
    follow a change of the system's palette on an open page).
    """
    from explorer_page import script

    context = browser.new_context(color_scheme="light")
    page = context.new_page()
    found = Crawl({}, {path: [] for path in site_pages}, {})
    current = [site_pages[0]]  # the page being visited, for the listeners
    _watch(page, _PageProblems(found.problems, current))
    try:
        for path in site_pages:
            current[0] = path
            page.goto(site_url + path, wait_until="load")
            if page.locator(".arithmatex, .jupyter-wrapper").count():
                # Give the math renderer time to typeset; math left raw is reported by test_math_is_rendered.
                with contextlib.suppress(Exception):
                    page.wait_for_function(script("math_typeset"), timeout=15000)
            found.reports[path] = page.evaluate(script("page_report"))
            page.evaluate(axe_script)
            found.violations[path] = {}
            for palette, scheme in PALETTES.items():
                if page.evaluate("document.body.dataset.mdColorScheme") != scheme:
                    page.locator('[data-md-component="palette"] label:visible').first.click()
                    page.wait_for_function(f"document.body.dataset.mdColorScheme === {scheme!r}")
                found.violations[path][palette] = page.evaluate(AXE_RUN, AXE_SKIPPED.get(path, {}))
            page.evaluate("localStorage.clear()")  # the next page opens in the light palette again
        page.wait_for_timeout(100)  # late console errors of the last page
    finally:
        context.close()
    return found


class _PageProblems:
    """A list-like target for watch_browser that files problems under the current page."""

    def __init__(self, problems: dict[str, list[str]], current: list[str]):
        self.problems, self.current = problems, current

    def append(self, problem: str) -> None:
        self.problems[self.current[0]].append(problem)


@pytest.fixture
def clean_page(page):
    """pytest-playwright's page; the test fails if it logs errors or a request fails."""
    problems: list[str] = []
    _watch(page, problems)
    yield page
    assert not problems, "browser problems:\n" + "\n".join(problems)


@pytest.fixture
def offline_reader(page, watch_browser):
    """A browser tab allowed only file:// requests; fails the test on any browser problem."""
    problems: list[str] = []
    watch_browser(page, problems)

    def only_files(route):
        problems.append(f"asked the network for {route.request.url}")
        route.abort()

    page.route("http://**/*", only_files)
    page.route("https://**/*", only_files)
    yield page
    page.wait_for_timeout(100)  # late console errors
    assert not problems, "browser problems:\n" + "\n".join(problems)


@pytest.fixture(scope="session")
def build_with_hook():
    """A function: build_with_hook(folder, hook, results, files={}) -> (finished process, site folder).

    It runs `mkdocs build --strict` in `folder` on one page, with docs/hooks/<hook>.py as
    the only hook, `results` as docs/results/results.json and `files` ({path under docs/:
    text}) beside them.
    """

    def build(folder: Path, hook: str, results: dict, files: dict[str, str] | None = None):
        docs, site = folder / "docs", folder / "site"
        (docs / "results").mkdir(parents=True)
        (docs / "index.md").write_text("# Home\n")
        (docs / "results" / "results.json").write_text(json.dumps(results))
        for name, text in (files or {}).items():
            (docs / name).write_text(text)
        config = folder / "mkdocs.yml"
        config.write_text(
            f"site_name: test\ndocs_dir: docs\nsite_dir: {site}\nhooks:\n  - {ROOT / 'docs' / 'hooks' / hook}.py\n"
        )
        command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config)]
        return subprocess.run(command, capture_output=True, text=True, cwd=folder, timeout=300), site

    return build


@pytest.fixture(scope="session")
def offline_site(early) -> Path:
    """The offline copy (`CNNLESSON_OFFLINE=true mkdocs build --strict`), built once per session."""
    _start_offline_build(early)
    return _built(*early.result("offline"))
