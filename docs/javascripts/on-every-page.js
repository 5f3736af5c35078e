// Run a widget's init on every page. Material's instant navigation swaps pages
// without reloading scripts; its document$ observable emits after each swap
// (and replays the current page to a script that subscribes later).
window.cnnOnEveryPage = function (init) {
  if (window.document$ && typeof window.document$.subscribe === "function") {
    window.document$.subscribe(() => init());
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
};

// A stylesheet (.css) or script, added to the page once per visit; resolves when it has loaded.
window.cnnLoadOnce = (function () {
  const loaded = new Map();
  return function (url) {
    if (!loaded.has(url)) {
      loaded.set(url, new Promise((resolve, reject) => {
        const node = document.createElement(url.endsWith(".css") ? "link" : "script");
        if (node instanceof HTMLLinkElement) {
          node.rel = "stylesheet";
          node.href = url;
        } else {
          node.src = url;
        }
        node.onload = resolve;
        node.onerror = () => reject(new Error(`${url} did not load`));
        document.head.append(node);
      }));
    }
    return loaded.get(url);
  };
})();

// Each widget's stylesheet and scripts load only on the pages that show it, so
// that a page without one does not download them: in order, once per visit.
(function () {
  "use strict";

  // Next to this script: from file:// too, where the site has no fixed root.
  const here = document.currentScript ? document.currentScript.src : document.baseURI;
  const WIDGETS = [
    [".cnn-explorer", ["../stylesheets/explorer.css", "explorer.js"]],
    [".livenet", ["../stylesheets/livenet.css", "livenet.js", "livenet-digits.js", "livenet-ui.js"]],
    ["form.cnn-answer", ["exercises.js"]],
  ];

  function load(name) {
    return window.cnnLoadOnce(new URL(name, here).href);
  }

  window.cnnOnEveryPage(() => {
    for (const [selector, scripts] of WIDGETS) {
      if (!document.querySelector(selector)) continue;
      // Each file starts after the one before it: the scripts build on each other, and on the styles.
      scripts.reduce((before, name) => before.then(() => load(name)), Promise.resolve()).catch((err) => console.error(err));
    }
  });
})();
