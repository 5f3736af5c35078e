/*
 * explorer.js: the interactive convolution / pooling explorer of the
 * "07. CNN Basics" site.
 *
 * Every <div class="cnn-explorer" data-mode="conv"> (or data-mode="pool") on a
 * page becomes a widget: pick or type an input and a kernel, set stride,
 * padding and dilation, and step the sliding window over the input.
 *
 * Semantics follow torch.nn.functional.conv2d / max_pool2d / avg_pool2d and
 * cnnlesson.conv exactly:
 *   - convolution is cross-correlation (the kernel is NOT flipped);
 *   - padding adds zeros (max pooling pads with -inf, so padding never wins);
 *   - average pooling divides by the full window size, padded zeros included
 *     (PyTorch's count_include_pad=True);
 *   - out = floor((n + 2p - d(k - 1) - 1) / s) + 1 for each spatial axis;
 *   - output (i, j) reads input (i*s - p + a*d, j*s - p + b*d) for a, b < k.
 *
 * "Copy as Python" gives a short script with the current input, kernel and
 * settings that computes the same grid with cnnlesson.conv and with
 * torch.nn.functional and prints it (pythonSnippet below).
 *
 * Plain JavaScript, no library, no build step. Colours come from
 * mkdocs-material's CSS variables (see stylesheets/explorer.css).
 * Tests find the parts by their data-testid attributes: keep them stable.
 */
