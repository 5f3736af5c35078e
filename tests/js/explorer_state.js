// Everything a test looks at in one explorer widget, in one round trip (the browser is the slow part).
// Argument: the widget's root element. Grids come back as [row, col, value] from the data-* attributes.
root => {
  const cells = (testid, sel) => [...root.querySelectorAll(`[data-testid="${testid}"] ${sel}`)]
    .map(c => [+c.dataset.row, +c.dataset.col, parseFloat(c.dataset.value)]);
  const text = testid => { const e = root.querySelector(`[data-testid="${testid}"]`); return e ? e.innerText : null; };
  const error = root.querySelector('[data-testid="error"]');
  return {
    input: cells("input", "[data-row]:not(.is-pad)"), pad: cells("input", "[data-row].is-pad"),
    kernel: cells("kernel", "[data-row]"), output: cells("output", "[data-row]"),
    window: cells("input", "[data-row].is-window"), current: cells("output", "[data-row].is-current"),
    calc: text("calc"), formula: text("formula"), position: text("position"),
    error: error.hidden ? null : error.innerText,
    outputHidden: root.querySelector('[data-testid="output"]').checkVisibility() === false,
  };
}
