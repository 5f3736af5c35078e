/* A trained MNIST network, forward pass only, in plain JavaScript: a small interpreter over a list of layers.
 *
 * `cnnlesson export` (cnnlesson/export.py) writes a network as JSON: the
 * layers of the model's forward, in order. For the lesson's MNISTNet:
 *
 *     conv1 (32 filters, 3x3, padding 1)  x = F.relu(self.conv1(x))   # (32, 28, 28)
 *     relu
 *     pool1 (2x2, stride 2)               x = self.pool1(x)           # (32, 14, 14)
 *     conv2, relu, pool2                  ...                         # (64, 7, 7)
 *     flatten                             x = x.view(-1, 64 * 7 * 7)
 *     fc1, relu                           x = F.relu(self.fc1(x))     # (128,)
 *     fc2                                 x = self.fc2(x)             # (10,) class scores
 *
 * LeNet-5 and CNNWithBN are lists of the same kinds of layers, with batch
 * norm (eval mode) and dropout (nothing at test time) for CNNWithBN.
 *
 * One image at a time. Every tensor is a Float32Array in PyTorch's own
 * order (channel, row, column), so flattening needs no work at all. Sums are
 * taken in JavaScript numbers (64-bit) and stored as float32, as PyTorch
 * stores them. `load` checks every field, shape and number of a file before
 * anything runs, and throws an Error saying what is wrong.
 */
