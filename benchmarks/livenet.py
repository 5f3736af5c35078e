"""The feature-maps page's live network: its weights, and how it runs in Chromium.

The figures part (benchmarks/figures.py) trains the MNISTNet whose figures
the pages show and hands it to `export`, which

- writes the network as a script the page loads (ASSET, next to
  results.json: a `<script>` loads from file:// where `fetch` is refused):
  the layer list of `cnnlesson.export` with int8 weights (one scale per
  output channel, 7 bits of it used: see WEIGHTS), and a few of the run's
  held-out digits for the page's digit picker;
- runs the page's own JavaScript interpreter (docs/javascripts/livenet.js)
  in headless Chromium on every held-out digit: its accuracy against
  PyTorch's on the same (dequantised) weights, the largest logit
  difference, and the median time of one forward pass;
- returns the record that the figures part stores, with the asset's SHA-256:
  docs/hooks/livenet.py stops the build when the asset is not that one.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from benchmarks.realdata import REPO
from cnnlesson.data import MNIST_MEAN, MNIST_STD
from cnnlesson.export import export_net, read_net
from cnnlesson.files import write_text_atomic
from cnnlesson.models import MNISTNet

ASSET = "livenet-weights.js"
JAVASCRIPT = REPO / "docs" / "javascripts"
CHROMIUM = os.environ.get("CNNLESSON_CHROMIUM", "/usr/bin/chromium")
PICKER_PER_CLASS = 2  # held-out digits of each class the page offers
FORWARD_TARGET_MS = 10.0  # the maps must follow the pen
# The page's weights: int8 bytes (a quarter of float32's), rounded to 7 bits, whose values
# compress better than 8 bits' (414 KB gzipped against 428 KB: the feature-maps page with its
# weights then stays under 900 KB gzipped; 6 bits read one digit fewer of the 200 placed
# ones of tests/test_livenet.py); the browser is checked on exactly these.
WEIGHTS, BITS = "int8", 7
PREFIX = "window.LIVENET_ASSET = "


def as_bytes(X: torch.Tensor) -> np.ndarray:
    """Normalised MNIST images back to their 0-255 pixels, (n, 784) uint8."""
    pixels = (X.detach().cpu().double() * MNIST_STD[0] + MNIST_MEAN[0]) * 255
    return pixels.round().clamp(0, 255).to(torch.uint8).reshape(len(X), -1).numpy()


def picker_digits(y: torch.Tensor, per_class: int = PICKER_PER_CLASS) -> list[int]:
    """Positions in the held-out split of its first `per_class` digits of each class, class by class."""
    labels = y.cpu().tolist()
    return [i for d in range(10) for i in [k for k, label in enumerate(labels) if label == d][:per_class]]


def read_asset(path: Path) -> dict:
    """The JSON object inside an asset written by `write_asset`.

    Raises:
        ValueError: the file is not such an asset (names the file and what is missing).
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    line = next((line for line in text.splitlines() if line.startswith(PREFIX)), None)
    if line is None or not line.rstrip().endswith(";"):
        raise ValueError(f"asset: {path} is not a live-network asset (no line `{PREFIX}{{...}};`)")
    try:
        asset = json.loads(line.rstrip()[len(PREFIX) : -1])
    except ValueError as err:
        raise ValueError(f"asset: {path}: the object after `{PREFIX.strip()}` is not JSON ({err})") from None
    missing = [key for key in ("run", "model", "net", "digits") if not isinstance(asset, dict) or key not in asset]
    if missing:
        raise ValueError(f"asset: {path} lacks {', '.join(missing)}; it was not written by write_asset")
    return asset


def run_id(net_doc: dict) -> str:
    """The run's name: the first 16 hex digits of the SHA-256 of its layers (the weights name the run)."""
    return hashlib.sha256(json.dumps(net_doc["layers"], sort_keys=True).encode("ascii")).hexdigest()[:16]


def write_asset(path: Path, net: MNISTNet, X: torch.Tensor, y: torch.Tensor, first_index: int) -> dict:
    """Write the page's script asset; return its run id and the picker's digits.

    Everything is checked before anything is written: the page shows an
    MNISTNet with finite weights, and X, y are normalised 28x28 digits with
    labels 0-9, at least one of them.

    Raises:
        ValueError: what is wrong, naming the argument.
    """
    if type(net) is not MNISTNet:
        raise ValueError(f"net: the feature-maps page shows an MNISTNet, got {type(net).__name__}")
    if not isinstance(X, torch.Tensor) or X.dim() != 4 or tuple(X.shape[1:]) != (1, 28, 28) or not len(X):
        got = tuple(X.shape) if isinstance(X, torch.Tensor) else type(X).__name__
        raise ValueError(f"X: expected at least one normalised digit, shape (n, 1, 28, 28), got {got}")
    if not torch.isfinite(X).all():
        raise ValueError("X: holds NaN or infinite values")
    if not isinstance(y, torch.Tensor) or y.shape != (len(X),) or y.is_floating_point():
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"y: expected {len(X)} integer labels, one per digit of X, got {got}")
    if len(y) and not ((y >= 0) & (y <= 9)).all():
        bad = int(y[(y < 0) | (y > 9)][0])
        raise ValueError(f"y: expected labels 0 to 9, got {bad}")
    if isinstance(first_index, bool) or not isinstance(first_index, int) or first_index < 0:
        raise ValueError(f"first_index: expected an int >= 0, got {first_index!r}")
    doc = export_net(net, WEIGHTS, BITS)  # checks the weights are finite, and that the layers are the forward
    chosen = picker_digits(y)
    run = run_id(doc)
    asset = {
        "run": run,
        "model": "MNISTNet",
        "net": doc,
        "digits": {
            "labels": [int(y[k]) for k in chosen],
            "indices": [first_index + k for k in chosen],  # positions in MNIST's 10,000-digit test set
            "pixels": base64.b64encode(as_bytes(X[chosen]).tobytes()).decode("ascii"),
        },
    }
    text = (
        "// MNISTNet's weights for the feature-maps page, written by `python -m benchmarks`\n"
        "// (benchmarks/livenet.py) with the figures of the same run. Do not edit.\n"
        f"{PREFIX}{json.dumps(asset)};\n"
    )
    write_text_atomic(path, text)
    return {"run": run, "weights": f"{WEIGHTS}, {BITS} bits", "picker_digits": len(chosen)}


