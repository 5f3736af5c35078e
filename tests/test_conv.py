"""cnnlesson.conv against torch.nn.functional and autograd, the lesson's examples and bad inputs."""

from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlesson import conv
from cnnlesson.conv import avg_pool2d, conv2d, conv2d_backward, conv2d_numpy, max_pool2d, output_size

# Relative tolerance per dtype; the absolute tolerance is this times the magnitude the result
# could reach (the same computation on absolute values), so near-cancelling sums are fair.
TOL = {np.float32: 1e-5, np.float64: 1e-10}
# torch warns that 'same' with an even kernel pads a copy of the input; that is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

small = st.integers(1, 3)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Run torch's reference ops on one thread: for these tiny tensors a second thread only adds
    synchronisation, which on a busy 2-core machine made each call up to 100x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


pairs = st.tuples(small, small)


def assert_close(actual, expected, scale, dtype):
    assert actual.dtype == dtype, f"dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=TOL[dtype], atol=TOL[dtype] * float(scale) + 1e-300)


def min_input(kernel, dilation, pad_total):
    """Smallest input length that leaves an output of at least 1."""
    return max(1, dilation * (kernel - 1) + 1 - pad_total)


@st.composite
def conv_cases(draw):
    """A random, valid conv2d configuration, sized small enough to keep the file fast."""
    groups = draw(small)
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding = draw(
        st.one_of(
            st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)), st.sampled_from(["same", "valid"])
        )
    )
    stride = 1 if padding == "same" else draw(st.one_of(small, pairs))
    dilation = draw(st.one_of(small, pairs))
    dil = (dilation, dilation) if isinstance(dilation, int) else dilation
    if isinstance(padding, str):
        pad_total = [d * (k - 1) for d, k in zip(dil, kernel, strict=True)] if padding == "same" else [0, 0]
    else:
        pad_total = [2 * p for p in ((padding, padding) if isinstance(padding, int) else padding)]
    hw = [min_input(k, d, p) + draw(st.integers(0, 6)) for k, d, p in zip(kernel, dil, pad_total, strict=True)]
    return dict(
        n=draw(small),
        cin=groups * draw(small),
        cout=groups * draw(small),
        hw=hw,
        kernel=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=draw(st.booleans()),
        dtype=draw(st.sampled_from([np.float32, np.float64])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def make_arrays(case):
    rng = np.random.default_rng(case["seed"])
    dtype = case["dtype"]
    x = rng.standard_normal((case["n"], case["cin"], *case["hw"])).astype(dtype)
    w = rng.standard_normal((case["cout"], case["cin"] // case["groups"], *case["kernel"])).astype(dtype)
    b = rng.standard_normal(case["cout"]).astype(dtype) if case["bias"] else None
    return x, w, b


def hyper(case):
    return {k: case[k] for k in ("stride", "padding", "dilation", "groups")}


def torch_conv(x, w, b, **kw):
    return F.conv2d(torch.from_numpy(x), torch.from_numpy(w), None if b is None else torch.from_numpy(b), **kw)


@settings(max_examples=600, deadline=None)
@given(conv_cases())
def test_conv2d_matches_torch(case):
    x, w, b = make_arrays(case)
    expected = torch_conv(x, w, b, **hyper(case)).numpy()
    scale = torch_conv(np.abs(x), np.abs(w), None if b is None else np.abs(b), **hyper(case)).max()
    assert_close(conv2d(x, w, b, **hyper(case)), expected, scale, case["dtype"])


@pytest.mark.parametrize(
    "shape, filters, kernel, stride, padding",
    [
        ((64, 1, 28, 28), 32, 3, 1, 1),  # MNISTNet's first layer
        ((16, 3, 32, 32), 64, 3, 1, 1),  # CIFAR10Net's first layer
        ((256, 16, 8, 8), 32, 1, 1, 0),  # 1x1: the input is its own column matrix
        ((8, 16, 8, 8), 8, 1, 2, 1),  # 1x1 with stride and padding
        ((8, 32, 14, 14), 64, 3, 2, 1),  # stride 2: four stride phases
        ((4, 6, 15, 17), 12, 3, 3, 2),  # stride 3 on sides no multiple of it
    ],
)
def test_conv2d_on_layer_sizes_matches_torch(shape, filters, kernel, stride, padding):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    w = rng.standard_normal((filters, shape[1], kernel, kernel), dtype=np.float32)
    b = rng.standard_normal(filters, dtype=np.float32)
    expected = torch_conv(x, w, b, stride=stride, padding=padding).numpy()
    scale = torch_conv(np.abs(x), np.abs(w), np.abs(b), stride=stride, padding=padding).max()
    actual = conv2d(x, w, b, stride=stride, padding=padding)
    assert_close(actual, expected, scale, np.float32)
    # A view of the product, not copied into NCHW order: the next layer reads it as it is.
    w2 = rng.standard_normal((filters, filters, kernel, kernel), dtype=np.float32)
    again = torch_conv(np.ascontiguousarray(actual), w2, None, padding=padding).numpy()
    scale2 = torch_conv(np.abs(actual), np.abs(w2), None, padding=padding).max()
    assert_close(conv2d(actual, w2, padding=padding), again, scale2, np.float32)


@settings(max_examples=500, deadline=None)
@given(conv_cases())
def test_conv2d_backward_matches_autograd(case):
    x, w, _ = make_arrays(case)
    out_shape = torch_conv(x, w, None, **hyper(case)).shape
    grad_out = np.random.default_rng(case["seed"] + 1).standard_normal(out_shape).astype(case["dtype"])

    def autograd(x, w, g):
        xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        bt = torch.zeros(w.shape[0], dtype=wt.dtype, requires_grad=True)
        F.conv2d(xt, wt, bt, **hyper(case)).backward(torch.from_numpy(g))
        return xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()

    expected = autograd(x, w, grad_out)
    bounds = autograd(np.abs(x), np.abs(w), np.abs(grad_out))  # how large each gradient could get
    for got, want, bound in zip(conv2d_backward(grad_out, x, w, **hyper(case)), expected, bounds, strict=True):
        assert_close(got, want, bound.max(), case["dtype"])


@st.composite
def pool_cases(draw):
    kernel = draw(st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4))))
    kpair = (kernel, kernel) if isinstance(kernel, int) else kernel
    padding = draw(st.one_of(st.just(0), st.tuples(*[st.integers(0, k // 2) for k in kpair])))
    stride = draw(st.one_of(st.none(), small, pairs))
    ppair = (padding, padding) if isinstance(padding, int) else padding
    hw = [min_input(k, 1, 2 * p) + draw(st.integers(0, 7)) for k, p in zip(kpair, ppair, strict=True)]
    return dict(
        shape=(draw(small), draw(small), *hw),
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        dtype=draw(st.sampled_from([np.float32, np.float64])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@pytest.mark.parametrize("cache_bytes", [2**18, 1], ids=["whole batch", "image by image"])
@pytest.mark.parametrize("ours, theirs", [(max_pool2d, F.max_pool2d), (avg_pool2d, F.avg_pool2d)])
@settings(max_examples=100, deadline=None)
@given(case=pool_cases())
def test_pooling_matches_torch(ours, theirs, cache_bytes, case):
    x = np.random.default_rng(case["seed"]).standard_normal(case["shape"]).astype(case["dtype"])
    kw = {k: case[k] for k in ("kernel_size", "stride", "padding")}
    with mock.patch.object(conv, "_CACHE_BYTES", cache_bytes):  # pooled a few images at a time
        assert_close(ours(x, **kw), theirs(torch.from_numpy(x), **kw).numpy(), np.abs(x).max(), case["dtype"])


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 40),
    kernel=st.integers(1, 7),
    stride=st.integers(1, 4),
    padding=st.integers(0, 3),
    dilation=st.integers(1, 3),
)
def test_output_size_matches_torch_shapes(n, kernel, stride, padding, dilation):
    x, w = torch.zeros(1, 1, n, 1), torch.zeros(1, 1, kernel, 1)
    if dilation * (kernel - 1) + 1 > n + 2 * padding:
        with pytest.raises(RuntimeError):  # torch refuses too; we raise ValueError
            F.conv2d(x, w, stride=stride, padding=(padding, 0), dilation=dilation)
        with pytest.raises(ValueError, match="kernel spans"):
            output_size(n, kernel, stride, padding, dilation)
    else:
        actual = F.conv2d(x, w, stride=stride, padding=(padding, 0), dilation=dilation).shape[2]
        assert output_size(n, kernel, stride, padding, dilation) == actual


def test_output_size_lesson_examples():
    assert output_size(32, 3, padding=1, stride=1) == 32  # the lesson's worked example
    assert output_size(32, 5) == 28
    assert output_size(32, 3, stride=2, padding=1) == 16  # (32 - 3 + 2) / 2 + 1 = 16.5, floored
    assert output_size(7, 3, dilation=2) == 3


@pytest.mark.parametrize("seed", range(20))
def test_conv2d_numpy_matches_conv2d_on_one_image(seed):
    rng = np.random.default_rng(seed)
    image = rng.standard_normal(tuple(rng.integers(4, 12, size=2)))
    kernel = rng.standard_normal(tuple(rng.integers(1, 4, size=2)))
    batched = conv2d(image[None, None], kernel[None, None])[0, 0]
    np.testing.assert_allclose(conv2d_numpy(image, kernel), batched, rtol=1e-12, atol=1e-12)


def test_lesson_3x4_example():
    image = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 0, 1, 2]])  # the lesson's section 1 input
    kernel = np.array([[1, 0], [0, 1]])  # adds each pixel to its lower-right neighbour
    expected = [[7, 9, 11], [5, 7, 9]]
    np.testing.assert_array_equal(conv2d_numpy(image, kernel), expected)
    out = conv2d(image[None, None], kernel[None, None])
    assert out.dtype == np.float64  # integers are promoted
    np.testing.assert_array_equal(out[0, 0], expected)


def test_sobel_x_finds_a_vertical_edge():
    image = np.zeros((6, 6))
    image[:, 3:] = 1.0  # dark left half, bright right half: an edge between columns 2 and 3
    sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=float)
    out = conv2d_numpy(image, sobel_x)
    np.testing.assert_array_equal(out[:, [1, 2]], 4.0)  # windows straddling the edge respond
    np.testing.assert_array_equal(out[:, [0, 3]], 0.0)  # flat windows give nothing
    np.testing.assert_array_equal(conv2d(image[None, None], sobel_x[None, None])[0, 0], out)


def test_same_padding_puts_the_extra_zero_bottom_right():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    top_left = np.zeros((1, 1, 2, 2))
    top_left[0, 0, 0, 0] = 1.0  # output[i, j] = padded[i, j], so no padding may come first
    np.testing.assert_array_equal(conv2d(x, top_left, padding="same"), x)


def test_dtype_promotion():
    rng = np.random.default_rng(0)
    x32, w32 = rng.standard_normal((1, 2, 5, 5), dtype=np.float32), rng.standard_normal((3, 2, 3, 3), dtype=np.float32)
    assert conv2d(x32, w32).dtype == np.float32
    assert conv2d(x32, w32.astype(np.float64)).dtype == np.float64
    assert conv2d(x32, w32, np.zeros(3, dtype=np.int64)).dtype == np.float64
    assert avg_pool2d(np.ones((1, 1, 4, 4), dtype=np.int32), 2).dtype == np.float64
    for dtype in (np.int32, np.uint8, np.float16, np.bool_):  # a maximum is one of its inputs: no promotion
        assert max_pool2d(np.ones((1, 1, 4, 4), dtype=dtype), 2, padding=1).dtype == dtype
    assert all(g.dtype == np.float32 for g in conv2d_backward(np.ones((1, 3, 3, 3), np.float32), x32, w32))


def _views(a):
    """The same values as `a`, held in memory five ways (all but the read-only one not C-contiguous)."""
    big = np.zeros((a.shape[0], a.shape[1], 2 * a.shape[2], a.shape[3] + 3), a.dtype)
    big[:, :, ::2, 2:-1] = a
    readonly = a.copy()
    readonly.flags.writeable = False
    return {
        "strided": big[:, :, ::2, 2:-1],
        "channels-last": np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2),
        "negative": np.flip(np.flip(a, 3).copy(), 3),
        "fortran": np.asfortranarray(a),
        "read-only": readonly,
    }


@pytest.mark.parametrize("layout", ["strided", "channels-last", "negative", "fortran", "read-only"])
def test_any_memory_layout_gives_torchs_answer(layout):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 9, 8))
    w = rng.standard_normal((6, 2, 3, 2))
    b = rng.standard_normal(6)
    kw = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    xv, wv = _views(x)[layout], _views(w)[layout]
    assert not xv.flags.c_contiguous or layout == "read-only"
    expected = torch_conv(x, w, b, **kw).numpy()
    np.testing.assert_allclose(conv2d(xv, wv, b, **kw), expected, rtol=1e-10, atol=1e-10)
    grad = rng.standard_normal(expected.shape)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    F.conv2d(xt, wt, **kw).backward(torch.from_numpy(grad))
    got = conv2d_backward(_views(grad)[layout], xv, wv, **kw)
    for mine, other in zip(got, (xt.grad.numpy(), wt.grad.numpy(), grad.sum(axis=(0, 2, 3))), strict=True):
        np.testing.assert_allclose(mine, other, rtol=1e-10, atol=1e-10)
    for pool, theirs in ((max_pool2d, F.max_pool2d), (avg_pool2d, F.avg_pool2d)):
        np.testing.assert_allclose(
            pool(xv, 3, stride=2, padding=1), theirs(torch.from_numpy(x), 3, 2, 1).numpy(), rtol=1e-12
        )


