// What the site-wide tests check on one page: images, math and notebook links.
async () => {
  // Load lazy images now and wait for every image to finish (or fail).
  const images = await Promise.all([...document.images].map(async (img) => {
    img.loading = "eager";
    try { await img.decode(); } catch (e) { /* reported as naturalWidth 0 */ }
    return [img.currentSrc || img.src, img.naturalWidth];
  }));
  // TeX left as text outside code: the math renderer did not run.
  const raw = [];
  const root = document.querySelector("article") || document.body;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (node.parentElement.closest("pre, code, script, style, textarea, .katex")) continue;
    // The notebook's markdown cells keep Jupyter's $ delimiters: a $ left there is unrendered math.
    const tex = node.parentElement.closest(".jupyter-wrapper .jp-MarkdownOutput") ? /\$|\\\[|\\\(/ : /\$\$|\\\[|\\\(|\\begin\{/;
    if (tex.test(node.nodeValue)) raw.push(node.nodeValue.trim().slice(0, 80));
  }
  const math = [...document.querySelectorAll(".arithmatex")];
  // KaTeX (throwOnError: false) shows a formula it cannot parse as its source in red (.katex-error), and an
  // unknown command inside a formula in the same red (#cc0000, its errorColor): each one fails the tests.
  const errors = [...document.querySelectorAll('.katex-error, .katex-mathml mstyle[mathcolor="#cc0000"]')]
    .map((e) => (e.title || e.textContent).slice(0, 120));
  return {
    images,
    raw,
    math: math.length,
    unrendered: math.filter((m) => !m.querySelector(".katex")).length,
    errors,
    math_renderer: [...document.scripts].some((s) => /\/katex\.min\.js$/.test(s.src)),  // the renderer requested
    // Each widget on the page, and each widget whose script the page requested.
    widgets: [".cnn-explorer", ".livenet", "form.cnn-answer"].filter((sel) => document.querySelector(sel)),
    widget_scripts: [...document.scripts].map((s) => s.src.split("/").pop())
      .filter((name) => ["explorer.js", "livenet-ui.js", "exercises.js"].includes(name)),
    notebooks: [...document.querySelectorAll("a[href]")].map((a) => a.href)
      .filter((h) => /\.ipynb$/i.test(new URL(h).pathname)),
  };
}
