"""Convolution and pooling in plain NumPy (section 7 of the lesson).

`conv2d_numpy` is the lesson's double loop, kept as written because it shows
what a convolution *is*: slide the kernel, multiply element-wise, sum.
`conv2d`, `conv2d_backward`, `max_pool2d` and `avg_pool2d` compute the same
things as `torch.nn.functional` on NCHW batches, but vectorised with the
*im2col* trick: copy every receptive field into a column once, then a single
matrix multiplication does all the multiply-and-sum work in BLAS.

Dtypes: results are float32 when every array argument is float32 and float64
otherwise (integer, bool and float16 inputs are promoted to float64).
Complex and object arrays are rejected with a `TypeError`.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence, Union

import numpy as np
from numpy.typing import NDArray

IntOrPair = Union[int, Sequence[int]]
Padding = Union[int, Sequence[int], str]


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
    for name, value, low in (("n", n, 1), ("kernel", kernel, 1), ("stride", stride, 1),
                             ("padding", padding, 0), ("dilation", dilation, 1)):
        _check_int(name, value, low)
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
    _check_array("image", image, 2)
    _check_array("kernel", kernel, 2)
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
            region = image[i:i+kh, j:j+kw]
            # Element-wise multiplication and sum
            output[i, j] = np.sum(region * kernel)
    return output


def conv2d(x: NDArray, weight: NDArray, bias: NDArray | None = None, stride: IntOrPair = 1,
           padding: Padding = 0, dilation: IntOrPair = 1, groups: int = 1) -> NDArray[np.floating]:
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
        Array of shape ``(N, out_channels, OH, OW)``, see `output_size`.

    Raises:
        TypeError: If an array argument is not a numpy.ndarray or has a non-real dtype,
            or a size argument is not an int.
        ValueError: If shapes, channels, groups or hyper-parameters do not fit together.
    """
    x, weight, bias = _conv_arrays(x, weight, bias, groups)
    geo = _conv_geometry(x.shape, weight.shape, stride, padding, dilation)
    n, out_channels, kshape = x.shape[0], weight.shape[0], weight.shape[2:]
    filters = _grouped_weight(weight, groups)  # (G, O/G, K)
    if filters[0].size * geo.out[0] * geo.out[1] < _SMALL_PRODUCT:
        # A small product per image (a 1x1 kernel, a single input channel): multiply image by
        # image. NumPy's batched matmul writes (N, O, OH*OW), already NCHW, and BLAS runs each
        # product on one thread; the batch-wide product below would need a transposed copy of
        # the output, which costs more than such a thin product itself. A 1x1 kernel with
        # stride 1 and no padding needs no im2col at all: each image already is its matrix.
        plain = kshape == (1, 1) and geo.stride == (1, 1) and geo.pads == ((0, 0), (0, 0))
        cols = x if plain else _im2col(x, kshape, geo, fill=0.0, batch_first=True)
        product = np.matmul(filters, cols.reshape(n, groups, filters.shape[2], geo.out[0] * geo.out[1]))
        if bias is not None:
            product += bias.reshape(groups, -1, 1)
        return product.reshape(n, out_channels, *geo.out)
    cols = _im2col(x, kshape, geo, fill=0.0)
    # One matrix product per group for the whole batch: (O/G, K) @ (K, N*OH*OW).
    product = np.matmul(filters, _as_matrix(cols, groups))
    if bias is not None:
        product += bias.reshape(groups, -1, 1)  # while the layout is still (O, everything else)
    # (O, N, OH, OW) -> (N, O, OH, OW), copied so that, like torch, we return a C-contiguous array.
    return np.ascontiguousarray(product.reshape(out_channels, n, *geo.out).transpose(1, 0, 2, 3))


