/* The lesson's MNISTNet, forward pass only, in plain JavaScript.
 *
 * It mirrors cnnlesson.models.MNISTNet.forward line by line:
 *
 *     x = F.relu(self.conv1(x))    # (32, 28, 28)
 *     x = self.pool1(x)            # (32, 14, 14)
 *     x = F.relu(self.conv2(x))    # (64, 14, 14)
 *     x = self.pool2(x)            # (64, 7, 7)
 *     x = x.view(-1, 64 * 7 * 7)   # flatten
 *     x = F.relu(self.fc1(x))      # (128,)
 *     x = self.fc2(x)              # (10,) class scores
 *
 * One image at a time. Every tensor is a Float32Array in PyTorch's own
 * order (channel, row, column), so flattening needs no work at all. Sums are
 * taken in JavaScript numbers (64-bit) and stored as float32, as PyTorch
 * stores them.
 *
 * The weights are a state_dict: {"conv1.weight": Float32Array, ...}, read
 * from the base64 string that `python -m benchmarks` writes (see
 * `LiveNet.decode`).
 */
(function () {
  "use strict";

  // The layers in the order of MNISTNet's state_dict, with their shapes.
  const SHAPES = [
    ["conv1.weight", [32, 1, 3, 3]], ["conv1.bias", [32]],
    ["conv2.weight", [64, 32, 3, 3]], ["conv2.bias", [64]],
    ["fc1.weight", [128, 64 * 7 * 7]], ["fc1.bias", [128]],
    ["fc2.weight", [10, 128]], ["fc2.bias", [10]],
  ];

  // nn.Conv2d(inChannels, outChannels, 3, padding=1) on one (inChannels, h, w) image,
  // as im2col and dot products (cnnlesson.conv does the same in NumPy).
  function conv2d(x, inChannels, h, w, weight, bias, outChannels) {
    // im2col: for each output pixel, the inChannels x 3 x 3 input values under the
    // kernel, in the weight's own order; zeros where the kernel hangs over the padding.
    const K = inChannels * 9, cols = new Float32Array(h * w * K);
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) {
        let q = (i * w + j) * K;
        for (let c = 0; c < inChannels; c++) {
          for (let r = i - 1; r <= i + 1; r++) {
            for (let s = j - 1; s <= j + 1; s++, q++) {
              cols[q] = r >= 0 && r < h && s >= 0 && s < w ? x[(c * h + r) * w + s] : 0;
            }
          }
        }
      }
    }
    // Each output value: one filter's K weights times one pixel's K inputs, plus the bias.
    // Four pixels at a time (h * w is a multiple of 4 here): four independent sums
    // keep the processor busy, each still added up in the same order.
    const n = h * w, out = new Float32Array(outChannels * n);
    for (let o = 0; o < outChannels; o++) {
      const f = o * K;
      for (let p = 0; p < n; p += 4) {
        const q0 = p * K, q1 = q0 + K, q2 = q1 + K, q3 = q2 + K;
        let s0 = bias[o], s1 = s0, s2 = s0, s3 = s0;
        for (let t = 0; t < K; t++) {
          const k = weight[f + t];
          s0 += k * cols[q0 + t];
          s1 += k * cols[q1 + t];
          s2 += k * cols[q2 + t];
          s3 += k * cols[q3 + t];
        }
        out[o * n + p] = s0;
        out[o * n + p + 1] = s1;
        out[o * n + p + 2] = s2;
        out[o * n + p + 3] = s3;
      }
    }
    return out;
  }

  // F.relu, in place.
  function relu(x) {
    for (let i = 0; i < x.length; i++) if (x[i] < 0) x[i] = 0;
    return x;
  }

  // nn.MaxPool2d(2, 2) on (channels, h, w): the largest of each 2x2 block.
  function maxPool2d(x, channels, h, w) {
    const oh = h >> 1, ow = w >> 1;
    const out = new Float32Array(channels * oh * ow);
    for (let c = 0; c < channels; c++) {
      for (let i = 0; i < oh; i++) {
        for (let j = 0; j < ow; j++) {
          const p = c * h * w + 2 * i * w + 2 * j;
          out[(c * oh + i) * ow + j] = Math.max(x[p], x[p + 1], x[p + w], x[p + w + 1]);
        }
      }
    }
    return out;
  }

  // nn.Linear: weight (outFeatures, inFeatures) times x, plus bias.
  // Four output features at a time (as conv2d: four independent sums; 128 and 10 rows
  // are handled as 4 + 4 + ... + the rest).
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

  // MNISTNet.forward for one normalised (1, 28, 28) image; returns every layer's output.
  function forward(net, x) {
    const conv1 = relu(conv2d(x, 1, 28, 28, net["conv1.weight"], net["conv1.bias"], 32));  // (32, 28, 28)
    const pool1 = maxPool2d(conv1, 32, 28, 28);                                          // (32, 14, 14)
    const conv2 = relu(conv2d(pool1, 32, 14, 14, net["conv2.weight"], net["conv2.bias"], 64));  // (64, 14, 14)
    const pool2 = maxPool2d(conv2, 64, 14, 14);                                          // (64, 7, 7)
    const flat = pool2;  // x.view(-1, 64 * 7 * 7): already one row in (channel, row, column) order
    const fc1 = relu(linear(flat, net["fc1.weight"], net["fc1.bias"]));                  // (128,)
    const logits = linear(fc1, net["fc2.weight"], net["fc2.bias"]);                      // (10,)
    return { conv1, pool1, conv2, pool2, fc1, logits };
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

  // Base64 -> bytes (little-endian float32 or uint8, as Python wrote them).
  function bytesOf(base64) {
    const text = atob(base64), bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    return bytes;
  }

  // The state_dict from one base64 string of float32s, laid out as SHAPES says.
  function decode(base64) {
    const all = new Float32Array(bytesOf(base64).buffer);
    const net = {};
    let offset = 0;
    for (const [name, shape] of SHAPES) {
      const size = shape.reduce((a, b) => a * b, 1);
      net[name] = all.subarray(offset, offset + size);
      offset += size;
    }
    if (offset !== all.length) {
      throw new Error(`weights: expected ${offset} float32 values for MNISTNet, got ${all.length}`);
    }
    return net;
  }

  window.LiveNet = { SHAPES, conv2d, relu, maxPool2d, linear, forward, softmax, argmax, bytesOf, decode };
})();
