/* The feature-maps page's live network: a drawing pad, the 28x28 input, every layer, the prediction.
 *
 * The arithmetic lives elsewhere: livenet.js runs a network's list of layers,
 * livenet-digits.js does MNIST's preprocessing. This file draws and listens.
 * The page's network comes from livenet-weights.js (written by `python -m
 * benchmarks`), loaded as a script next to this one when the widget comes
 * into view: from file:// a script loads where fetch() is refused. A reader's
 * own network (`cnnlesson export`) comes from a file picker (FileReader).
 *
 * Each widget (<div class="livenet">) gets `root.livenet`, a small API for
 * scripts: pick(k), clear(), placeDigit(pixels, x, y, size), drawStrokes(lines), select(layer,
 * map, row, col), setNetwork(doc, label), state(), ink().
 */
(function () {
  "use strict";

  const SCRIPT_SRC = document.currentScript ? document.currentScript.src : "";
  const PAD = 280;  // the pad's own pixels; CSS scales it to the screen
  const STROKE = 20;  // the pen's width on the pad; the network gets the strokes redrawn (see ink())
  const REDRAW = 200;  // pad pixels: the redrawn strokes' longer side, which leaves room for their pen
  const FC_COLUMNS = 16;  // a fully connected layer's units drawn in rows of 16 (fc1's 128: 8 rows)
  const MAX_FILE = 16 * 1024 * 1024;  // bytes: a float32 CNNWithBN is 4.3 MB; nothing larger is read
  // Matplotlib's viridis, the colour scale of the page's static figure, at nine stops.
  const VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];

  function viridis(t) {
    const s = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
    const k = Math.min(Math.floor(s), VIRIDIS.length - 2), f = s - k;
    return VIRIDIS[k].map((a, i) => Math.round(a + f * (VIRIDIS[k + 1][i] - a)));
  }

  // How large the page draws a stage's maps (livenet.css): 28x28 maps large, 14x14 and 10x10 medium, 7x7 small.
  function sizeClass(S) {
    if (!S.maps) return "fc";
    return S.shape[1] >= 20 ? "large" : S.shape[1] >= 10 ? "medium" : "small";
  }

  // A stage's grid: maps are (channels, size, size); a fully connected layer's units are rows of FC_COLUMNS.
  function gridOf(S) {
    if (S.maps) return { count: S.shape[0], w: S.shape[2], h: S.shape[1] };
    const w = Math.min(FC_COLUMNS, S.shape[0]);
    return { count: 1, w, h: Math.ceil(S.shape[0] / w) };
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
  const aDigit = (d) => `${d === 8 ? "an" : "a"} ${d}`;  // "an 8", "a 3"

  function build(root, asset) {
    let uid = 0;
    const id = (name) => `livenet-${name}-${++uid}`;
    const pageNet = LiveNet.load(asset.net);
    let net = pageNet, netLabel = `the page's ${pageNet.model}`;
    const digits = asset.digits;
    const digitPixels = LiveNet.bytesOf(digits.pixels);
    let picked = null;  // index of the chosen held-out digit, or null for a drawing
    let selected = { layer: net.stages[0].key, map: 0, row: 14, col: 14 };
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
      picker.append(el("option", { value: String(k), text: `${aDigit(label)} (test digit #${digits.indices[k]})` }));
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
    const bars = el("ol", { className: "livenet-bars", "data-testid": "probs", "aria-label": "Probability of each digit (the last layer, then softmax)" });
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
    const outTitle = el("p", { className: "livenet-title" });
    const outBox = el("div", { className: "livenet-out" }, [outTitle, bars, live]);
    const top = el("div", { className: "livenet-top" }, [padBox, inputBox, outBox]);
    root.append(top);

    // ---- the dock: the input with its frame and the prediction, kept in view below the top --------
    // A visual repeat (the live region above is what a screen reader hears), shown once the top has
    // scrolled away, so that a unit picked on conv2's maps shows its receptive field on screen.
    const dockCanvas = el("canvas", { width: 28, height: 28 });
    const dockRf = el("div", { className: "livenet-rf" });
    const dockText = el("p", { className: "livenet-dock-text" });
    const dock = el("div", { className: "livenet-dock", "aria-hidden": "true", "data-testid": "dock" }, [
      el("div", { className: "livenet-stack" }, [dockCanvas, dockRf]), dockText,
    ]);
    root.append(dock);
    if ("IntersectionObserver" in window) {
      new IntersectionObserver(([entry]) => dock.classList.toggle("livenet-dock-on", !entry.isIntersecting),
        { rootMargin: "-60px 0px 0px 0px" }).observe(inputBox);  // 60 px: Material's header covers the top
    }

    // ---- load your own network ---------------------------------------------------------------
    const load = loadControl(id, {
      open(doc, fileName) { setNetwork(doc, `your ${doc.model || "network"} from ${fileName}`); },
      reset() { setNetwork(null); },
    });
    root.append(load.box);

    // ---- the selected unit -------------------------------------------------------------------
    const layerId = id("layer"), mapId = id("map"), rowId = id("row"), colId = id("col");
    const layerSelect = el("select", { id: layerId, "data-testid": "unit-layer" });
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
    const layersBox = el("div", { className: "livenet-layers", "data-testid": "layers" });
    root.append(layersBox);
    let views = {};
    const mark = el("div", { className: "livenet-mark", "data-testid": "mark" });

    // The layer picker and one grid of canvases per stage of `net`, made anew for each network.
    function drawLayers() {
      layerSelect.textContent = "";
      for (const S of net.stages) layerSelect.append(el("option", { value: S.key, text: S.name }));
      layersBox.textContent = "";
      views = {};
      for (const S of net.stages) {
        const title = el("p", { className: "livenet-title" });
        const grid = el("div", { className: `livenet-maps livenet-maps-${sizeClass(S)}`, "data-testid": `maps-${S.key}` });
        const { count, w, h } = gridOf(S), canvases = [];
        for (let c = 0; c < count; c++) {
          const canvas = el("canvas", { width: w, height: h, "data-map": String(c) });
          canvases.push(canvas);
          grid.append(el("div", { className: "livenet-stack" }, [canvas]));
          canvas.addEventListener("click", (event) => {
            const rect = canvas.getBoundingClientRect();
            const x = Math.min(w - 1, Math.floor(((event.clientX - rect.left) / rect.width) * w));
            const y = Math.min(h - 1, Math.floor(((event.clientY - rect.top) / rect.height) * h));
            if (!S.maps) select(S.key, Math.min(y * w + x, S.shape[0] - 1), 0, 0);
            else select(S.key, c, y, x);
          });
        }
        layersBox.append(el("section", { className: "livenet-layer", "aria-label": S.name }, [title, grid]));
        views[S.key] = { title, grid, canvases };
      }
      outTitle.textContent = `${net.layers[net.layers.length - 1].name} → softmax: the 10 class probabilities`;
    }
    drawLayers();

    // ---- drawing -----------------------------------------------------------------------------
    // The pen's strokes as drawn (pad pixels), or null while the pad holds a placed digit's pixels.
    let strokes = [];
    const inkCanvas = document.createElement("canvas");
    inkCanvas.width = inkCanvas.height = PAD;
    const inkCtx = inkCanvas.getContext("2d", { willReadFrequently: true });

    // Draw polylines with round ends and joins, `width` pad pixels wide.
    function strokeAll(c, lines, width) {
      Object.assign(c, { lineCap: "round", lineJoin: "round", lineWidth: width, strokeStyle: "#000", fillStyle: "#000" });
      for (const line of lines) {
        c.beginPath();
        if (line.length === 1) {
          c.arc(line[0][0], line[0][1], width / 2, 0, 2 * Math.PI);
          c.fill();
        } else {
          c.moveTo(line[0][0], line[0][1]);
          for (const [x, y] of line.slice(1)) c.lineTo(x, y);
          c.stroke();
        }
      }
    }

    // What the network is given: the strokes redrawn at one size (their longer side REDRAW pad pixels,
    // centred) with the pen LiveDigits.penWidth gives for it, so that after MNIST's scaling to 20x20 they
    // are as thick as MNIST's own, whether the digit was drawn 50 or 250 pixels tall.
    function ink() {
      let source = ctx;
      if (strokes) {
        let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
        for (const line of strokes) {
          for (const [x, y] of line) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
        }
        const extent = Math.max(x1 - x0, y1 - y0), k = extent > 0 ? REDRAW / extent : 1;
        const at = ([x, y]) => [PAD / 2 + (x - (x0 + x1) / 2) * k, PAD / 2 + (y - (y0 + y1) / 2) * k];
        inkCtx.clearRect(0, 0, PAD, PAD);
        if (strokes.length) strokeAll(inkCtx, strokes.map((line) => line.map(at)), LiveDigits.penWidth(extent * k));
        source = inkCtx;
      }
      const data = source.getImageData(0, 0, PAD, PAD).data, out = new Float64Array(PAD * PAD);
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
      if (!strokes) { ctx.clearRect(0, 0, PAD, PAD); strokes = []; }  // a placed digit gives way to the pen
      strokes.push([drawing]);
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
      strokes[strokes.length - 1].push(next);
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
      strokes = [];
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
      strokes = null;
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
      const x = LiveDigits.normalise(LiveNet.padImage(image, net.pad));  // LeNet-5: 32x32, black border
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
      dockCanvas.getContext("2d").putImageData(img, 0, 0);

      for (const S of net.stages) {
        const values = acts[S.key], view = views[S.key], grid = gridOf(S);
        let top = 0;
        for (const v of values) if (v > top) top = v;
        const what = S.maps ? `${S.shape[0]} maps of ${S.shape[1]}×${S.shape[2]}` : `${S.shape[0]} units`;
        view.title.textContent = `${S.name}: ${what}, largest value ${fmt(top, 2)}`;
        const per = S.maps ? grid.w * grid.h : values.length;
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
          : `The network reads ${aDigit(last.predicted)} (${pct(probs[last.predicted])}).`;
      }
      root.dataset.predicted = empty ? "" : String(last.predicted);
      showUnit();
    }

    // ---- the network on show: the page's, or one the reader loaded ------------------------------
    // Everything is checked (LiveNet.load) before anything changes: a bad file leaves the network as it was.
    function setNetwork(doc, label) {
      const next = doc === null ? pageNet : LiveNet.load(doc);
      net = next;
      netLabel = doc === null ? `the page's ${pageNet.model}` : label;
      root.dataset.network = doc === null ? "page" : "loaded";
      drawLayers();
      load.showing(netLabel, doc !== null);
      selected = { layer: net.stages[0].key, map: 0, row: 0, col: 0 };
      update(true);
      selectStrongest();
    }

    // The first stage's strongest unit: for a conv layer, its arithmetic ends in a value above 0.
    function selectStrongest() {
      const S = net.stages[0], grid = gridOf(S), k = LiveNet.argmax(last.acts[S.key]);
      if (S.maps) select(S.key, Math.floor(k / (grid.w * grid.h)), Math.floor((k % (grid.w * grid.h)) / grid.w), k % grid.w);
      else select(S.key, k, 0, 0);
    }

    // ---- the selected unit: its value, receptive field, and for the first conv layer its arithmetic ----
    function select(layer, map, row, col) {
      const S = net.stages.find((candidate) => candidate.key === layer);
      if (!S) throw new Error(`layer: expected one of ${net.stages.map((c) => c.key).join(", ")}, got ${layer}`);
      const clamp = (v, hi) => Math.min(Math.max(Number.isFinite(v) ? Math.round(v) : 0, 0), hi);
      selected = S.maps
        ? { layer, map: clamp(map, S.shape[0] - 1), row: clamp(row, S.shape[1] - 1), col: clamp(col, S.shape[2] - 1) }
        : { layer, map: clamp(map, S.shape[0] - 1), row: 0, col: 0 };
      showUnit();
    }

    function readInputs() {
      select(layerSelect.value, Number(mapInput.value), Number(rowInput.value), Number(colInput.value));
    }
    layerSelect.addEventListener("change", readInputs);
    // A number outside what is shown (99, -5) is clamped in the box as well (showUnit writes it back).
    for (const input of [mapInput, rowInput, colInput]) {
      input.addEventListener("input", readInputs);
      input.addEventListener("change", () => showUnit());  // on leaving a half-typed box: what is selected
    }

    function cell(value, extra) {
      return el("td", { "data-value": String(value), ...(extra || {}) }, [fmt(value)]);
    }
    function tableK(caption, values, k, testid) {
      const body = el("tbody");
      for (let r = 0; r < k; r++) body.append(el("tr", {}, Array.from({ length: k }, (_, c) => cell(values[k * r + c]))));
      return el("table", { className: "livenet-grid3", "data-testid": testid }, [el("caption", { text: caption }), body]);
    }
    const valueSpan = (v) => el("span", { "data-value": String(v), text: fmt(v) });

    function showUnit() {
      if (!last) return;
      const { layer, map, row, col } = selected;
      const S = net.stages.find((candidate) => candidate.key === layer), fc = !S.maps, grid = gridOf(S);
      layerSelect.value = layer;
      mapLabel.textContent = fc ? "Unit" : "Map";
      mapInput.max = String(S.shape[0] - 1);
      rowInput.max = String(fc ? 0 : S.shape[1] - 1);
      colInput.max = String(fc ? 0 : S.shape[2] - 1);
      const typing = (input) => document.activeElement === input && input.value === "";  // half-typed: left alone
      if (!typing(mapInput)) mapInput.value = String(map);
      if (!typing(rowInput)) rowInput.value = String(row);
      if (!typing(colInput)) colInput.value = String(col);
      rowInput.disabled = colInput.disabled = fc;
      const value = fc ? last.acts[layer][map] : last.acts[layer][(map * S.shape[1] + row) * S.shape[2] + col];
      const rf = LiveNet.receptiveField(net, layer, row, col);
      const rows = rf.r1 - rf.r0 + 1, cols = rf.c1 - rf.c0 + 1;
      const where = fc ? `unit ${map}` : `map ${map}, row ${row}, column ${col}`;
      unitText.textContent = `${S.name}, ${where}: ${fmt(value)}. It sees input rows ${rf.r0}–${rf.r1} and columns ${rf.c0}–${rf.c1}`
        + ` (${rows}×${cols} pixels${fc ? ", the whole image" : ""}).`;
      root.dataset.unitValue = String(value);

      Object.assign(rfBox.style, { top: `${(100 * rf.r0) / 28}%`, left: `${(100 * rf.c0) / 28}%`,
        height: `${(100 * rows) / 28}%`, width: `${(100 * cols) / 28}%` });
      rfBox.dataset.rf = `${rf.r0} ${rf.r1} ${rf.c0} ${rf.c1}`;
      const { top: rfTop, left, height, width } = rfBox.style;
      Object.assign(dockRf.style, { top: rfTop, left, height, width });
      dockRf.dataset.rf = rfBox.dataset.rf;
      dockText.textContent = `${last.empty ? "The pad is empty" : `Reads ${aDigit(last.predicted)} (${pct(last.probs[last.predicted])})`}.`
        + ` ${S.name}, ${where}: ${fmt(value)}`;

      // The mark on the selected unit's map.
      // Centred on the unit's cell, at least a few screen pixels wide (livenet.css): a conv1 cell is ~1.5 px.
      const canvas = views[layer].canvases[fc ? 0 : map];
      for (const old of root.querySelectorAll(".livenet-selected")) old.classList.remove("livenet-selected");
      canvas.parentElement.classList.add("livenet-selected");
      canvas.parentElement.append(mark);
      const [my, mx] = fc ? [Math.floor(map / grid.w), map % grid.w] : [row, col];
      Object.assign(mark.style, { top: `${(100 * (my + 0.5)) / grid.h}%`, left: `${(100 * (mx + 0.5)) / grid.w}%`,
        height: `${100 / grid.h}%`, width: `${100 / grid.w}%` });

      sumBox.textContent = "";
      const first = net.layers[S.first];
      if (S !== net.stages[0] || first.type !== "conv2d" || first.inShape[0] !== 1) return;
      sumBox.append(...arithmetic(S, first, map, row, col));
    }

    // The first conv layer's unit: its k x k input patch (zeros where the padding is), the kernel,
    // their products and the sum plus bias; then batch norm, if the stage has one, and ReLU.
    function arithmetic(S, L, map, row, col) {
      const k = L.k, side = L.inShape[1], patch = [], kernel = [], products = [];
      for (let dy = 0; dy < k; dy++) {
        for (let dx = 0; dx < k; dx++) {
          const r = row * L.s - L.p + dy, c = col * L.s - L.p + dx, inside = r >= 0 && r < side && c >= 0 && c < side;
          const w = L.weight[(map * k + dy) * k + dx];
          patch.push(inside ? last.x[r * side + c] : 0);
          kernel.push(w);
          products.push(patch[patch.length - 1] * w);
        }
      }
      const sum = products.reduce((a, b) => a + b, 0), bias = L.bias[map], z = sum + bias;
      const parts = ["sum of the ", String(k * k), " products ", valueSpan(sum), " + bias ", valueSpan(bias), " = ", valueSpan(z)];
      let v = z;
      for (let i = S.first + 1; i <= S.last; i++) {
        const B = net.layers[i];
        if (B.type === "batchnorm") {
          v = (v - B.running_mean[map]) / Math.sqrt(B.running_var[map] + B.eps) * B.weight[map] + B.bias[map];
          parts.push(`; ${B.name} (batch norm: minus the mean ${fmt(B.running_mean[map])}, over √(variance + eps), × ${fmt(B.weight[map])}, + ${fmt(B.bias[map])}) gives `, valueSpan(v));
        } else if (B.type === "relu") {
          v = Math.max(v, 0);
          parts.push("; ReLU keeps ", valueSpan(v));
        }
      }
      parts.push(`, the value of map ${map} at row ${row}, column ${col}.`);
      return [
        el("div", { className: "livenet-grids" }, [
          tableK("input patch (normalised)", patch, k, "unit-patch"), el("span", { className: "livenet-op", text: "⊙", title: "times, cell by cell (not a matrix product)" }),
          tableK(`kernel ${map}`, kernel, k, "unit-kernel"), el("span", { className: "livenet-op", text: "=" }),
          tableK("products, cell by cell", products, k, "unit-products"),
        ]),
        el("p", { className: "livenet-sum-line", "data-testid": "unit-sum-line" }, parts),
      ];
    }

    root.livenet = {
      pick, clear,
      placeDigit(pixels, x, y, size) { picked = null; picker.value = ""; paint(pixels, x, y, size); update(true); },
      // Pen strokes, as lists of [x, y] pad pixels, drawn as the pointer would draw them.
      drawStrokes(lines) {
        ctx.clearRect(0, 0, PAD, PAD);
        picked = null;
        picker.value = "";
        strokes = lines.map((line) => line.map(([x, y]) => [x, y]));
        strokeAll(ctx, strokes, STROKE);
        update(true);
      },
      select(layer, map, row, col) { select(layer, map, row, col); },
      setNetwork(doc, label) { setNetwork(doc, label || "a network set by a script"); },
      receptiveField: (layer, row, col) => LiveNet.receptiveField(net, layer, row, col),
      ink: () => Array.from(ink()),
      state: () => ({
        input: Array.from(last.image), predicted: last.predicted, empty: last.empty, probs: last.probs,
        logits: Array.from(last.acts.logits), selected: { ...selected }, rf: rfBox.dataset.rf,
        network: netLabel, layers: net.stages.map((S) => S.key),
        maps: Object.fromEntries(net.stages.map((S) => [S.key, Array.from(last.acts[S.key])])),
      }),
    };
    root.dataset.network = "page";
    load.showing(netLabel, false);
    pick(digits.labels.indexOf(3) >= 0 ? digits.labels.indexOf(3) : 0);  // start on a held-out 3
    selectStrongest();
  }

  // ---- "Load your own network": a file picker, read with FileReader (works from file://) --------
  // The file is checked for size before it is read, parsed as JSON, and handed to `open`,
  // which checks every field before anything changes; what goes wrong is one line of text.
  function loadControl(id, { open, reset }) {
    const fileId = id("file");
    const file = el("input", { id: fileId, type: "file", accept: ".json,application/json", "data-testid": "load-file" });
    const back = el("button", { type: "button", className: "md-button livenet-back", "data-testid": "load-reset",
      text: "Back to the page's network" });
    const status = el("p", { className: "livenet-load-status", role: "status", "data-testid": "load-status" });
    const box = el("div", { className: "livenet-load livenet-controls" }, [
      el("label", { for: fileId, text: "Load your own network (from cnnlesson export):" }), file, back, status,
    ]);
    const say = (text, failed) => {
      status.textContent = text;  // text only: nothing in a file is ever rendered as HTML
      status.classList.toggle("livenet-load-error", Boolean(failed));
    };
    file.addEventListener("change", () => {
      const chosen = file.files && file.files[0];
      file.value = "";  // choosing the same file again reads it again
      if (!chosen) return;
      const name = chosen.name.length > 60 ? chosen.name.slice(0, 57) + "..." : chosen.name;
      if (chosen.size > MAX_FILE) {
        say(`Not loaded: ${name} is ${(chosen.size / 1048576).toFixed(1)} MB; a network file is at most ${MAX_FILE / 1048576} MB. The network shown is unchanged.`, true);
        return;
      }
      const reader = new FileReader();
      reader.onerror = () => say(`Not loaded: ${name} could not be read. The network shown is unchanged.`, true);
      reader.onload = () => {
        let doc;
        try {
          doc = JSON.parse(reader.result);
        } catch (err) {
          say(`Not loaded: ${name} is not JSON (a truncated file?). The network shown is unchanged.`, true);
          return;
        }
        try {
          open(doc, name);
        } catch (err) {
          say(`Not loaded: ${name}: ${err.message}. The network shown is unchanged.`, true);
        }
      };
      reader.readAsText(chosen);
    });
    back.addEventListener("click", () => reset());
    return {
      box,
      showing(label, loaded) {
        back.hidden = !loaded;
        say(`Showing ${label}.`, false);
      },
    };
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

  // The weights (about half a megabyte) load when a widget comes near the screen, not with the page;
  // printing loads them too, so that paper shows the network.
  function init() {
    const roots = [...document.querySelectorAll(".livenet")].filter((root) => !root.dataset.livenetStarted);
    if (!roots.length) return;
    roots.forEach((root) => { root.dataset.livenetStarted = "1"; });
    if (!("IntersectionObserver" in window)) {
      start(roots);
      return;
    }
    const observer = new IntersectionObserver((entries) => {
      if (!entries.some((entry) => entry.isIntersecting)) return;
      observer.disconnect();
      start(roots);
    }, { rootMargin: "600px 0px" });
    roots.forEach((root) => observer.observe(root));
    window.addEventListener("beforeprint", () => { observer.disconnect(); start(roots); }, { once: true });
  }

  function start(roots) {
    if (roots.started) return;
    roots.started = true;
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