def conv2d_backward(grad_output: NDArray, x: NDArray, weight: NDArray, stride: IntOrPair = 1,
                    padding: Padding = 0, dilation: IntOrPair = 1,
                    groups: int = 1) -> tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating]]:
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
    n, c = x.shape[:2]
    out_channels, kshape = weight.shape[0], weight.shape[2:]
    expected = (n, out_channels, *geo.out)
    _check_array("grad_output", grad_output, 4)
    if grad_output.shape != expected:
        raise ValueError(f"grad_output must have the output shape {expected}, got {grad_output.shape}")
    grad = grad_output.astype(_result_dtype(x, weight, grad_output), copy=False)
    x, weight = x.astype(grad.dtype, copy=False), weight.astype(grad.dtype, copy=False)

    # The same (channels, batch * positions) matrices as the forward pass, so each product
    # below is again one matmul per group over the whole batch.
    grad_matrix = np.ascontiguousarray(grad.transpose(1, 0, 2, 3)).reshape(groups, out_channels // groups, n * geo.out[0] * geo.out[1])
    cols = _im2col(x, kshape, geo, fill=0.0)
    # dL/dW = sum over batch and positions of grad * receptive field.
    grad_weight = np.matmul(grad_matrix, _as_matrix(cols, groups).swapaxes(-1, -2)).reshape(weight.shape)
    # dL/dcols = W^T grad; each column's gradient then flows back to the pixels it copied.
    grad_cols = np.matmul(_grouped_weight(weight, groups).swapaxes(-1, -2), grad_matrix)
    grad_cols = grad_cols.reshape(c, *kshape, n, *geo.out).transpose(3, 0, 1, 2, 4, 5)
    grad_input = _col2im(grad_cols, x.shape, geo)
    return grad_input, grad_weight, grad.sum(axis=(0, 2, 3))


def max_pool2d(x: NDArray, kernel_size: IntOrPair, stride: IntOrPair | None = None,
               padding: IntOrPair = 0) -> NDArray[np.floating]:
    """Max pooling, like `torch.nn.functional.max_pool2d` (padding counts as -inf).

    Args:
        x: Input batch of shape ``(N, C, H, W)``.
        kernel_size: Int or ``(kh, kw)`` pair.
        stride: Int or pair; defaults to ``kernel_size``.
        padding: Int or pair, at most half of ``kernel_size``.

    Returns:
        Array of shape ``(N, C, OH, OW)``.

    Raises:
        TypeError: If ``x`` is not a numpy.ndarray or a size is not an int.
        ValueError: If ``x`` is not 4-D or the sizes do not fit.
    """
    x, kshape, geo = _pool_setup(x, kernel_size, stride, padding)
    return _im2col(x, kshape, geo, fill=-np.inf).max(axis=(2, 3))


def avg_pool2d(x: NDArray, kernel_size: IntOrPair, stride: IntOrPair | None = None,
               padding: IntOrPair = 0) -> NDArray[np.floating]:
    """Average pooling, like `torch.nn.functional.avg_pool2d` (padded zeros are counted).

    The arguments, the result's shape and the errors are those of `max_pool2d`;
    only the reduction differs: the mean of each window instead of its maximum.
    """
    x, kshape, geo = _pool_setup(x, kernel_size, stride, padding)
    return _im2col(x, kshape, geo, fill=0.0).mean(axis=(2, 3), dtype=x.dtype)


# --- private helpers ---------------------------------------------------------------------


class _Geometry(NamedTuple):
    """Per-axis (height, width) hyper-parameters of one convolution or pooling."""

    stride: tuple[int, int]
    pads: tuple[tuple[int, int], tuple[int, int]]  # (before, after) for height and width
    dilation: tuple[int, int]
    out: tuple[int, int]


def _check_int(name: str, value: object, low: int) -> int:
    # bool is an int subclass, but stride=True is surely a mistake.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _pair(name: str, value: object, low: int) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return _check_int(name, value[0], low), _check_int(name, value[1], low)
    v = _check_int(name, value, low)
    return v, v


def _output_len(n: int, kernel: int, stride: int, pad_total: int, dilation: int, kernel_name: str) -> int:
    span = dilation * (kernel - 1) + 1  # inputs covered by one dilated kernel
    if span > n + pad_total:
        raise ValueError(f"{kernel_name} spans {span} inputs (size {kernel}, dilation {dilation}) but the "
                         f"padded input has only {n + pad_total} (size {n} + padding {pad_total}); "
                         f"the output size would be < 1")
    return (n + pad_total - span) // stride + 1


def _check_array(name: str, value: object, ndim: int, hint: str = "") -> None:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(value).__module__}."
                        f"{type(value).__name__}; pass a numpy.ndarray (e.g. np.asarray(...) or tensor.numpy())")
    if value.dtype.kind not in "biuf":
        raise TypeError(f"{name} must have a real numeric dtype, got {value.dtype}")
    if value.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got a {value.ndim}-D array of shape {value.shape}{hint}")