(function () {
  "use strict";

  const FORMAT = "cnnlesson-network", VERSION = 1, CLASSES = 10, MNIST = 28;
  const MAX_SIDE = 64, MAX_VALUES = 1 << 21;  // as cnnlesson/export.py: a crafted file cannot make a huge map
  const KINDS = ["conv2d", "relu", "maxpool2d", "batchnorm", "dropout", "flatten", "linear"];

  // nn.Conv2d on one (C, H, W) input: im2col, then dot products (cnnlesson.conv does the same in NumPy).
  function conv2d(x, [C, H, W], L) {
    const { k, s, p } = L, O = L.outShape[0], OH = L.outShape[1], OW = L.outShape[2];
    // im2col: for each output pixel, the C x k x k input values under the kernel, in the
    // weight's own order; zeros where the kernel hangs over the padding.
    const K = C * k * k, n = OH * OW, cols = new Float32Array(n * K);
    for (let i = 0; i < OH; i++) {
      for (let j = 0; j < OW; j++) {
        let q = (i * OW + j) * K;
        for (let c = 0; c < C; c++) {
          for (let dr = 0; dr < k; dr++) {
            const r = i * s - p + dr;
            for (let dc = 0; dc < k; dc++, q++) {
              const col = j * s - p + dc;
              cols[q] = r >= 0 && r < H && col >= 0 && col < W ? x[(c * H + r) * W + col] : 0;
            }
          }
        }
      }
    }
    // Each output value: one filter's K weights times one pixel's K inputs, plus the bias.
    // Four pixels at a time: four independent sums keep the processor busy, each still
    // added up in the same order.
    const weight = L.weight, bias = L.bias, out = new Float32Array(O * n);
    for (let o = 0; o < O; o++) {
      const f = o * K;
      let t0 = 0;
      for (; t0 + 4 <= n; t0 += 4) {
        const q0 = t0 * K, q1 = q0 + K, q2 = q1 + K, q3 = q2 + K;
        let s0 = bias[o], s1 = s0, s2 = s0, s3 = s0;
        for (let t = 0; t < K; t++) {
          const w = weight[f + t];
          s0 += w * cols[q0 + t];
          s1 += w * cols[q1 + t];
          s2 += w * cols[q2 + t];
          s3 += w * cols[q3 + t];
        }
        out[o * n + t0] = s0; out[o * n + t0 + 1] = s1; out[o * n + t0 + 2] = s2; out[o * n + t0 + 3] = s3;
      }
      for (; t0 < n; t0++) {
        let sum = bias[o];
        for (let t = 0; t < K; t++) sum += weight[f + t] * cols[t0 * K + t];
        out[o * n + t0] = sum;
      }
    }
    return out;
  }

  // F.relu, as a new array.
  function relu(x) {
    return x.map((v) => (v < 0 ? 0 : v));
  }

  // nn.MaxPool2d(k, s) on (C, H, W): the largest value of each k x k window.
  function maxPool2d(x, [C, H, W], L) {
    const { k, s } = L, OH = L.outShape[1], OW = L.outShape[2], out = new Float32Array(C * OH * OW);
    for (let c = 0; c < C; c++) {
      for (let i = 0; i < OH; i++) {
        for (let j = 0; j < OW; j++) {
          let top = -Infinity;
          for (let dr = 0; dr < k; dr++) {
            for (let dc = 0; dc < k; dc++) top = Math.max(top, x[(c * H + i * s + dr) * W + j * s + dc]);
          }
          out[(c * OH + i) * OW + j] = top;
        }
      }
    }
    return out;
  }

  // nn.BatchNorm in eval mode: (x - running_mean) / sqrt(running_var + eps) * weight + bias, per channel,
  // computed as PyTorch does on the CPU: x * a + b with a = weight / sqrt(var + eps), b = bias - mean * a.
  function batchNorm(x, shape, L) {
    const C = shape[0], per = x.length / C, out = new Float32Array(x.length);
    for (let c = 0; c < C; c++) {
      const a = Math.fround(L.weight[c] * Math.fround(1 / Math.sqrt(L.running_var[c] + L.eps)));
      const b = Math.fround(L.bias[c] - Math.fround(L.running_mean[c] * a));
      for (let i = c * per; i < (c + 1) * per; i++) out[i] = Math.fround(x[i] * a) + b;
    }
    return out;
  }

  // nn.Linear: weight (outFeatures, inFeatures) times x, plus bias; four output features at a time.
  function linear(x, weight, bias) {
    const n = x.length, m = bias.length, out = new Float32Array(m);
    let o = 0;
    for (; o + 4 <= m; o += 4) {
      const r0 = o * n, r1 = r0 + n, r2 = r1 + n, r3 = r2 + n;
      let s0 = bias[o], s1 = bias[o + 1], s2 = bias[o + 2], s3 = bias[o + 3];
      for (let i = 0; i < n; i++) {
        const v = x[i];
        s0 += weight[r0 + i] * v;
        s1 += weight[r1 + i] * v;
        s2 += weight[r2 + i] * v;
        s3 += weight[r3 + i] * v;
      }
      out[o] = s0; out[o + 1] = s1; out[o + 2] = s2; out[o + 3] = s3;
    }
    for (; o < m; o++) {
      let sum = bias[o];
      for (let i = 0; i < n; i++) sum += weight[o * n + i] * x[i];
      out[o] = sum;
    }
    return out;
  }

  // One layer of the list on input x of shape `shape`.
  function step(L, x, shape) {
    switch (L.type) {
      case "conv2d": return conv2d(x, shape, L);
      case "relu": return relu(x);
      case "maxpool2d": return maxPool2d(x, shape, L);
      case "batchnorm": return batchNorm(x, shape, L);
      case "linear": return linear(x, L.weight, L.bias);
      default: return x;  // dropout (nothing at test time) and flatten (the order is already flat)
    }
  }

  // The network's forward pass for one normalised input of net.input's shape. Returns every
  // layer's output (`layers`), each stage's output by its key (conv1, pool1, ...) and the logits.
  function forward(net, x) {
    const acts = { layers: [] };
    let shape = net.input;
    for (const L of net.layers) {
      x = step(L, x, shape);
      shape = L.outShape;
      acts.layers.push(x);
    }
    for (const S of net.stages) acts[S.key] = acts.layers[S.last];
    acts.logits = x;
    return acts;
  }

  // A 28x28 image (values 0..1) with `pad` black pixels on each side, as LeNet-5's 32x32 input.
  function padImage(image, pad) {
    if (!pad) return image;
    const side = MNIST + 2 * pad, out = new Float64Array(side * side);
    for (let r = 0; r < MNIST; r++) out.set(image.subarray(r * MNIST, (r + 1) * MNIST), (r + pad) * side + pad);
    return out;
  }

  // Softmax of the class scores: the probabilities the page draws as bars.
  function softmax(logits) {
    const top = Math.max(...logits);
    const e = Array.from(logits, (v) => Math.exp(v - top));
    const total = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / total);
  }

  function argmax(values) {
    let best = 0;
    for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
    return best;
  }

  // Base64 -> bytes (little-endian float32, int8 or uint8, as Python wrote them).
  function bytesOf(base64) {
    const text = atob(base64), bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    return bytes;
  }

  // ---- reading a file: every check before anything runs --------------------------------------------

  const show = (v) => {
    const text = typeof v === "string" ? JSON.stringify(v) : Array.isArray(v) ? `[${v.slice(0, 4).join(", ")}${v.length > 4 ? ", ..." : ""}]` : String(v);
    return text.length > 40 ? text.slice(0, 40) + "..." : text;
  };

  function int(L, key, lo, hi, what) {
    const v = L[key];
    if (!Number.isInteger(v) || v < lo || v > hi) throw new Error(`${what}.${key}: expected an integer from ${lo} to ${hi}, got ${show(v)}`);
    return v;
  }

  // encode_tensor's {"shape", "dtype", "data"[, "scale"]} as a Float32Array of `shape`, every value finite.
  function tensor(obj, what, shape) {
    if (!obj || typeof obj !== "object" || (obj.dtype !== "float32" && obj.dtype !== "int8")) {
      throw new Error(`${what}: expected a tensor with dtype float32 or int8`);
    }
    if (!Array.isArray(obj.shape) || obj.shape.length !== shape.length || obj.shape.some((v, i) => v !== shape[i])) {
      throw new Error(`${what}: expected shape [${shape.join(", ")}], got ${show(obj.shape)}`);
    }
    const count = shape.reduce((a, b) => a * b, 1);
    const raw = base64(obj.data, `${what}.data`);
    let values;
    if (obj.dtype === "float32") {
      if (raw.length !== 4 * count) throw new Error(`${what}: expected ${count} float32 values (${4 * count} bytes), got ${raw.length} bytes`);
      values = new Float32Array(raw.buffer);
    } else {
      const scale = base64(obj.scale, `${what}.scale`);
      if (raw.length !== count || scale.length !== 4 * shape[0]) {
        throw new Error(`${what}: expected ${count} int8 values and ${shape[0]} float32 scales, got ${raw.length} and ${scale.length} bytes`);
      }
      const q = new Int8Array(raw.buffer), scales = new Float32Array(scale.buffer), per = count / shape[0];
      values = new Float32Array(count);
      for (let i = 0; i < count; i++) values[i] = q[i] * scales[Math.floor(i / per)];  // rounded to float32 as torch rounds
    }
    for (const v of values) if (!Number.isFinite(v)) throw new Error(`${what}: holds NaN or infinite values`);
    return values;
  }

  function base64(text, what) {
    if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4) {
      throw new Error(`${what}: expected a base64 string`);
    }
    return bytesOf(text);
  }

  function outputs(L, what) {
    const shape = L.weight && L.weight.shape;
    if (!Array.isArray(shape) || !Number.isInteger(shape[0]) || shape[0] < 1 || shape[0] > 4096) {
      throw new Error(`${what}.weight: expected a tensor with 1 to 4096 outputs`);
    }
    return shape[0];
  }

  function side(n, k, s, p, what) {
    const out = Math.floor((n + 2 * p - k) / s) + 1;
    if (out < 1 || out > MAX_SIDE) throw new Error(`${what}: turns ${n} pixels into ${out}; expected 1 to ${MAX_SIDE}`);
    return out;
  }

  // One entry of the file's layer list, checked against the shape it gets; returns the layer the interpreter runs.
  function layer(L, k, shape) {
    if (!L || typeof L !== "object" || typeof L.name !== "string" || !/^[A-Za-z_][A-Za-z0-9_.]{0,39}$/.test(L.name)) {
      throw new Error(`layer ${k}: expected an object with a name (letters, digits, _ and .)`);
    }
    const what = `layer ${k} (${L.name})`, maps = shape.length === 3;
    if (!KINDS.includes(L.type)) throw new Error(`${what}: unknown layer type ${show(L.type)}; expected one of ${KINDS.join(", ")}`);
    if ((L.type === "conv2d" || L.type === "maxpool2d") && !maps) throw new Error(`${what}: a ${L.type} needs maps, got shape [${shape}]`);
    if (L.type === "linear" && maps) throw new Error(`${what}: a linear layer needs a flat input (a flatten before it), got shape [${shape}]`);
    const out = { name: L.name, type: L.type, inShape: shape, outShape: shape };
    if (L.type === "conv2d") {
      out.k = int(L, "kernel", 1, 11, what); out.s = int(L, "stride", 1, 4, what); out.p = int(L, "padding", 0, out.k - 1, what);
      const O = outputs(L, what);
      out.weight = tensor(L.weight, `${what}.weight`, [O, shape[0], out.k, out.k]);
      out.bias = tensor(L.bias, `${what}.bias`, [O]);
      out.outShape = [O, side(shape[1], out.k, out.s, out.p, what), side(shape[2], out.k, out.s, out.p, what)];
    } else if (L.type === "maxpool2d") {
      out.k = int(L, "kernel", 1, 8, what); out.s = int(L, "stride", 1, 8, what); out.p = 0;
      out.outShape = [shape[0], side(shape[1], out.k, out.s, 0, what), side(shape[2], out.k, out.s, 0, what)];
    } else if (L.type === "batchnorm") {
      if (typeof L.eps !== "number" || !(L.eps > 0 && L.eps < 1)) throw new Error(`${what}.eps: expected a number between 0 and 1, got ${show(L.eps)}`);
      out.eps = L.eps;
      for (const key of ["weight", "bias", "running_mean", "running_var"]) out[key] = tensor(L[key], `${what}.${key}`, [shape[0]]);
      if (out.running_var.some((v) => v < 0)) throw new Error(`${what}.running_var: holds negative variances`);
    } else if (L.type === "flatten") {
      out.outShape = [shape.reduce((a, b) => a * b, 1)];
    } else if (L.type === "linear") {
      const O = outputs(L, what);
      out.weight = tensor(L.weight, `${what}.weight`, [O, shape[0]]);
      out.bias = tensor(L.bias, `${what}.bias`, [O]);
      out.outShape = [O];
    }
    if (out.outShape.reduce((a, b) => a * b, 1) > MAX_VALUES) throw new Error(`${what}: its output is larger than ${MAX_VALUES} values`);
    return out;
  }

  // What the page draws: a stage starts at each conv2d, maxpool2d or linear layer and takes in the
  // batch norm, ReLU and dropout after it ("conv1 + bn1 + ReLU"). A flatten changes no value, so the
  // maps before it stay maps. The last stage is the logits.
  function stagesOf(layers) {
    const stages = [];
    layers.forEach((L, i) => {
      const starts = L.type === "conv2d" || L.type === "maxpool2d" || L.type === "linear";
      if (starts || !stages.length) stages.push({ key: L.name, parts: [], first: i, last: i });
      const S = stages[stages.length - 1];
      if (L.type !== "flatten") S.last = i;
      if (L.type === "relu") S.parts.push("ReLU");
      else if (L.type !== "dropout" && L.type !== "flatten") S.parts.push(L.name);
    });
    const keys = new Set(["layers", "logits"]);
    for (const S of stages) {
      if (keys.has(S.key)) throw new Error(`layer ${S.first} (${S.key}): two layers that start a stage share this name`);
      keys.add(S.key);
      const shape = layers[S.last].outShape;
      Object.assign(S, { name: S.parts.join(" + "), shape, maps: shape.length === 3 });
    }
    return stages.slice(0, -1);  // the last stage gives the class scores, drawn as probabilities
  }

  // A network from the JSON that `cnnlesson export` writes (already parsed); throws an Error saying what is wrong.
  function load(doc) {
    if (!doc || typeof doc !== "object" || Array.isArray(doc) || doc.format !== FORMAT) {
      throw new Error(`expected a network written by \`cnnlesson export\` (format "${FORMAT}")`);
    }
    if (doc.version !== VERSION) throw new Error(`expected format version ${VERSION}, got ${show(doc.version)}`);
    if (doc.dataset !== "mnist") throw new Error(`this network was trained on ${show(doc.dataset)}; the page runs MNIST networks`);
    if (!Number.isInteger(doc.pad) || doc.pad < 0 || doc.pad > 8) throw new Error(`pad: expected an integer from 0 to 8, got ${show(doc.pad)}`);
    const n = MNIST + 2 * doc.pad;
    if (!Array.isArray(doc.input) || doc.input.length !== 3 || doc.input[0] !== 1 || doc.input[1] !== n || doc.input[2] !== n) {
      throw new Error(`input: expected [1, ${n}, ${n}] (MNIST digits padded by ${doc.pad}), got ${show(doc.input)}`);
    }
    if (!Array.isArray(doc.layers) || doc.layers.length < 1 || doc.layers.length > 64) throw new Error("layers: expected a list of 1 to 64 layers");
    let shape = [1, n, n];
    const layers = doc.layers.map((L, k) => {
      const out = layer(L, k, shape);
      shape = out.outShape;
      return out;
    });
    if (shape.length !== 1 || shape[0] !== CLASSES) throw new Error(`the last layer gives shape [${shape}], expected [${CLASSES}] class scores`);
    const model = typeof doc.model === "string" && /^[A-Za-z0-9_ -]{1,40}$/.test(doc.model) ? doc.model : "network";
    return { model, pad: doc.pad, input: [1, n, n], layers, stages: stagesOf(layers) };
  }

  // The input pixels (inclusive rows r0..r1, columns c0..c1 of the 28x28 digit) that the unit at
  // (row, col) of stage `key` depends on: each conv or pool, walked back to the input, widens the region.
  function receptiveField(net, key, row, col) {
    const S = net.stages.find((candidate) => candidate.key === key);
    if (!S) throw new Error(`layer: expected one of ${net.stages.map((c) => c.key).join(", ")}, got ${key}`);
    const clip = (v) => Math.min(Math.max(v, 0), MNIST - 1);
    if (!S.maps) return { r0: 0, r1: MNIST - 1, c0: 0, c1: MNIST - 1 };  // a unit after flatten sees everything
    let r0 = row, r1 = row, c0 = col, c1 = col;
    for (let i = S.last; i >= 0; i--) {
      const L = net.layers[i];
      if (L.type !== "conv2d" && L.type !== "maxpool2d") continue;
      r0 = r0 * L.s - L.p; r1 = r1 * L.s - L.p + L.k - 1;
      c0 = c0 * L.s - L.p; c1 = c1 * L.s - L.p + L.k - 1;
    }
    return { r0: clip(r0 - net.pad), r1: clip(r1 - net.pad), c0: clip(c0 - net.pad), c1: clip(c1 - net.pad) };
  }

  window.LiveNet = {
    FORMAT, conv2d, relu, maxPool2d, batchNorm, linear, forward, padImage, softmax, argmax, bytesOf, load, receptiveField,
  };
})();
