"""The feature-maps page's live network, in real Chromium, against PyTorch.

The page's JavaScript (docs/javascripts/livenet*.js) interprets the layer
list of `cnnlesson export` (the page's own MNISTNet, or a reader's MNISTNet,
LeNet-5 or CNNWithBN) and does MNIST's preprocessing; these tests hold it to
the PyTorch models, trained briefly with the CLI, and to
`cnnlesson.digits.preprocess`, and check that a reader can use it: drawing
with pointer events, loading a network from a file, the keyboard, a phone,
the offline copy from file://, both palettes (axe-core), and paper.

Tests that need MNIST's real digits (../shared) skip without them, saying so.

    pytest tests/test_livenet.py -q            # needs /usr/bin/chromium
"""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import PHONE
from explorer_page import skip_math

from benchmarks import livenet
from benchmarks.realdata import MISSING, real_mnist_root
from cnnlesson.checkpoint import load_model
from cnnlesson.cli import main
from cnnlesson.data import get_dataloaders
from cnnlesson.digits import pen_width, preprocess
from cnnlesson.export import export_net, read_net
from cnnlesson.models import MNISTNet

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
ASSET = ROOT / "docs" / "results" / livenet.ASSET
LAYERS = ("conv1", "pool1", "conv2", "pool2", "fc1", "logits")
PAD = 280


def torch_layers(net: MNISTNet, X: torch.Tensor) -> dict[str, np.ndarray]:
    """Every layer's output of MNISTNet.forward, as the page draws them."""
    with torch.no_grad():
        conv1 = F.relu(net.conv1(X))
        pool1 = net.pool1(conv1)
        conv2 = F.relu(net.conv2(pool1))
        pool2 = net.pool2(conv2)
        fc1 = F.relu(net.fc1(pool2.view(-1, 64 * 7 * 7)))
        logits = net.fc2(fc1)
    assert torch.equal(logits, net(X)), "these layers are not MNISTNet.forward"
    out = dict(zip(LAYERS, (conv1, pool1, conv2, pool2, fc1, logits)))
    return {k: v.reshape(len(X), -1).numpy() for k, v in out.items()}


def torch_stages(doc: dict, X: torch.Tensor) -> dict[str, np.ndarray]:
    """What the page draws, from PyTorch: each stage's output (a conv, pool or linear layer and the
    batch norm, ReLU, dropout and flatten after it, keyed by its first layer's name) and the logits."""
    layers, outs = doc["layers"], []
    with torch.no_grad():
        x = X
        for module in read_net(doc):
            x = module(x)
            outs.append(x.reshape(len(X), -1).numpy())
    starts = [i for i, layer in enumerate(layers) if layer["type"] in ("conv2d", "maxpool2d", "linear")]
    ends = [i - 1 for i in starts[1:]] + [len(layers) - 1]
    keys = [layers[i]["name"] for i in starts[:-1]] + ["logits"]
    return {key: outs[end] for key, end in zip(keys, ends)}


def b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


# Runs the page's interpreter on base64 float32 images (of the network's input size) for a network
# file's JSON; every stage named in `layers` back.
JS_FORWARD = """([doc, images, layers]) => {
  const net = LiveNet.load(doc), size = net.input.reduce((a, b) => a * b, 1);
  const all = new Float32Array(LiveNet.bytesOf(images).buffer), out = [];
  for (let k = 0; k < all.length / size; k++) {
    const acts = LiveNet.forward(net, all.subarray(k * size, (k + 1) * size));
    out.push(Object.fromEntries(layers.map((name) => [name, Array.from(acts[name])])));
  }
  return out;
}"""


@pytest.fixture(scope="module")
def recorded_doc() -> dict:
    """The recorded run's network, as the page's weights asset holds it (int8 weights)."""
    return livenet.read_asset(ASSET)["net"]


@pytest.fixture(scope="module")
def recorded_net(recorded_doc) -> MNISTNet:
    """The recorded run's MNISTNet with the asset's (dequantised) weights."""
    net, state = MNISTNet().eval(), read_net(recorded_doc).state_dict()
    net.load_state_dict(dict(zip(net.state_dict(), state.values())))
    return net


@pytest.fixture(scope="module")
def cli_exports(mnist_root, tmp_path_factory) -> dict[str, Path]:
    """Each of the three MNIST models trained one epoch on the stand-in digits and exported, with the CLI."""
    files = {}
    for model in ("mnistnet", "lenet5", "cnnwithbn"):
        out = tmp_path_factory.mktemp(model)
        train = ["train", "--model", model, "--dataset", "mnist", "--data-root", str(mnist_root), "--epochs", "1"]
        assert main([*train, "--seed", "0", "--device", "cpu", "--out", str(out / "run")]) == 0
        assert main(["export", "--checkpoint", str(out / "run" / "checkpoint.pt"), "--out", str(out / "net.json")]) == 0
        files[model] = out
    return files


