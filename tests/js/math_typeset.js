// True once every formula on the page has been typeset: each .arithmatex, and the notebook's $ math
// (a $ left in a markdown cell's text outside code and outside KaTeX's output).
() => [...document.querySelectorAll(".arithmatex")].every((m) => m.querySelector(".katex")) &&
  [...document.querySelectorAll(".jupyter-wrapper .jp-MarkdownOutput")].every((cell) => {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
      const node = walker.currentNode;
      if (/\$/.test(node.nodeValue) && !node.parentElement.closest("pre, code, .katex")) return false;
    }
    return true;
  })
