// Run a widget's init on every page. Material's instant navigation swaps pages
// without reloading scripts; its document$ observable emits after each swap.
window.cnnOnEveryPage = function (init) {
  if (window.document$ && typeof window.document$.subscribe === "function") {
    window.document$.subscribe(() => init());
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
};
