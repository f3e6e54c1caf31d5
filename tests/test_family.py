"""Max unpooling, fractional max, mixed and spatial pyramid pooling, and the family's layers.

Oracles: the NumPy references (tests/reference_family.py, tests/reference.py),
PyTorch CPU (forward values, indices, autograd gradients), PyTorch's documented
examples, and central finite differences for every backward pass.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as tF

import fastpool as fp
import reference_family as rf
from fastpool import PoolingError, PoolingTypeError
from fastpool import layers as L

RNG = np.random.default_rng(2024)
SIZES = {1: (9,), 2: (7, 8), 3: (5, 6, 4)}


def distinct(shape, dtype=np.float64, lo=-1.0):
    """Distinct values (no ties, so max-type gradients are well defined)."""
    v = RNG.permutation(int(np.prod(shape))).reshape(shape).astype(np.float64)
    return (lo + v / max(v.size, 1) * 2).astype(dtype)


cl, cf, fd_check = rf.cl, rf.cf, rf.fd_check


def t(a, grad=False):
    return torch.tensor(np.asarray(a), requires_grad=grad)


# ============================================================================= max unpool


def test_unpool_pytorch_documented_examples():
    # torch.nn.MaxUnpool2d's docstring: 4x4 arange and 5x5 arange with output_size
    x = np.arange(1, 17, dtype=np.float64).reshape(1, 1, 4, 4)
    y, idx = fp.max_pool2d(x, 2, stride=2, return_indices=True)
    np.testing.assert_array_equal(fp.max_unpool2d(y, idx, 2, stride=2)[0, 0],
                                  [[0, 0, 0, 0], [0, 6, 0, 8], [0, 0, 0, 0], [0, 14, 0, 16]])
    x = np.arange(1, 26, dtype=np.float64).reshape(1, 1, 5, 5)
    y, idx = fp.max_pool2d(x, 2, stride=2, return_indices=True)
    u = fp.max_unpool2d(y, idx, 2, stride=2, output_size=x.shape)
    np.testing.assert_array_equal(u[0, 0], [[0, 0, 0, 0, 0], [0, 7, 0, 9, 0], [0, 0, 0, 0, 0],
                                            [0, 17, 0, 19, 0], [0, 0, 0, 0, 0]])


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("geom", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)])
def test_unpool_round_trip(nd, layout, geom):
    x = distinct((2, 3) + SIZES[nd], lo=0.5)   # positive, so unpooled zeros never win a window
    xin = cl(x, nd) if layout == "channels_last" else x
    y, idx = getattr(fp, f"max_pool{nd}d")(xin, **geom, return_indices=True, layout=layout)
    unpool = getattr(fp, f"max_unpool{nd}d")
    u = unpool(y, idx, **geom, output_size=SIZES[nd], layout=layout)
    uc = cf(u, nd) if layout == "channels_last" else u
    # every cell is either 0 or the input cell that won a window
    winners = np.zeros(x.shape, bool)
    flat = winners.reshape(6, -1)
    ic = cf(idx, nd) if layout == "channels_last" else idx
    np.put_along_axis(flat, ic.reshape(6, -1), True, axis=1)
    np.testing.assert_array_equal(uc, np.where(winners, x, 0.0))
    np.testing.assert_array_equal(uc, rf.max_unpool(cf(y, nd) if layout == "channels_last" else y, ic, SIZES[nd]))
    # pooling the unpooled map gives the pooled values back
    again, again_idx = getattr(fp, f"max_pool{nd}d")(u, **geom, return_indices=True, layout=layout)
    np.testing.assert_array_equal(again, y)
    np.testing.assert_array_equal(again_idx, idx)


@pytest.mark.parametrize("dtype", [np.float64])   # one dtype: the kernel only moves values
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_unpool_vs_torch_random_indices(nd, dtype):
    n_in = SIZES[nd]
    x = RNG.standard_normal((2, 3) + tuple(max(1, s // 2) for s in n_in)).astype(dtype)
    k = 2
    default = tuple((s - 1) * 2 + k for s in x.shape[2:])
    idx = RNG.integers(0, np.prod(default), x.shape)   # duplicates included: later wins
    got = getattr(fp, f"max_unpool{nd}d")(x, idx, k)
    want = getattr(tF, f"max_unpool{nd}d")(t(x), t(idx), k).numpy()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, rf.max_unpool(x, idx, default))
    # the gradient PyTorch defines: gather at the indices
    g = RNG.standard_normal(got.shape).astype(dtype)
    xt = t(x, True)
    getattr(tF, f"max_unpool{nd}d")(xt, t(idx), k).backward(t(g))
    gx = getattr(fp, f"max_unpool{nd}d_backward")(g, x, idx, k)
    np.testing.assert_array_equal(gx, xt.grad.numpy())
    np.testing.assert_array_equal(gx, rf.max_unpool_backward(g, idx, nd))


def test_unpool_duplicates_last_writer_wins_like_torch():
    x = np.array([[[1.0, 2.0, 3.0]]])
    idx = np.array([[[1, 1, 0]]])
    got = fp.max_unpool1d(x, idx, 2, output_size=[5])
    np.testing.assert_array_equal(got, tF.max_unpool1d(t(x), t(idx), 2, output_size=[5]).numpy())
    np.testing.assert_array_equal(got[0, 0], [3, 2, 0, 0, 0])


@pytest.mark.parametrize("dtype", [np.int32])   # each dtype is one more compilation
def test_unpool_other_dtypes_keep_dtype(dtype):
    x = (np.arange(12) % 7).astype(dtype).reshape(1, 3, 4)
    idx = np.array([0, 3, 4, 7] * 3).reshape(1, 3, 4)
    got = fp.max_unpool1d(x, idx, 2)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, rf.max_unpool(x, idx, (8,)))


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_unpool_backward_finite_differences(nd):
    x = distinct((1, 2) + SIZES[nd])
    y, idx = getattr(fp, f"max_pool{nd}d")(x, 2, return_indices=True)
    fun = getattr(fp, f"max_unpool{nd}d")
    g = RNG.standard_normal(fun(y, idx, 2, output_size=SIZES[nd]).shape)
    gx = getattr(fp, f"max_unpool{nd}d_backward")(g, y, idx, 2, output_size=SIZES[nd])
    fd_check(gx, lambda v: fun(v, idx, 2, output_size=SIZES[nd]), y, g, atol=1e-8)


def test_unpool_channels_last_and_unbatched():
    x = RNG.standard_normal((2, 3, 3, 4))
    idx = RNG.integers(0, 6 * 8, x.shape)
    want = fp.max_unpool2d(x, idx, 2)
    np.testing.assert_array_equal(cf(fp.max_unpool2d(cl(x, 2), cl(idx, 2), 2, layout="NHWC"), 2), want)
    np.testing.assert_array_equal(fp.max_unpool2d(x[1], idx[1], 2), want[1])
    g = RNG.standard_normal(want.shape)
    np.testing.assert_array_equal(
        cf(fp.max_unpool2d_backward(cl(g, 2), cl(x, 2), cl(idx, 2), 2, layout="NHWC"), 2),
        fp.max_unpool2d_backward(g, x, idx, 2))


@pytest.mark.parametrize("bad, words", [
    (dict(indices=np.full((1, 1, 2, 2), 16)), ["indices", "[0, 16)", "16"]),
    (dict(indices=np.full((1, 1, 2, 2), -1)), ["indices", "-1"]),
    (dict(indices=np.zeros((1, 1, 2, 3), np.int64)), ["indices", "shape"]),
    (dict(output_size=(6, 4)), ["output_size", "between 2 and 6", "6"]),
    (dict(output_size=(4, 4, 4)), ["output_size", "2 spatial sizes"]),
])
def test_unpool_errors(bad, words):
    x = np.ones((1, 1, 2, 2))
    kw = dict(indices=np.zeros((1, 1, 2, 2), np.int64), output_size=None)
    kw.update(bad)
    with pytest.raises(PoolingError) as e:
        fp.max_unpool2d(x, kw["indices"], 2, output_size=kw["output_size"])
    assert "max_unpool2d(input of shape (1, 1, 2, 2))" in str(e.value)
    for w in words:
        assert w in str(e.value)
    with pytest.raises(PoolingTypeError, match="indices must be an integer array"):
        fp.max_unpool2d(x, np.zeros((1, 1, 2, 2)), 2)


# ============================================================================= fractional max


FRAC_CASES = [
    (2, (2, 2), dict(output_size=(4, 5))),
    (2, (3, 2), dict(output_size=(3, 6))),
    (2, 2, dict(output_ratio=0.5)),
    (2, (2, 3), dict(output_ratio=(0.6, 0.4))),
    (3, 2, dict(output_size=(3, 4, 2))),
    (3, (2, 1, 2), dict(output_ratio=0.5)),
]
FRAC_SIZES = {2: (9, 11), 3: (6, 8, 5)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd, k, kw", FRAC_CASES)
def test_fractional_equals_torch_with_same_samples(nd, k, kw, dtype):
    x = RNG.standard_normal((2, 3) + FRAC_SIZES[nd]).astype(dtype)
    s = RNG.random((2, 3, nd)).astype(dtype)
    fn = getattr(fp, f"fractional_max_pool{nd}d")
    out, idx = fn(x, k, **kw, return_indices=True, samples=s)
    tkw = {key: (v,) * nd if isinstance(v, float) else v for key, v in kw.items()}  # torch needs tuples
    tout, tidx = getattr(tF, f"fractional_max_pool{nd}d")(t(x), k, **tkw, return_indices=True,
                                                         _random_samples=t(s))
    np.testing.assert_array_equal(out, tout.numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())
    kk = (k,) * nd if isinstance(k, int) else k
    rout, ridx = rf.fractional_max_pool(x, kk, out.shape[2:], s)
    np.testing.assert_array_equal(out, rout)
    np.testing.assert_array_equal(idx, ridx)
    # unbatched: PyTorch's samples are (1, C, nd)
    np.testing.assert_array_equal(fn(x[1], k, **kw, samples=s[1:2]), out[1])
    # channels-last sees the same windows
    np.testing.assert_array_equal(cf(fn(cl(x, nd), k, **kw, samples=s, layout="channels_last"), nd), out)


@pytest.mark.parametrize("nd, k, kw", [FRAC_CASES[1], FRAC_CASES[4]])
def test_fractional_backward_torch_and_finite_differences(nd, k, kw):
    x = distinct((1, 2) + FRAC_SIZES[nd])
    s = RNG.random((1, 2, nd))
    fn = getattr(fp, f"fractional_max_pool{nd}d")
    bw = getattr(fp, f"fractional_max_pool{nd}d_backward")
    out, idx = fn(x, k, **kw, return_indices=True, samples=s)
    g = RNG.standard_normal(out.shape)
    xt = t(x, True)
    getattr(tF, f"fractional_max_pool{nd}d")(xt, k, **kw, _random_samples=t(s)).backward(t(g))
    gx = bw(g, x, k, **kw, samples=s)
    np.testing.assert_array_equal(gx, xt.grad.numpy())
    np.testing.assert_array_equal(bw(g, x, k, **kw, indices=idx), gx)
    fd_check(gx, lambda v: fn(v, k, **kw, samples=s), x, g, atol=1e-8)


def test_fractional_nan_propagates_like_torch():
    x = RNG.standard_normal((1, 2, 7, 7))
    x[0, 0, 3, 3] = np.nan
    s = RNG.random((1, 2, 2))
    out, idx = fp.fractional_max_pool2d(x, 2, output_size=4, return_indices=True, samples=s)
    tout, tidx = tF.fractional_max_pool2d(t(x), 2, output_size=4, return_indices=True, _random_samples=t(s))
    np.testing.assert_array_equal(out, tout.numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())
    assert np.isnan(out).any()


def test_fractional_samples_from_generator():
    x = RNG.standard_normal((2, 3, 10, 10)).astype(np.float32)
    a = fp.fractional_max_pool2d(x, 2, output_size=5, rng=np.random.default_rng(5))
    b = fp.fractional_max_pool2d(x, 2, output_size=5, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    # whatever was drawn, each output is the max of some 2x2 window of its plane
    for n, c in np.ndindex(2, 3):
        wins = np.lib.stride_tricks.sliding_window_view(x[n, c], (2, 2)).max(axis=(2, 3))
        assert np.isin(a[n, c], wins).all()


@pytest.mark.parametrize("call, exc, words", [
    (lambda x: fp.fractional_max_pool2d(x, 2), PoolingError, ["output_size or output_ratio"]),
    (lambda x: fp.fractional_max_pool2d(x, 2, output_size=3, output_ratio=0.5), PoolingError, ["not both"]),
    (lambda x: fp.fractional_max_pool2d(x, 2, output_ratio=1.5), PoolingError, ["output_ratio", "(0, 1)"]),
    (lambda x: fp.fractional_max_pool2d(x, 4, output_size=6), PoolingError, ["kernel_size", "input 8"]),
    (lambda x: fp.fractional_max_pool2d(x, 2, output_size=3, samples=np.zeros((1, 2, 2))), PoolingError,
     ["samples", "(2, 3, 2)"]),
    (lambda x: fp.fractional_max_pool2d(x, 2, output_size=3, samples=np.ones((2, 3, 2))), PoolingError,
     ["samples", "[0, 1)", "1.0"]),
    (lambda x: fp.fractional_max_pool2d(x, 2, output_size=3, rng=7), PoolingTypeError, ["rng", "Generator"]),
    (lambda x: fp.fractional_max_pool2d_backward(np.ones((2, 3, 3, 3)), x, 2, output_size=3), PoolingError,
     ["samples=", "indices="]),
])
def test_fractional_errors(call, exc, words):
    x = np.ones((2, 3, 8, 8))
    with pytest.raises(exc) as e:
        call(x)
    assert "fractional_max_pool2d" in str(e.value) and "(2, 3, 8, 8)" in str(e.value)
    for w in words:
        assert w in str(e.value)


# ============================================================================= mixed


MIXED_GEOMS = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)]


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("geom", MIXED_GEOMS)
@pytest.mark.parametrize("per_channel", [False, True])
def test_mixed_vs_reference(nd, geom, layout, per_channel):
    x = RNG.standard_normal((2, 3) + SIZES[nd])
    alpha = RNG.uniform(0, 1, 3) if per_channel else 0.3
    want = rf.mixed_pool(x, nd, geom["kernel_size"], geom.get("stride"), geom.get("padding", 0), alpha)
    fn = getattr(fp, f"mixed_pool{nd}d")
    xin = cl(x, nd) if layout == "channels_last" else x
    got = fn(xin, **geom, alpha=alpha, layout=layout)
    got = cf(got, nd) if layout == "channels_last" else got
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_mixed_backward_torch_autograd_and_finite_differences(nd, per_channel):
    x = distinct((1, 3) + SIZES[nd])
    alpha = RNG.uniform(0, 1, 3) if per_channel else 0.7
    geom = dict(kernel_size=3, stride=2, padding=1)
    fn, bw = getattr(fp, f"mixed_pool{nd}d"), getattr(fp, f"mixed_pool{nd}d_backward")
    out = fn(x, **geom, alpha=alpha)
    g = RNG.standard_normal(out.shape)
    xt, at = t(x, True), t(np.float64(alpha) if not per_channel else alpha, True)
    a_b = at.reshape((-1,) + (1,) * nd) if per_channel else at
    yt = a_b * getattr(tF, f"max_pool{nd}d")(xt, **geom) + (1 - a_b) * getattr(tF, f"avg_pool{nd}d")(xt, **geom)
    yt.backward(t(g))
    np.testing.assert_allclose(out, yt.detach().numpy(), rtol=1e-13, atol=1e-14)
    gx, ga = bw(g, x, **geom, alpha=alpha)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ga, at.grad.numpy(), rtol=1e-12, atol=1e-13)
    assert np.shape(ga) == np.shape(alpha)
    fd_check(gx, lambda v: fn(v, **geom, alpha=alpha), x, g, atol=1e-7)
    # d/dalpha by finite differences, per channel or scalar
    eps = 1e-6
    a = np.array(alpha, dtype=np.float64)
    fd_a = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        ap, am = a.copy(), a.copy()
        ap[i] += eps
        am[i] -= eps
        fd_a[i] = (np.sum(g * fn(x, **geom, alpha=ap if per_channel else float(ap))) -
                   np.sum(g * fn(x, **geom, alpha=am if per_channel else float(am)))) / (2 * eps)
    np.testing.assert_allclose(ga, fd_a, rtol=1e-6, atol=1e-7)


def test_mixed_endpoints_are_max_and_avg():
    x = RNG.standard_normal((2, 3, 7, 8)).astype(np.float32)
    np.testing.assert_array_equal(fp.mixed_pool2d(x, 3, 2, 1, alpha=1.0), fp.max_pool2d(x, 3, 2, 1))
    np.testing.assert_allclose(fp.mixed_pool2d(x, 3, 2, 1, alpha=0.0), fp.avg_pool2d(x, 3, 2, 1), rtol=1e-6)
    assert fp.mixed_pool2d(x, 3, alpha=0.5).dtype == np.float32
    assert fp.mixed_pool2d(np.ones((1, 4, 4), np.int32), 2).dtype == np.float64


@pytest.mark.parametrize("alpha, exc, words", [
    (np.ones(4), PoolingError, ["alpha", "(3,)", "(4,)"]),
    (float("nan"), PoolingError, ["alpha", "finite"]),
    ("0.5", PoolingTypeError, ["alpha"]),
    (np.array([0.5, np.inf, 0.1]), PoolingError, ["alpha", "inf"]),
])
def test_mixed_errors(alpha, exc, words):
    with pytest.raises(exc) as e:
        fp.mixed_pool2d(np.ones((2, 3, 4, 4)), 2, alpha=alpha)
    assert "mixed_pool2d(input of shape (2, 3, 4, 4))" in str(e.value)
    for w in words:
        assert w in str(e.value)


# ============================================================================= spatial pyramid


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("hw", [(9, 7), (4, 4), (3, 5)])
@pytest.mark.parametrize("levels", [(1, 2, 4), (3, 1)])
def test_spp_vs_reference_and_torch(mode, hw, levels):
    x = distinct((2, 3) + hw)
    out = fp.spatial_pyramid_pool(x, levels, mode=mode)
    assert out.shape == (2, 3 * sum(v * v for v in levels))
    np.testing.assert_allclose(out, rf.spatial_pyramid_pool(x, levels, mode), rtol=1e-14, atol=1e-15)
    pool = tF.adaptive_max_pool2d if mode == "max" else tF.adaptive_avg_pool2d
    xt = t(x, True)
    yt = torch.cat([pool(xt, v).reshape(2, -1) for v in levels], 1)   # the seeds' view + cat
    np.testing.assert_allclose(out, yt.detach().numpy(), rtol=1e-14, atol=1e-15)
    g = RNG.standard_normal(out.shape)
    yt.backward(t(g))
    gx = fp.spatial_pyramid_pool_backward(g, x, levels, mode=mode)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-13, atol=1e-15)
    # channels-last input gives the same feature vector: the same bits for max;
    # averages add in the order of the layout's kernel (a level-1 bin of
    # channels-first planes is a global plane sum, see the README)
    got = fp.spatial_pyramid_pool(cl(x, 2), levels, mode=mode, layout="NHWC")
    if mode == "max":
        np.testing.assert_array_equal(got, out)
    else:
        np.testing.assert_allclose(got, out, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(cf(fp.spatial_pyramid_pool_backward(g, cl(x, 2), levels, mode=mode,
                                                                   layout="NHWC"), 2), gx, rtol=1e-15)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_spp_backward_finite_differences(mode):
    x = distinct((1, 2, 5, 6))
    g = RNG.standard_normal((1, 2 * 21))
    gx = fp.spatial_pyramid_pool_backward(g, x, mode=mode)
    fd_check(gx, lambda v: fp.spatial_pyramid_pool(v, mode=mode), x, g, atol=1e-8)


def test_spp_fixed_length_for_any_size_and_unbatched():
    for hw in [(1, 1), (5, 9), (16, 3)]:
        assert fp.spatial_pyramid_pool(np.ones((2, 4) + hw)).shape == (2, 84)
    x = RNG.standard_normal((4, 6, 5))
    np.testing.assert_array_equal(fp.spatial_pyramid_pool(x), fp.spatial_pyramid_pool(x[None])[0])


@pytest.mark.parametrize("kw, words", [
    (dict(levels=(1, 0)), ["levels", ">= 1"]),
    (dict(levels=()), ["levels", "non-empty"]),
    (dict(mode="lp"), ["mode", "'max' or 'avg'", "lp"]),
])
def test_spp_errors(kw, words):
    with pytest.raises(PoolingError) as e:
        fp.spatial_pyramid_pool(np.ones((1, 2, 4, 4)), **kw)
    assert "spatial_pyramid_pool(input of shape (1, 2, 4, 4))" in str(e.value)
    for w in words:
        assert w in str(e.value)
    with pytest.raises(PoolingError, match="4-D"):
        fp.spatial_pyramid_pool(np.ones((1, 2, 3, 4, 4)))


# ============================================================================= kernel forms


@pytest.mark.parametrize("serial_below", [0, 1 << 40], ids=["parallel", "serial"])
def test_unpool_and_fractional_do_not_depend_on_thread_count_or_kernel_form(serial_below, monkeypatch):
    import numba

    import fastpool._cpu as cpu
    x = RNG.standard_normal((2, 3, 9, 11))
    idx = RNG.integers(0, 4, x.shape)             # many duplicates: the write order matters
    xl, il = cl(x, 2), cl(idx, 2)
    s = RNG.random((2, 3, 2))
    g = RNG.standard_normal((2, 3, 4, 5))

    def run():
        out, fidx = fp.fractional_max_pool2d(x, 2, output_size=(4, 5), return_indices=True, samples=s)
        return (fp.max_unpool2d(x, idx, 2, output_size=(17, 21)),
                fp.max_unpool2d(xl, il, 2, output_size=(17, 21), layout="NHWC"),
                out, fidx, fp.fractional_max_pool2d_backward(g, x, 2, output_size=(4, 5), indices=fidx))

    want = run()
    monkeypatch.setattr(cpu, "SERIAL_BELOW", serial_below)
    before = numba.get_num_threads()
    try:
        for n in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(n)
            for a, b in zip(run(), want):
                np.testing.assert_array_equal(a, b)
    finally:
        numba.set_num_threads(before)


# ============================================================================= layers


def test_family_layers_are_exported_and_are_layers():
    import fastpool.layers_family as LF
    for name in LF.__all__:
        assert getattr(L, name) is getattr(LF, name)
        assert name in L.__all__
        assert issubclass(getattr(L, name), L.Layer)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_layers_equal_functions(layout):
    nd = 2
    x = distinct((2, 3, 8, 9))
    xp = np.abs(x) + 0.1
    xin = cl(x, nd) if layout == "channels_last" else x
    xpin = cl(xp, nd) if layout == "channels_last" else xp

    def check(layer, args, fn, bw, fkw, bkw_extra=(), data=xin):
        out = layer(data, *args)
        want = fn(data, *args, **fkw)
        np.testing.assert_array_equal(out, want)
        assert layer.output_shape(data.shape, *([len(args[0])] if layer.kind.startswith("roi") else [])) \
            == want.shape
        g = RNG.standard_normal(out.shape)
        got = layer.backward(g)
        ref = bw(g, data, *args, **fkw, **dict(bkw_extra))
        # mixed pooling's function returns (grad_x, grad_alpha); its layer returns grad_x
        np.testing.assert_array_equal(got, ref[0] if isinstance(ref, tuple) else ref)
        return layer

    m = check(L.MixedPool2d(3, 2, 1, alpha=np.array([0.2, 0.5, 0.9]), layout=layout), (),
              fp.mixed_pool2d, fp.mixed_pool2d_backward,
              dict(kernel_size=3, stride=2, padding=1, alpha=np.array([0.2, 0.5, 0.9]), layout=layout))
    assert m.grad_alpha.shape == (3,) and m.kind == "mixed_pool" and m.nd == 2
    check(L.SpatialPyramidPool((1, 3), mode="avg", layout=layout), (), fp.spatial_pyramid_pool,
          fp.spatial_pyramid_pool_backward, dict(levels=(1, 3), mode="avg", layout=layout))
    s = RNG.random((2, 3, 2))
    check(L.FractionalMaxPool2d(2, output_size=(4, 5), samples=s, layout=layout), (),
          fp.fractional_max_pool2d, fp.fractional_max_pool2d_backward,
          dict(kernel_size=2, output_size=(4, 5), samples=s, layout=layout))
    boxes = np.array([[0, 1, 1, 6, 5], [1, 0.5, 2, 7.5, 7], [0, 2, 0, 3, 3]])
    check(L.RoIAlign((2, 3), 0.5, 2, True, layout=layout), (boxes,), fp.roi_align, fp.roi_align_backward,
          dict(output_size=(2, 3), spatial_scale=0.5, sampling_ratio=2, aligned=True, layout=layout))
    check(L.RoIPool(2, layout=layout), (boxes,), fp.roi_pool, fp.roi_pool_backward,
          dict(output_size=2, layout=layout))
    st = check(L.StochasticPool2d(2, layout=layout).eval(), (), fp.stochastic_pool2d,
               fp.stochastic_pool2d_backward, dict(kernel_size=2, training=False, layout=layout), data=xpin)
    assert not st.training and st.kwargs["training"] is False


def test_unpool_layer_and_sampled_layers_remember_their_draw():
    x = distinct((2, 3, 8, 9))
    y, idx = fp.max_pool2d(x, 2, return_indices=True)
    u = L.MaxUnpool2d(2)
    np.testing.assert_array_equal(u(y, idx, (8, 9)), fp.max_unpool2d(y, idx, 2, output_size=(8, 9)))
    assert u.output_shape(y.shape) == (2, 3, 8, 8) and u.output_shape(y.shape, (8, 9)) == (2, 3, 8, 9)
    g = RNG.standard_normal((2, 3, 8, 9))
    np.testing.assert_array_equal(u.backward(g), fp.max_unpool2d_backward(g, y, idx, 2, output_size=(8, 9)))

    f = L.FractionalMaxPool2d(2, output_ratio=0.5, return_indices=True, rng=np.random.default_rng(3))
    out, fidx = f(x)
    assert f.last_samples.shape == (2, 3, 2)
    np.testing.assert_array_equal(out, fp.fractional_max_pool2d(x, 2, output_ratio=0.5, samples=f.last_samples))
    go = RNG.standard_normal(out.shape)
    np.testing.assert_array_equal(f.backward(go), fp.fractional_max_pool2d_backward(
        go, x, 2, output_ratio=0.5, indices=fidx))

    xp = np.abs(x) + 0.1
    s = L.StochasticPool2d(2, rng=np.random.default_rng(9))
    out = s(xp)
    want, sidx = fp.stochastic_pool2d(xp, 2, rng=np.random.default_rng(9), return_indices=True)
    np.testing.assert_array_equal(out, want)
    go = RNG.standard_normal(out.shape)
    np.testing.assert_array_equal(s.backward(go), fp.stochastic_pool2d_backward(go, xp, 2, indices=sidx))


def test_layer_arguments_checked_at_construction():
    with pytest.raises(PoolingError, match="kernel_size"):
        L.MaxUnpool2d(0)
    with pytest.raises(PoolingError, match="output_size and output_ratio"):
        L.FractionalMaxPool2d(2)
    with pytest.raises(PoolingError, match="levels"):
        L.SpatialPyramidPool((0,))
    with pytest.raises(PoolingError, match="spatial_scale"):
        L.RoIAlign(2, spatial_scale=0)
    with pytest.raises(PoolingError, match="backward needs a forward"):
        L.MixedPool1d(2).backward(np.ones((1, 1, 1)))
