/*
 * a11y.js: accessibility touches on top of mkdocs-material, without patching
 * the theme (WCAG 2.1 AA, checked by tests/test_accessibility.py with axe-core).
 *
 * - A box that scrolls sideways (a long code line, a wide table, display
 *   math on a phone) gets tabindex="0", so a keyboard can reach and scroll
 *   it; boxes that fit get none, so they add no tab stops.
 * - Material's search dialog gets a name, and each code block's <nav> of
 *   buttons a label of its own (several unnamed <nav>s are indistinguishable).
 * Material adds its code navs and table wrappers itself, after the page
 * arrives (and again on every instant navigation), so changes are watched.
 */
(function () {
  "use strict";

  // Boxes of the page's content that may scroll: code, tables and their
  // wrappers, display math, the notebook's cells. Only boxes whose content
  // overflows are styled-checked (getComputedStyle), so the walk stays cheap.
  const SCROLLERS = ".md-content :is(pre, code, div, table)";
  const ADDED = "data-a11y-tabindex";   // marks a tabindex this script added

  function scrolls(node) {
    if (node.scrollWidth <= node.clientWidth + 1 && node.scrollHeight <= node.clientHeight + 1) return false;
    const style = getComputedStyle(node);
    return /(auto|scroll)/.test(style.overflowX + " " + style.overflowY);
  }

  function markScrollers() {
    for (const node of document.querySelectorAll(SCROLLERS)) {
      if (node.hasAttribute("tabindex") && !node.hasAttribute(ADDED)) continue;   // focusable already
      if (scrolls(node)) {
        node.setAttribute("tabindex", "0");
        node.setAttribute(ADDED, "");
      } else if (node.hasAttribute(ADDED)) {   // fits again (wider window): no tab stop
        node.removeAttribute("tabindex");
        node.removeAttribute(ADDED);
      }
    }
  }

  function nameLandmarks() {
    const search = document.querySelector('.md-search[role="dialog"]');
    if (search && !search.hasAttribute("aria-label")) search.setAttribute("aria-label", "Search");
    document.querySelectorAll("nav.md-code__nav").forEach((nav, i) => {
      if (!nav.hasAttribute("aria-label")) nav.setAttribute("aria-label", `Code block ${i + 1} actions`);
    });
  }

  let pending = false;
  function refresh() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      nameLandmarks();
      markScrollers();
    });
  }

  // Re-check on any change of the page (instant navigation, Material's own
  // widgets, KaTeX rendering) and of the window's width.
  new MutationObserver(refresh).observe(document.body, { childList: true, subtree: true });
  window.addEventListener("resize", refresh);
  window.addEventListener("beforeprint", markScrollers);
  refresh();
})();
