"""Serve MathJax from a pinned Python package, so formulas render offline.

The `docs` extra pins `django-static-mathjax` (MathJax 3.2.2, Apache-2.0),
a wheel that ships MathJax's `es5/` build as static files. This hook adds
those files to the site under `assets/mathjax/es5/`; nothing is copied into
the repository and nothing is fetched from a CDN when a page is read.
`docs/javascripts/mathjax-config.js` loads `assets/mathjax/es5/tex-mml-chtml.js`
on the pages that have math (and only there: with its fonts it is 266 KB
gzipped), and it finds its fonts and extensions next to itself.
"""

import importlib.util
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

SITE_FOLDER = "assets/mathjax/es5"


def mathjax_es5() -> Path:
    """The `es5/` folder of the installed django-static-mathjax package."""
    spec = importlib.util.find_spec("mathjax")  # found without importing Django
    if spec is None or not spec.submodule_search_locations:
        raise PluginError('MathJax is missing: pip install -e ".[docs]" (django-static-mathjax)')
    es5 = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax" / "es5"
    if not (es5 / "tex-mml-chtml.js").is_file():
        raise PluginError(f"{es5} holds no tex-mml-chtml.js: reinstall django-static-mathjax")
    return es5


def on_files(files, config):
    es5 = mathjax_es5()
    for path in sorted(es5.rglob("*")):
        if path.is_file():
            uri = f"{SITE_FOLDER}/{path.relative_to(es5).as_posix()}"
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