@pytest.fixture(scope="module")
def real_test_split(tmp_path_factory):
    """The recorded run's 2,000 held-out real digits (normalised) and labels; skips without ../shared."""
    root = real_mnist_root(tmp_path_factory.mktemp("real-mnist"))
    if root is None:
        pytest.skip(f"needs MNIST's real digits: {MISSING}")
    _, test_loader = get_dataloaders("mnist", root, in_memory=True, device="cpu")
    return test_loader.X, test_loader.y


def _open(page, url: str):
    skip_math(page)
    page.goto(url)
    _scroll_to_widget(page)
    page.wait_for_function("document.querySelector('.livenet').dataset.predicted !== undefined")
    return page


def _scroll_to_widget(page) -> None:
    """The weights load when the widget comes into view: bring it there, and wait until it runs."""
    assert not page.evaluate("'LIVENET_ASSET' in window"), "the weights loaded with the page, not with the widget"
    page.locator(".livenet").scroll_into_view_if_needed()
    page.locator(".livenet.livenet-ready").wait_for(timeout=30000)


@pytest.fixture(scope="module")
def live(browser, site_url, watch_browser):
    """The feature-maps page with its live network started, shared by this module's tests."""
    problems: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watch_browser(page, problems)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    _open(page, site_url + "feature-maps/")
    page.requested = requested  # what the page and its widget asked for (test_page_weight)
    yield page
    context.close()
    assert not problems, "browser problems:\n" + "\n".join(problems)


IMAGES = (".png", ".jpg", ".jpeg", ".svg", ".gif", ".webp", ".ico")


def test_page_weight_with_the_network_under_900_kb_gzipped(live, site_url, built_site):
    """Everything the feature-maps page and its running widget asked for, images apart, gzipped."""
    files = {url.split("#")[0].split("?")[0] for url in live.requested if url.startswith(site_url)}
    files = {url for url in files if not url.endswith(IMAGES)}
    paths = [built_site / url[len(site_url) :] for url in files]
    paths = [path / "index.html" if path.is_dir() else path for path in paths]
    assert any(path.name == livenet.ASSET for path in paths), "the widget's weights were not requested"
    total = sum(len(gzip.compress(path.read_bytes(), 9)) for path in paths)
    assert total <= 900_000, f"{total:,} bytes gzipped: " + ", ".join(sorted(p.name for p in paths))


def api(page, call: str, *args):
    """Call root.livenet.<call>(...args) on the page's widget."""
    return page.evaluate(f"args => document.querySelector('.livenet').livenet.{call}(...args)", list(args))


# ---- agreement with PyTorch ---------------------------------------------------------------------


def test_forward_matches_torch_on_seeded_weights(live, mnist_root):
    """Seeded weights injected by the test, stand-in digits: every layer as PyTorch computes it."""
    torch.manual_seed(0)
    net = MNISTNet().eval()
    _, test_loader = get_dataloaders("mnist", mnist_root, in_memory=True, device="cpu")
    X = test_loader.X[:12]
    js = live.evaluate(JS_FORWARD, [export_net(net), b64(X.numpy(), "<f4"), list(LAYERS)])
    ref = torch_layers(net, X)
    for name in LAYERS:
        got = np.array([digit[name] for digit in js], dtype=np.float64)
        tol = 1e-4 if name == "logits" else 1e-5
        assert np.abs(got - ref[name]).max() <= tol, f"{name}: max difference {np.abs(got - ref[name]).max():.2e}"
    assert (np.array([d["logits"] for d in js]).argmax(1) == ref["logits"].argmax(1)).all()


def test_forward_matches_torch_on_the_recorded_run(live, recorded_net, real_test_split):
    """The recorded weights on all 2,000 held-out real digits: the same logits, classes and accuracy."""
    X, y = real_test_split
    js = live.evaluate(JS_FORWARD, [livenet.read_asset(ASSET)["net"], b64(X.numpy(), "<f4"), ["logits"]])
    logits = np.array([d["logits"] for d in js])
    ref = torch_layers(recorded_net, X)["logits"]
    assert np.abs(logits - ref).max() <= 1e-4
    assert (logits.argmax(1) == ref.argmax(1)).all()
    browser_accuracy = float((logits.argmax(1) == y.numpy()).mean())
    assert browser_accuracy == float((ref.argmax(1) == y.numpy()).mean())
    # And the run that results.json records is this one: the same accuracy, in the browser and in PyTorch,
    # on the asset's int8 weights (dequantised for PyTorch).
    record = json.loads((ROOT / "docs" / "results" / "results.json").read_text("utf-8"))["figures"]
    browser = record["livenet"]["browser"]
    assert browser["browser_accuracy"] == browser["torch_accuracy"] == round(browser_accuracy, 4)


