"""MNIST's own preprocessing, for a digit drawn on a pad of any size.

MNIST's digits were scaled to fit a 20x20 box, keeping their proportions,
and then placed in a 28x28 image so that their centre of mass sits at the
image's centre. A digit drawn large or off-centre must be brought to that
form before MNISTNet sees it. `preprocess` does it in NumPy; the feature-maps
page's live network does the same arithmetic in JavaScript
(docs/javascripts/livenet-digits.js).

Scaling also scales the pen: a digit drawn 50 pixels tall with a 20-pixel pen
arrives with strokes 6 pixels thick, its loops filled. So the page redraws
the strokes for the network with a pen of `pen_width(extent)` pixels, which
makes them STROKE pixels thick after scaling, as MNIST's are, at any size.
"""

import numpy as np

from cnnlesson._checks import check_int

SIZE = 28  # MNIST's images are 28x28
BOX = 20  # the digit is scaled to fit a BOX x BOX square
STROKE = 2.5  # MNIST's strokes, in pixels of the 20x20 box (ink over centre-line length: about 2.5-3)
MIN_PEN = 2.0  # the thinnest pen, in pad pixels: a dot stays visible
MAX_SIDE = 10_000  # the area weights are dense (BOX x side): a longer side would cost memory for nothing


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """An (n_out, n_in) matrix: output cell k is the mean of the input cells under [k, k+1) * n_in / n_out."""
    n_in, n_out = check_int("n_in", n_in, 1), check_int("n_out", n_out, 1)
    step = n_in / n_out
    starts, ends = np.arange(n_out)[:, None] * step, np.arange(1, n_out + 1)[:, None] * step
    cells = np.arange(n_in)[None, :]
    overlap = np.minimum(ends, cells + 1) - np.maximum(starts, cells)
    return np.clip(overlap, 0, None) / step


def pen_width(extent: float) -> float:
    """The pen width for strokes whose centre lines span `extent` pixels: STROKE pixels thick after scaling."""
    # The ink's box is extent + width; scaled to BOX, a stroke is width * BOX / (extent + width) = STROKE.
    if not np.isfinite(extent) or extent < 0:
        raise ValueError(f"extent: expected a finite number >= 0 (pixels), got {extent!r}")
    return max(MIN_PEN, STROKE * float(extent) / (BOX - STROKE))


def preprocess(ink: np.ndarray) -> np.ndarray:
    """A drawn digit (2-D array, 0 = empty, 1 = full ink) as MNIST's 28x28 form, values in [0, 1].

    Raises ValueError naming `ink` for values outside [0, 1] (uint8 pixels must
    be divided by 255 first), NaN or infinity, or a side over MAX_SIDE pixels.

    The inked bounding box is scaled by area averaging so that its longer side
    is BOX pixels; the result is shifted by whole pixels so that its centre of
    mass lands on the image's centre (14, 14), as far as the 28x28 frame
    allows. An empty pad gives an empty image.
    """
    ink = np.asarray(ink, dtype=np.float64)
    if ink.ndim != 2 or min(ink.shape) < 1:
        raise ValueError(f"ink: expected a non-empty 2-D array (height, width), got shape {ink.shape}")
    if max(ink.shape) > MAX_SIDE:
        raise ValueError(f"ink: expected at most {MAX_SIDE} pixels a side, got shape {ink.shape}")
    if not np.isfinite(ink).all():
        raise ValueError(f"ink: expected finite values, got {np.count_nonzero(~np.isfinite(ink))} NaN or infinite")
    if ink.min() < 0 or ink.max() > 1:
        # uint8 pixels (0-255) would otherwise saturate: a grey 128 stroke would count as full ink.
        raise ValueError(
            f"ink: expected values from 0 to 1 (0-255 pixels divided by 255), got {ink.min():g} to {ink.max():g}"
        )
    out = np.zeros((SIZE, SIZE))
    rows, cols = np.flatnonzero(ink.max(axis=1) > 0), np.flatnonzero(ink.max(axis=0) > 0)
    if rows.size == 0:
        return out
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    scale = BOX / max(h, w)
    oh, ow = max(1, int(np.floor(h * scale + 0.5))), max(1, int(np.floor(w * scale + 0.5)))
    # Means of values in [0, 1]; clipped, since rounding can step a hair past 1.
    small = np.clip(area_weights(h, oh) @ crop @ area_weights(w, ow).T, 0.0, 1.0)
    mass = small.sum()
    if mass == 0:  # ink so faint that averaging rounds it to nothing: an empty pad
        return out
    cy = (small.sum(axis=1) @ (np.arange(oh) + 0.5)) / mass  # centre of mass, in pixel units from the top edge
    cx = (small.sum(axis=0) @ (np.arange(ow) + 0.5)) / mass
    top = min(max(int(np.floor(SIZE / 2 - cy + 0.5)), 0), SIZE - oh)
    left = min(max(int(np.floor(SIZE / 2 - cx + 0.5)), 0), SIZE - ow)
    out[top : top + oh, left : left + ow] = small
    return out
