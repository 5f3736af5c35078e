"""Convolution and pooling in plain NumPy (section 7 of the lesson).

`conv2d_numpy` is the lesson's double loop, kept as written because it shows
what a convolution *is*: slide the kernel, multiply element-wise, sum.
`conv2d` and `conv2d_backward` compute the same things as
`torch.nn.functional` on NCHW batches, but vectorised with the *im2col*
trick: copy every receptive field into a column once, then a single matrix
multiplication does all the multiply-and-sum work in BLAS. `max_pool2d` and
`avg_pool2d` need no columns: they combine the kh*kw shifted views of the
input, one kernel tap at a time.

Dtypes: results are float32 when every array argument is float32 and float64
otherwise (integer, bool and float16 inputs are promoted to float64), except
`max_pool2d`, which keeps its input's dtype: a maximum is one of its inputs.
Complex and object arrays are rejected with a `TypeError`; NumPy subclasses
(`np.matrix`, `np.memmap`, ...) are read as plain arrays, masked arrays are
refused (their mask would be ignored).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from cnnlesson._checks import check_int

IntOrPair = int | Sequence[int]
Padding = int | Sequence[int] | str


def output_size(n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Length of a convolution or pooling output along one axis.

    The lesson's formula ``(n - kernel + 2*padding) / stride + 1``, floored and
    generalised to dilation, whose kernel spans ``dilation*(kernel-1) + 1`` inputs.

    Args:
        n: Input length (at least 1).
        kernel: Kernel length (at least 1).
        stride: Step between windows (at least 1).
        padding: Zeros added on *each* side (at least 0).
        dilation: Spacing between kernel taps (at least 1).

    Returns:
        ``(n + 2*padding - dilation*(kernel-1) - 1) // stride + 1``.

    Raises:
        TypeError: If an argument is not an int.
        ValueError: If an argument is out of range or the output would be empty.
    """
    # Python ints: NumPy integers (np.int8(100)) would overflow silently in the formula.
    n, kernel, stride, padding, dilation = (
        check_int(name, value, low)
        for name, value, low in (
            ("n", n, 1),
            ("kernel", kernel, 1),
            ("stride", stride, 1),
            ("padding", padding, 0),
            ("dilation", dilation, 1),
        )
    )
    return _output_len(n, kernel, stride, 2 * padding, dilation, "kernel")


def conv2d_numpy(image: NDArray, kernel: NDArray) -> NDArray[np.float64]:
    """2D convolution implementation with NumPy (educational).

    Args:
        image: 2-D array of shape ``(h, w)``.
        kernel: 2-D array of shape ``(kh, kw)``, not larger than ``image``.

    Returns:
        Float64 array of shape ``(h - kh + 1, w - kw + 1)`` (no padding, stride 1).

    Raises:
        TypeError: If an argument is not a numpy.ndarray.
        ValueError: If an argument is not 2-D or the kernel is larger than the image.
    """
    image = _check_array("image", image, 2)
    kernel = _check_array("kernel", kernel, 2)
    if kernel.shape[0] > image.shape[0] or kernel.shape[1] > image.shape[1]:
        raise ValueError(f"kernel of shape {kernel.shape} is larger than image of shape {image.shape}")
    if 0 in kernel.shape:
        raise ValueError(f"kernel must be at least 1x1, got shape {kernel.shape}")
    # In the input's dtype, region * kernel would wrap around for uint8/int8 and overflow float16.
    image, kernel = image.astype(np.float64), kernel.astype(np.float64)
    h, w = image.shape
    kh, kw = kernel.shape
    oh, ow = h - kh + 1, w - kw + 1
    output = np.zeros((oh, ow))
    for i in range(oh):
        for j in range(ow):
            # Extract region
            region = image[i : i + kh, j : j + kw]
            # Element-wise multiplication and sum
            output[i, j] = np.sum(region * kernel)
    return output