def test_max_pool2d_returns_one_of_its_inputs_even_above_2_to_the_53():
    # float64 has 53 bits of mantissa: 2**53 + 1 would come back as 2**53, a value not in x.
    big = np.array([2**53 + 1, 2**62 + 1, -(2**63), 2**63 - 1], dtype=np.int64).reshape(1, 1, 2, 2)
    assert max_pool2d(big, 1).tolist() == big.tolist()
    assert max_pool2d(big, 2).item() == 2**63 - 1
    assert max_pool2d(big[..., :1], (2, 1)).item() == 2**53 + 1
    assert max_pool2d(-big[..., :1, :1] - 1, 3, stride=1, padding=1).item() == -(2**53) - 2  # padding never wins
    np.testing.assert_array_equal(max_pool2d(np.array([[[[True, False], [False, False]]]]), 2), [[[[True]]]])


def test_output_size_computes_in_python_ints():
    # np.int8 arithmetic would wrap: 100 + 2*100 overflows int8 and gave 42.
    assert output_size(np.int8(100), 3, 1, np.int8(100), 1) == 298
    assert output_size(np.int16(32000), np.int16(3), padding=np.int16(32000)) == 95998
    assert type(output_size(np.int64(8), np.int64(3))) is int


class Elementwise(np.ndarray):
    """An ndarray subclass whose * does something else (here: always zero)."""

    def __mul__(self, other):
        return np.zeros(np.broadcast_shapes(self.shape, np.shape(other)))

    def __matmul__(self, other):
        return np.zeros(1)