@pytest.mark.parametrize("model", ["mnistnet", "lenet5", "cnnwithbn"])
def test_interpreter_matches_torch_for_each_model(live, cli_exports, mnist_root, model):
    """A network trained and exported with the CLI: every map within 1e-5 and the logits within 1e-4 of PyTorch's."""
    doc = json.loads((cli_exports[model] / "net.json").read_text())
    net, _ = load_model(cli_exports[model] / "run" / "checkpoint.pt")  # the lesson's own model, from the checkpoint
    _, test_loader = get_dataloaders("mnist", mnist_root, pad=doc["pad"], in_memory=True, device="cpu")
    X = test_loader.X[:8]
    ref = torch_stages(doc, X)
    with torch.no_grad():
        assert np.abs(ref["logits"] - net.eval()(X).numpy()).max() <= 1e-5  # the layer list is the model
    js = live.evaluate(JS_FORWARD, [doc, b64(X.numpy(), "<f4"), list(ref)])
    for name in ref:
        got = np.array([digit[name] for digit in js], dtype=np.float64)
        tol = 1e-4 if name == "logits" else 1e-5
        assert np.abs(got - ref[name]).max() <= tol, (
            f"{model} {name}: max difference {np.abs(got - ref[name]).max():.2e}"
        )


def _load_file(page, name: str, payload: bytes | Path):
    """Choose a file in the widget's "Load your own network" picker; return the status line once it changed."""
    before = page.locator('[data-testid="load-status"]').inner_text()
    files = (
        str(payload) if isinstance(payload, Path) else {"name": name, "mimeType": "application/json", "buffer": payload}
    )
    page.set_input_files('[data-testid="load-file"]', files)
    page.wait_for_function(
        "before => document.querySelector('[data-testid=\"load-status\"]').textContent !== before", arg=before
    )
    return page.locator('[data-testid="load-status"]').inner_text()