def conv2d(
    x: NDArray,
    weight: NDArray,
    bias: NDArray | None = None,
    stride: IntOrPair = 1,
    padding: Padding = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
) -> NDArray[np.floating]:
    """Batched 2-D convolution (cross-correlation), like `torch.nn.functional.conv2d`.

    Args:
        x: Input batch of shape ``(N, C, H, W)``.
        weight: Filters of shape ``(out_channels, C // groups, kh, kw)``.
        bias: Optional array of shape ``(out_channels,)``.
        stride: Int or ``(sh, sw)`` pair.
        padding: Int, ``(ph, pw)`` pair, ``'valid'`` (no padding) or ``'same'``
            (output as large as the input; stride must be 1; an odd total padding
            puts the extra zero on the bottom/right, as torch does).
        dilation: Int or ``(dh, dw)`` pair.
        groups: Number of channel groups; must divide ``C`` and ``out_channels``.

    Returns:
        Array of shape ``(N, out_channels, OH, OW)``, see `output_size`. It is a view
        of the matrix product's result, whose memory runs channel by channel
        (not C-contiguous): a copy into NCHW order would be one more pass over
        the whole output, which the next layer does not need (it copies its
        input into columns anyway). `np.ascontiguousarray` makes that copy when needed.

    Raises:
        TypeError: If an array argument is not a numpy.ndarray or has a non-real dtype,
            or a size argument is not an int.
        ValueError: If shapes, channels, groups or hyper-parameters do not fit together.
    """
    x, weight, bias = _conv_arrays(x, weight, bias, groups)
    geo = _conv_geometry(x.shape, weight.shape, stride, padding, dilation)
    filters, cols = _product_operands(x, weight, bias, geo, groups)
    # One matrix product per group for the whole batch: (O/G, K) @ (K, N*L).
    return _output_view(np.matmul(filters, cols), x.shape, geo)


def conv2d_backward(
    grad_output: NDArray,
    x: NDArray,
    weight: NDArray,
    stride: IntOrPair = 1,
    padding: Padding = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
) -> tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating]]:
    """Gradients of `conv2d` with respect to its input, weight and bias.

    Args:
        grad_output: Gradient of the loss with respect to the output of `conv2d`,
            shape ``(N, out_channels, OH, OW)``.
        x: The input batch passed to `conv2d`.
        weight: The filters passed to `conv2d`.
        stride: As passed to `conv2d`.
        padding: As passed to `conv2d`.
        dilation: As passed to `conv2d`.
        groups: As passed to `conv2d`.

    Returns:
        ``(grad_input, grad_weight, grad_bias)`` with the shapes of ``x``, ``weight``
        and ``(out_channels,)``: what autograd gives for ``conv2d(x, weight, bias, ...)``.

    Raises:
        TypeError: As for `conv2d`.
        ValueError: As for `conv2d`, or if ``grad_output`` has the wrong shape.
    """
    x, weight, _ = _conv_arrays(x, weight, None, groups)
    geo = _conv_geometry(x.shape, weight.shape, stride, padding, dilation)
    n, out_channels, kshape = x.shape[0], weight.shape[0], weight.shape[2:]
    expected = (n, out_channels, *geo.out)
    grad_output = _check_array("grad_output", grad_output, 4)
    if grad_output.shape != expected:
        raise ValueError(f"grad_output must have the output shape {expected}, got {grad_output.shape}")
    dtype = _result_dtype(x, weight, grad_output)
    x, weight = x.astype(dtype, copy=False), weight.astype(dtype, copy=False)

    # The forward pass's matrices: the gradient laid out like its product (zero in the columns
    # that only pad the rows), so each product below is again one matmul per group.
    grad_matrix = np.zeros(
        (groups, out_channels // groups, n * _run_length(geo, _phase_width(x.shape, geo))), dtype=dtype
    )
    _output_view(grad_matrix, x.shape, geo)[...] = grad_output
    cols = _im2col(x, kshape, geo, groups, ones_row=False)
    # dL/dW = sum over batch and positions of grad * receptive field.
    grad_weight = np.matmul(grad_matrix, cols.swapaxes(-1, -2)).reshape(weight.shape)
    # dL/dcols = W^T grad; each column's gradient then flows back to the pixels it copied.
    grad_cols = np.matmul(_grouped_weight(weight, groups).swapaxes(-1, -2), grad_matrix)
    grad_input = _col2im(grad_cols, x.shape, kshape, geo)
    return grad_input, grad_weight, grad_output.sum(axis=(0, 2, 3), dtype=dtype)


def max_pool2d(x: NDArray, kernel_size: IntOrPair, stride: IntOrPair | None = None, padding: IntOrPair = 0) -> NDArray:
    """Max pooling, like `torch.nn.functional.max_pool2d` (padding never wins, as -inf).

    Args:
        x: Input batch of shape ``(N, C, H, W)``.
        kernel_size: Int or ``(kh, kw)`` pair.
        stride: Int or pair; defaults to ``kernel_size``.
        padding: Int or pair, at most half of ``kernel_size``.

    Returns:
        Array of shape ``(N, C, OH, OW)`` and ``x``'s dtype: each value is one of ``x``'s.

    Raises:
        TypeError: If ``x`` is not a numpy.ndarray or a size is not an int.
        ValueError: If ``x`` is not 4-D or the sizes do not fit.
    """
    x, kshape, geo = _pool_setup(x, kernel_size, stride, padding)
    # The padding's value must lose every comparison; each window holds at least one real value.
    lowest = -np.inf if x.dtype.kind == "f" else False if x.dtype.kind == "b" else np.iinfo(x.dtype).min
    return _pool(x, kshape, geo, lowest, np.maximum)


def avg_pool2d(
    x: NDArray, kernel_size: IntOrPair, stride: IntOrPair | None = None, padding: IntOrPair = 0
) -> NDArray[np.floating]:
    """Average pooling, like `torch.nn.functional.avg_pool2d` (padded zeros are counted).

    The arguments, the result's shape and the errors are those of `max_pool2d`;
    only the reduction differs: the mean of each window instead of its maximum,
    in float32 for float32 input and float64 otherwise.
    """
    x, kshape, geo = _pool_setup(x, kernel_size, stride, padding)
    total = _pool(x.astype(_result_dtype(x), copy=False), kshape, geo, 0, np.add)
    total /= kshape[0] * kshape[1]
    return total


# --- private helpers ---------------------------------------------------------------------


class _Geometry(NamedTuple):
    """Per-axis (height, width) hyper-parameters of one convolution or pooling."""

    stride: tuple[int, int]
    pads: tuple[tuple[int, int], tuple[int, int]]  # (before, after) for height and width
    dilation: tuple[int, int]
    out: tuple[int, int]


def _pair(name: str, value: object, low: int) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name}: expected an int or a pair of ints, got {value!r}")
        return check_int(name, value[0], low), check_int(name, value[1], low)
    v = check_int(name, value, low)
    return v, v