def test_ndarray_subclasses_are_read_as_plain_arrays():
    image, kernel = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 0, 1, 2]]), np.array([[1, 0], [0, 1]])
    expected = [[7, 9, 11], [5, 7, 9]]
    # np.matrix's * is a matrix product: region * kernel would not multiply element-wise.
    out = conv2d_numpy(np.matrix(image), np.matrix(kernel))
    assert type(out) is np.ndarray
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(conv2d_numpy(image.view(Elementwise), kernel.view(Elementwise)), expected)
    x, w = image[None, None].view(Elementwise), kernel[None, None].view(Elementwise)
    for result in (
        conv2d(x, w),
        *conv2d_backward(np.ones((1, 1, 2, 3)).view(Elementwise), x, w),
        max_pool2d(x, 2),
        avg_pool2d(x, 2),
    ):
        assert type(result) is np.ndarray
    np.testing.assert_array_equal(conv2d(x, w)[0, 0], expected)
    np.testing.assert_array_equal(max_pool2d(x, 2)[0, 0], [[6, 8]])
    with pytest.raises(TypeError, match="image must be a plain numpy.ndarray, got a masked array"):
        conv2d_numpy(np.ma.masked_array(image, mask=image > 5), kernel)
    with pytest.raises(TypeError, match="x must be a plain numpy.ndarray, got a masked array"):
        max_pool2d(np.ma.masked_array(image[None, None]), 2)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.float16, np.int16])
