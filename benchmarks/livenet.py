"""The feature-maps page's live network: its weights, and how it runs in Chromium.

The figures part (benchmarks/figures.py) trains the MNISTNet whose figures
the pages show and hands it to `export`, which

- writes the network's weights as a script the page loads (ASSET, next to
  results.json: a `<script>` loads from file:// where `fetch` is refused),
  float32 in base64, with a few of the run's held-out digits for the page's
  digit picker;
- runs the page's own JavaScript forward pass (docs/javascripts/livenet.js)
  in headless Chromium on every held-out digit: its accuracy against
  PyTorch's, the largest logit difference, and the median time of one
  forward pass;
- returns the record that the figures part stores, with the asset's SHA-256:
  docs/hooks/livenet.py stops the build when the asset is not that one.
"""

from __future__ import annotations

import base64
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
from cnnlesson.files import write_text_atomic
from cnnlesson.models import MNISTNet

ASSET = "livenet-weights.js"
JAVASCRIPT = REPO / "docs" / "javascripts"
CHROMIUM = os.environ.get("CNNLESSON_CHROMIUM", "/usr/bin/chromium")
PICKER_PER_CLASS = 2  # held-out digits of each class the page offers
FORWARD_TARGET_MS = 10.0  # the maps must follow the pen


def encode_weights(net: MNISTNet) -> str:
    """The state_dict as one base64 string of little-endian float32s, in state_dict order."""
    parts = [t.detach().cpu().to(torch.float32).contiguous().view(-1) for t in net.state_dict().values()]
    return base64.b64encode(torch.cat(parts).numpy().astype("<f4").tobytes()).decode("ascii")


def decode_weights(text: str) -> MNISTNet:
    """An MNISTNet holding the weights of `encode_weights`'s string."""
    values = torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype="<f4").copy())
    net = MNISTNet()
    state, offset = net.state_dict(), 0
    expected = sum(t.numel() for t in state.values())
    if values.numel() != expected:
        raise ValueError(f"text: expected {expected} float32 values for MNISTNet, got {values.numel()}")
    for name, tensor in state.items():
        state[name] = values[offset : offset + tensor.numel()].view_as(tensor)
        offset += tensor.numel()
    net.load_state_dict(state)
    return net.eval()


def as_bytes(X: torch.Tensor) -> np.ndarray:
    """Normalised MNIST images back to their 0-255 pixels, (n, 784) uint8."""
    pixels = (X.detach().cpu().double() * MNIST_STD[0] + MNIST_MEAN[0]) * 255
    return pixels.round().clamp(0, 255).to(torch.uint8).reshape(len(X), -1).numpy()


def picker_digits(y: torch.Tensor, per_class: int = PICKER_PER_CLASS) -> list[int]:
    """Positions in the held-out split of its first `per_class` digits of each class, class by class."""
    labels = y.cpu().tolist()
    return [i for d in range(10) for i in [k for k, label in enumerate(labels) if label == d][:per_class]]


def read_asset(path: Path) -> dict:
    """The JSON object inside an asset written by `write_asset`."""
    text = Path(path).read_text(encoding="ascii")
    return json.loads(text[text.index("{") : text.rindex("}") + 1])


def write_asset(path: Path, net: MNISTNet, X: torch.Tensor, y: torch.Tensor, first_index: int) -> dict:
    """Write the page's script asset; return its run id and the picker's digits."""
    weights = encode_weights(net)
    run = hashlib.sha256(base64.b64decode(weights)).hexdigest()[:16]  # the weights themselves name the run
    chosen = picker_digits(y)
    asset = {
        "run": run,
        "model": "MNISTNet",
        "weights": weights,
        "digits": {
            "labels": [int(y[k]) for k in chosen],
            "indices": [first_index + k for k in chosen],  # positions in MNIST's 10,000-digit test set
            "pixels": base64.b64encode(as_bytes(X[chosen]).tobytes()).decode("ascii"),
        },
    }
    text = (
        "// MNISTNet's weights for the feature-maps page, written by `python -m benchmarks`\n"
        "// (benchmarks/livenet.py) with the figures of the same run. Do not edit.\n"
        f"window.LIVENET_ASSET = {json.dumps(asset)};\n"
    )
    write_text_atomic(path, text)
    return {"run": run, "picker_digits": len(chosen)}


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
              const net = LiveNet.decode(window.LIVENET_ASSET.weights);
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
              const net = LiveNet.decode(window.LIVENET_ASSET.weights);
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


def browser_check(net: MNISTNet, X: torch.Tensor, y: torch.Tensor, asset: Path, quick: bool) -> dict:
    """Run livenet.js with the asset's weights on every digit of X in headless Chromium, and time it."""
    if not Path(CHROMIUM).exists():
        return {"skipped": f"Chromium not found at {CHROMIUM}"}
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
    record["browser"] = browser_check(net, X, y, path, quick)
    return record