def _output_len(n: int, kernel: int, stride: int, pad_total: int, dilation: int, kernel_name: str) -> int:
    span = dilation * (kernel - 1) + 1  # inputs covered by one dilated kernel
    if span > n + pad_total:
        raise ValueError(
            f"{kernel_name} spans {span} inputs (size {kernel}, dilation {dilation}) but the "
            f"padded input has only {n + pad_total} (size {n} + padding {pad_total}); "
            f"the output size would be < 1"
        )
    return (n + pad_total - span) // stride + 1


def _check_array(name: str, value: object, ndim: int, hint: str = "") -> NDArray:
    """Return `value` as a plain numpy.ndarray, or raise naming `name`."""
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(
            f"{name} must be a plain numpy.ndarray, got a masked array (its mask would be ignored); "
            f"pass value.filled(...) instead"
        )
    if not isinstance(value, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy.ndarray, got {type(value).__module__}."
            f"{type(value).__name__}; pass a numpy.ndarray (e.g. np.asarray(...) or tensor.numpy())"
        )
    # A subclass may redefine * or @ (np.matrix multiplies matrices): compute on plain arrays.
    value = np.asarray(value)
    if value.dtype.kind not in "biuf":
        raise TypeError(f"{name} must have a real numeric dtype, got {value.dtype}")
    if value.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got a {value.ndim}-D array of shape {value.shape}{hint}")
    return value


def _result_dtype(*arrays: NDArray) -> np.dtype:
    # float32 stays float32 (half the memory, twice the BLAS speed); anything else computes in float64.
    return np.dtype(np.float32 if all(a.dtype == np.float32 for a in arrays) else np.float64)


