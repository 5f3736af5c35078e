// How many pages Material has swapped in so far (document$ emits once per instant page).
// The counter lives on window, so a full reload resets it to undefined.
() => {
  if (window.__cnnxSwaps === undefined) {
    window.__cnnxSwaps = 0;
    document$.subscribe(() => { window.__cnnxSwaps++; });
  }
  return window.__cnnxSwaps;
}
