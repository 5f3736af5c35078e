// True once every math element on the page has been typeset.
() => [...document.querySelectorAll(".arithmatex")].every(m => m.querySelector("mjx-container, .katex"))