def _bad_files(cli_exports) -> dict[str, tuple[bytes, str]]:
    good = (cli_exports["lenet5"] / "net.json").read_bytes()
    doc = json.loads(good)
    unknown = json.loads(good)
    unknown["layers"][1]["type"] = "<img src=x onerror=alert(1)>"
    return {
        "cifar.json": (json.dumps({**doc, "dataset": "cifar10"}).encode(), 'trained on "cifar10"; the page runs MNIST'),
        "cut.json": (good[: len(good) // 2], "cut.json is not JSON (a truncated file?)"),
        "notes.txt": (b"my notes, not a network\n", "notes.txt is not JSON"),
        "html.json": (
            json.dumps(unknown).encode(),
            'layer 1 (relu): unknown layer type "<img src=x onerror=alert(1)>"',
        ),
        "huge.json": (b" " * (17 * 1024 * 1024), "huge.json is 17.0 MB; a network file is at most 16 MB"),
        "shape.json": (json.dumps({**doc, "input": [1, 28, 28]}).encode(), "input: expected [1, 32, 32]"),
    }


def test_a_bad_file_is_one_line_and_changes_nothing(live, cli_exports):
    api(live, "pick", 2)
    before = api(live, "state")
    for name, (payload, message) in _bad_files(cli_exports).items():
        status = _load_file(live, name, payload)
        assert status.startswith(f"Not loaded: {name}") and message in status, status
        assert status.endswith("The network shown is unchanged."), status
        assert api(live, "state") == before, name
    assert not live.locator(".livenet img").count()  # the file's text was never HTML
    assert not live.locator('[data-testid="load-reset"]').is_visible()


def test_loading_by_keyboard_then_back(live, cli_exports):
    """The picker is reachable with Tab; a loaded network replaces every layer; the button brings the page's back."""
    live.locator('[data-testid="pick"]').focus()
    live.keyboard.press("Tab")
    assert live.evaluate("document.activeElement.dataset.testid") == "load-file"
    status = _load_file(live, "net.json", cli_exports["cnnwithbn"] / "net.json")
    assert status == "Showing your CNNWithBN from net.json.", status
    assert api(live, "state")["layers"] == ["conv1", "pool", "fc1"]
    assert "bn1 (batch norm" in live.locator('[data-testid="unit-sum-line"]').inner_text()
    live.locator('[data-testid="load-file"]').focus()
    live.keyboard.press("Tab")
    assert live.evaluate("document.activeElement.dataset.testid") == "load-reset"
    live.keyboard.press("Enter")
    assert api(live, "state")["layers"] == ["conv1", "pool1", "conv2", "pool2", "fc1"]
    assert live.locator('[data-testid="load-status"]').inner_text() == "Showing the page's MNISTNet."


def test_every_layer_of_the_page_matches_torch_for_the_picked_digit(live, recorded_net):
    """What the page shows for a picked digit (unit values, conv1's arithmetic) is PyTorch's number."""
    asset = livenet.read_asset(ASSET)
    pixels = np.frombuffer(base64.b64decode(asset["digits"]["pixels"]), dtype=np.uint8).reshape(-1, 28, 28)
    api(live, "pick", 1)
    X = torch.from_numpy((pixels[1] / 255.0 - 0.1307) / 0.3081).float()[None, None]
    ref = torch_layers(recorded_net, X)
    state = api(live, "state")
    assert np.abs(np.array(state["logits"]) - ref["logits"][0]).max() <= 1e-4
    assert state["predicted"] == int(ref["logits"][0].argmax())
    for layer, size, map_, row, col in [
        ("conv1", 28, 4, 10, 12),
        ("pool1", 14, 7, 5, 6),
        ("conv2", 14, 20, 7, 7),
        ("pool2", 7, 33, 3, 2),
        ("fc1", 1, 77, 0, 0),
    ]:
        api(live, "select", layer, map_, row, col)
        shown = float(live.locator(".livenet").get_attribute("data-unit-value"))
        assert abs(shown - ref[layer][0][(map_ * size + row) * size + col]) <= 1e-5, layer
    # conv1: patch x kernel = products; their sum + bias = the value on the map.
    api(live, "select", "conv1", 4, 10, 12)

    def grid(testid):
        cells = live.locator(f'[data-testid="{testid}"] td')
        return np.array([float(v) for v in cells.evaluate_all("tds => tds.map(td => td.dataset.value)")])

    patch, kernel, products = grid("unit-patch"), grid("unit-kernel"), grid("unit-products")
    np.testing.assert_allclose(patch, X[0, 0, 9:12, 11:14].numpy().ravel(), atol=1e-6)
    np.testing.assert_allclose(kernel, recorded_net.conv1.weight[4, 0].detach().numpy().ravel(), atol=1e-7)
    np.testing.assert_allclose(products, patch * kernel, atol=1e-9)
    total, bias, z, value = (
        float(v)
        for v in live.locator('[data-testid="unit-sum-line"] span').evaluate_all(
            "spans => spans.map(s => s.dataset.value)"
        )
    )
    assert total == pytest.approx(products.sum(), abs=1e-9) and z == pytest.approx(total + bias, abs=1e-9)
    assert value == pytest.approx(max(z, 0.0), abs=1e-12)
    assert value == pytest.approx(ref["conv1"][0][(4 * 28 + 10) * 28 + 12], abs=1e-5)


# ---- preprocessing and drawing ------------------------------------------------------------------

STROKES = {  # in pad pixels: a large 3, a small off-centre 1, a wide 7 near the edge
    "three": [[(70, 60), (150, 40), (200, 80), (140, 135), (210, 180), (150, 240), (70, 220)]],
    "one": [[(230, 30), (235, 110)]],
    "seven": [[(10, 150), (270, 150), (120, 270)], [(60, 210), (200, 205)]],
}


def _draw(page, strokes) -> None:
    """Draw polylines on the pad with the mouse (pointer events), in pad pixels."""
    box = page.locator('[data-testid="pad"]').bounding_box()
    scale = box["width"] / PAD
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=8)
        page.mouse.up()


@pytest.mark.parametrize("name", sorted(STROKES))
def test_preprocessing_matches_python(live, name):
    live.locator('[data-testid="clear"]').click()
    assert api(live, "state")["empty"]
    _draw(live, STROKES[name])
    ink = np.array(api(live, "ink")).reshape(PAD, PAD)
    state = api(live, "state")
    assert ink.sum() > 100 and not state["empty"]
    got = np.array(state["input"]).reshape(28, 28)
    assert np.abs(got - preprocess(ink)).max() <= 1e-3


def test_drawn_like_a_person(live, recorded_net, real_test_split):
    """200 real held-out digits placed on the pad larger and off-centre: the model still reads >= 95 %."""
    X, y = real_test_split
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(X), 200, replace=False)
    pixels = livenet.as_bytes(X[chosen])
    sizes = rng.integers(120, 281, 200)  # the digit's 28x28 frame drawn 120-280 pad pixels wide
    places = [(int(rng.integers(0, PAD - s + 1)), int(rng.integers(0, PAD - s + 1))) for s in sizes]
    predicted = live.evaluate(
        """([pixels, places, sizes]) => {
      const root = document.querySelector('.livenet'), all = LiveNet.bytesOf(pixels), out = [];
      for (let k = 0; k < sizes.length; k++) {
        root.livenet.placeDigit(all.subarray(784 * k, 784 * (k + 1)), places[k][0], places[k][1], sizes[k]);
        out.push(root.livenet.state().predicted);
      }
      return out;
    }""",
        [b64(pixels, "u1"), places, [int(s) for s in sizes]],
    )
    accuracy = float((np.array(predicted) == y[chosen].numpy()).mean())
    assert accuracy >= 0.95, f"the model read {accuracy:.1%} of 200 digits drawn large and off-centre"


