"""Serve KaTeX from the pinned npm package, so formulas render offline.

package.json pins `katex` (MIT); `npm ci` installs it from package-lock.json.
This hook adds its minified script, its stylesheet, its auto-render extension
and its woff2 fonts to the site under `assets/katex/`; nothing is copied into
the repository and nothing is fetched from a CDN when a page is read.
`docs/javascripts/math.js` loads them on the pages that have math, and only
there. Only the woff2 fonts are served: every browser the site targets reads
them, and the stylesheet lists them first, so the .woff/.ttf copies are never asked for.
"""

from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

SITE_FOLDER = "assets/katex"
DIST = Path(__file__).resolve().parents[2] / "node_modules" / "katex" / "dist"
SERVED = ("katex.min.js", "katex.min.css", "contrib/auto-render.min.js")


def katex_files() -> list[Path]:
    """The files of the installed katex package that the site serves."""
    if not (DIST / "katex.min.js").is_file():
        raise PluginError(f"{DIST / 'katex.min.js'} is missing: run `npm ci` (package-lock.json pins katex)")
    return [DIST / name for name in SERVED] + sorted((DIST / "fonts").glob("*.woff2"))


def on_files(files, config):
    for path in katex_files():
        uri = f"{SITE_FOLDER}/{path.relative_to(DIST).as_posix()}"
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
