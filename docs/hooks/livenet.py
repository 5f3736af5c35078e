"""Serve the live network's weights, and stop the build when they are not the figures run's.

The feature-maps page runs the MNISTNet whose figures it shows, in the
reader's browser (docs/javascripts/livenet*.js). `python -m benchmarks` (its
figures part, see benchmarks/livenet.py) writes that network's layers and
int8 weights as a script, docs/results/livenet-weights.js, and records the
script's SHA-256 under "figures" -> "livenet" in results.json. This hook
serves it next to livenet-ui.js, as javascripts/livenet-weights.js, which
the page loads with a `<script>` element when the widget comes into view
(a script loads from file://, where fetch does not).
A missing asset, or one whose hash is not the recorded one (weights of
another run than the figures), stops the build with one line.
"""

import hashlib
import json
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ASSET = "livenet-weights.js"
SITE_PATH = f"javascripts/{ASSET}"
RUN_IT = "run `python -m benchmarks` (its figures part) with the real MNIST digits beside the clone"


def checked_asset(results_dir: Path) -> Path:
    """The weights script under results_dir, after checking it is the one the figures run recorded."""
    asset = Path(results_dir) / ASSET
    try:
        record = json.loads((Path(results_dir) / "results.json").read_text(encoding="utf-8"))["figures"]["livenet"]
        expected = record["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise PluginError(
            f"livenet: no live-network weights recorded under figures.livenet in "
            f"{Path(results_dir) / 'results.json'} ({type(err).__name__}); {RUN_IT}"
        ) from None
    if not asset.is_file():
        raise PluginError(f"livenet: {asset} is missing; {RUN_IT}")
    found = hashlib.sha256(asset.read_bytes()).hexdigest()
    if found != expected:
        raise PluginError(
            f"livenet: {asset} belongs to another run than the figures "
            f"(sha256 {found[:12]}, the figures run recorded {expected[:12]}); {RUN_IT}"
        )
    return asset


def on_files(files, config):
    asset = checked_asset(Path(config.docs_dir) / "results")
    # Served once, beside the script that loads it, not also as results/livenet-weights.js.
    copy = files.get_file_from_path(f"results/{ASSET}")
    if copy is not None:
        files.remove(copy)
    files.append(File.generated(config, SITE_PATH, abs_src_path=str(asset)))
    return files