def _thin(ink: np.ndarray) -> np.ndarray:
    """Zhang and Suen's thinning (1984): a boolean image's one-pixel centre lines."""
    img = np.pad(ink, 1)
    around = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))  # P2..P9, clockwise from north
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            n = [np.roll(img, (-dy, -dx), (0, 1)) for dy, dx in around]
            count = sum(v.astype(int) for v in n)
            turns = sum((~n[k] & n[(k + 1) % 8]).astype(int) for k in range(8))
            triples = ((0, 2, 4), (2, 4, 6)) if step == 0 else ((0, 2, 6), (0, 4, 6))
            side = np.logical_and.reduce([~(n[i] & n[j] & n[k]) for i, j, k in triples])
            remove = img & (count >= 2) & (count <= 6) & (turns == 1) & side
            if remove.any():
                img, changed = img & ~remove, True
    return img[1:-1, 1:-1]


def pen_strokes(digit: torch.Tensor, up: int = 4) -> np.ndarray:
    """A real digit as a pen would draw it: its centre lines as (n, 2, 2) segments of (row, column), in digit pixels."""
    big = F.interpolate(digit[None, None].double(), scale_factor=up, mode="bilinear")[0, 0]
    line = _thin(big.numpy() > 0.5)
    ends = []
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):  # each neighbouring pair once (MNIST's margin: no wrap-around)
        pairs = line & np.roll(line, (-dy, -dx), (0, 1))
        ends += [((r, c), (r + dy, c + dx)) for r, c in zip(*np.nonzero(pairs))]
    return (np.array(ends, dtype=np.float64) + 0.5) / up


def test_digits_drawn_small_or_large_read_right(live, real_test_split):
    """200 real held-out digits traced with the pen at 50, 80, 120 and 250 pad pixels: each size reads >= 95 %."""
    X, y = real_test_split
    rng = np.random.default_rng(1)
    chosen = rng.choice(len(X), 200, replace=False)
    lines = [pen_strokes(X[k, 0] * 0.3081 + 0.1307) for k in chosen]  # the loader's digits are normalised
    read = {}
    for size in (50, 80, 120, 250):
        drawn = []
        for segments in lines:
            points = segments.reshape(-1, 2)
            low, extent = points.min(0), np.ptp(points, 0).max()
            at = rng.uniform(11, PAD - 11 - size, 2)  # the pen shown is 20 pad pixels wide: all of it on the pad
            drawn.append(((segments - low) * size / extent + at)[..., ::-1].round(2).tolist())  # (x, y) pairs
        predicted = live.evaluate(
            """(all) => all.map((lines) => {
          const root = document.querySelector('.livenet');
          root.livenet.drawStrokes(lines);
          return root.livenet.state().predicted;
        })""",
            drawn,
        )
        read[size] = float((np.array(predicted) == y[chosen].numpy()).mean())
    assert min(read.values()) >= 0.95, f"share read right by drawn size (pad pixels): {read}"
    widths = live.evaluate("(es) => es.map((e) => LiveDigits.penWidth(e))", [0, 1, 50, 200, 280])
    assert widths == pytest.approx([pen_width(e) for e in (0, 1, 50, 200, 280)], abs=1e-12)


