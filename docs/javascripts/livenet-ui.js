/* The feature-maps page's live network: a drawing pad, the 28x28 input, every layer, the prediction.
 *
 * The arithmetic lives elsewhere: livenet.js is MNISTNet's forward pass,
 * livenet-digits.js MNIST's preprocessing. This file draws and listens.
 * The weights come from livenet-weights.js (written by `python -m benchmarks`),
 * loaded as a script next to this one: from file:// a script loads where
 * fetch() is refused.
 *
 * Each widget (<div class="livenet">) gets `root.livenet`, a small API for
 * scripts: pick(k), clear(), placeDigit(pixels, x, y, size), select(layer,
 * map, row, col), setWeights(base64), state(), ink().
 */
(function () {
  "use strict";

  const SCRIPT_SRC = document.currentScript ? document.currentScript.src : "";
  const PAD = 280;  // the pad's own pixels; CSS scales it to the screen
  const STROKE = 20;  // pen width in pad pixels: after scaling to 20x20 about MNIST's two pixels
  const LAYERS = [
    { key: "conv1", name: "conv1 + ReLU", channels: 32, size: 28 },
    { key: "pool1", name: "pool1", channels: 32, size: 14 },
    { key: "conv2", name: "conv2 + ReLU", channels: 64, size: 14 },
    { key: "pool2", name: "pool2", channels: 64, size: 7 },
    { key: "fc1", name: "fc1 + ReLU", channels: 128, size: 1 },
  ];
  const FC_COLUMNS = 16;  // fc1's 128 units drawn as 8 rows of 16
  // Matplotlib's viridis, the colour scale of the page's static figure, at nine stops.
  const VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];

  function viridis(t) {
    const s = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
    const k = Math.min(Math.floor(s), VIRIDIS.length - 2), f = s - k;
    return VIRIDIS[k].map((a, i) => Math.round(a + f * (VIRIDIS[k + 1][i] - a)));
  }

  // The input pixels (inclusive rows r0..r1, columns c0..c1) a unit depends on.
  function receptiveField(layer, row, col) {
    if (layer === "fc1") return { r0: 0, r1: 27, c0: 0, c1: 27 };
    // Back from the unit's layer to the input: a 3x3 conv with padding 1 widens the
    // region by a pixel on each side, a 2x2 pool with stride 2 doubles it.
    const steps = { conv1: ["conv"], pool1: ["pool", "conv"], conv2: ["conv", "pool", "conv"],
      pool2: ["pool", "conv", "pool", "conv"] }[layer];
    let r0 = row, r1 = row, c0 = col, c1 = col;
    for (const step of steps) {
      if (step === "conv") { r0 -= 1; r1 += 1; c0 -= 1; c1 += 1; }
      else { r0 *= 2; r1 = 2 * r1 + 1; c0 *= 2; c1 = 2 * c1 + 1; }
    }
    const clip = (v) => Math.min(Math.max(v, 0), 27);
    return { r0: clip(r0), r1: clip(r1), c0: clip(c0), c1: clip(c1) };
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else if (k === "className") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  const fmt = (v, digits = 3) => (Object.is(v, -0) ? 0 : v).toFixed(digits);
  const pct = (p) => `${(100 * p).toFixed(1)} %`;

  function build(root, asset) {
    let uid = 0;
    const id = (name) => `livenet-${name}-${++uid}`;
    let net = LiveNet.decode(asset.weights);
    const digits = asset.digits;
    const digitPixels = LiveNet.bytesOf(digits.pixels);
    let picked = null;  // index of the chosen held-out digit, or null for a drawing
    let selected = { layer: "conv1", map: 0, row: 14, col: 14 };
    let last = null;

    root.textContent = "";
    root.classList.add("livenet-ready");

    // ---- the pad, its buttons and the digit picker ------------------------------------------
    const pad = el("canvas", { className: "livenet-pad", width: PAD, height: PAD, "data-testid": "pad",
      role: "img", "aria-label": "Drawing pad: draw one digit here with a mouse, a finger or a pen" });
    const ctx = pad.getContext("2d", { willReadFrequently: true });
    const clearButton = el("button", { type: "button", className: "md-button md-button--primary livenet-clear", "data-testid": "clear", text: "Clear" });
    const pickId = id("pick");
    const picker = el("select", { id: pickId, "data-testid": "pick" }, [el("option", { value: "", text: "(your drawing)" })]);
    digits.labels.forEach((label, k) => {
      picker.append(el("option", { value: String(k), text: `a ${label} (test digit #${digits.indices[k]})` }));
    });
    const padBox = el("div", { className: "livenet-pad-box" }, [
      pad,
      el("div", { className: "livenet-controls" }, [
        clearButton,
        el("label", { for: pickId, text: "or pick a held-out digit:" }), picker,
      ]),
    ]);

    // ---- the 28x28 input, with the receptive field drawn over it -----------------------------
    const inputCanvas = el("canvas", { className: "livenet-input", width: 28, height: 28, "data-testid": "input",
      role: "img", "aria-label": "The 28 by 28 image the network gets" });
    const rfBox = el("div", { className: "livenet-rf", "data-testid": "rf" });
    const inputBox = el("figure", { className: "livenet-input-box" }, [
      el("div", { className: "livenet-stack" }, [inputCanvas, rfBox]),
      el("figcaption", {}, ["What the network gets: 28×28 pixels.",
        el("span", { className: "livenet-screen-only", text: " The frame marks the selected unit's receptive field." })]),
    ]);

    // ---- the prediction ----------------------------------------------------------------------
    const live = el("p", { className: "livenet-prediction", "aria-live": "polite", "data-testid": "prediction" });
    const bars = el("ol", { className: "livenet-bars", "data-testid": "probs", "aria-label": "Probability of each digit (fc2, then softmax)" });
    const barFills = [], barTexts = [];
    for (let d = 0; d < 10; d++) {
      const fill = el("span", { className: "livenet-fill" }), text = el("span", { className: "livenet-pct" });
      barFills.push(fill);
      barTexts.push(text);
      bars.append(el("li", { "data-digit": String(d) }, [
        el("span", { className: "livenet-digit", text: String(d) }),
        el("span", { className: "livenet-track", "aria-hidden": "true" }, [fill]), text,
      ]));
    }
    const outBox = el("div", { className: "livenet-out" }, [
      el("p", { className: "livenet-title", text: "fc2 → softmax: the 10 class probabilities" }), bars, live,
    ]);
    root.append(el("div", { className: "livenet-top" }, [padBox, inputBox, outBox]));

    // ---- the selected unit -------------------------------------------------------------------
    const layerId = id("layer"), mapId = id("map"), rowId = id("row"), colId = id("col");
    const layerSelect = el("select", { id: layerId, "data-testid": "unit-layer" },
      LAYERS.map((L) => el("option", { value: L.key, text: L.name })));
    const mapInput = el("input", { id: mapId, type: "number", min: "0", step: "1", "data-testid": "unit-map" });
    const rowInput = el("input", { id: rowId, type: "number", min: "0", step: "1", "data-testid": "unit-row" });
    const colInput = el("input", { id: colId, type: "number", min: "0", step: "1", "data-testid": "unit-col" });
    const mapLabel = el("label", { for: mapId, text: "Map" });
    const unitText = el("p", { className: "livenet-unit-text", "data-testid": "unit-text" });
    const sumBox = el("div", { className: "livenet-sum", "data-testid": "unit-sum" });
    root.append(el("fieldset", { className: "livenet-unit" }, [
      el("legend", { text: "Selected unit (or click any map)" }),
      el("div", { className: "livenet-controls livenet-unit-inputs" }, [
        el("label", { for: layerId, text: "Layer" }), layerSelect, mapLabel, mapInput,
        el("label", { for: rowId, text: "Row" }), rowInput, el("label", { for: colId, text: "Column" }), colInput,
      ]),
      unitText, sumBox,
    ]));

    // ---- every layer's maps ------------------------------------------------------------------
    const legend = el("p", { className: "livenet-legend" }, [
      el("span", { text: "0" }), el("span", { className: "livenet-ramp", "aria-hidden": "true" }),
      el("span", { text: "the layer's largest value for this digit" }),
    ]);
    root.append(legend);
    const views = {};
    for (const L of LAYERS) {
      const title = el("p", { className: "livenet-title" });
      const grid = el("div", { className: `livenet-maps livenet-maps-${L.key}`, "data-testid": `maps-${L.key}` });
      const canvases = [];
      const count = L.key === "fc1" ? 1 : L.channels;
      for (let c = 0; c < count; c++) {
        const w = L.key === "fc1" ? FC_COLUMNS : L.size, h = L.key === "fc1" ? L.channels / FC_COLUMNS : L.size;
        const canvas = el("canvas", { width: w, height: h, "data-map": String(c) });
        canvases.push(canvas);
        grid.append(el("div", { className: "livenet-stack" }, [canvas]));
        canvas.addEventListener("click", (event) => {
          const rect = canvas.getBoundingClientRect();
          const x = Math.min(w - 1, Math.floor(((event.clientX - rect.left) / rect.width) * w));
          const y = Math.min(h - 1, Math.floor(((event.clientY - rect.top) / rect.height) * h));
          if (L.key === "fc1") select("fc1", y * FC_COLUMNS + x, 0, 0);
          else select(L.key, c, y, x);
        });
      }
      root.append(el("section", { className: "livenet-layer", "aria-label": L.name }, [title, grid]));
      views[L.key] = { title, grid, canvases };
    }
    const mark = el("div", { className: "livenet-mark", "data-testid": "mark" });

    // ---- drawing -----------------------------------------------------------------------------
    function ink() {
      const data = ctx.getImageData(0, 0, PAD, PAD).data, out = new Float64Array(PAD * PAD);
      for (let i = 0; i < out.length; i++) out[i] = data[4 * i + 3] / 255;  // the ink is the alpha channel
      return out;
    }

    function padPoint(event) {
      const rect = pad.getBoundingClientRect();
      return [((event.clientX - rect.left) / rect.width) * PAD, ((event.clientY - rect.top) / rect.height) * PAD];
    }

    let drawing = null, pending = false;
    function scheduleUpdate() {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => { pending = false; update(false); });
    }
    pad.addEventListener("pointerdown", (event) => {
      event.preventDefault();
      if (pad.setPointerCapture) {
        try { pad.setPointerCapture(event.pointerId); } catch (err) { /* a synthetic pointer has nothing to capture */ }
      }
      picked = null;
      picker.value = "";
      drawing = padPoint(event);
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.lineWidth = STROKE;
      ctx.strokeStyle = "#000";
      ctx.fillStyle = "#000";
      ctx.beginPath();
      ctx.arc(drawing[0], drawing[1], STROKE / 2, 0, 2 * Math.PI);
      ctx.fill();
      scheduleUpdate();
    });
    pad.addEventListener("pointermove", (event) => {
      if (!drawing) return;
      event.preventDefault();
      const next = padPoint(event);
      ctx.beginPath();
      ctx.moveTo(drawing[0], drawing[1]);
      ctx.lineTo(next[0], next[1]);
      ctx.stroke();
      drawing = next;
      scheduleUpdate();
    });
    const endStroke = () => {
      if (!drawing) return;
      drawing = null;
      update(true);
    };
    pad.addEventListener("pointerup", endStroke);
    pad.addEventListener("pointercancel", endStroke);

    function clear() {
      ctx.clearRect(0, 0, PAD, PAD);
      picked = null;
      picker.value = "";
      update(true);
    }
    clearButton.addEventListener("click", clear);

    // A 28x28 digit (0-255 pixels) drawn onto the pad at (x, y), size x size pad pixels.
    function paint(pixels, x, y, size) {
      const small = document.createElement("canvas");
      small.width = small.height = 28;
      const img = small.getContext("2d").createImageData(28, 28);
      for (let i = 0; i < 784; i++) img.data[4 * i + 3] = pixels[i];
      small.getContext("2d").putImageData(img, 0, 0);
      ctx.clearRect(0, 0, PAD, PAD);
      ctx.imageSmoothingEnabled = true;
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(small, x, y, size, size);
    }

    function pick(k) {
      picked = k;
      picker.value = k === null ? "" : String(k);
      if (k === null) clear();
      else {
        paint(digitPixels.subarray(784 * k, 784 * (k + 1)), 0, 0, PAD);
        update(true);
      }
    }
    picker.addEventListener("change", () => pick(picker.value === "" ? null : Number(picker.value)));

    // ---- one forward pass, and everything it shows -------------------------------------------
    function update(announce) {
      // A picked digit is already in MNIST's form; a drawing is brought to it.
      const image = picked !== null
        ? Float64Array.from(digitPixels.subarray(784 * picked, 784 * (picked + 1)), (v) => v / 255)
        : LiveDigits.preprocess(ink(), PAD, PAD);
      const x = LiveDigits.normalise(image);
      const acts = LiveNet.forward(net, x);
      const probs = LiveNet.softmax(acts.logits);
      const empty = !image.some((v) => v > 0);
      last = { image, x, acts, probs, predicted: LiveNet.argmax(acts.logits), empty };

      const inputCtx = inputCanvas.getContext("2d"), img = inputCtx.createImageData(28, 28);
      for (let i = 0; i < 784; i++) {
        const g = Math.round(255 * image[i]);  // white ink on black, as MNIST's digits are usually shown
        img.data.set([g, g, g, 255], 4 * i);
      }
      inputCtx.putImageData(img, 0, 0);

      for (const L of LAYERS) {
        const values = acts[L.key], view = views[L.key];
        let top = 0;
        for (const v of values) if (v > top) top = v;
        view.title.textContent = `${L.name}: ${L.key === "fc1" ? "128 units" : `${L.channels} maps of ${L.size}×${L.size}`}, largest value ${fmt(top, 2)}`;
        const per = L.key === "fc1" ? values.length : L.size * L.size;
        view.canvases.forEach((canvas, c) => {
          const cctx = canvas.getContext("2d"), cimg = cctx.createImageData(canvas.width, canvas.height);
          for (let i = 0; i < per; i++) cimg.data.set([...viridis(top > 0 ? values[c * per + i] / top : 0), 255], 4 * i);
          cctx.putImageData(cimg, 0, 0);
        });
      }

      probs.forEach((p, d) => {
        barFills[d].style.width = `${(100 * p).toFixed(1)}%`;
        barTexts[d].textContent = pct(p);
        bars.children[d].classList.toggle("livenet-best", d === last.predicted && !empty);
      });
      if (announce) {
        live.textContent = empty ? "The pad is empty: draw a digit, or pick one."
          : `The network reads a ${last.predicted} (${pct(probs[last.predicted])}).`;
      }
      root.dataset.predicted = empty ? "" : String(last.predicted);
      showUnit();
    }

    // ---- the selected unit: its value, receptive field, and for conv1 its arithmetic ---------
    function select(layer, map, row, col) {
      const L = LAYERS.find((candidate) => candidate.key === layer);
      if (!L) throw new Error(`layer: expected one of ${LAYERS.map((c) => c.key).join(", ")}, got ${layer}`);
      const clamp = (v, hi) => Math.min(Math.max(Number.isFinite(v) ? Math.round(v) : 0, 0), hi);
      selected = { layer, map: clamp(map, L.channels - 1), row: clamp(row, L.size - 1), col: clamp(col, L.size - 1) };
      showUnit();
    }

    function readInputs() {
      select(layerSelect.value, Number(mapInput.value), Number(rowInput.value), Number(colInput.value));
    }
    layerSelect.addEventListener("change", readInputs);
    for (const input of [mapInput, rowInput, colInput]) input.addEventListener("input", readInputs);

    function cell(value, extra) {
      return el("td", { "data-value": String(value), ...(extra || {}) }, [fmt(value)]);
    }
    function table3(caption, values, testid) {
      const body = el("tbody");
      for (let r = 0; r < 3; r++) body.append(el("tr", {}, [0, 1, 2].map((c) => cell(values[3 * r + c]))));
      return el("table", { className: "livenet-grid3", "data-testid": testid }, [el("caption", { text: caption }), body]);
    }

    function showUnit() {
      if (!last) return;
      const { layer, map, row, col } = selected;
      const L = LAYERS.find((candidate) => candidate.key === layer), fc = layer === "fc1";
      layerSelect.value = layer;
      mapLabel.textContent = fc ? "Unit" : "Map";
      mapInput.max = String(L.channels - 1);
      rowInput.max = colInput.max = String(L.size - 1);
      if (document.activeElement !== mapInput) mapInput.value = String(map);
      if (document.activeElement !== rowInput) rowInput.value = String(row);
      if (document.activeElement !== colInput) colInput.value = String(col);
      rowInput.disabled = colInput.disabled = fc;
      const value = fc ? last.acts.fc1[map] : last.acts[layer][(map * L.size + row) * L.size + col];
      const rf = receptiveField(layer, row, col);
      const rows = rf.r1 - rf.r0 + 1, cols = rf.c1 - rf.c0 + 1;
      const where = fc ? `unit ${map}` : `map ${map}, row ${row}, column ${col}`;
      unitText.textContent = `${L.name}, ${where}: ${fmt(value)}. It sees input rows ${rf.r0}–${rf.r1} and columns ${rf.c0}–${rf.c1}`
        + ` (${rows}×${cols} pixels${fc ? ", the whole image" : ""}).`;
      root.dataset.unitValue = String(value);

      Object.assign(rfBox.style, { top: `${(100 * rf.r0) / 28}%`, left: `${(100 * rf.c0) / 28}%`,
        height: `${(100 * rows) / 28}%`, width: `${(100 * cols) / 28}%` });
      rfBox.dataset.rf = `${rf.r0} ${rf.r1} ${rf.c0} ${rf.c1}`;

      // The mark on the selected unit's map.
      const canvas = views[layer].canvases[fc ? 0 : map];
      canvas.parentElement.append(mark);
      const w = fc ? FC_COLUMNS : L.size, h = fc ? L.channels / FC_COLUMNS : L.size;
      const [my, mx] = fc ? [Math.floor(map / FC_COLUMNS), map % FC_COLUMNS] : [row, col];
      Object.assign(mark.style, { top: `${(100 * my) / h}%`, left: `${(100 * mx) / w}%`,
        height: `${100 / h}%`, width: `${100 / w}%` });

      sumBox.textContent = "";
      if (layer !== "conv1") return;
      // conv1: the 3x3 input patch (zeros where the padding is), the kernel, their products, the sum.
      const weight = net["conv1.weight"], bias = net["conv1.bias"][map];
      const patch = [], kernel = [], products = [];
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const r = row + dy, c = col + dx, inside = r >= 0 && r < 28 && c >= 0 && c < 28;
          const k = weight[map * 9 + (dy + 1) * 3 + (dx + 1)];
          patch.push(inside ? last.x[r * 28 + c] : 0);
          kernel.push(k);
          products.push(patch[patch.length - 1] * k);
        }
      }
      const sum = products.reduce((a, b) => a + b, 0), z = sum + bias;
      const result = el("p", { className: "livenet-sum-line", "data-testid": "unit-sum-line" }, [
        "sum of the 9 products ", el("span", { "data-value": String(sum), text: fmt(sum) }),
        " + bias ", el("span", { "data-value": String(bias), text: fmt(bias) }),
        " = ", el("span", { "data-value": String(z), text: fmt(z) }),
        "; ReLU keeps ", el("span", { "data-value": String(Math.max(z, 0)), text: fmt(Math.max(z, 0)) }),
        `, the value of map ${map} at row ${row}, column ${col}.`,
      ]);
      sumBox.append(
        el("div", { className: "livenet-grids" }, [
          table3("input patch (normalised)", patch, "unit-patch"), el("span", { className: "livenet-op", text: "×" }),
          table3(`kernel ${map}`, kernel, "unit-kernel"), el("span", { className: "livenet-op", text: "=" }),
          table3("products", products, "unit-products"),
        ]),
        result,
      );
    }

    root.livenet = {
      pick, clear,
      placeDigit(pixels, x, y, size) { picked = null; picker.value = ""; paint(pixels, x, y, size); update(true); },
      select(layer, map, row, col) { select(layer, map, row, col); },
      setWeights(base64) { net = LiveNet.decode(base64); update(true); },
      receptiveField,
      ink: () => Array.from(ink()),
      state: () => ({
        input: Array.from(last.image), predicted: last.predicted, empty: last.empty, probs: last.probs,
        logits: Array.from(last.acts.logits), selected: { ...selected }, rf: rfBox.dataset.rf,
      }),
    };
    pick(digits.labels.indexOf(3) >= 0 ? digits.labels.indexOf(3) : 0);  // start on a held-out 3
    // ...with the strongest conv1 unit selected: its arithmetic ends in a value above 0.
    const strongest = LiveNet.argmax(last.acts.conv1);
    select("conv1", Math.floor(strongest / 784), Math.floor((strongest % 784) / 28), strongest % 28);
  }

  // ---- page wiring: load the weights once, then build each widget ----------------------------
  let loading = null;
  function loadAsset() {
    if (window.LIVENET_ASSET) return Promise.resolve(window.LIVENET_ASSET);
    if (!loading) {
      loading = new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = new URL("livenet-weights.js", SCRIPT_SRC || document.baseURI).href;
        script.onload = () => (window.LIVENET_ASSET ? resolve(window.LIVENET_ASSET) : reject(new Error("no weights in livenet-weights.js")));
        script.onerror = () => { loading = null; reject(new Error(`could not load ${script.src}`)); };
        document.head.append(script);
      });
    }
    return loading;
  }

  function init() {
    const roots = [...document.querySelectorAll(".livenet")].filter((root) => !root.dataset.livenetStarted);
    if (!roots.length) return;
    roots.forEach((root) => { root.dataset.livenetStarted = "1"; });
    loadAsset().then((asset) => {
      roots.forEach((root) => {
        try {
          build(root, asset);
        } catch (err) {
          root.textContent = "The live network could not start: " + err.message;
          console.warn("livenet:", err);
        }
      });
    }, (err) => {
      roots.forEach((root) => { root.textContent = "The live network could not load its weights: " + err.message; });
      console.warn("livenet:", err);
    });
  }

  window.cnnOnEveryPage(init);
})();
