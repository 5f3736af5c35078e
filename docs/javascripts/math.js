// KaTeX, loaded only on pages that have math: its stylesheet, its script and
// its auto-render extension (assets/katex/, served by docs/hooks/katex.py).
// pymdownx.arithmatex (generic mode) wraps page formulas in .arithmatex with
// \( \) and \[ \] delimiters; the notebook page (nbconvert, in .jupyter-wrapper)
// keeps Jupyter's $ and $$. Nothing else on a page is rendered, and <pre>/<code>
// never are (auto-render skips them).
(function () {
  "use strict";

  // KaTeX's files, next to this script: from file:// too, where the site has no fixed root.
  const here = document.currentScript ? document.currentScript.src : document.baseURI;
  const KATEX = new URL("../assets/katex/", here).href;
  const PAGE_DELIMITERS = [
    { left: "\\[", right: "\\]", display: true },
    { left: "\\(", right: "\\)", display: false },
  ];
  const NOTEBOOK_DELIMITERS = [
    { left: "$$", right: "$$", display: true },
    ...PAGE_DELIMITERS,
    { left: "$", right: "$", display: false },
  ];
  let loading = null;

  function notebookCells() {
    return [...document.querySelectorAll(".jupyter-wrapper .jp-MarkdownOutput")].filter((cell) =>
      /\$/.test(cell.textContent),
    );
  }

  function load(name) {
    return window.cnnLoadOnce(KATEX + name);
  }

  // Once per visit: instant navigation keeps the scripts, so later pages reuse them.
  function katex() {
    if (!loading) {
      // auto-render needs katex's global: the scripts load one after the other.
      loading = Promise.all([load("katex.min.css"), load("katex.min.js").then(() => load("contrib/auto-render.min.js"))]);
    }
    return loading;
  }

  function render(element, delimiters) {
    window.renderMathInElement(element, { delimiters, throwOnError: false });
  }

  function typeset() {
    const formulas = [...document.querySelectorAll(".arithmatex")];
    const cells = notebookCells();
    if (!formulas.length && !cells.length) return;
    katex().then(() => {
      formulas.forEach((element) => render(element, PAGE_DELIMITERS));
      cells.forEach((cell) => render(cell, NOTEBOOK_DELIMITERS));
    });
  }

  window.cnnOnEveryPage(typeset);
})();