def test_touch_and_pen_draw_too(live):
    live.locator('[data-testid="clear"]').click()
    for kind, (x0, x1) in (("touch", (60, 220)), ("pen", (140, 140))):
        live.evaluate(
            """([kind, x0, x1]) => {
          const pad = document.querySelector('[data-testid="pad"]'), box = pad.getBoundingClientRect();
          const at = (x, y) => ({pointerType: kind, pointerId: 7, bubbles: true, isPrimary: true,
                                  clientX: box.left + x * box.width / 280, clientY: box.top + y * box.height / 280});
          pad.dispatchEvent(new PointerEvent('pointerdown', at(x0, 40)));
          pad.dispatchEvent(new PointerEvent('pointermove', at((x0 + x1) / 2, 140)));
          pad.dispatchEvent(new PointerEvent('pointermove', at(x1, 240)));
          pad.dispatchEvent(new PointerEvent('pointerup', at(x1, 240)));
        }""",
            [kind, x0, x1],
        )
    ink = np.array(api(live, "ink")).reshape(PAD, PAD)
    assert ink[90, 100] > 0.5, "the touch stroke left no ink"  # on the line (60, 40) -> (140, 140)
    assert ink[200, 140] > 0.5, "the pen stroke left no ink"  # on the line (140, 40) -> (140, 240)
    assert not api(live, "state")["empty"]
    assert "reads a" in live.locator('[data-testid="prediction"]').inner_text()


# ---- receptive fields -----------------------------------------------------------------------------


def gradient_support(layer: str, index: tuple[int, ...], samples: int = 256) -> np.ndarray:
    """Input pixels where d(unit)/d(input) is non-zero for some input: the unit's receptive field.

    Positive weights, biases and inputs keep every ReLU open; the union over
    many random inputs lets every max-pool pass the gradient through each of
    its four inputs.
    """
    torch.manual_seed(0)
    net = MNISTNet()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_().add_(1e-3)
    X = (0.1 + torch.rand(samples, 1, 28, 28)).requires_grad_()
    acts = dict(zip(LAYERS, _layers_with_grad(net, X)))
    unit = acts[layer][(slice(None), *index)]
    (grad,) = torch.autograd.grad(unit.sum(), X)
    return (grad != 0).any(dim=0)[0].numpy()


def _layers_with_grad(net, X):
    conv1 = F.relu(net.conv1(X))
    pool1 = net.pool1(conv1)
    conv2 = F.relu(net.conv2(pool1))
    pool2 = net.pool2(conv2)
    fc1 = F.relu(net.fc1(pool2.view(-1, 64 * 7 * 7)))
    return conv1, pool1, conv2, pool2, fc1, net.fc2(fc1)


UNITS = [
    ("conv1", 0, 0, 0),
    ("conv1", 5, 14, 20),
    ("pool1", 3, 0, 13),
    ("pool1", 7, 6, 6),
    ("conv2", 10, 0, 0),
    ("conv2", 20, 7, 9),
    ("pool2", 0, 0, 0),
    ("pool2", 63, 3, 6),
    ("fc1", 5, 0, 0),
]


@pytest.mark.parametrize("layer,map_,row,col", UNITS)
def test_receptive_field_is_the_gradient_support(live, layer, map_, row, col):
    api(live, "select", layer, map_, row, col)
    r0, r1, c0, c1 = map(int, live.locator('[data-testid="rf"]').get_attribute("data-rf").split())
    shown = np.zeros((28, 28), dtype=bool)
    shown[r0 : r1 + 1, c0 : c1 + 1] = True
    index = (map_,) if layer == "fc1" else (map_, row, col)
    np.testing.assert_array_equal(shown, gradient_support(layer, index))
    # The frame drawn over the input covers exactly those pixels.
    box = live.locator('[data-testid="input"]').bounding_box()
    frame = live.locator('[data-testid="rf"]').bounding_box()
    px = box["width"] / 28
    assert frame["x"] == pytest.approx(box["x"] + c0 * px, abs=1) and frame["width"] == pytest.approx(
        (c1 - c0 + 1) * px, abs=1
    )
    assert frame["y"] == pytest.approx(box["y"] + r0 * px, abs=1) and frame["height"] == pytest.approx(
        (r1 - r0 + 1) * px, abs=1
    )


def test_clicking_a_map_selects_its_unit(live):
    canvas = live.locator('[data-testid="maps-conv2"] canvas[data-map="9"]')
    box = canvas.bounding_box()
    canvas.click(position={"x": box["width"] * 3.5 / 14, "y": box["height"] * 11.5 / 14})
    assert api(live, "state")["selected"] == {"layer": "conv2", "map": 9, "row": 11, "col": 3}
    assert (
        live.locator('[data-testid="rf"]').get_attribute("data-rf") == "19 26 3 10"
    )  # conv2 row 11: input rows 2*11-3 to 2*11+4


# ---- keyboard, palettes, phone, paper, offline ---------------------------------------------------