def _conv_arrays(x: object, weight: object, bias: object, groups: object) -> tuple[NDArray, NDArray, NDArray | None]:
    """Validate conv2d's arrays and groups; return them in the common float dtype."""
    x = _check_array("x", x, 4, hint=" (N, C, H, W); for a single 2-D image use conv2d_numpy(image, kernel)")
    weight = _check_array("weight", weight, 4, hint=" (out_channels, in_channels // groups, kh, kw)")
    groups = check_int("groups", groups, 1)
    out_channels, per_group = weight.shape[:2]
    if 0 in weight.shape[2:]:
        raise ValueError(f"weight's kernel must be at least 1x1, got weight of shape {weight.shape}")
    if out_channels == 0:  # torch refuses this too; an empty batch (N=0) is fine
        raise ValueError(
            f"weight must hold at least one filter (out_channels >= 1), got weight of shape {weight.shape}"
        )
    if out_channels % groups:
        raise ValueError(f"groups={groups} must divide weight's out_channels, got weight of shape {weight.shape}")
    if x.shape[1] != per_group * groups:
        raise ValueError(
            f"x has {x.shape[1]} channels but weight of shape {weight.shape} with groups={groups} "
            f"expects in_channels = {per_group} * {groups} = {per_group * groups}"
        )
    if bias is not None:
        bias = _check_array("bias", bias, 1)
        if bias.shape != (out_channels,):
            raise ValueError(f"bias must have shape ({out_channels},) (weight's out_channels), got {bias.shape}")
    dtype = _result_dtype(*(a for a in (x, weight, bias) if a is not None))
    return x.astype(dtype, copy=False), weight.astype(dtype, copy=False), bias if bias is None else bias.astype(dtype)


