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
    if (node.parentElement.closest("pre, code, script, style, textarea, mjx-container, .katex")) continue;
    if (/\$\$|\\\[|\\\(|\\begin\{/.test(node.nodeValue)) raw.push(node.nodeValue.trim().slice(0, 80));
  }
  const math = [...document.querySelectorAll(".arithmatex")];
  return {
    images,
    raw,
    math: math.length,
    unrendered: math.filter((m) => !m.querySelector("mjx-container, .katex")).length,
    mathjax: [...document.scripts].some((s) => /\/tex-mml-chtml\.js$/.test(s.src)),  // the renderer requested
    notebooks: [...document.querySelectorAll("a[href]")].map((a) => a.href)
      .filter((h) => /\.ipynb$/i.test(new URL(h).pathname)),
  };
}