def test_keyboard_only(live):
    """Pick a digit, move between units and read the prediction, with keys alone."""
    api(live, "select", "conv1", 3, 12, 12)  # a known start, whatever the tests before left
    live.locator('[data-testid="clear"]').focus()
    live.keyboard.press("Tab")
    assert live.evaluate("document.activeElement.dataset.testid") == "pick"
    live.keyboard.press("ArrowDown")  # the first held-out digit
    prediction = live.locator('[data-testid="prediction"]')
    assert prediction.get_attribute("aria-live") == "polite"
    assert not api(live, "state")["empty"] and "The network reads a" in prediction.inner_text()
    live.keyboard.press("Tab")
    assert live.evaluate("document.activeElement.dataset.testid") == "load-file"  # "Load your own network"
    live.keyboard.press("Tab")  # ("Back to the page's network" is hidden while the page's network shows)
    assert live.evaluate("document.activeElement.dataset.testid") == "unit-layer"
    live.keyboard.press("Tab")
    assert live.evaluate("document.activeElement.dataset.testid") == "unit-map"
    before = api(live, "state")["selected"]
    live.keyboard.press("ArrowUp")
    live.keyboard.press("Tab")
    live.keyboard.press("ArrowDown")
    after = api(live, "state")["selected"]
    assert after == {**before, "map": before["map"] + 1, "row": before["row"] - 1}
    assert f"map {after['map']}, row {after['row']}" in live.locator('[data-testid="unit-text"]').inner_text()


def test_unit_boxes_marker_and_wording(live):
    """The boxes show what is selected (99 and -5 clamped), the marker is seen, x is cell by cell, 'an 8'."""
    api(live, "select", "conv1", 3, 12, 12)
    for testid, typed, shown in (("unit-map", "99", "31"), ("unit-row", "-5", "0"), ("unit-col", "40", "27")):
        live.locator(f'[data-testid="{testid}"]').fill(typed)
        assert live.locator(f'[data-testid="{testid}"]').input_value() == shown, testid
    assert api(live, "state")["selected"] == {"layer": "conv1", "map": 31, "row": 0, "col": 27}
    # conv1's cell is about 1.5 screen pixels: the marker is larger, centred on it, on a framed map.
    api(live, "select", "conv1", 3, 12, 5)
    canvas = live.locator('[data-testid="maps-conv1"] canvas[data-map="3"]').bounding_box()
    mark = live.locator('[data-testid="mark"]').bounding_box()
    cell = canvas["width"] / 28
    assert mark["width"] >= 8 > 2 * cell and mark["height"] >= 8
    assert mark["x"] + mark["width"] / 2 == pytest.approx(canvas["x"] + 5.5 * cell, abs=1)
    assert mark["y"] + mark["height"] / 2 == pytest.approx(canvas["y"] + 12.5 * cell, abs=1)
    assert live.locator(".livenet-selected canvas").get_attribute("data-map") == "3"
    assert live.locator(".livenet-op").first.inner_text() == "⊙"  # element by element, not a matrix product
    options = live.locator('[data-testid="pick"] option').all_inner_texts()
    assert any(o.startswith("an 8") for o in options) and not any(o.startswith("a 8") for o in options)


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 900}, PHONE], ids=["1280px", "phone"])
def test_input_and_prediction_stay_in_view_while_picking_a_unit(browser, site_url, viewport):
    """A unit clicked on conv2's maps, far below the pad: its frame on the input and the prediction are on screen."""
    context = browser.new_context(viewport=viewport, has_touch=viewport is PHONE)
    try:
        page = _open(context.new_page(), site_url + "feature-maps/")
        canvas = page.locator('[data-testid="maps-conv2"] canvas[data-map="9"]')
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        page.mouse.click(box["x"] + box["width"] * 3.5 / 14, box["y"] + box["height"] * 11.5 / 14)
        dock = page.locator('[data-testid="dock"]')
        dock.wait_for(state="visible")  # shown once the input above has scrolled away
        where = dock.bounding_box()
        assert where["y"] >= 0 and where["y"] + where["height"] <= viewport["height"], where
        assert dock.locator(".livenet-rf").get_attribute("data-rf") == "19 26 3 10"  # conv2 row 11, column 3
        predicted = page.locator(".livenet").get_attribute("data-predicted")
        assert f"Reads a{'n' if predicted == '8' else ''} {predicted} (" in dock.inner_text()
        assert "map 9, row 11, column 3" in dock.inner_text()
    finally:
        context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_in_the_widget(browser, site_url, scheme, axe_script):
    context = browser.new_context(color_scheme=scheme)
    try:
        page = _open(context.new_page(), site_url + "feature-maps/")
        api(page, "select", "conv1", 3, 12, 12)  # the arithmetic tables shown too
        page.evaluate(axe_script)
        violations = page.evaluate(
            "async () => (await axe.run('.livenet', {resultTypes: ['violations']}))"
            ".violations.map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))"
        )
    finally:
        context.close()
    assert not violations, violations


