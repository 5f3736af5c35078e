// True once every formula on the page has been typeset: each .arithmatex, and each notebook markdown cell with $ math.
() => [...document.querySelectorAll(".arithmatex")].every((m) => m.querySelector(".katex")) &&
  [...document.querySelectorAll(".jupyter-wrapper .jp-MarkdownOutput")].every((c) => !/\$/.test(c.textContent) || c.querySelector(".katex"))
