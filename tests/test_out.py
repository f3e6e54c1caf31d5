"""``out=``: every window, adaptive and global pooling and its backward pass write
into a caller's array.

Results are checked against the NumPy reference (not against fastpool's own
allocating path), the returned object must be ``out`` itself, and the inputs must
come back unchanged; bad ``out`` arrays get the clear errors of the API contract.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp
from fastpool import PoolingError, PoolingTypeError

import reference as ref

GEOMS = [
    # (nd, kernel, stride, padding, ceil_mode)
    (1, 3, 2, 1, False),
    (2, 2, 2, 0, False),
    (2, 3, 2, 1, True),
    (2, 3, 1, 1, False),
    (3, 2, 1, 1, False),
]


def _user(a, nd, layout):
    """A channels-first array in ``layout``, C-contiguous (out= requires it)."""
    return np.ascontiguousarray(ref.to_channels_last(a, nd)) if layout == "channels_last" else a


def _x(nd, dtype, layout, seed=0):
    rng = np.random.default_rng(seed)
    shape = (2, 3) + (9, 8, 7)[:nd]
    x = (rng.standard_normal(shape) * 10).astype(dtype)
    return x, _user(x, nd, layout)


@pytest.mark.parametrize("geom", GEOMS, ids=str)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int32"])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_max_out_matches_reference(geom, dtype, layout):
    nd, k, s, p, cm = geom
    xcf, x = _x(nd, dtype, layout)
    want, _ = ref.max_pool(xcf, nd, k, s, p, ceil_mode=cm)
    want = _user(want.astype(dtype), nd, layout)
    out = np.full(want.shape, 7, dtype)
    keep = x.copy()
    got = getattr(fp, f"max_pool{nd}d")(x, k, s, p, ceil_mode=cm, layout=layout, out=out)
    assert got is out
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(x, keep)


@pytest.mark.parametrize("geom", GEOMS, ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_avg_out_matches_reference(geom, dtype, layout):
    nd, k, s, p, cm = geom
    xcf, x = _x(nd, dtype, layout)
    want = _user(ref.avg_pool(xcf, nd, k, s, p, ceil_mode=cm), nd, layout)
    out = np.full(want.shape, np.nan, dtype)
    got = getattr(fp, f"avg_pool{nd}d")(x, k, s, p, ceil_mode=cm, layout=layout, out=out)
    assert got is out
    tol = 1e-12 if dtype == "float64" else 1e-6
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("geom", GEOMS, ids=str)
@pytest.mark.parametrize("op", ["max", "avg"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_backward_out_matches_reference(geom, op, dtype):
    nd, k, s, p, cm = geom
    x, _ = _x(nd, dtype, "channels_first", seed=1)
    xr = x.astype(np.float64)
    if op == "max":
        y, _ = ref.max_pool(xr, nd, k, s, p, ceil_mode=cm)
    else:
        y = ref.avg_pool(xr, nd, k, s, p, ceil_mode=cm)
    g = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
    gr = g.astype(np.float64)
    if op == "max":
        want = ref.max_pool_backward(gr, xr, nd, k, s, p, ceil_mode=cm)
    else:
        want = ref.avg_pool_backward(gr, xr, nd, k, s, p, ceil_mode=cm)
    out = np.full(x.shape, np.nan, dtype)
    keep_g, keep_x = g.copy(), x.copy()
    got = getattr(fp, f"{op}_pool{nd}d_backward")(g, x, k, s, p, ceil_mode=cm, out=out)
    assert got is out
    tol = {"float64": 1e-12, "float32": 1e-5, "float16": 2e-3}[dtype]
    np.testing.assert_allclose(out.astype(np.float64), want, rtol=tol, atol=tol * np.abs(want).max())
    np.testing.assert_array_equal(g, keep_g)
    np.testing.assert_array_equal(x, keep_x)


X = np.arange(2 * 3 * 8 * 8, dtype=np.float32).reshape(2, 3, 8, 8)


@pytest.mark.parametrize("out, err, pattern", [
    (np.empty((2, 3, 4, 5), np.float32), PoolingError, r"out must have the result's shape \(2, 3, 4, 4\), got \(2, 3, 4, 5\)"),
    (np.empty((2, 3, 4, 4), np.float64), PoolingTypeError, r"out must have the result's dtype float32, got float64"),
    (np.empty((2, 3, 4, 8), np.float32)[..., ::2], PoolingError, r"out must be C-contiguous and writeable"),
    ([[0.0]], PoolingTypeError, r"out must be a NumPy array or None, got list"),
])
def test_bad_out_is_a_clear_error(out, err, pattern):
    with pytest.raises(err, match=r"^max_pool2d\(input of shape \(2, 3, 8, 8\)\): " + pattern):
        fp.max_pool2d(X, 2, out=out)


def test_read_only_out_is_refused():
    out = np.empty((2, 3, 4, 4), np.float32)
    out.flags.writeable = False
    with pytest.raises(PoolingError, match="out must be C-contiguous and writeable"):
        fp.avg_pool2d(X, 2, out=out)


@pytest.mark.parametrize("fn", ["max", "avg"])
def test_out_overlapping_an_input_is_refused_and_the_input_kept(fn):
    x = X.copy()
    keep = x.copy()
    alias = x.reshape(-1)[: 2 * 3 * 4 * 4].reshape(2, 3, 4, 4)
    with pytest.raises(PoolingError, match="out must not share memory with the input x"):
        getattr(fp, f"{fn}_pool2d")(x, 2, out=alias)
    np.testing.assert_array_equal(x, keep)
    g = np.ones((2, 3, 4, 4), np.float32)
    with pytest.raises(PoolingError, match="out must not share memory with the input x"):
        getattr(fp, f"{fn}_pool2d_backward")(g, x, 2, out=x)
    np.testing.assert_array_equal(x, keep)


@pytest.mark.parametrize("geom", GEOMS, ids=str)
@pytest.mark.parametrize("dtype", ["float16", "float32", "int8"])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_max_out_pair_with_indices_matches_reference(geom, dtype, layout):
    nd, k, s, p, cm = geom
    xcf, x = _x(nd, dtype, layout, seed=2)
    want, want_idx = ref.max_pool(xcf, nd, k, s, p, ceil_mode=cm)
    want, want_idx = _user(want.astype(dtype), nd, layout), _user(want_idx, nd, layout)
    vals, idx = np.full(want.shape, 7, dtype), np.full(want.shape, -1, np.int64)
    keep = x.copy()
    got = getattr(fp, f"max_pool{nd}d")(x, k, s, p, ceil_mode=cm, return_indices=True, layout=layout,
                                        out=(vals, idx))
    assert got[0] is vals and got[1] is idx
    np.testing.assert_array_equal(vals, want)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(x, keep)
    # either array of the pair may be left to fastpool
    v2, i2 = getattr(fp, f"max_pool{nd}d")(x, k, s, p, ceil_mode=cm, return_indices=True, layout=layout,
                                           out=[None, np.empty_like(idx)])
    np.testing.assert_array_equal(v2, want)
    np.testing.assert_array_equal(i2, want_idx)


def test_out_with_indices_must_be_a_pair_of_good_arrays():
    v, i = np.empty((2, 3, 4, 4), np.float32), np.empty((2, 3, 4, 4), np.int64)
    with pytest.raises(PoolingTypeError, match=r"with return_indices=True, out must be a pair \(values, indices\)"):
        fp.max_pool2d(X, 2, return_indices=True, out=v)
    with pytest.raises(PoolingTypeError, match="a pair .* got a tuple of 3"):
        fp.max_pool2d(X, 2, return_indices=True, out=(v, i, i))
    with pytest.raises(PoolingTypeError, match=r"a pair \(values, indices\) needs return_indices=True"):
        fp.max_pool2d(X, 2, out=(v, i))
    with pytest.raises(PoolingTypeError, match=r"out\[1\] \(indices\) must have the result's dtype int64, got int32"):
        fp.max_pool2d(X, 2, return_indices=True, out=(v, i.astype(np.int32)))
    with pytest.raises(PoolingError, match=r"out\[0\] \(values\) must have the result's shape \(2, 3, 4, 4\)"):
        fp.max_pool2d(X, 2, return_indices=True, out=(v[:1], i))
    x = X.astype(np.float64)
    keep = x.copy()
    both = np.empty(2 * i.size, np.int64)
    overlapping = (both.view(np.float64)[: i.size].reshape(i.shape), both[i.size // 2:][: i.size].reshape(i.shape))
    with pytest.raises(PoolingError, match=r"out\[1\] \(indices\) must not share memory with out\[0\] \(values\)"):
        fp.max_pool2d(x, 2, return_indices=True, out=overlapping)
    alias = x.reshape(-1).view(np.int64)[: i.size].reshape(i.shape)
    with pytest.raises(PoolingError, match=r"out\[1\] \(indices\) must not share memory with the input x"):
        fp.max_pool2d(x, 2, return_indices=True, out=(v.astype(np.float64), alias))
    np.testing.assert_array_equal(x, keep)


def _misaligned(shape, dtype, offset):
    """A C-contiguous, writeable array whose data starts ``offset`` bytes past an aligned one."""
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.ndarray(shape, dtype, buffer=np.zeros(n + 128, np.uint8), offset=offset)


@pytest.mark.parametrize("offset", [1, 3, 4, 36], ids=lambda o: f"offset{o}")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_misaligned_out_matches_reference(offset, dtype):
    """out= at any byte offset (a view into a byte buffer): the streamed
    non-temporal stores of the max backward need 64-byte alignment, which a
    buffer misaligned to its element size never reaches (it crashed before)."""
    x = (np.random.default_rng(4).standard_normal((4, 8, 30, 26)) * 10).astype(dtype)
    xr = x.astype(np.float64)
    y, idx = fp.max_pool2d(x, 3, 2, 1, return_indices=True)
    g = np.random.default_rng(5).standard_normal(y.shape).astype(dtype)
    want = ref.max_pool_backward(g.astype(np.float64), xr, 2, 3, 2, 1)
    tol = {"float64": 1e-12, "float32": 1e-5}[dtype]
    for kw in (dict(indices=idx), {}):
        out = _misaligned(x.shape, dtype, offset)
        assert fp.max_pool2d_backward(g, x, 3, 2, 1, out=out, **kw) is out
        np.testing.assert_allclose(out, want, rtol=tol, atol=tol * np.abs(want).max())
    for f, r in ((fp.max_pool2d, lambda: ref.max_pool(xr, 2, 2, 2)[0]), (fp.avg_pool2d, lambda: ref.avg_pool(xr, 2, 2, 2))):
        out = _misaligned((4, 8, 15, 13), dtype, offset)
        assert f(x, 2, 2, out=out) is out
        np.testing.assert_allclose(out, r(), rtol=tol)


# The other pooling functions: (name, fastpool call, reference forward, reference
# backward), channels-first arrays of shape (2, 3, 9, 8); the reference's max
# returns (values, indices).
OTHERS = {
    "lp_pool2d": (lambda f, x, **kw: f(x, 3.0, 3, 2, padding=1, **kw),
                  lambda x: ref.lp_pool(x, 2, 3.0, 3, 2, 1),
                  lambda g, x: ref.lp_pool_backward(g, x, 2, 3.0, 3, 2, 1)),
    "adaptive_avg_pool2d": (lambda f, x, **kw: f(x, (4, 3), **kw),
                            lambda x: ref.adaptive_avg_pool(x, 2, (4, 3)),
                            lambda g, x: ref.adaptive_avg_pool_backward(g, x, 2, (4, 3))),
    "adaptive_max_pool2d": (lambda f, x, **kw: f(x, (4, 3), **kw),
                            lambda x: ref.adaptive_max_pool(x, 2, (4, 3))[0],
                            lambda g, x: ref.adaptive_max_pool_backward(g, x, 2, (4, 3))),
    "global_avg_pool": (lambda f, x, **kw: f(x, **kw), ref.global_avg_pool, ref.global_avg_pool_backward),
    "global_max_pool": (lambda f, x, **kw: f(x, **kw), lambda x: ref.global_max_pool(x)[0],
                        ref.global_max_pool_backward),
    "global_lp_pool": (lambda f, x, **kw: f(x, **kw), ref.global_lp_pool, ref.global_lp_pool_backward),
}
TOL = {"float64": 1e-12, "float32": 1e-5, "float16": 2e-3}


@pytest.mark.parametrize("name, keepdims", [(n, k) for n in sorted(OTHERS)
                                             for k in ((True, False) if n.startswith("global") else (True,))])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_other_pooling_out_matches_reference(name, keepdims, dtype, layout):
    call, fwd, _ = OTHERS[name]
    kw = {} if keepdims else {"keepdims": False}
    xcf, x = _x(2, dtype, layout, seed=3)
    want = fwd(xcf.astype(np.float64))
    want = want.reshape(want.shape[:2]) if not keepdims else _user(want, 2, layout)
    out = np.full(want.shape, np.nan, dtype)
    keep = x.copy()
    got = call(getattr(fp, name), x, layout=layout, out=out, **kw)
    assert got is out
    np.testing.assert_allclose(out.astype(np.float64), want, rtol=TOL[dtype], atol=TOL[dtype] * np.abs(want).max())
    np.testing.assert_array_equal(x, keep)


@pytest.mark.parametrize("name", sorted(OTHERS))
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_other_pooling_backward_out_matches_reference(name, dtype):
    call, fwd, bwd = OTHERS[name]
    x, _ = _x(2, dtype, "channels_first", seed=4)
    xr = x.astype(np.float64)
    g = np.random.default_rng(6).standard_normal(fwd(xr).shape).astype(dtype)
    want = bwd(g.astype(np.float64), xr)
    out = np.full(x.shape, np.nan, dtype)
    keep_g, keep_x = g.copy(), x.copy()
    got = call(lambda x_, *a, **kw: getattr(fp, name + "_backward")(g, x_, *a, **kw), x, out=out)
    assert got is out
    np.testing.assert_allclose(out.astype(np.float64), want, rtol=TOL[dtype], atol=TOL[dtype] * np.abs(want).max())
    np.testing.assert_array_equal(g, keep_g)
    np.testing.assert_array_equal(x, keep_x)


@pytest.mark.parametrize("name, keepdims", [("adaptive_max_pool2d", True), ("global_max_pool", True),
                                             ("global_max_pool", False)])
@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_other_out_pair_with_indices_matches_reference(name, keepdims, dtype, layout):
    call = OTHERS[name][0]
    kw = {} if keepdims else {"keepdims": False}
    xcf, x = _x(2, dtype, layout, seed=4)
    if name == "global_max_pool":
        want, want_idx = ref.global_max_pool(xcf)
    else:
        want, want_idx = ref.adaptive_max_pool(xcf, 2, (4, 3))
    want, want_idx = _user(want.astype(dtype), 2, layout), _user(want_idx, 2, layout)
    if not keepdims:
        want, want_idx = want.reshape(2, -1), want_idx.reshape(2, -1)
    vals, idx = np.full(want.shape, 7, dtype), np.full(want.shape, -1, np.int64)
    keep = x.copy()
    got = call(getattr(fp, name), x, return_indices=True, layout=layout, out=(vals, idx), **kw)
    assert got[0] is vals and got[1] is idx
    np.testing.assert_array_equal(vals, want)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(x, keep)
    with pytest.raises(PoolingTypeError, match="out must be a pair"):
        call(getattr(fp, name), x, return_indices=True, layout=layout, out=vals, **kw)


@pytest.mark.parametrize("name", sorted(OTHERS))
def test_other_bad_out_is_a_clear_error_and_the_input_kept(name):
    call = OTHERS[name][0]
    x = X.copy()
    keep = x.copy()
    with pytest.raises(PoolingError, match=rf"^{name}\(input of shape \(2, 3, 8, 8\)\): out must have the result's shape"):
        call(getattr(fp, name), x, out=np.empty((2, 3, 5, 5), np.float32))
    with pytest.raises(PoolingTypeError, match="out must have the result's dtype float32, got float64"):
        want = call(getattr(fp, name), x)
        call(getattr(fp, name), x, out=np.empty(want.shape, np.float64))
    with pytest.raises(PoolingError, match="out must not share memory with the input x"):
        call(getattr(fp, name), x, out=x.reshape(-1)[: want.size].reshape(want.shape))
    np.testing.assert_array_equal(x, keep)
