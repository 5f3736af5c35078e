// True once Material has swapped in a page after count_swaps.js returned n,
// or after a full reload (the counter is gone; the caller reports that).
n => window.__cnnxSwaps === undefined || window.__cnnxSwaps > n