(function () {
  "use strict";

  // ---- presets --------------------------------------------------------------
  // Stored as text in the very format a reader types into the textareas, so a
  // preset and a typed matrix go through the same parser.
  const INPUT_PRESETS = [
    ["lesson", "Lesson 3×4", "1 2 3 4\n5 6 7 8\n9 0 1 2"],
    ["digit", "Digit “3” (8×8)", [
      "0 1 6 9 9 7 1 0",
      "0 4 8 3 2 9 5 0",
      "0 0 0 0 1 9 4 0",
      "0 0 0 5 9 8 1 0",
      "0 0 0 2 4 8 7 0",
      "0 0 0 0 0 3 9 1",
      "0 5 7 4 5 8 8 0",
      "0 2 7 9 8 5 1 0",
    ].join("\n")],
  ];
  const KERNEL_PRESETS = [
    ["lesson", "Lesson 2×2", "1 0\n0 1"],
    ["identity", "Identity 3×3", "0 0 0\n0 1 0\n0 0 0"],
    ["sobel-x", "Sobel x (vertical edges)", "-1 0 1\n-2 0 2\n-1 0 1"],
    ["sobel-y", "Sobel y (horizontal edges)", "-1 -2 -1\n0 0 0\n1 2 1"],
    ["blur", "Box blur 3×3 (1/9 each)", "1/9 1/9 1/9\n1/9 1/9 1/9\n1/9 1/9 1/9"],
    ["sharpen", "Sharpen", "0 -1 0\n-1 5 -1\n0 -1 0"],
  ];
  const MAX_SIDE = 32;    // largest input / kernel side we accept
  const MAX_DRAWN = 48;   // largest padded input side we draw
  const PLAY_MS = 800;    // delay between steps while playing

  // Thrown for bad settings; caught by update() and shown in the widget.
  class SettingsError extends Error {}

  // ---- small DOM helpers ----------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }

  function field(label, control, extraClass) {
    return el("label", { class: "cnnx-field " + (extraClass || "") },
      el("span", { class: "cnnx-label", text: label }), control);
  }

  function select(testid, options, value) {
    const node = el("select", { "data-testid": testid });
    for (const [v, text] of options) node.append(el("option", { value: v, text }));
    node.value = value;
    return node;
  }

  function numberInput(testid, value, min) {
    return el("input", { type: "number", step: 1, min, value, inputmode: "numeric",
      "data-testid": testid });
  }

  // ---- number formatting ----------------------------------------------------
  // U+2212 is the typographic minus; data-value keeps the machine form.
  function fmt(v, digits = 3) {
    if (v === -Infinity) return "−∞";
    const text = Number.isInteger(v) ? String(v) : String(Number(v.toFixed(digits)));
    return text.replace("-", "−");
  }

  function fmtCell(v) {        // short enough to fit into a grid cell
    const a = Math.abs(v);
    return fmt(v, a >= 100 ? 0 : a >= 10 ? 1 : 2);
  }

  const paren = (text) => (text.startsWith("−") ? "(" + text + ")" : text);

  // ---- parsing ----------------------------------------------------------------
  const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i;

  // One token: a decimal number or a fraction like 1/9. Returns null if bad.
  function parseNumber(token) {
    const parts = token.replace(/\u2212/g, "-").split("/");
    if (parts.length > 2 || !parts.every((part) => NUMBER.test(part))) return null;
    const v = parts.length === 2 ? Number(parts[0]) / Number(parts[1]) : Number(parts[0]);
    return Number.isFinite(v) ? v : null;
  }

  // Rows are lines; numbers are separated by spaces, commas or semicolons.
  function parseMatrix(text, what) {
    const lines = text.split(/\r?\n/).map((line) => line.trim()).filter(Boolean);
    if (!lines.length) throw new SettingsError(`The ${what} is empty: type at least one row of numbers.`);
    const rows = lines.map((line, i) => line.split(/[\s,;]+/).filter(Boolean).map((token) => {
      const v = parseNumber(token);
      if (v === null) throw new SettingsError(`“${token}” in row ${i + 1} of the ${what} is not a number.`);
      return v;
    }));
    rows.forEach((row, i) => {
      if (row.length !== rows[0].length) {
        throw new SettingsError(`Row ${i + 1} of the ${what} has ${row.length} numbers but row 1 has ` +
          `${rows[0].length}: every row needs the same length.`);
      }
    });
    if (rows.length > MAX_SIDE || rows[0].length > MAX_SIDE) {
      throw new SettingsError(`The ${what} is limited to ${MAX_SIDE}×${MAX_SIDE} numbers here.`);
    }
    return rows;
  }

  // A whole number >= min from a number input; `fallback` is used when empty.
  function parseInteger(input, name, min, fallback) {
    const text = input.value.trim();
    // A number input reports "" for unparsable text; badInput tells them apart.
    if (text === "" && fallback !== undefined && !input.validity.badInput) return fallback;
    if (!/^[-+]?\d+$/.test(text) || Number(text) < min) {
      throw new SettingsError(`${name} must be a whole number ≥ ${min}` +
        (text === "" ? "." : `, not “${text}”.`));
    }
    return Number(text);
  }

  // ---- the arithmetic -------------------------------------------------------
  // The taps of output (i, j): every kernel position (a, b), the input cell
  // (r, c) it reads, and the value found there (padValue outside the input).
  function taps(st, i, j) {
    const list = [];
    for (let a = 0; a < st.kh; a++) {
      for (let b = 0; b < st.kw; b++) {
        const r = i * st.s - st.p + a * st.d;
        const c = j * st.s - st.p + b * st.d;
        const inside = r >= 0 && r < st.h && c >= 0 && c < st.w;
        list.push({ a, b, r, c, pad: !inside, x: inside ? st.x[r][c] : st.padValue });
      }
    }
    return list;
  }

  function outputValue(st, list) {
    if (st.mode === "conv") return list.reduce((acc, t) => acc + t.x * st.k[t.a][t.b], 0);
    if (st.pool === "max") return list.reduce((acc, t) => Math.max(acc, t.x), -Infinity);
    return list.reduce((acc, t) => acc + t.x, 0) / list.length;
  }

  // The multiply-add (or max / average) of one output cell, as text.
  function calcText(st, list, value) {
    const xs = list.map((t) => fmt(t.x));
    if (st.mode === "conv") {
      const terms = list.map((t, n) => paren(xs[n]) + "×" + paren(fmt(st.k[t.a][t.b])));
      return terms.join(" + ") + " = " + fmt(value);
    }
    if (st.pool === "max") return "max(" + xs.join(", ") + ") = " + fmt(value);
    return "avg(" + xs.join(", ") + ") = (" + xs.map(paren).join(" + ") + ") / " +
      list.length + " = " + fmt(value);
  }

  // The output-size formula for one axis, filled in with the current numbers.
  function formulaText(st, axis) {
    const [n, k, N] = axis === "height" ? [st.h, st.kh, "H"] : [st.w, st.kw, "W"];
    const size = Math.floor((n + 2 * st.p - st.d * (k - 1) - 1) / st.s) + 1;
    if (st.mode === "pool") {   // dilation is always 1 for pooling here
      return `${axis}: ⌊(${N} + 2·P − K) / S⌋ + 1 = ⌊(${n} + 2·${st.p} − ${k}) / ${st.s}⌋ + 1 = ${size}`;
    }
    return `${axis}: ⌊(${N} + 2·P − D·(K − 1) − 1) / S⌋ + 1 = ` +
      `⌊(${n} + 2·${st.p} − ${st.d}·(${k} − 1) − 1) / ${st.s}⌋ + 1 = ${size}`;
  }

  // ---- the current state as Python ------------------------------------------
  // A number as Python reads it back to the same double: JavaScript's
  // shortest round-trip form is also valid Python ("0.1111111111111111", "1e-7").
  function pyNumber(v) {
    return Number.isInteger(v) ? String(v) : String(v).replace("e+", "e");
  }

  function pyArray(rows, indent) {
    const pad = " ".repeat(indent + 10);   // under the first "[" of "np.array(["
    return "np.array([" + rows.map((row, i) =>
      (i ? pad : "") + "[" + row.map(pyNumber).join(", ") + "]").join(",\n") + "], dtype=float)";
  }

  // A script that recomputes st's output grid with cnnlesson.conv and with
  // torch.nn.functional, checks that they agree and prints the grid. It needs
  // only `pip install cnnlesson` (which brings NumPy and PyTorch).
  function pythonSnippet(st) {
    const lines = ["import numpy as np", "import torch", "import torch.nn.functional as F"];
    let ours, theirs;
    if (st.mode === "conv") {
      const args = `stride=${st.s}, padding=${st.p}, dilation=${st.d}`;
      lines.push("from cnnlesson.conv import conv2d", "",
        `x = ${pyArray(st.x, 4)}  # input, ${st.h}×${st.w}`,
        `k = ${pyArray(st.k, 4)}  # kernel, ${st.kh}×${st.kw}`);
      ours = `conv2d(x[None, None], k[None, None],\n              ${args})[0, 0]`;
      theirs = "F.conv2d(torch.from_numpy(x)[None, None],\n" +
        "                  torch.from_numpy(k)[None, None],\n" +
        `                  ${args})[0, 0].numpy()`;
    } else {
      const fn = st.pool === "max" ? "max_pool2d" : "avg_pool2d";
      const args = `kernel_size=${st.kh}, stride=${st.s}, padding=${st.p}`;
      lines.push(`from cnnlesson.conv import ${fn}`, "",
        `x = ${pyArray(st.x, 4)}  # input, ${st.h}×${st.w}`);
      ours = `${fn}(x[None, None], ${args})[0, 0]`;
      theirs = `F.${fn}(torch.from_numpy(x)[None, None],\n` +
        `${" ".repeat(fn.length + 12)}${args})[0, 0].numpy()`;   // under "torch"
    }
    if (st.oh * st.ow > 1000) lines.push("np.set_printoptions(threshold=10_000)  # print every value");
    lines.push(`ours = ${ours}`, `theirs = ${theirs}`,
      `print("torch gives the same grid:", np.allclose(ours, theirs))`,
      `print(ours)  # output, ${st.oh}×${st.ow}`);
    return lines.join("\n") + "\n";
  }

  // ---- one widget -----------------------------------------------------------
  let hintCount = 0;   // unique ids for the hints, one explorer or several on a page

  function build(root) {
    const mode = root.dataset.mode === "pool" ? "pool" : "conv";
    root.textContent = "";
    root.classList.add("cnnx", "cnnx--" + mode);
    root.setAttribute("role", "group");
    root.setAttribute("aria-label", mode === "conv" ? "Convolution explorer" : "Pooling explorer");

    const ui = {
      inputPreset: select("input-preset",
        INPUT_PRESETS.map(([v, label]) => [v, label]).concat([["custom", "Custom (typed)"]]), "lesson"),
      inputText: el("textarea", { rows: 4, spellcheck: "false", "data-testid": "input-text",
        "aria-description": "One row per line, numbers separated by spaces or commas" }),
      stride: numberInput("stride", mode === "pool" ? 2 : 1, 1),
      padding: numberInput("padding", 0, 0),
      prev: el("button", { type: "button", class: "cnnx-btn", "data-testid": "prev", text: "◀ Prev" }),
      play: el("button", { type: "button", class: "cnnx-btn", "data-testid": "play",
        "aria-pressed": "false", text: "▶ Play" }),
      next: el("button", { type: "button", class: "cnnx-btn", "data-testid": "next", text: "Next ▶" }),
      position: el("span", { class: "cnnx-position", "data-testid": "position" }),
      inputGrid: el("div", { class: "cnnx-grid", "data-testid": "input" }),
      outputGrid: el("div", { class: "cnnx-grid", "data-testid": "output" }),
      inputCaption: el("span"),
      outputCaption: el("span"),
      // A live region: screen readers announce each step's sum as it changes.
      calc: el("p", { class: "cnnx-calc", "data-testid": "calc", "aria-live": "polite", "aria-atomic": "true" }),
      formula: el("div", { class: "cnnx-formula", "data-testid": "formula" }),
      error: el("p", { class: "cnnx-error", "data-testid": "error", role: "alert", hidden: true }),
      copy: el("button", { type: "button", class: "cnnx-btn", "data-testid": "copy-python",
        text: "Copy as Python" }),
      copyStatus: el("span", { class: "cnnx-copy-status", "data-testid": "copy-status", role: "status",
        "aria-live": "polite" }),
      // Focusable, so that a keyboard can scroll a long line into view.
      python: el("pre", { class: "cnnx-python", "data-testid": "python", tabindex: 0, hidden: true }),
    };
    const controls = [field("Input", ui.inputPreset)];
    const texts = [field("Input numbers (rows = lines)", ui.inputText, "cnnx-field--text")];
    const figures = [el("figure", { class: "cnnx-figure" }, el("figcaption", {}, ui.inputCaption), ui.inputGrid)];

    if (mode === "conv") {
      ui.kernelPreset = select("kernel-preset",
        KERNEL_PRESETS.map(([v, label]) => [v, label]).concat([["custom", "Custom (typed)"]]), "lesson");
      ui.kernelText = el("textarea", { rows: 4, spellcheck: "false", "data-testid": "kernel-text",
        "aria-description": "One row per line, numbers or fractions like 1/9" });
      ui.dilation = numberInput("dilation", 1, 1);
      // One line where the control appears: dilation is the one setting the lesson does not teach.
      ui.dilationHint = el("p", { class: "cnnx-hint", id: "cnnx-dilation-hint-" + (++hintCount),
        "data-testid": "dilation-hint",
        text: "Dilation spaces the kernel's taps apart: at 2 they read every second pixel." });
      ui.dilation.setAttribute("aria-describedby", ui.dilationHint.id);
      ui.kernelGrid = el("div", { class: "cnnx-grid cnnx-grid--kernel", "data-testid": "kernel" });
      ui.kernelCaption = el("span");
      controls.push(field("Kernel", ui.kernelPreset), field("Stride", ui.stride),
        field("Padding", ui.padding), field("Dilation", ui.dilation));
      texts.push(field("Kernel numbers", ui.kernelText, "cnnx-field--text"));
      figures.push(el("figure", { class: "cnnx-figure" }, el("figcaption", {},
        el("span", { class: "cnnx-op", title: "cross-correlation", text: "⋆" }), ui.kernelCaption), ui.kernelGrid));
    } else {
      ui.poolType = select("pool-type", [["max", "Max pooling"], ["avg", "Average pooling"]], "max");
      ui.poolKernel = numberInput("pool-kernel", 2, 1);
      controls.push(field("Pooling", ui.poolType), field("Kernel size", ui.poolKernel),
        field("Stride (default: kernel size)", ui.stride), field("Padding", ui.padding));
    }
    // The operators sit in the captions, so that figures wrapping onto a new
    // line on narrow pages never leave a lone "⋆" or "=" behind.
    figures.push(el("figure", { class: "cnnx-figure" }, el("figcaption", {},
      el("span", { class: "cnnx-op", "aria-hidden": "true", text: "=" }), ui.outputCaption), ui.outputGrid));

    // The stage is focusable so that the arrow keys can step the window.
    const stage = el("div", { class: "cnnx-stage", tabindex: 0, role: "group", "data-testid": "stage",
      "aria-label": "Grids. Arrow keys move the window, Home and End jump." }, ...figures);
    root.append(
      el("div", { class: "cnnx-controls" }, ...controls),
      ...(ui.dilationHint ? [ui.dilationHint] : []),
      el("div", { class: "cnnx-texts" }, ...texts),
      ui.error,
      stage,
      el("div", { class: "cnnx-steps" }, ui.prev, ui.play, ui.next, ui.position),
      ui.calc,
      ui.formula,
      el("div", { class: "cnnx-copy" }, ui.copy, ui.copyStatus),
      ui.python,
    );

    // Widget state: st is the last valid setting (null while there is an error).
    let st = null;
    let step = 0;
    let timer = null;
    let strideFollowsKernel = true;   // pooling: stride = kernel size until edited

    function fillPreset(presets, chosen, textarea) {
      const preset = presets.find(([v]) => v === chosen.value);
      if (preset) textarea.value = preset[2];
    }

    function readSettings() {
      const x = parseMatrix(ui.inputText.value, "input");
      const p = parseInteger(ui.padding, "Padding", 0);
      const base = { mode, x, h: x.length, w: x[0].length, p };
      if (mode === "conv") {
        const k = parseMatrix(ui.kernelText.value, "kernel");
        return Object.assign(base, { k, kh: k.length, kw: k[0].length, padValue: 0,
          s: parseInteger(ui.stride, "Stride", 1), d: parseInteger(ui.dilation, "Dilation", 1) });
      }
      const size = parseInteger(ui.poolKernel, "Kernel size", 1);
      const pool = ui.poolType.value === "avg" ? "avg" : "max";
      return Object.assign(base, { pool, kh: size, kw: size, d: 1,
        s: parseInteger(ui.stride, "Stride", 1, size), padValue: pool === "max" ? -Infinity : 0 });
    }

    // Errors that need all numbers: sizes that give no output, PyTorch's rules.
    function checkSizes(s) {
      if (s.mode === "pool" && 2 * s.p > s.kh) {
        throw new SettingsError(`Padding ${s.p} is too large: PyTorch allows at most half the ` +
          `kernel size (${s.kh} / 2) for pooling.`);
      }
      if (s.oh < 1 || s.ow < 1) {
        const ekh = s.d * (s.kh - 1) + 1, ekw = s.d * (s.kw - 1) + 1;
        throw new SettingsError(`The kernel (${ekh}×${ekw}` + (s.d > 1 ? `, dilated by ${s.d}` : "") +
          `) is larger than the padded input (${s.h + 2 * s.p}×${s.w + 2 * s.p}): there is no output.`);
      }
      if (Math.max(s.h, s.w) + 2 * s.p > MAX_DRAWN) {
        throw new SettingsError(`The padded input is too large to draw here (at most ${MAX_DRAWN} cells a side).`);
      }
    }

    function showError(message) {
      ui.error.textContent = message;
      ui.error.hidden = !message;
      root.classList.toggle("has-error", !!message);
    }

    // Re-read every control, recompute the output and redraw all grids.
    function update() {
      let next = null;
      ui.formula.textContent = "";
      try {
        next = readSettings();
        next.oh = Math.floor((next.h + 2 * next.p - next.d * (next.kh - 1) - 1) / next.s) + 1;
        next.ow = Math.floor((next.w + 2 * next.p - next.d * (next.kw - 1) - 1) / next.s) + 1;
        // The formula is worth showing even when it gives 0 or less.
        for (const axis of ["height", "width"]) {
          ui.formula.append(el("div", { class: "cnnx-formula-line", text: formulaText(next, axis) }));
        }
        checkSizes(next);
        showError("");
      } catch (err) {
        if (!(err instanceof SettingsError)) throw err;
        showError(err.message);
        next = null;
      }
      st = next;
      if (!st) {
        stop();
        ui.outputGrid.textContent = "";
        ui.outputGrid.hidden = true;
        ui.outputCaption.textContent = "Output";
        ui.calc.textContent = "";
        ui.position.textContent = "";
        for (const b of [ui.prev, ui.next, ui.play, ui.copy]) b.disabled = true;
        ui.python.hidden = true;
        ui.copyStatus.textContent = "";
        return;
      }
      st.out = [];
      for (let i = 0; i < st.oh; i++) {
        st.out.push([]);
        for (let j = 0; j < st.ow; j++) st.out[i].push(outputValue(st, taps(st, i, j)));
      }
      for (const b of [ui.prev, ui.next, ui.play, ui.copy]) b.disabled = false;
      if (!ui.python.hidden) ui.python.textContent = pythonSnippet(st);   // it follows the settings
      drawGrids();
      step = Math.min(step, st.oh * st.ow - 1);
      showStep();
    }

    // Draws rows r0..r0+nr-1, columns c0..c0+nc-1; cells outside the h×w
    // data are padding. Cells are shaded by |value| / largest |value|.
    function drawGrid(container, { r0, c0, nr, nc, h, w }, valueAt) {
      container.textContent = "";
      container.hidden = false;
      container.style.setProperty("--cnnx-cols", nc);
      const cells = new Map();
      let maxAbs = 0;
      for (let r = r0; r < r0 + nr; r++) {
        for (let c = c0; c < c0 + nc; c++) {
          const v = valueAt(r, c);
          if (Number.isFinite(v)) maxAbs = Math.max(maxAbs, Math.abs(v));
        }
      }
      for (let r = r0; r < r0 + nr; r++) {
        for (let c = c0; c < c0 + nc; c++) {
          const v = valueAt(r, c);
          const pad = r < 0 || c < 0 || r >= h || c >= w;
          const cell = el("div", { class: "cnnx-cell" + (pad ? " is-pad" : "") + (v < 0 ? " is-neg" : ""),
            "data-row": r, "data-col": c, "data-value": String(v), title: String(v), text: fmtCell(v) });
          const shade = Number.isFinite(v) && maxAbs > 0 ? Math.abs(v) / maxAbs : 0;
          cell.style.setProperty("--cnnx-v", shade.toFixed(3));
          container.append(cell);
          cells.set(r + "," + c, cell);
        }
      }
      return cells;
    }

    function drawGrids() {
      const p = st.p;
      ui.inputCells = drawGrid(ui.inputGrid, { r0: -p, c0: -p, nr: st.h + 2 * p, nc: st.w + 2 * p, h: st.h, w: st.w },
        (r, c) => (r >= 0 && r < st.h && c >= 0 && c < st.w ? st.x[r][c] : st.padValue));
      ui.inputCaption.textContent = `Input ${st.h}×${st.w}` +
        (p ? ` (padded to ${st.h + 2 * p}×${st.w + 2 * p})` : "");
      if (ui.kernelGrid) {
        drawGrid(ui.kernelGrid, { r0: 0, c0: 0, nr: st.kh, nc: st.kw, h: st.kh, w: st.kw }, (a, b) => st.k[a][b]);
        ui.kernelCaption.textContent = `Kernel ${st.kh}×${st.kw}` + (st.d > 1 ? `, dilation ${st.d}` : "");
      }
      ui.outputCells = drawGrid(ui.outputGrid, { r0: 0, c0: 0, nr: st.oh, nc: st.ow, h: st.oh, w: st.ow },
        (i, j) => st.out[i][j]);
      ui.outputCaption.textContent = `Output ${st.oh}×${st.ow}`;
    }

    // Highlight the window and the output cell of the current step.
    function showStep() {
      if (!st) return;
      const i = Math.floor(step / st.ow), j = step % st.ow;
      const list = taps(st, i, j);
      root.querySelectorAll(".is-window, .is-current").forEach((cell) => {
        cell.classList.remove("is-window", "is-current");
        delete cell.dataset.weight;
      });
      for (const t of list) {
        const cell = ui.inputCells.get(t.r + "," + t.c);
        if (!cell) continue;
        cell.classList.add("is-window");
        // The weight is shown as a small badge on the window cell (CSS ::after).
        if (mode === "conv") cell.dataset.weight = "×" + fmtCell(st.k[t.a][t.b]);
      }
      ui.outputCells.get(i + "," + j).classList.add("is-current");
      ui.calc.textContent = calcText(st, list, st.out[i][j]);
      ui.position.textContent = `output (${i}, ${j}) · step ${step + 1} of ${st.oh * st.ow}`;
      ui.prev.disabled = step === 0;
      ui.next.disabled = step === st.oh * st.ow - 1 && !timer;
    }

    function goTo(n) {
      if (!st) return;
      step = Math.max(0, Math.min(st.oh * st.ow - 1, n));
      showStep();
    }

    function stop() {
      if (timer) clearInterval(timer);
      timer = null;
      ui.play.textContent = "▶ Play";
      ui.play.setAttribute("aria-pressed", "false");
    }

    function play() {
      if (!st) return;
      if (step === st.oh * st.ow - 1) goTo(0);   // replay from the start
      ui.play.textContent = "❚❚ Pause";
      ui.play.setAttribute("aria-pressed", "true");
      timer = setInterval(() => {
        // Instant navigation may have swapped the page away: stop quietly.
        if (!root.isConnected || !st || step >= st.oh * st.ow - 1) { stop(); if (st) showStep(); return; }
        goTo(step + 1);
      }, PLAY_MS);
    }

    // ---- events ----
    ui.inputPreset.addEventListener("change", () => {
      fillPreset(INPUT_PRESETS, ui.inputPreset, ui.inputText);
      update();
    });
    ui.inputText.addEventListener("input", () => { ui.inputPreset.value = "custom"; update(); });
    if (mode === "conv") {
      ui.kernelPreset.addEventListener("change", () => {
        fillPreset(KERNEL_PRESETS, ui.kernelPreset, ui.kernelText);
        update();
      });
      ui.kernelText.addEventListener("input", () => { ui.kernelPreset.value = "custom"; update(); });
      ui.dilation.addEventListener("input", update);
    } else {
      ui.poolType.addEventListener("change", update);
      ui.poolKernel.addEventListener("input", () => {
        if (strideFollowsKernel) ui.stride.value = ui.poolKernel.value;
        update();
      });
      ui.stride.addEventListener("input", () => { strideFollowsKernel = ui.stride.value === ""; });
    }
    ui.stride.addEventListener("input", update);
    ui.padding.addEventListener("input", update);
    ui.prev.addEventListener("click", () => { stop(); goTo(step - 1); });
    ui.next.addEventListener("click", () => { stop(); goTo(step + 1); });
    ui.play.addEventListener("click", () => (timer ? stop() : play()));
    ui.copy.addEventListener("click", () => {
      if (!st) return;
      const code = pythonSnippet(st);
      ui.python.textContent = code;
      ui.python.hidden = false;
      const shown = "The code is shown below: select it and copy it.";
      // The clipboard may be refused (no permission, or a page opened from disk);
      // the code stays on the page either way.
      const clip = navigator.clipboard;
      if (clip && clip.writeText) {
        clip.writeText(code).then(() => { ui.copyStatus.textContent = "Copied: paste it into Python."; },
          () => { ui.copyStatus.textContent = shown; });
      } else {
        ui.copyStatus.textContent = shown;
      }
    });
    ui.outputGrid.addEventListener("click", (event) => {
      const cell = event.target.closest(".cnnx-cell");
      if (cell && st) { stop(); goTo(Number(cell.dataset.row) * st.ow + Number(cell.dataset.col)); }
    });
    root.addEventListener("keydown", (event) => {
      // Arrow keys belong to text fields, number inputs and selects themselves.
      if (!st || event.target.closest("input, textarea, select")) return;
      if (event.altKey || event.ctrlKey || event.metaKey) return;
      const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -st.ow, ArrowDown: st.ow };
      if (event.key in moves) goTo(step + moves[event.key]);
      else if (event.key === "Home") goTo(0);
      else if (event.key === "End") goTo(st.oh * st.ow - 1);
      else return;
      stop();
      event.preventDefault();   // no page scrolling while stepping
    });

    fillPreset(INPUT_PRESETS, ui.inputPreset, ui.inputText);
    if (mode === "conv") fillPreset(KERNEL_PRESETS, ui.kernelPreset, ui.kernelText);
    update();
  }

  // ---- page wiring ------------------------------------------------------------
  // Idempotent: a widget that is already built is left alone.
  function init() {
    document.querySelectorAll(".cnn-explorer").forEach((root) => {
      if (root.dataset.cnnxReady) return;
      root.dataset.cnnxReady = "1";
      try {
        build(root);
      } catch (err) {
        // A bug must not break the rest of the page; say so in the widget.
        root.textContent = "The explorer could not start: " + err.message;
        console.warn("cnn-explorer:", err);
      }
    });
  }

  window.cnnOnEveryPage(init);
})();