def test_conv2d_numpy_computes_in_float64_whatever_the_input_dtype(dtype):
    # 200 * 200 wraps around in uint8 and int16, overflows int8's range and float16's largest value (65504).
    value = 100 if dtype == np.int8 else 200
    image, kernel = np.full((3, 3), value, dtype), np.full((2, 2), value, dtype)
    out = conv2d_numpy(image, kernel)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, np.full((2, 2), 4.0 * value * value))


def test_an_empty_batch_gives_an_empty_result_like_torch():
    x, w = np.zeros((0, 3, 8, 8), np.float32), np.ones((4, 3, 3, 3), np.float32)
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).shape
    out = conv2d(x, w, padding=1)
    assert out.shape == tuple(expected) == (0, 4, 8, 8)
    grads = conv2d_backward(np.zeros(out.shape, np.float32), x, w, padding=1)
    assert [g.shape for g in grads] == [x.shape, w.shape, (4,)]
    assert not grads[1].any() and not grads[2].any()


X, W = np.zeros((2, 3, 8, 8)), np.zeros((4, 3, 3, 3))
G = np.zeros((2, 4, 6, 6))  # conv2d(X, W)'s output shape
BAD_INPUTS = [
    # (function, args, kwargs, exception, message pattern that names the argument)
    (conv2d, (np.zeros((8, 8)), W), {}, ValueError, r"x must be 4-D.*conv2d_numpy"),
    (conv2d, (np.zeros((3, 8, 8)), W), {}, ValueError, r"x must be 4-D, got a 3-D.*conv2d_numpy"),
    (conv2d, (X.tolist(), W), {}, TypeError, r"x must be a numpy.ndarray, got builtins.list"),
    (conv2d, (torch.zeros(2, 3, 8, 8), W), {}, TypeError, r"x must be a numpy.ndarray, got torch.Tensor"),
    (conv2d, (X.astype(complex), W), {}, TypeError, r"x must have a real numeric dtype"),
    (conv2d, (X, np.zeros((4, 3, 3))), {}, ValueError, r"weight must be 4-D"),
    (conv2d, (X, np.zeros((4, 2, 3, 3))), {}, ValueError, r"x has 3 channels.*expects in_channels = 2"),
    (conv2d, (X, np.zeros((4, 1, 3, 3))), {"groups": 2}, ValueError, r"x has 3 channels.*groups=2"),
    (conv2d, (X, np.zeros((3, 1, 3, 3))), {"groups": 2}, ValueError, r"groups=2 must divide weight's out_ch"),
    (conv2d, (X, W), {"groups": 0}, ValueError, r"groups: expected an int >= 1, got 0"),
    (conv2d, (X, W), {"groups": 1.0}, TypeError, r"groups: expected an int, got 1.0 of type float"),
    (conv2d, (X, W), {"stride": 0}, ValueError, r"stride: expected an int >= 1, got 0"),
    (conv2d, (X, W), {"stride": (1, 0)}, ValueError, r"stride: expected an int >= 1, got 0"),
    (conv2d, (X, W), {"stride": (1, 1, 1)}, ValueError, r"stride: expected an int or a pair of ints"),
    (conv2d, (X, W), {"stride": 1.5}, TypeError, r"stride: expected an int, got 1.5"),
    (conv2d, (X, W), {"dilation": 0}, ValueError, r"dilation: expected an int >= 1, got 0"),
    (conv2d, (X, W), {"padding": -1}, ValueError, r"padding: expected an int >= 0, got -1"),
    (conv2d, (X, W), {"padding": "full"}, ValueError, r"padding: expected an int, a pair of ints, 'same'"),
    (conv2d, (X, W), {"padding": "same", "stride": 2}, ValueError, r"padding='same' requires stride=1"),
    (conv2d, (X, np.zeros((4, 3, 11, 3))), {"padding": 1}, ValueError, r"weight spans 11 .* padded input has only 10"),
    (conv2d, (X, W), {"dilation": 4}, ValueError, r"weight spans 9 .*dilation 4"),
    (conv2d, (X, W, np.zeros(1)), {}, ValueError, r"bias must have shape \(4,\).*got \(1,\)"),
    (conv2d, (X, W, np.zeros((4, 1))), {}, ValueError, r"bias must be 1-D"),
    (conv2d, (X, W, [0.0] * 4), {}, TypeError, r"bias must be a numpy.ndarray"),
    (conv2d_backward, (G[:, :3], X, W), {}, ValueError, r"grad_output must have the output shape \(2, 4, 6, 6\)"),
    (conv2d_backward, (G.tolist(), X, W), {}, TypeError, r"grad_output must be a numpy.ndarray"),
    (conv2d_backward, (G, X[0], W), {}, ValueError, r"x must be 4-D"),
    (conv2d_backward, (G, X, W), {"stride": 0}, ValueError, r"stride: expected an int >= 1"),
    (conv2d_backward, (G, X, W), {"groups": 2}, ValueError, r"x has 3 channels.*groups=2"),
    (output_size, (0, 3), {}, ValueError, r"n: expected an int >= 1, got 0"),
    (output_size, (8, 3.0), {}, TypeError, r"kernel: expected an int, got 3.0"),
    (output_size, (True, 1), {}, TypeError, r"n: expected an int, got True"),
    (output_size, (8, 3), {"stride": 0}, ValueError, r"stride: expected an int >= 1"),
    (output_size, (8, 3), {"dilation": 0}, ValueError, r"dilation: expected an int >= 1"),
    (output_size, (8, 3), {"padding": -1}, ValueError, r"padding: expected an int >= 0"),
    (output_size, (3, 5), {}, ValueError, r"kernel spans 5.*output size would be < 1"),
    (conv2d_numpy, (np.zeros((1, 4, 4)), np.zeros((2, 2))), {}, ValueError, r"image must be 2-D, got a 3-D"),
    (conv2d_numpy, (np.zeros((4, 4)), [[1, 0], [0, 1]]), {}, TypeError, r"kernel must be a numpy.ndarray"),
    (conv2d_numpy, (np.zeros((4, 4)), np.zeros((5, 2))), {}, ValueError, r"kernel of shape \(5, 2\) is larger"),
    (
        conv2d_numpy,
        (np.zeros((4, 4)), np.zeros((0, 0))),
        {},
        ValueError,
        r"kernel must be at least 1x1, got shape \(0, 0\)",
    ),
    (
        conv2d,
        (X, np.zeros((4, 3, 0, 0))),
        {},
        ValueError,
        r"weight's kernel must be at least 1x1, got weight of shape \(4, 3, 0, 0\)",
    ),
    (conv2d, (X, np.zeros((0, 3, 3, 3))), {}, ValueError, r"weight must hold at least one filter"),
    (conv2d_backward, (G[:, :0], X, np.zeros((0, 3, 3, 3))), {}, ValueError, r"weight must hold at least one filter"),
]
for pool in (max_pool2d, avg_pool2d):
    BAD_INPUTS += [
        (pool, (np.zeros((3, 8, 8)), 2), {}, ValueError, r"x must be 4-D, got a 3-D"),
        (pool, (X.tolist(), 2), {}, TypeError, r"x must be a numpy.ndarray"),
        (pool, (X, 0), {}, ValueError, r"kernel_size: expected an int >= 1, got 0"),
        (pool, (X, 2), {"stride": 0}, ValueError, r"stride: expected an int >= 1, got 0"),
        (pool, (X, 2), {"padding": -1}, ValueError, r"padding: expected an int >= 0, got -1"),
        (pool, (X, 3), {"padding": 2}, ValueError, r"padding=\(2, 2\) must be at most half of kernel_size"),
        (pool, (X, (9, 2)), {}, ValueError, r"kernel_size spans 9 .* padded input has only 8"),
    ]


