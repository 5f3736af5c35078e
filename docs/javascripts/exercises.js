/*
 * exercises.js: the answer boxes under the lesson's exercises.
 *
 * Every <form class="cnn-answer" data-key="..."> on a page (written by
 * docs/hooks/exercises.py) becomes a box: type an answer, press Enter or
 * "Check", and read the verdict, which screen readers announce (role=status).
 * The key holds the answer and each typical mistake's value with its hint,
 * computed from the cnnlesson package when the site was built; the verdicts
 * and the reading of answers are those of cnnlesson.exercises.check.
 *
 * Plain JavaScript, no library; works from file:// (nothing is fetched).
 */
(function () {
  "use strict";

  // The rule of cnnlesson.answers (its docstring), step by step: the same
  // characters, the same order, no regular expression that could backtrack.
  const MAX_CHARS = 100;
  const SPACES = " \t\u00a0\u202f\u2009";
  const GROUP_SEPARATORS = ",_' \u00a0\u202f\u2009";
  const TIMES = "×xX*·⋅";
  const MINUS = "-\u2212";
  const BRACKETS = "()[]{}";
  const PREFIX = "torch.size";

  // The messages of cnnlesson.exercises.verdict.
  const CORRECT = "Correct.";
  const UNREADABLE = "Type a number, like 3136, or a shape, like (64, 7, 7).";
  const TOO_LONG = "Type a number or a shape: an answer here is at most " + MAX_CHARS + " characters.";
  const AS_SIDE = "Correct. One number is enough: the side of the square.";
  const AS_BATCH = "Correct. The shape asked for leaves out the leading axes of size 1 (a batch of one).";
  const AS_PRODUCT = "Correct: that works out to the answer.";

  // Exact values: {m, e} is the BigInt m times 10 to the e, so a count is
  // compared exactly and no typed number becomes Infinity.
  const ONE = { m: 1n, e: 0 };
  function aligned(a, b) {
    const e = Math.min(a.e, b.e);
    return [a.m * 10n ** BigInt(a.e - e), b.m * 10n ** BigInt(b.e - e), e];
  }
  function add(a, b) {
    const [x, y, e] = aligned(a, b);
    return { m: x + y, e };
  }
  function times(a, b) {
    return { m: a.m * b.m, e: a.e + b.e };
  }
  function equal(a, b) {
    const [x, y] = aligned(a, b);
    return x === y;
  }

  function isDigit(c) {
    return c !== undefined && c >= "0" && c <= "9" && c.length === 1;
  }
  function has(chars, c) {
    return c !== undefined && c.length === 1 && chars.includes(c);
  }
  function digitsEnd(s, i) {
    while (i < s.length && isDigit(s[i])) i++;
    return i;
  }

  // The number that starts at i and where it ends, or null if it is malformed.
  function number(s, i, grouped) {
    const negative = has(MINUS, s[i]);
    if (negative) i++;
    let end = digitsEnd(s, i);
    let whole = s.slice(i, end);
    if (grouped && whole.length >= 1 && whole.length <= 3 && end < s.length && has(GROUP_SEPARATORS, s[end])) {
      const separator = s[end];
      while (end + 3 < s.length && s[end] === separator && digitsEnd(s, end + 1) === end + 4) {
        whole += s.slice(end + 1, end + 4);
        end += 4;
      }
    }
    let fraction = "";
    if (end < s.length && s[end] === ".") {
      const stop = digitsEnd(s, end + 1);
      fraction = s.slice(end + 1, stop);
      end = stop;
    }
    if (!whole && !fraction) return null;
    let exponent = 0;
    if (end < s.length && (s[end] === "e" || s[end] === "E")) {
      end++;
      let sign = 1;
      if (end < s.length && (s[end] === "+" || has(MINUS, s[end]))) {
        sign = has(MINUS, s[end]) ? -1 : 1;
        end++;
      }
      const stop = digitsEnd(s, end);
      if (stop - end < 1 || stop - end > 2) return null;
      exponent = sign * Number(s.slice(end, stop));
      end = stop;
    }
    const m = BigInt(whole + fraction || "0");
    return [{ m: negative ? -m : m, e: exponent - fraction.length }, end];
  }

  // The items of a typed answer (each a sum of products), or null; as cnnlesson.answers.read.
  function read(text, grouped) {
    const s = text;
    let i = 0;
    while (i < s.length && has(SPACES, s[i])) i++;
    const head = s.slice(i, i + PREFIX.length);
    if (/^[\x00-\x7f]*$/.test(head) && head.toLowerCase() === PREFIX) i += PREFIX.length;
    const items = [];
    let afterNumber = false, operator = "", separators = 0, gap = false, bracket = false;
    while (i < s.length) {
      const c = s[i];
      if (isDigit(c) || c === "." || (has(MINUS, c) && i + 1 < s.length && (isDigit(s[i + 1]) || s[i + 1] === "."))) {
        const found = number(s, i, grouped);
        if (found === null) return null;
        const value = found[0];
        i = found[1];
        if (operator === "×") items[items.length - 1][items[items.length - 1].length - 1].push(value);
        else if (operator === "+") items[items.length - 1].push([value]);
        else if (afterNumber && !gap && !separators) return null;   // two numbers with nothing between, as in 5-3
        else if (separators > 1 || (!items.length && separators)) return null;   // ",," or a leading comma
        else items.push([[value]]);
        afterNumber = true; operator = ""; separators = 0; gap = false; bracket = false;
      } else if (has(TIMES, c) || c === "+") {
        if (!afterNumber || operator || separators || bracket) return null;
        operator = c === "+" ? "+" : "×";
        i++;
      } else if (c === "," || c === ";") {
        if (operator) return null;
        separators++;
        afterNumber = false;
        i++;
      } else if (has(SPACES, c)) {
        gap = true;
        i++;
      } else if (has(BRACKETS, c)) {
        if (operator) return null;   // 128 × (576 + 1) would read as 128 × 576 + 1
        gap = bracket = true;
        i++;
      } else {
        return null;
      }
    }
    if (operator || !items.length || separators > 1) return null;
    return items;
  }

  function plain(items) {
    return items.every((item) => item.length === 1 && item[0].length === 1);
  }

  function evaluate(item) {
    return item.map((term) => term.reduce(times, ONE)).reduce(add, { m: 0n, e: 0 });
  }

  // A key's number (a JSON number) as an exact value: String() writes the shortest
  // text that reads back as it, as Python's repr does.
  function exact(v) {
    const text = String(v);
    const found = number(text, 0, false);
    return found[0];
  }

  // [values, the verdict if they are right, tentative]; as exercises._reading. Tentative values have
  // the wrong count, but can still be a named mistake or a shape whose product is the one number asked.
  function reading(items, key) {
    const n = key.answer.length;
    const flat = items.flat(2);
    const oneProduct = items.length === 1 && items[0].length === 1 && items[0][0].length > 1;
    if (n === 1) {
      if (key.side && (oneProduct || (plain(items) && items.length > 1))) {
        return flat.every((v) => equal(v, flat[0])) ? [[flat[0]], AS_SIDE, false] : [null, "", true];
      }
      if (items.length === 1) return [[evaluate(items[0])], plain(items) ? CORRECT : AS_PRODUCT, false];
      if (plain(items) && !key.side) return [[evaluate([flat])], AS_PRODUCT, true];
      return [null, "", true];
    }
    if (!(oneProduct || plain(items))) return [null, "", true];   // a sum or product inside a shape
    const extra = flat.length - n;
    if (extra > 0 && flat.slice(0, extra).every((v) => equal(v, ONE))) return [flat.slice(extra), AS_BATCH, false];
    return [flat, CORRECT, flat.length !== n];
  }

  function same(given, values) {
    return given.length === values.length && given.every((g, i) => equal(g, exact(values[i])));
  }

  // [kind, message], as cnnlesson.exercises.verdict gives them.
  function verdict(key, text) {
    if (text.length > MAX_CHARS) return ["unreadable", TOO_LONG];
    const items = read(text, key.answer.length === 1);
    if (items === null) return ["unreadable", UNREADABLE];
    const [given, right, tentative] = reading(items, key);
    const countOff = ["count", "Not yet: this box takes " + key.asks + "."];
    if (given === null) return countOff;
    if (same(given, key.answer)) return ["correct", right];
    for (const mistake of key.mistakes) {
      if (same(given, mistake.value)) return ["mistake", "Not quite: " + mistake.hint];
    }
    return tentative ? countOff : ["wrong", "Not yet. " + key.nudge];
  }

  // The pure functions, for the tests' table of cases (tests/answer_cases.json).
  window.cnnAnswers = { read, verdict, MAX_CHARS };

  function wire(form) {
    const key = JSON.parse(form.dataset.key);
    const input = form.querySelector("input");
    const out = form.querySelector(".cnn-answer__verdict");
    form.hidden = false;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const [kind, message] = verdict(key, input.value);
      // Emptied first, so that the same verdict twice is announced twice.
      out.textContent = "";
      form.dataset.verdict = kind;
      input.setAttribute("aria-invalid", kind === "correct" ? "false" : "true");
      requestAnimationFrame(() => { out.textContent = message; });
    });
    input.addEventListener("input", () => {
      delete form.dataset.verdict;
      input.removeAttribute("aria-invalid");
      out.textContent = "";
    });
  }

  function init() {
    document.querySelectorAll("form.cnn-answer[data-key]").forEach((form) => {
      if (form.dataset.ready) return;
      form.dataset.ready = "1";
      try {
        wire(form);
      } catch (err) {
        console.warn("cnn-answer:", err);   // the folded solution remains
      }
    });
  }

  window.cnnOnEveryPage(init);
})();