def test_phone_no_sideways_scroll_and_touch_draws(browser, site_url):
    context = browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    try:
        page = _open(context.new_page(), site_url + "feature-maps/")
        widths = page.evaluate("[document.documentElement.scrollWidth, document.querySelector('.livenet').scrollWidth]")
        assert max(widths) <= PHONE["width"], widths
        assert page.locator('[data-testid="pad"]').evaluate("el => getComputedStyle(el).touchAction") == "none"
        page.locator('[data-testid="clear"]').tap()
        assert api(page, "state")["empty"]
        page.locator('[data-testid="pad"]').tap(position={"x": 100, "y": 100})
        assert not api(page, "state")["empty"]
    finally:
        context.close()


def test_print_is_a_still_picture_with_a_sentence(live):
    live.emulate_media(media="print")
    try:
        assert live.locator(".livenet-print").is_visible()
        assert "still picture" in live.locator(".livenet-print").inner_text()
        assert not live.locator('[data-testid="pad"] ~ .livenet-controls').is_visible()
        assert not live.locator(".livenet-unit").is_visible()
        for layer in ("conv1", "pool1", "conv2", "pool2", "fc1"):
            assert live.locator(f'[data-testid="maps-{layer}"] canvas').first.is_visible()
        assert live.locator('[data-testid="probs"]').is_visible()
    finally:
        live.emulate_media(media="screen")


def test_offline_copy_draws_predicts_and_shows_every_layer(offline_reader, offline_site, cli_exports):
    page = offline_reader
    page.goto((offline_site / "feature-maps.html").as_uri())
    _scroll_to_widget(page)
    page.locator('[data-testid="clear"]').click()
    _draw(page, STROKES["three"])
    assert "The network reads a" in page.locator('[data-testid="prediction"]').inner_text()
    lit = page.evaluate("""() => [...document.querySelectorAll('.livenet-maps')].map(grid =>
      [...grid.querySelectorAll('canvas')].filter(c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < d.length; i += 4) if (d[i] !== d[0] || d[i + 1] !== d[1]) return true;
        return false;
      }).length)""")
    assert len(lit) == 5 and all(n > 0 for n in lit), f"maps with something drawn, per layer: {lit}"

    # A LeNet-5 the test trained and exported with the CLI, through the file picker (FileReader, no
    # request): on a held-out digit, its prediction and every map are PyTorch's.
    path = cli_exports["lenet5"] / "net.json"
    assert _load_file(page, "net.json", path) == "Showing your LeNet5 from net.json."
    api(page, "pick", 3)
    state = api(page, "state")
    pixels = np.frombuffer(base64.b64decode(livenet.read_asset(ASSET)["digits"]["pixels"]), dtype=np.uint8)
    image = np.pad(pixels.reshape(-1, 28, 28)[3] / 255.0, 2)  # LeNet-5's 32x32: a black border, then Normalize
    X = torch.from_numpy((image - 0.1307) / 0.3081).float()[None, None]
    ref = torch_stages(json.loads(path.read_text()), X)
    assert state["layers"] == ["conv1", "pool1", "conv2", "pool2", "fc1", "fc2"]
    for name in state["layers"]:
        assert np.abs(np.array(state["maps"][name]) - ref[name][0]).max() <= 1e-5, name
    assert np.abs(np.array(state["logits"]) - ref["logits"][0]).max() <= 1e-4
    assert state["predicted"] == int(ref["logits"][0].argmax())


def test_benchmark_browser_check_beside_the_test_browser(live, mnist_root, tmp_path):
    """The benchmark's own Chromium run (accuracy, time) works inside a session that already drives a browser."""
    torch.manual_seed(1)
    net = MNISTNet().eval()
    _, test_loader = get_dataloaders("mnist", mnist_root, in_memory=True, device="cpu")
    X, y = test_loader.X[:40], test_loader.y[:40]
    asset = tmp_path / livenet.ASSET
    livenet.write_asset(asset, net, X, y, first_index=0)
    check = livenet.browser_check(X, y, asset, quick=True)
    assert check["digits"] == 40 and check["same_class"] == 40
    assert check["browser_accuracy"] == check["torch_accuracy"] and check["max_logit_difference"] <= 1e-4
    assert check["forward_rounds"] == 30 and check["forward_ms"] > 0