@pytest.mark.parametrize(
    "fn, args, kwargs, error, message", BAD_INPUTS, ids=[f"{case[0].__name__}-{i}" for i, case in enumerate(BAD_INPUTS)]
)
def test_bad_inputs_raise_clear_errors(fn, args, kwargs, error, message):
    with pytest.raises(error, match=message):
        fn(*args, **kwargs)


# --- the convolution page's first example is the lesson's, and its verbatim loop ---------

import re  # noqa: E402

from lesson_code import DOCS, page_blocks, page_definition  # noqa: E402

# The lesson's section 1 (../shared/lesson/07_CNN_Basics.txt): three rows of four, and its 2x2 filter.
LESSON_INPUT = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 0, 1, 2]]
LESSON_FILTER = [[1, 0], [0, 1]]
LESSON_OUTPUT = [[7, 9, 11], [5, 7, 9]]


def test_page_first_example_is_the_lessons_3x4_input():
    # The page opens with a dense layer beside a convolution; the lesson's example is the first block that defines `image`.
    first = next(block for block in page_blocks("convolution.md") if "image = np.array" in block.code)
    namespace = {"__name__": "__main__"}
    exec(compile(first.code, f"<convolution.md:{first.lineno}>", "exec"), namespace)
    np.testing.assert_array_equal(namespace["image"], LESSON_INPUT)
    np.testing.assert_array_equal(namespace["kernel"], LESSON_FILTER)
    output = conv2d_numpy(namespace["image"], namespace["kernel"])
    assert output.shape == (2, 3)  # three rows, four columns: 2x3, not square
    np.testing.assert_array_equal(output, LESSON_OUTPUT)
    # The output the page prints under the block is the lesson's answer too.
    assert first.expected_output.strip().endswith("[[ 7.  9. 11.]\n [ 5.  7.  9.]]")
    # The matrix typeset above the block is the same 3x4 input.
    text = (DOCS / "convolution.md").read_text(encoding="utf-8")
    typeset = re.search(r"\\underbrace\{\\begin\{bmatrix\}(.*?)\\end\{bmatrix\}\}_\{\\text\{Input image\}\}", text)
    rows = [[int(v) for v in row.split("&")] for row in typeset.group(1).split(r"\\")]
    assert rows == LESSON_INPUT