def _in_chromium(images: str, asset: Path, rounds: int) -> tuple[list, list, str]:
    """livenet.js's logits for base64 float32 images, and `rounds` timed forward passes."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.set_content("<!doctype html><title>livenet</title>")
            page.add_script_tag(path=str(JAVASCRIPT / "livenet.js"))
            page.add_script_tag(path=str(asset))
            logits = page.evaluate(
                """images => {
              const net = LiveNet.load(window.LIVENET_ASSET.net);
              const all = new Float32Array(LiveNet.bytesOf(images).buffer), out = [];
              for (let k = 0; k < all.length / 784; k++) {
                out.push(Array.from(LiveNet.forward(net, all.subarray(k * 784, (k + 1) * 784)).logits));
              }
              return out;
            }""",
                images,
            )
            times = page.evaluate(
                """rounds => {
              const net = LiveNet.load(window.LIVENET_ASSET.net);
              const x = new Float32Array(784).fill(-0.4242);
              for (let k = 0; k < 20; k++) LiveNet.forward(net, x);  // warm-up: the JIT compiles the loops
              const times = [];
              for (let k = 0; k < rounds; k++) {
                const t0 = performance.now();
                LiveNet.forward(net, x);
                times.push(performance.now() - t0);
              }
              return times;
            }""",
                rounds,
            )
            version = browser.version
        finally:
            browser.close()
    return logits, times, version


def browser_check(X: torch.Tensor, y: torch.Tensor, asset: Path, quick: bool) -> dict:
    """Run livenet.js with the asset's weights on every digit of X in headless Chromium, and time it.

    PyTorch runs the same weights, read back from the asset (int8 ones dequantised).
    """
    if not Path(CHROMIUM).exists():
        return {"skipped": f"Chromium not found at {CHROMIUM}"}
    net = read_net(read_asset(asset)["net"])
    with torch.no_grad():
        torch_logits = net.eval()(X.cpu()).numpy()
    images = base64.b64encode(X.cpu().numpy().astype("<f4").tobytes()).decode("ascii")
    rounds = 30 if quick else 300
    # In a thread of its own: Playwright's sync API refuses to start in a thread that already
    # runs an event loop (a test session's browser, when the tests run --quick).
    with ThreadPoolExecutor(1) as pool:
        logits, times, version = pool.submit(_in_chromium, images, asset, rounds).result()
    logits = np.asarray(logits, dtype=np.float64)
    labels = y.cpu().numpy()
    browser_pred, torch_pred = logits.argmax(axis=1), torch_logits.argmax(axis=1)
    forward_ms = statistics.median(times)
    return {
        "chromium": version,
        "digits": len(labels),
        "browser_accuracy": round(float((browser_pred == labels).mean()), 4),
        "torch_accuracy": round(float((torch_pred == labels).mean()), 4),
        "same_class": int((browser_pred == torch_pred).sum()),
        "max_logit_difference": float(f"{np.abs(logits - torch_logits).max():.2g}"),
        "forward_rounds": rounds,
        "forward_ms": round(forward_ms, 3),
        "forward_target_ms": FORWARD_TARGET_MS,
        "forward_target_met": forward_ms <= FORWARD_TARGET_MS,
    }


def export(net: MNISTNet, test_loader, out_dir: Path, quick: bool = False, first_index: int = 8000) -> dict:
    """Write ASSET for the page, check it in Chromium, and return the record the figures part keeps.

    `test_loader` holds the run's held-out digits (normalised, in memory);
    `first_index` is the first one's position in MNIST's test set.
    """
    X, y = test_loader.X, test_loader.y
    path = Path(out_dir) / ASSET
    record = {"asset": ASSET, **write_asset(path, net, X, y, first_index)}
    record["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    record["bytes"] = path.stat().st_size
    record["gzip_bytes"] = len(gzip.compress(path.read_bytes(), 9))  # what a server that compresses sends
    record["browser"] = browser_check(X, y, path, quick)
    return record