def _conv_geometry(
    xshape: tuple[int, ...], wshape: tuple[int, ...], stride: object, padding: object, dilation: object
) -> _Geometry:
    stride, dilation = _pair("stride", stride, 1), _pair("dilation", dilation, 1)
    if isinstance(padding, str):
        if padding == "valid":
            pads = ((0, 0), (0, 0))
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' requires stride=1, got stride={stride}")
            # Total padding d*(k-1) keeps the size; an odd total puts the extra zero after, like torch.
            th, tw = (d * (k - 1) for d, k in zip(dilation, wshape[2:], strict=True))
            pads = ((th // 2, th - th // 2), (tw // 2, tw - tw // 2))
        else:
            raise ValueError(f"padding: expected an int, a pair of ints, 'same' or 'valid', got {padding!r}")
    else:
        ph, pw = _pair("padding", padding, 0)
        pads = ((ph, ph), (pw, pw))
    oh, ow = (
        _output_len(n, k, s, sum(p), d, "weight")
        for n, k, s, p, d in zip(xshape[2:], wshape[2:], stride, pads, dilation, strict=True)
    )
    return _Geometry(stride, pads, dilation, (oh, ow))


def _pool_setup(
    x: object, kernel_size: object, stride: object, padding: object
) -> tuple[NDArray, tuple[int, int], _Geometry]:
    """Validate pooling arguments; return x as a plain array, the kernel shape and the geometry."""
    x = _check_array("x", x, 4, hint=" (N, C, H, W)")
    kshape = _pair("kernel_size", kernel_size, 1)
    stride = kshape if stride is None else _pair("stride", stride, 1)
    pad = _pair("padding", padding, 0)
    if any(2 * p > k for p, k in zip(pad, kshape, strict=True)):
        raise ValueError(f"padding={pad} must be at most half of kernel_size={kshape} (as in torch)")
    oh, ow = (
        _output_len(n, k, s, 2 * p, 1, "kernel_size")
        for n, k, s, p in zip(x.shape[2:], kshape, stride, pad, strict=True)
    )
    return x, kshape, _Geometry(stride, ((pad[0], pad[0]), (pad[1], pad[1])), (1, 1), (oh, ow))


def _tap_slices(i: int, j: int, geo: _Geometry) -> tuple[slice, slice]:
    """Rows and columns of the padded input that kernel tap (i, j) reads, one per output pixel."""
    (sh, sw), (dh, dw), (oh, ow) = geo.stride, geo.dilation, geo.out
    return slice(i * dh, i * dh + sh * (oh - 1) + 1, sh), slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)


def _pool(x: NDArray, kshape: tuple[int, int], geo: _Geometry, fill: object, combine: np.ufunc) -> NDArray:
    """Combine the kh*kw shifted views of the padded input, one tap at a time, into a new array.

    A few images at a time, so that each tap reads them from the processor's cache, not from memory.
    """
    n, c, h, w = x.shape
    (top, bottom), (left, right) = geo.pads
    taps = [_tap_slices(i, j, geo) for i in range(kshape[0]) for j in range(kshape[1])]
    result = np.empty((n, c, *geo.out), dtype=x.dtype)
    step = max(1, _CACHE_BYTES // max(1, c * h * w * x.itemsize))
    for start in range(0, n, step):
        padded = part = x[start : start + step]
        if top or bottom or left or right:
            padded = np.full((len(part), c, h + top + bottom, w + left + right), fill, dtype=x.dtype)
            padded[:, :, top : top + h, left : left + w] = part
        out = result[start : start + step]
        out[...] = padded[:, :, taps[0][0], taps[0][1]]
        for rows, columns in taps[1:]:
            combine(out, padded[:, :, rows, columns], out=out)
    return result


_CACHE_BYTES = 2**18  # input per round of pooling: a quarter of a MiB stays in a core's L2 cache


# im2col without short rows. A kernel tap reads, for each output row, OW inputs `stride` apart:
# copied row by row, a stride-2 layer's 8-pixel rows cost more in loop overhead than in copying.
# Instead the padded input is split into its stride phases (input pixel (r, q) goes to phase
# (r % sh, q % sw) at (r // sh, q // sw)): there a tap reads consecutive pixels, and, because a
# phase's rows follow each other in memory, one tap's whole output is one run of
# L = (OH-1)*Wq + OW consecutive pixels of a phase of width Wq. Each run also holds Wq - OW
# pixels between output rows that no output needs: the product computes them (a few per cent
# more columns) and the output view skips them.


def _phase_width(xshape: tuple[int, ...], geo: _Geometry) -> int:
    """Wq, the width of each stride phase of the padded input."""
    (left, right), sw = geo.pads[1], geo.stride[1]
    return -(-(xshape[3] + left + right) // sw)  # ceil: the padded width spread over sw phases


def _run_length(geo: _Geometry, width: int) -> int:
    """L = (OH-1)*Wq + OW: columns per image in conv2d's product."""
    return (geo.out[0] - 1) * width + geo.out[1]


def _phases(x: NDArray, geo: _Geometry) -> NDArray:
    """The zero-padded input split into its stride phases: shape (sh, sw, N, C, Hq*Wq)."""
    n, c, h, w = x.shape
    (top, bottom), (left, right) = geo.pads
    sh, sw = geo.stride
    hq, wq = -(-(h + top + bottom) // sh), _phase_width(x.shape, geo)
    if (sh, sw) == (1, 1) and not (top or bottom or left or right):
        return x.reshape(1, 1, n, c, h * w)  # one phase, no padding: the input itself (copied only if strided)
    phases = np.zeros((sh, sw, n, c, hq, wq), dtype=x.dtype)
    for a in range(sh):
        for b in range(sw):
            rows, columns = _phase_slices(a, b, x.shape, geo)
            phases[a, b, :, :, rows[1], columns[1]] = x[:, :, rows[0], columns[0]]
    return phases.reshape(sh, sw, n, c, hq * wq)


def _phase_slices(a: int, b: int, xshape: tuple[int, ...], geo: _Geometry) -> tuple[tuple[slice, slice], ...]:
    """(x's slice, the phase's slice) for rows, then for columns, of phase (a, b)."""

    def axis(offset: int, pad: int, step: int, size: int) -> tuple[slice, slice]:
        first = (offset - pad) % step  # x's first index whose padded index falls in this phase
        count = len(range(first, size, step))
        start = (first + pad) // step
        return slice(first, size, step), slice(start, start + count)

    return (axis(a, geo.pads[0][0], geo.stride[0], xshape[2]), axis(b, geo.pads[1][0], geo.stride[1], xshape[3]))


def _tap_runs(kshape: tuple[int, ...], geo: _Geometry, width: int) -> list[tuple[int, int, int]]:
    """(phase row a, phase column b, start of the run in that phase) for each tap, in (i, j) order."""
    (sh, sw), (dh, dw) = geo.stride, geo.dilation
    return [
        ((i * dh) % sh, (j * dw) % sw, (i * dh) // sh * width + (j * dw) // sw)
        for i in range(kshape[0])
        for j in range(kshape[1])
    ]


def _im2col(x: NDArray, kshape: tuple[int, ...], geo: _Geometry, groups: int, ones_row: bool) -> NDArray:
    """Copy receptive fields into the (G, C/G*kh*kw [+1], N*L) matrices conv2d's product wants.

    Column n*L + q of a group's matrix holds the receptive field of image n at position q of
    the runs (see above); rows go channel, kernel row, kernel column, as weight's do. With
    `ones_row`, each matrix gets a last row of ones, for the bias.
    """
    n, c = x.shape[:2]
    phases = _phases(x, geo)
    width = _phase_width(x.shape, geo)
    length = _run_length(geo, width)
    rows = c // groups * kshape[0] * kshape[1]
    cols = np.empty((groups, rows + ones_row, n * length), dtype=x.dtype)
    if ones_row:
        cols[:, rows] = 1
    # (G, C/G, kh, kw, N, L): the runs land where the matrix wants them, in one copy per tap.
    taps = cols[:, :rows].reshape(groups, c // groups, kshape[0] * kshape[1], n, length)
    for t, (a, b, start) in enumerate(_tap_runs(kshape, geo, width)):
        run = phases[a, b, :, :, start : start + length]  # (N, C, L)
        taps[:, :, t] = run.reshape(n, groups, c // groups, length).transpose(1, 2, 0, 3)
    return cols


def _col2im(grad_cols: NDArray, xshape: tuple[int, ...], kshape: tuple[int, ...], geo: _Geometry) -> NDArray:
    """Adjoint of `_im2col`: add each column back onto the pixels it was copied from."""
    n, c = xshape[:2]
    sh, sw = geo.stride
    width = _phase_width(xshape, geo)
    length = _run_length(geo, width)
    hq = -(-(xshape[2] + sum(geo.pads[0])) // sh)
    phases = np.zeros((sh, sw, n, c, hq * width), dtype=grad_cols.dtype)
    taps = grad_cols.reshape(c, kshape[0] * kshape[1], n, length)
    for t, (a, b, start) in enumerate(_tap_runs(kshape, geo, width)):
        phases[a, b, :, :, start : start + length] += taps[:, t].transpose(1, 0, 2)
    phases = phases.reshape(sh, sw, n, c, hq, width)
    grad_input = np.empty(xshape, dtype=grad_cols.dtype)
    for a in range(sh):
        for b in range(sw):
            rows, columns = _phase_slices(a, b, xshape, geo)
            grad_input[:, :, rows[0], columns[0]] = phases[a, b, :, :, rows[1], columns[1]]
    return grad_input


def _product_operands(
    x: NDArray, weight: NDArray, bias: NDArray | None, geo: _Geometry, groups: int
) -> tuple[NDArray, NDArray]:
    """conv2d's two factors: filters (G, O/G, K) and im2col's columns (G, K, N*L).

    A bias rides in the product: one more column of the filters, times a row of ones
    (cheaper than adding it to the whole output afterwards).
    """
    filters = _grouped_weight(weight, groups)
    cols = _im2col(x, weight.shape[2:], geo, groups, ones_row=bias is not None)
    if bias is not None:
        filters = np.concatenate([filters, bias.reshape(groups, -1, 1)], axis=2)
    return filters, cols


def _output_view(product: NDArray, xshape: tuple[int, ...], geo: _Geometry) -> NDArray:
    """The (N, O, OH, OW) view of a product laid out (G, O/G, N*L), skipping the runs' extra columns: no copy."""
    width = _phase_width(xshape, geo)
    length, item = _run_length(geo, width), product.itemsize
    groups, per_group, columns = product.shape
    return np.ndarray(
        (xshape[0], groups * per_group, *geo.out),
        product.dtype,
        buffer=product,
        strides=(length * item, columns * item, width * item, item),
    )


def _grouped_weight(weight: NDArray, groups: int) -> NDArray:
    # Sizes spelt out, not -1: reshape cannot infer an axis of an empty array (out_channels=0).
    return weight.reshape(groups, weight.shape[0] // groups, int(np.prod(weight.shape[1:])))  # (G, O/G, C/G*kh*kw)
