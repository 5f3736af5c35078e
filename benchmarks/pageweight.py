"""What each page of the built site transfers: its HTML and every script, stylesheet and font it loads.

Each page is opened in headless Chromium from a local server, scrolled to
its end (the feature-maps page loads its network's weights when the widget
comes into view), and left until the network is idle. Every file it or its
workers asked the site for, images apart, counts once at its gzip (level 6)
size, what a server that compresses sends; files that scripts ask for count
too (the math renderer on pages with math, the weights, the search index).
Nothing is cached between pages: each number is a first visit.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import gzip
import http.server
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from benchmarks.livenet import CHROMIUM

LEVEL = 6  # gzip level: nginx's and most servers' default is 1-6; 6 is gzip's own default
TARGETS_KB = {"without_math": 150, "with_math": 450, "feature_maps": 900}
KIND_TEXT = {
    "without_math": "without math",
    "with_math": "with math",
    "feature_maps": "feature maps, with its weights",
    "whole_lesson": "the whole lesson",
}
# The notebook and the print page repeat the whole lesson: no lesson-page target fits them.
WHOLE_LESSON = {"lesson/", "print_page/"}
KINDS = {".js": "scripts", ".css": "stylesheets", ".woff": "fonts", ".woff2": "fonts", ".ttf": "fonts", ".otf": "fonts"}
IMAGES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".avif", ".ico"}
COLUMNS = ("html", "scripts", "stylesheets", "fonts", "data")  # data: the rest, e.g. the search index


def gzipped(path: Path) -> int:
    """The file's size in bytes once gzipped at LEVEL (no name or time in the header)."""
    return len(gzip.compress(path.read_bytes(), compresslevel=LEVEL, mtime=0))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def served(site: Path) -> Iterator[str]:
    """Serve `site` on a free local port; yields its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def site_pages(site: Path) -> list[str]:
    """Every page of a built site (its index.html files), as paths from the root: "" for the home page."""
    pages = [p.parent.relative_to(site).as_posix() + "/" for p in site.rglob("index.html")]
    return sorted("" if page == "./" else page for page in pages)


def _requests(site_url: str, pages: list[str]) -> dict[str, list[str]]:
    """The site's files each page asked for on a first visit, as paths from the root."""
    from playwright.sync_api import sync_playwright

    found: dict[str, list[str]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            for page_path in pages:
                context = browser.new_context()  # a fresh cache for each page
                asked: list[str] = []
                # The context's requests: the page's and its workers' (the search index comes through one).
                context.on("request", lambda r, asked=asked: r.url.startswith(site_url) and asked.append(r.url))
                page = context.new_page()
                page.goto(site_url + page_path, wait_until="load")
                page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
                page.wait_for_load_state("networkidle")
                with contextlib.suppress(Exception):  # a page whose widget does not start is weighed as it is
                    if page.locator(".livenet").count():
                        page.locator(".livenet.livenet-ready").first.wait_for(timeout=30000)
                        page.wait_for_load_state("networkidle")
                found[page_path] = [unquote(urlsplit(url).path).lstrip("/") for url in asked]
                context.close()
        finally:
            browser.close()
    return found


def weigh(site: Path, page_path: str, asked: list[str]) -> dict:
    """One page's gzipped bytes: its HTML, and each kind of file it asked for (each file once; images apart)."""
    row = {"page": page_path or "/", **dict.fromkeys(COLUMNS, 0)}
    for rel in dict.fromkeys(asked):  # each file once, in the order asked
        file = site / rel
        if rel == "" or rel.endswith("/"):
            file = file / "index.html"
        if not file.is_file():
            continue  # a request the site cannot answer (reported by the site's tests, not weighed here)
        suffix = file.suffix.lower()
        if suffix not in IMAGES:
            row["html" if suffix == ".html" else KINDS.get(suffix, "data")] += gzipped(file)
    row["total"] = sum(row[column] for column in COLUMNS)
    row["math"] = any(rel.split("/")[-1] == "katex.min.js" for rel in asked)
    if page_path in WHOLE_LESSON:
        kind = "whole_lesson"
    else:
        kind = "feature_maps" if page_path == "feature-maps/" else "with_math" if row["math"] else "without_math"
    row["kind"], row["target_kb"] = KIND_TEXT[kind], TARGETS_KB.get(kind)
    row["met"] = row["target_kb"] is None or row["total"] <= 1000 * row["target_kb"]
    return row


def measure(site: Path) -> list[dict]:
    """Every page of the built `site`, weighed (see the module's docstring)."""
    pages = site_pages(site)
    with served(site) as url, concurrent.futures.ThreadPoolExecutor(1) as pool:
        # Playwright's sync API refuses to run inside an asyncio loop (pytest-playwright's): a thread has none.
        asked = pool.submit(_requests, url, pages).result()
    return [weigh(site, page, asked[page]) for page in pages]


def _tiny_site(folder: Path) -> Path:
    """Quick mode's site: a page without math and one that inserts a script, as mathjax-config.js does."""
    (folder / "math").mkdir(parents=True)
    (folder / "style.css").write_text("body { color: #222; }\n" * 50)
    (folder / "katex.min.js").write_text("window.typeset = true;\n" * 200)
    (folder / "index.html").write_text('<!doctype html><title>home</title><link rel="stylesheet" href="style.css">')
    (folder / "index.json").write_text('{"docs": []}\n' * 40)
    (folder / "math" / "index.html").write_text(
        '<!doctype html><title>math</title><link rel="stylesheet" href="../style.css">'
        "<script>const s = document.createElement('script'); s.src = '../katex.min.js';"
        " document.head.append(s);"
        # Fetched from a worker, as Material's search fetches its index: it counts too.
        " new Worker(URL.createObjectURL(new Blob(['fetch(\"' + new URL('../index.json', location) + '\")'])));"
        "</script>"
    )
    return folder


def settings() -> dict:
    """How pages are weighed, and the targets: what the results page quotes even before a run has measured."""
    return {"gzip_level": LEVEL, "targets_kb": TARGETS_KB}


def run(out_dir: Path, quick: bool = False, work: Path | None = None) -> dict:
    """Build the site (quick: a two-page stand-in) and weigh every page; the targets beside them."""
    if not Path(CHROMIUM).exists():
        return {"skipped": f"Chromium not found at {CHROMIUM}"}
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        site = Path(tmp) / "site"
        if quick:
            _tiny_site(site)
        else:
            subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)], check=True)
        pages = measure(site)
    return {
        **settings(),
        "site": "stand-in" if quick else "mkdocs build",
        "pages": pages,
    }