def _result_dtype(*arrays: NDArray) -> np.dtype:
    # float32 stays float32 (half the memory, twice the BLAS speed); anything else computes in float64.
    return np.dtype(np.float32 if all(a.dtype == np.float32 for a in arrays) else np.float64)


def _conv_arrays(x: object, weight: object, bias: object, groups: object) -> tuple[NDArray, NDArray, NDArray | None]:
    """Validate conv2d's arrays and groups; return them in the common float dtype."""
    _check_array("x", x, 4, hint=" (N, C, H, W); for a single 2-D image use conv2d_numpy(image, kernel)")
    _check_array("weight", weight, 4, hint=" (out_channels, in_channels // groups, kh, kw)")
    groups = _check_int("groups", groups, 1)
    out_channels, per_group = weight.shape[:2]
    if 0 in weight.shape[2:]:
        raise ValueError(f"weight's kernel must be at least 1x1, got weight of shape {weight.shape}")
    if out_channels == 0:  # torch refuses this too; an empty batch (N=0) is fine
        raise ValueError(f"weight must hold at least one filter (out_channels >= 1), got weight of shape {weight.shape}")
    if out_channels % groups:
        raise ValueError(f"groups={groups} must divide weight's out_channels, got weight of shape {weight.shape}")
    if x.shape[1] != per_group * groups:
        raise ValueError(f"x has {x.shape[1]} channels but weight of shape {weight.shape} with groups={groups} "
                         f"expects in_channels = {per_group} * {groups} = {per_group * groups}")
    if bias is not None:
        _check_array("bias", bias, 1)
        if bias.shape != (out_channels,):
            raise ValueError(f"bias must have shape ({out_channels},) (weight's out_channels), got {bias.shape}")
    dtype = _result_dtype(*(a for a in (x, weight, bias) if a is not None))
    return x.astype(dtype, copy=False), weight.astype(dtype, copy=False), bias if bias is None else bias.astype(dtype)


