"""Numbers at the edges: NaN and infinities in every reducer and its backward, no
silent overflow for integer and float16 input, 64-bit positions past 2**31
elements, and the size guards.

NaN/inf follow SEMANTICS.md and tests/reference.py: max propagates NaN (a
window holding NaN yields NaN; the gradient goes to the last NaN in window
order, the reference's PyTorch loop), +inf wins, sums propagate NaN and inf
(inf - inf = NaN).  Each kernel path (separable rows, van Herk running maxima,
channels-last direct, argmax, global planes, adaptive bins) is reached
explicitly, since the fuzzers' tiny shapes do not all reach them.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp
import reference as ref
import reference_family as reff
from fastpool import PoolingError

RNG = np.random.default_rng(2024)


def _special(shape, dtype=np.float64, seed=0):
    """Random values with NaN, +inf and -inf scattered; two planes hold a single
    +inf or -inf only (so whole-plane sums meet infinities without NaN too)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    flat = x.reshape(-1)
    n = max(3, flat.size // 25)
    for v in (np.nan, np.inf, -np.inf):
        flat[rng.choice(flat.size, n, replace=False)] = v
    x[0, 0] = rng.standard_normal(shape[2:])
    x[0, 0, 1, 2] = np.inf
    x[0, 1] = rng.standard_normal(shape[2:])
    x[0, 1, 3, 1] = -np.inf
    return x.astype(dtype)


def _cl(a, nd=2):
    return np.ascontiguousarray(ref.to_channels_last(a, nd))


def _cf(a, nd=2):
    return ref.to_channels_first(a, nd)


def _same(actual, expected, what, rtol=1e-12):
    """Equal values, NaN exactly where expected, infinities of the same sign."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, what
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"{what}: NaN positions")
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-12, err_msg=what)


# ----------------------------------------------------------------------------- NaN and inf

CF = (2, 3, 11, 13)
CL = (2, 9, 11, 13)   # channels-first view of a channels-last input with 9 channels (direct path)

# name -> (fastpool call on channels-first data, its layout, reference forward, reference backward)
MAX_PATHS = {
    "separable": (dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), CF, "NCHW"),
    "van Herk": (dict(kernel_size=(5, 6), stride=1, padding=(2, 3)), CF, "NCHW"),
    "dilated": (dict(kernel_size=2, stride=1, padding=1, dilation=2), CF, "NCHW"),
    "channels-last direct": (dict(kernel_size=3, stride=2, padding=1), CL, "NHWC"),
}


@pytest.mark.parametrize("path", sorted(MAX_PATHS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_max_nan_inf_forward_indices_backward(path, dtype):
    kw, shape, layout = MAX_PATHS[path]
    x = _special(shape, dtype, seed=len(path))
    xin = _cl(x) if layout == "NHWC" else x
    back = _cf if layout == "NHWC" else (lambda a: a)
    exp, eidx = ref.max_pool(x, 2, **kw)
    y = fp.max_pool2d(xin, **kw, layout=layout)
    yi, idx = fp.max_pool2d(xin, **kw, layout=layout, return_indices=True)
    _same(back(y), exp, f"{path} values")
    _same(back(yi), exp, f"{path} values with indices")
    np.testing.assert_array_equal(back(idx), eidx)
    g = RNG.standard_normal(exp.shape).astype(dtype)
    gin = _cl(g) if layout == "NHWC" else g
    gx = fp.max_pool2d_backward(gin, xin, **kw, layout=layout)
    _same(back(gx), ref.max_pool_backward(g, x, 2, **kw), f"{path} backward", rtol=1e-3)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_global_and_adaptive_max_nan_inf(layout):
    x = _special(CL, seed=3)
    xin = _cl(x) if layout == "NHWC" else x
    back = _cf if layout == "NHWC" else (lambda a: a)
    exp, eidx = ref.global_max_pool(x)
    _same(back(fp.global_max_pool(xin, layout=layout)), exp, "global max")
    y, i = fp.global_max_pool(xin, layout=layout, return_indices=True)
    _same(back(y), exp, "global max with indices")
    np.testing.assert_array_equal(back(i), eidx)
    g = RNG.standard_normal(exp.shape)
    _same(back(fp.global_max_pool_backward(_cl(g) if layout == "NHWC" else g, xin, layout=layout)),
          ref.global_max_pool_backward(g, x), "global max backward")
    exp, eidx = ref.adaptive_max_pool(x, 2, (4, 5))
    y, i = fp.adaptive_max_pool2d(xin, (4, 5), True, layout=layout)
    _same(back(y), exp, "adaptive max")
    np.testing.assert_array_equal(back(i), eidx)


SUM_PATHS = {
    "avg separable": ("avg", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), CF, "NCHW"),
    "avg channels-last": ("avg", dict(kernel_size=3, stride=1, padding=1), CL, "NHWC"),
    "lp separable": ("lp", dict(kernel_size=3, stride=2, padding=1), CF, "NCHW"),
    "lp channels-last": ("lp", dict(kernel_size=2, stride=1), CL, "NHWC"),
    "global avg": ("global_avg", {}, CF, "NCHW"),
    "global avg cl": ("global_avg", {}, CL, "NHWC"),
    "global lp": ("global_lp", {}, CF, "NCHW"),
    "adaptive avg": ("adaptive_avg", {}, CF, "NCHW"),
}


@pytest.mark.parametrize("path", sorted(SUM_PATHS))
def test_sums_propagate_nan_and_inf(path):
    op, kw, shape, layout = SUM_PATHS[path]
    x = _special(shape, seed=len(path))
    xin = _cl(x) if layout == "NHWC" else x
    back = _cf if layout == "NHWC" else (lambda a: a)
    g = None
    if op == "avg":
        exp = ref.avg_pool(x, 2, **kw)
        y = fp.avg_pool2d(xin, **kw, layout=layout)
        bwd = lambda g: fp.avg_pool2d_backward(g, xin, **kw, layout=layout)  # noqa: E731
        rbwd = lambda g: ref.avg_pool_backward(g, x, 2, **kw)  # noqa: E731
    elif op == "lp":
        exp = ref.lp_pool(x, 2, 2.0, **kw)
        y = fp.lp_pool2d(xin, 2.0, **kw, layout=layout)
        bwd = rbwd = None   # d/dx of a norm holding an infinity is not defined
    elif op == "global_avg":
        exp = ref.global_avg_pool(x)
        y = fp.global_avg_pool(xin, layout=layout)
        bwd = lambda g: fp.global_avg_pool_backward(g, xin, layout=layout)  # noqa: E731
        rbwd = lambda g: ref.global_avg_pool_backward(g, x)  # noqa: E731
    elif op == "global_lp":
        exp = ref.global_lp_pool(x, 2.0)
        y = fp.global_lp_pool(xin, 2.0, layout=layout)
        bwd = rbwd = None
    else:
        exp = ref.adaptive_avg_pool(x, 2, (4, 6))
        y = fp.adaptive_avg_pool2d(xin, (4, 6), layout=layout)
        bwd = lambda g: fp.adaptive_avg_pool2d_backward(g, xin, (4, 6), layout=layout)  # noqa: E731
        rbwd = lambda g: ref.adaptive_avg_pool_backward(g, x, 2, (4, 6))  # noqa: E731
    assert np.isnan(exp).any() and np.isinf(exp).any(), "the data must exercise NaN and inf"
    _same(back(y), exp, f"{path} forward", rtol=1e-9)
    if bwd is not None:
        g = RNG.standard_normal(exp.shape)
        _same(back(bwd(_cl(g) if layout == "NHWC" else g)), rbwd(g), f"{path} backward", rtol=1e-9)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("mode", ["onnx", "torch", "mean"])
def test_lp_backward_nan_propagates_to_its_window(layout, mode):
    x = np.abs(RNG.standard_normal(CL)) + 0.5
    x[0, 1, 4, 4] = np.nan
    xin = _cl(x) if layout == "NHWC" else x
    back = _cf if layout == "NHWC" else (lambda a: a)
    kw = dict(kernel_size=3, stride=2, padding=1, torch_compat=mode == "torch", power_mean=mode == "mean")
    y = fp.lp_pool2d(xin, 2.0, **kw, layout=layout)
    _same(back(y), ref.lp_pool(x, 2, 2.0, 3, 2, 1, mode=mode), "lp forward")
    g = RNG.standard_normal(back(y).shape)
    gx = fp.lp_pool2d_backward(_cl(g) if layout == "NHWC" else g, xin, 2.0, **kw, layout=layout)
    _same(back(gx), ref.lp_pool_backward(g, x, 2, 2.0, 3, 2, 1, mode=mode), "lp backward", rtol=1e-9)


def test_family_nan_inf():
    x = _special((2, 3, 8, 9), seed=7)
    # fractional max pooling is max pooling: NaN propagates, the reference's index
    smp = RNG.random((2, 3, 2))
    y, i = fp.fractional_max_pool2d(x, 2, output_size=(4, 5), samples=smp, return_indices=True)
    ey, ei = reff.fractional_max_pool(x, (2, 2), (4, 5), smp)
    _same(y, ey, "fractional")
    np.testing.assert_array_equal(i, ei)
    # mixed: alpha * max + (1 - alpha) * avg of the same windows
    _same(fp.mixed_pool2d(x, 2, alpha=0.25), reff.mixed_pool(x, 2, 2, 2, 0, 0.25), "mixed")
    # unpooling moves values, NaN and inf included
    yp, ip = fp.max_pool2d(x, 2, return_indices=True)
    _same(fp.max_unpool2d(yp, ip, 2, output_size=(8, 9)), reff.max_unpool(yp, ip, (8, 9)), "unpool")
    # RoI pooling skips NaN (torchvision, onnxruntime MaxRoiPool); RoI align propagates it
    boxes = np.array([[0, 0, 0, 5, 4], [1, 1.5, 0.5, 7.2, 6.9], [1, -2, -2, 3, 3]])
    ry, ra = fp.roi_pool(x, boxes, (2, 3), return_indices=True)
    ery, era = reff.roi_pool(x, boxes, 2, 3, 1.0)
    _same(ry, ery, "roi_pool")
    np.testing.assert_array_equal(ra, era)
    _same(fp.roi_align(x, boxes, (2, 3), 1.0, 2, True), reff.roi_align(x, boxes, 2, 3, 1.0, 2, True),
          "roi_align", rtol=1e-9)
    # stochastic pooling draws by value: NaN and inf are refused with a clear error
    for bad in (np.nan, np.inf):
        xs = np.abs(RNG.standard_normal((1, 2, 4, 4)))
        xs[0, 1, 2, 2] = bad
        with pytest.raises(PoolingError, match="finite and non-negative"):
            fp.stochastic_pool2d(xs, 2, rng=np.random.default_rng(0))


# ----------------------------------------------------------------------------- overflow


INT_CASES = [(np.int8, 127), (np.int8, -128), (np.uint8, 255), (np.int32, 2**31 - 1), (np.int64, 2**62),
             (np.int64, -(2**62))]


@pytest.mark.parametrize("dtype, v", INT_CASES, ids=[f"{np.dtype(d).name}:{v}" for d, v in INT_CASES])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_integer_sums_do_not_overflow(dtype, v, layout):
    """Averages and Lp norms of integers are float64 of the exact values: no wrap-around."""
    x = np.full((1, 9, 5, 5), v, dtype)
    x[0, :, 0, 0] = v // 2
    xin = _cl(x) if layout == "NHWC" else x
    back = _cf if layout == "NHWC" else (lambda a: a)
    x64 = x.astype(np.float64)
    for got, want in [
        (fp.avg_pool2d(xin, 3, 1, 1, layout=layout), ref.avg_pool(x64, 2, 3, 1, 1)),
        (fp.avg_pool2d(xin, 5, layout=layout, divisor_override=1), ref.avg_pool(x64, 2, 5, divisor_override=1)),
        (fp.adaptive_avg_pool2d(xin, 2, layout=layout), ref.adaptive_avg_pool(x64, 2, 2)),
        (fp.global_avg_pool(xin, layout=layout), ref.global_avg_pool(x64)),
        (fp.lp_pool2d(xin, 1.0, 3, layout=layout), ref.lp_pool(x64, 2, 1.0, 3)),
        (fp.global_lp_pool(xin, 1.0, layout=layout), ref.global_lp_pool(x64, 1.0)),
        (fp.mixed_pool2d(xin, 3, layout=layout), reff.mixed_pool(x64, 2, 3, 3, 0, 0.5)),
    ]:
        assert got.dtype == np.float64
        np.testing.assert_allclose(back(got), want, rtol=1e-15)
    assert np.array_equal(back(fp.max_pool2d(xin, 3, layout=layout)), ref.max_pool(x, 2, 3)[0])


F16_VALUES = [300.0, 6000.0, 60000.0, 65504.0]


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 4.0, 8.0])
@pytest.mark.parametrize("mode", ["onnx", "torch", "mean"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_float16_lp_of_large_values(p, mode, layout):
    """float16 is computed in float32 and rounded once: the result is float64's, rounded
    to float16 (finite where that is finite, inf only where float16 overflows)."""
    x = np.stack([np.full((4, 6), v) for v in F16_VALUES] * 2)[None]          # (1, 8, 4, 6)
    x[0, :, 1, 2] = -x[0, :, 1, 2] if mode != "torch" else x[0, :, 1, 2]      # signs (torch: x^p signed)
    x16 = x.astype(np.float16)
    xin = _cl(x16) if layout == "NHWC" else x16
    back = _cf if layout == "NHWC" else (lambda a: a)
    kw = dict(torch_compat=mode == "torch", power_mean=mode == "mean")
    got = back(fp.lp_pool2d(xin, p, 2, 1, layout=layout, **kw))
    with np.errstate(over="ignore"):
        want = ref.lp_pool(x16.astype(np.float64), 2, p, 2, 1, mode=mode).astype(np.float16)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want), err_msg="overflow where float16 has room")
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=2e-3)
    if mode == "onnx":
        g = back(fp.global_lp_pool(xin, p, layout=layout))
        with np.errstate(over="ignore"):
            gw = ref.global_lp_pool(x16.astype(np.float64), p).astype(np.float16)
        np.testing.assert_array_equal(np.isinf(g), np.isinf(gw))
        np.testing.assert_allclose(g.astype(np.float64), gw.astype(np.float64), rtol=2e-3)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_float16_large_averages_and_gradients(layout):
    x = np.full((1, 8, 4, 4), 60000.0)
    x[..., ::2] = 65504.0
    x16 = x.astype(np.float16)
    xin = _cl(x16) if layout == "NHWC" else x16
    back = _cf if layout == "NHWC" else (lambda a: a)
    np.testing.assert_allclose(back(fp.avg_pool2d(xin, 2, layout=layout)).astype(np.float64),
                               ref.avg_pool(x, 2, 2), rtol=1e-3)
    np.testing.assert_allclose(back(fp.global_avg_pool(xin, layout=layout)).astype(np.float64),
                               ref.global_avg_pool(x), rtol=1e-3)
    g = np.ones((1, 8, 2, 2))
    gin = (_cl(g) if layout == "NHWC" else g).astype(np.float16)
    gx = back(fp.lp_pool2d_backward(gin, xin, 4.0, 2, layout=layout, power_mean=True))
    want = ref.lp_pool_backward(g, x, 2, 4.0, 2, mode="mean")
    assert np.isfinite(gx).all()
    np.testing.assert_allclose(gx.astype(np.float64), want, rtol=2e-3, atol=1e-4)


# ----------------------------------------------------------------------------- 64-bit positions


def test_positions_past_2_31_elements():
    """One plane of 2**31 + 2**16 uint8 cells (zero pages: the kernels read ~2 GiB that
    never take memory): maxima and indices past 2**31 come out right."""
    H, W = 2**16, 2**15 + 1
    try:
        x = np.zeros((1, 1, H, W), np.uint8)
    except MemoryError:
        pytest.fail("cannot reserve 2 GiB of address space for the large-index case")
    x[0, 0, H - 1, W - 2] = 7
    x[0, 0, H - 1, 5] = 3
    last = (H - 1) * W + (W - 2)
    assert last > 2**31
    v, i = fp.global_max_pool(x, return_indices=True)
    assert v.ravel()[0] == 7 and i.ravel()[0] == last
    assert fp.global_max_pool(x).ravel()[0] == 7
    v, i = fp.adaptive_max_pool2d(x, (1, 2), return_indices=True)
    assert v.ravel().tolist() == [3, 7] and i.ravel().tolist() == [(H - 1) * W + 5, last]
    # windows of 2**15 rows by half a row: the separable argmax over positions past 2**31
    y, i = fp.max_pool2d(x, (2**15, W // 2), return_indices=True)
    assert y.ravel().tolist() == [0, 0, 3, 7] and i[0, 0, 1, 1] == last
    assert fp.global_avg_pool(x).ravel()[0] == pytest.approx(10 / (H * W), rel=1e-12)


# ----------------------------------------------------------------------------- size guards


@pytest.mark.parametrize("call, match", [
    (lambda x: fp.max_pool2d(x, 2**62 + 1), r"kernel_size must be <= 2\*\*62"),
    (lambda x: fp.avg_pool2d(x, 2, stride=2**63), r"stride must be <= 2\*\*62"),
    (lambda x: fp.max_pool2d(x, 2, padding=((2**62 + 1, 0), (0, 0))), r"padding must be <= 2\*\*62"),
    (lambda x: fp.lp_pool2d(x, 2, 2, dilation=(1, 2**70)), r"dilation must be <= 2\*\*62"),
    (lambda x: fp.adaptive_avg_pool2d(x, 2**63), r"output_size must be <= 2\*\*62"),
    # paddings that would leave windows with no input cell are refused before any table is built
    (lambda x: fp.max_pool2d(x, 2, stride=1, padding=((2**40, 2**40), (0, 0)), dilation=(2**40, 1)),
     r"every window must hold an input cell"),
    (lambda x: fp.avg_pool1d(x[0], 3, 1, 2**50, dilation=2**49), r"every window must hold an input cell"),
    # outputs no array can hold
    (lambda x: fp.adaptive_max_pool3d(x, 2**21), r"more than an array can hold"),
    (lambda x: fp.adaptive_avg_pool2d(x, (2**31, 2**30)), r"more than an array can hold"),
    (lambda x: fp.max_unpool2d(x, np.zeros(x.shape, np.int64), 2**31), r"more elements than an array can hold"),
])
def test_size_guards(call, match):
    with pytest.raises(PoolingError, match=match):
        call(np.zeros((1, 2, 3, 4)))
