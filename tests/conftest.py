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
- ``site_url``: that folder served on 127.0.0.1 by ``http.server`` in a
  thread; the base URL, ending in ``/``.
- ``site_pages``: every page of ``built_site``, relative to the site root
  (``""`` for the home page, ``"convolution/"``, ...).
- ``watch_browser(page, problems)``: appends console errors, page errors,
  failed requests and HTTP errors of ``page`` to ``problems``.
- ``clean_page``: pytest-playwright's ``page``, failing the test at teardown
  if the browser reported any such problem.
- ``browser_type_launch_args``: points pytest-playwright at Debian's Chromium
  (``CNNLESSON_CHROMIUM`` picks another); Playwright's download is not used.

Mark browser test modules with ``pytestmark = pytest.mark.browser``: they are
skipped when Chromium is missing, except in CI (``CI=true``), where that fails.
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

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
    from cnnlesson.data import write_standin_mnist

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
    from cnnlesson.data import write_standin_cifar10

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
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch arguments, pointed at Debian's Chromium."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


def pytest_collection_modifyitems(config, items):
    """Browser tests fail without Chromium in CI (CI=true) and are skipped elsewhere."""
    if os.path.exists(CHROMIUM) or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason=f"Chromium not found at {CHROMIUM}: install it with "
                                   "`apt-get install -y chromium` to run the browser tests")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".ipynb": "application/x-ipynb+json", ".js": "text/javascript"}

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # The browser drops connections it no longer needs; that is not a failure.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


# The build runs in a child process: the hooks import the package, train a
# small net and set matplotlib's backend, none of which should leak into the
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


@pytest.fixture(scope="session")
def build_site():
    """A function: build_site(out, site_url=None, env=None) runs `mkdocs build --strict` into out.

    `env` adds environment variables to the build's (CNNLESSON_OFFLINE=true: the offline copy).
    """
    config_file = Path(os.environ.get("CNNLESSON_MKDOCS_YML", ROOT / "mkdocs.yml"))
    if not config_file.exists():
        pytest.fail(f"{config_file} is missing: nothing to build")

    def build(out: Path, site_url: str | None = None, env: dict[str, str] | None = None) -> Path:
        proc = subprocess.run([sys.executable, "-c", _BUILD, str(config_file), site_url or "", str(out)],
                              cwd=config_file.parent, capture_output=True, text=True,
                              env={**os.environ, "NO_MKDOCS_2_WARNING": "1", **(env or {})})
        assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
        return Path(out)

    return build


@pytest.fixture(scope="session")
def _server():
    """A local HTTP server, bound first (so the site can be built for its URL)."""
    server = _QuietServer(("127.0.0.1", 0), _QuietHandler)
    yield server
    server.server_close()


@pytest.fixture(scope="session")
def built_site(_server, build_site, tmp_path_factory) -> Path:
    """The site, built once per session with `mkdocs build --strict`, for the local server's URL."""
    # Material's instant navigation only takes over links whose URL (port
    # included) is listed in sitemap.xml, and sitemap.xml is written from site_url.
    return build_site(tmp_path_factory.mktemp("site"), f"http://127.0.0.1:{_server.server_port}/")


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
    page.on("requestfailed", lambda req: req.failure != "net::ERR_ABORTED"
            and problems.append(f"request failed: {req.url} ({req.failure})"))
    page.on("response", lambda res: res.status >= 400 and problems.append(f"HTTP {res.status}: {res.url}"))


@pytest.fixture(scope="session")
def watch_browser():
    """A function: watch_browser(page, problems) appends the page's errors to problems (anything with .append)."""
    return _watch


@pytest.fixture
def clean_page(page):
    """pytest-playwright's page; the test fails if it logs errors or a request fails."""
    problems: list[str] = []
    _watch(page, problems)
    yield page
    assert not problems, "browser problems:\n" + "\n".join(problems)


@pytest.fixture(scope="session")
def offline_site(build_site, tmp_path_factory) -> Path:
    """The offline copy (CNNLESSON_OFFLINE=true), built once per session, to open by file://."""
    return build_site(tmp_path_factory.mktemp("site-offline"), env={"CNNLESSON_OFFLINE": "true"})
