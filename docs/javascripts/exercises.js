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

  const CORRECT = "Correct.";
  const UNREADABLE = "Type a number, like 3136, or a shape, like (64, 7, 7).";
  // The same rules as cnnlesson.exercises.parse.
  const GROUPED = /^[+-]?\d{1,3}(?:[,_\s\u00a0\u202f']\d{3})+(?:\.\d+)?$/;
  const SEPARATORS = /[\s,;x×*]+/;
  const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$/;

  // The numbers of a typed answer, or null; `count` is how many the key holds.
  function parse(text, count) {
    let s = text.trim().toLowerCase().replace(/\u2212/g, "-").replace(/torch\.size/g, "");
    s = s.replace(/[()[\]{}]/g, " ").trim();
    if (count === 1 && GROUPED.test(s)) s = s.replace(/[,_\s\u00a0\u202f']/g, "");
    const tokens = s.split(SEPARATORS).filter(Boolean);
    if (!tokens.length || !tokens.every((t) => NUMBER.test(t))) return null;
    return tokens.map(Number);
  }

  function close(a, b) {
    return Math.abs(a - b) <= Math.max(1e-9, 1e-9 * Math.max(Math.abs(a), Math.abs(b)));
  }

  function same(given, values) {
    return given.length === values.length && given.every((v, i) => close(v, values[i]));
  }

  // [kind, message], as cnnlesson.exercises.verdict gives them.
  function verdict(key, text) {
    const given = parse(text, key.answer.length);
    if (given === null) return ["unreadable", UNREADABLE];
    if (same(given, key.answer)) return ["correct", CORRECT];
    for (const mistake of key.mistakes) {
      if (same(given, mistake.value)) return ["mistake", "Not quite: " + mistake.hint];
    }
    return ["wrong", "Not yet. " + key.nudge];
  }

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
