// MathJax, loaded only on pages that have math: its settings, then its script
// (assets/mathjax/es5/tex-mml-chtml.js, 266 KB gzipped with its font data) when
// the page holds formulas. pymdownx.arithmatex (generic mode) wraps page formulas
// in .arithmatex with \( \) and \[ \] delimiters; the notebook page (nbconvert,
// in .jupyter-wrapper) keeps Jupyter's $ and $$. Page content (.md-typeset) is
// otherwise left alone, and <pre>/<code> never are typeset.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: "md-typeset",
    processHtmlClass: "arithmatex|jupyter-wrapper",
  },
};

(function () {
  "use strict";

  // MathJax's script, next to this one: from file:// too, where the site has no fixed root.
  const here = document.currentScript ? document.currentScript.src : document.baseURI;
  const MATHJAX_SRC = new URL("../assets/mathjax/es5/tex-mml-chtml.js", here).href;
  let requested = false;

  // The notebook page keeps Jupyter's $ delimiters: it has math when its text holds one.
  function hasMath() {
    if (document.querySelector(".arithmatex")) return true;
    return [...document.querySelectorAll(".jupyter-wrapper .jp-MarkdownOutput")].some((cell) => /\$/.test(cell.textContent));
  }

  function typeset() {
    if (!hasMath()) return;
    if (!requested) {
      // The first page with math: MathJax typesets it when its script has loaded.
      requested = true;
      const script = document.createElement("script");
      script.src = MATHJAX_SRC;
      script.async = true;
      script.id = "MathJax-script";
      document.head.append(script);
      return;
    }
    if (!window.MathJax.typesetPromise) return; // still loading: it typesets the page it finds
    // navigation.instant swaps pages without reloading scripts: typeset each new page.
    MathJax.startup.output.clearCache();
    MathJax.typesetClear();
    MathJax.texReset();
    MathJax.typesetPromise();
  }

  window.cnnOnEveryPage(typeset);
})();