def test_page_conv2d_numpy_behaves_like_the_package(digit_roots):
    """The lesson's loop as the page prints it, against cnnlesson.conv on digits (real ones too, where
    ../shared has them) and random images."""
    from torchvision import datasets

    page_conv = page_definition("convolution.md", "conv2d_numpy")
    assert page_conv is not conv2d_numpy and page_conv.__module__ == "docs.convolution.md"
    rng = np.random.default_rng(11)
    sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    cases = [(np.array(LESSON_INPUT), np.array(LESSON_FILTER)), (np.array(LESSON_INPUT), sobel_x[:2])]
    for root in digit_roots:
        digits = datasets.MNIST(root, train=True)  # digits in MNIST's own file format, read by torchvision
        for k in range(3):
            digit = np.asarray(digits[k][0], dtype=np.float64)
            cases += [(digit, sobel_x), (digit, sobel_x.T), (digit, rng.standard_normal((5, 5)))]
    cases += [
        (rng.standard_normal((h, w)), rng.standard_normal((kh, kw)))
        for h, w, kh, kw in [(28, 28, 3, 3), (7, 11, 2, 5), (5, 5, 5, 5), (9, 4, 1, 1)]
    ]
    for image, kernel in cases:
        np.testing.assert_array_equal(page_conv(image, kernel), conv2d_numpy(image, kernel))
        np.testing.assert_allclose(
            page_conv(image, kernel), conv2d(image[None, None], kernel[None, None])[0, 0], rtol=1e-12, atol=1e-9
        )


# --- channels come right after the convolution operation, as in d2l, and their formula lives on one page -------


def test_channels_come_before_pooling_and_their_formula_lives_on_one_page():
    from mkdocs.utils import yaml_load

    nav = yaml_load((DOCS.parent / "mkdocs.yml").read_text("utf-8"))["nav"]
    lesson = [
        next(iter(item.values())) for item in next(i["Lesson"] for i in nav if isinstance(i, dict) and "Lesson" in i)
    ]
    # Reading order: the lesson's pages in nav order, each page's headings in page order.
    headings = [
        (page, line)
        for page in lesson
        for line in (DOCS / page).read_text("utf-8").splitlines()
        if line.startswith("## ")
    ]
    order = [heading for _, heading in headings]
    assert order.index("## Channels") == order.index("## 1. Convolution operation") + 1, order
    assert order.index("## Channels") < order.index("## Pooling"), order
    formula = r"W[o, c, m, n]"
    holders = [path.name for path in sorted(DOCS.rglob("*.md")) if formula in path.read_text("utf-8")]
    assert holders == ["convolution.md"], f"the multi-channel formula is written on {holders}"
