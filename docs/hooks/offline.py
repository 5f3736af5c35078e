"""The offline copy: the site read from disk (file://), switched on by `CNNLESSON_OFFLINE=true`.

`mkdocs.yml` lists Material's `offline` plugin, enabled only when that
variable is set (`CNNLESSON_OFFLINE=true mkdocs build --site-dir site-offline`).
The plugin turns off directory URLs and inlines the search index; search
then runs its worker through the `iframe-worker` shim, which the plugin
would fetch from a CDN. This hook serves that shim from the npm package
instead (`npm ci` installs it from package-lock.json), so the offline copy
needs no network at all.

It also turns off instant navigation in that build: from file:// Material
skips it, and its `document$` then completes without ever emitting, so
scripts that wait on it (the explorer, math.js's rendering of each page) would
never start. Without it, `document$` emits once per page load.
"""

from pathlib import Path
from urllib.parse import urlsplit

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

from cnnlesson.files import write_text_atomic

SHIM = "assets/javascripts/iframe-worker/shim.js"
NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"


def offline(config) -> bool:
    """Whether Material's offline plugin is on in this build."""
    plugin = config.plugins.get("material/offline")
    return plugin is not None and bool(plugin.config.enabled)


# Before the offline plugin's own on_config, which adds the CDN shim unless one is listed.
@event_priority(100)
def on_config(config):
    if offline(config):
        config.extra["polyfills"] = [*config.extra.get("polyfills", []), SHIM]
        features = config.theme["features"]
        config.theme["features"] = [f for f in features if not f.startswith("navigation.instant")]
    return config


def on_files(files, config):
    if not offline(config):
        return files
    shim = NODE_MODULES / "iframe-worker" / "shim" / "index.js"
    if not shim.is_file():
        raise PluginError(f"{shim} is missing: run `npm ci` (package-lock.json pins iframe-worker)")
    files.append(File.generated(config, SHIM, abs_src_path=str(shim)))
    return files


# After print-site's own on_post_build, which writes the print page.
@event_priority(-100)
def on_post_build(config):
    """Make the print page's base relative in the offline copy.

    print-site renders print_page.html with the site's absolute path (from
    `site_url`, e.g. "/cnnlesson/") as Material's `base`; read from disk that
    points at the file system's root, and search then loads nothing.
    """
    if not offline(config):
        return
    page = Path(config["site_dir"]) / "print_page.html"
    if not page.is_file():
        return
    root = urlsplit(config["site_url"] or "/").path or "/"
    text = page.read_text(encoding="utf-8")
    fixed = text.replace(f'new URL("{root}"', 'new URL("."').replace(f'"base": "{root}"', '"base": "."')
    if fixed != text:
        write_text_atomic(page, fixed)
