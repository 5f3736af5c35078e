/* MNIST's preprocessing for a digit drawn on the pad, as cnnlesson.digits.preprocess does it.
 *
 * MNIST's digits were scaled to fit a 20x20 box, keeping their proportions,
 * and placed in a 28x28 image with their centre of mass at its centre.
 * `preprocess(ink, height, width)` takes the pad's ink (0 = empty, 1 = full)
 * row by row and returns that 28x28 image (values in [0, 1]);
 * `normalise` then applies the lesson's Normalize((0.1307,), (0.3081,)).
 * `penWidth(extent)` is the pen the pad's strokes are redrawn with for the
 * network: as thick as MNIST's strokes once the drawing is scaled to 20x20.
 */
(function () {
  "use strict";

  const SIZE = 28, BOX = 20;
  const MEAN = 0.1307, STD = 0.3081;
  const STROKE = 2.5, MIN_PEN = 2;  // as cnnlesson.digits: MNIST's stroke in the 20x20 box; the thinnest pen

  // The pen width (pad pixels) for strokes whose centre lines span `extent` pad pixels (the longer side):
  // the ink's box is extent + width wide, scaled to BOX, so width * BOX / (extent + width) = STROKE.
  function penWidth(extent) {
    return Math.max(MIN_PEN, (STROKE * extent) / (BOX - STROKE));
  }

  // For each of nOut output cells: the input cells it covers and their weights (area averaging).
  function areaWeights(nIn, nOut) {
    const step = nIn / nOut, cells = [];
    for (let k = 0; k < nOut; k++) {
      const start = k * step, end = (k + 1) * step, cover = [];
      for (let i = Math.floor(start); i < Math.min(nIn, Math.ceil(end)); i++) {
        const overlap = Math.min(end, i + 1) - Math.max(start, i);
        if (overlap > 0) cover.push([i, overlap / step]);
      }
      cells.push(cover);
    }
    return cells;
  }

  function preprocess(ink, height, width) {
    const out = new Float64Array(SIZE * SIZE);
    // The inked bounding box.
    let r0 = height, r1 = -1, c0 = width, c1 = -1;
    for (let r = 0; r < height; r++) {
      for (let c = 0; c < width; c++) {
        if (ink[r * width + c] > 0) {
          if (r < r0) r0 = r;
          if (r > r1) r1 = r;
          if (c < c0) c0 = c;
          if (c > c1) c1 = c;
        }
      }
    }
    if (r1 < 0) return out;  // an empty pad
    // Scale the box so that its longer side is BOX pixels.
    const h = r1 - r0 + 1, w = c1 - c0 + 1, scale = BOX / Math.max(h, w);
    const oh = Math.max(1, Math.floor(h * scale + 0.5)), ow = Math.max(1, Math.floor(w * scale + 0.5));
    const byRow = areaWeights(h, oh), byCol = areaWeights(w, ow);
    const small = new Float64Array(oh * ow);
    const rowMix = new Float64Array(w);
    for (let y = 0; y < oh; y++) {
      rowMix.fill(0);  // this output row: the weighted mean of the input rows it covers
      for (const [i, a] of byRow[y]) {
        const src = (r0 + i) * width + c0;
        for (let c = 0; c < w; c++) rowMix[c] += a * ink[src + c];
      }
      for (let x = 0; x < ow; x++) {
        let v = 0;
        for (const [j, b] of byCol[x]) v += b * rowMix[j];
        small[y * ow + x] = Math.min(Math.max(v, 0), 1);  // means of values in [0, 1]; rounding can step past 1
      }
    }
    // Centre of mass, in pixel units from the top-left corner.
    let mass = 0, my = 0, mx = 0;
    for (let y = 0; y < oh; y++) {
      for (let x = 0; x < ow; x++) {
        const v = small[y * ow + x];
        mass += v; my += v * (y + 0.5); mx += v * (x + 0.5);
      }
    }
    const cy = my / mass, cx = mx / mass;
    // Shift by whole pixels so that it lands on the centre, staying inside the 28x28 frame.
    const top = Math.min(Math.max(Math.floor(SIZE / 2 - cy + 0.5), 0), SIZE - oh);
    const left = Math.min(Math.max(Math.floor(SIZE / 2 - cx + 0.5), 0), SIZE - ow);
    for (let y = 0; y < oh; y++) {
      for (let x = 0; x < ow; x++) out[(top + y) * SIZE + left + x] = small[y * ow + x];
    }
    return out;
  }

  // transforms.Normalize((0.1307,), (0.3081,)): what the network was trained on.
  function normalise(image) {
    return Float32Array.from(image, (v) => (v - MEAN) / STD);
  }

  window.LiveDigits = { SIZE, BOX, MEAN, STD, STROKE, MIN_PEN, areaWeights, penWidth, preprocess, normalise };
})();