def _conv_geometry(xshape: tuple[int, ...], wshape: tuple[int, ...], stride: object,
                   padding: object, dilation: object) -> _Geometry:
    stride, dilation = _pair("stride", stride, 1), _pair("dilation", dilation, 1)
    if isinstance(padding, str):
        if padding == "valid":
            pads = ((0, 0), (0, 0))
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' requires stride=1, got stride={stride}")
            # Total padding d*(k-1) keeps the size; an odd total puts the extra zero after, like torch.
            totals = [d * (k - 1) for d, k in zip(dilation, wshape[2:])]
            pads = tuple((t // 2, t - t // 2) for t in totals)
        else:
            raise ValueError(f"padding must be an int, a pair of ints, 'same' or 'valid', got {padding!r}")
    else:
        pads = tuple((p, p) for p in _pair("padding", padding, 0))
    out = tuple(_output_len(n, k, s, sum(p), d, "weight")
                for n, k, s, p, d in zip(xshape[2:], wshape[2:], stride, pads, dilation))
    return _Geometry(stride, pads, dilation, out)


def _pool_setup(x: object, kernel_size: object, stride: object,
                padding: object) -> tuple[NDArray, tuple[int, int], _Geometry]:
    """Validate pooling arguments; return x in float, the kernel shape and the geometry."""
    _check_array("x", x, 4, hint=" (N, C, H, W)")
    kshape = _pair("kernel_size", kernel_size, 1)
    stride = kshape if stride is None else _pair("stride", stride, 1)
    pad = _pair("padding", padding, 0)
    if any(2 * p > k for p, k in zip(pad, kshape)):
        raise ValueError(f"padding={pad} must be at most half of kernel_size={kshape} (as in torch)")
    out = tuple(_output_len(n, k, s, 2 * p, 1, "kernel_size") for n, k, s, p in zip(x.shape[2:], kshape, stride, pad))
    geo = _Geometry(stride, tuple((p, p) for p in pad), (1, 1), out)
    return x.astype(_result_dtype(x), copy=False), kshape, geo


# Below this many multiply-adds per image, BLAS computes a product on one thread (OpenBLAS's
# threshold is 65536 * 4), so conv2d's image-by-image products meet no thread hand-off.
_SMALL_PRODUCT = 2**18


def _grouped_weight(weight: NDArray, groups: int) -> NDArray:
    # Sizes spelt out, not -1: reshape cannot infer an axis of an empty array (out_channels=0).
    return weight.reshape(groups, weight.shape[0] // groups, int(np.prod(weight.shape[1:])))  # (G, O/G, C/G*kh*kw)


def _as_matrix(cols: NDArray, groups: int) -> NDArray:
    """View `_im2col`'s columns as (G, C/G*kh*kw, N*OH*OW): free, given their memory order."""
    rows = cols.shape[1] // groups * cols.shape[2] * cols.shape[3]  # spelt out: -1 fails when N=0
    return cols.transpose(1, 2, 3, 0, 4, 5).reshape(groups, rows, cols.shape[0] * cols.shape[4] * cols.shape[5])


def _tap_slices(i: int, j: int, geo: _Geometry) -> tuple[slice, slice]:
    """Rows and columns of the padded input that kernel tap (i, j) reads, one per output pixel."""
    (sh, sw), (dh, dw), (oh, ow) = geo.stride, geo.dilation, geo.out
    return slice(i * dh, i * dh + sh * (oh - 1) + 1, sh), slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)


def _im2col(x: NDArray, kshape: tuple[int, int], geo: _Geometry, fill: float, batch_first: bool = False) -> NDArray:
    """Copy receptive fields into an array indexed (N, C, kh, kw, OH, OW).

    The loop runs over the kh*kw kernel taps only, each copying one strided view of the whole
    batch. In memory the batch axis comes after the kernel axes, so `_as_matrix` gets the
    (C*kh*kw, N*OH*OW) matrix without a copy and conv2d is one big matmul: one large matmul
    per image each pays BLAS's thread hand-off, 30x slower on a busy 2-core machine.
    `batch_first=True` keeps NCHW's order instead, one (C*kh*kw, OH*OW) matrix per image,
    for conv2d's small products.
    """
    n, c, h, w = x.shape
    (top, bottom), (left, right) = geo.pads
    padded = x
    if top or bottom or left or right:
        padded = np.full((n, c, h + top + bottom, w + left + right), fill, dtype=x.dtype)
        padded[:, :, top:top + h, left:left + w] = x
    if batch_first:
        cols = np.empty((n, c, *kshape, *geo.out), dtype=x.dtype)
    else:
        cols = np.empty((c, *kshape, n, *geo.out), dtype=x.dtype).transpose(3, 0, 1, 2, 4, 5)
    for i in range(kshape[0]):
        for j in range(kshape[1]):
            rows, columns = _tap_slices(i, j, geo)
            cols[:, :, i, j] = padded[:, :, rows, columns]
    return cols


def _col2im(cols: NDArray, xshape: tuple[int, ...], geo: _Geometry) -> NDArray:
    """Adjoint of `_im2col`: add each column back onto the pixels it was copied from."""
    n, c, h, w = xshape
    (top, bottom), (left, right) = geo.pads
    padded = np.zeros((n, c, h + top + bottom, w + left + right), dtype=cols.dtype)
    for i in range(cols.shape[2]):
        for j in range(cols.shape[3]):
            rows, columns = _tap_slices(i, j, geo)
            padded[:, :, rows, columns] += cols[:, :, i, j]
    return np.ascontiguousarray(padded[:, :, top:top + h, left:left + w])
