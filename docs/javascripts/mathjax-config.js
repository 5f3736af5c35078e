// MathJax settings, read by assets/mathjax/es5/tex-mml-chtml.js (loaded next).
// pymdownx.arithmatex (generic mode) wraps page formulas in .arithmatex with
// \( \) and \[ \] delimiters; the notebook page (nbconvert, in .jupyter-wrapper)
// keeps Jupyter's $ and $$. Page content (.md-typeset) is otherwise left alone,
// and <pre>/<code> never are typeset.
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

// navigation.instant swaps pages without reloading scripts: typeset each new page.
document$.subscribe(() => {
  if (!window.MathJax.typesetPromise) return; // first page: MathJax typesets it on load
  MathJax.startup.output.clearCache();
  MathJax.typesetClear();
  MathJax.texReset();
  MathJax.typesetPromise();
});
