"""Property tests: random geometries against the NumPy reference.

Hypothesis draws the rank, shape, kernel, stride, padding (symmetric, per-axis
(begin, end) pairs, "same", "valid"), dilation, ceil_mode, layout, batching and
dtype.  Where the reference computes a result, fastpool must match it (forward,
indices, backward); where the reference rejects the arguments (a window with no
input cell, or a kernel longer than the padded input), fastpool must raise a
PoolingError.  Example budgets come from the profiles in conftest.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import fastpool as fp
import reference as ref

FLOATS = ["float64", "float32", "float16"]
INTS = ["int8", "uint8", "int32", "int64"]


@st.composite
def geometry(draw, wide=False):
    """A window geometry; ``wide`` draws larger dilation and padding, so more are rejected."""
    nd = draw(st.integers(1, 3))
    kmax, dmax, pmax = (4, 3, 3) if wide else (3, 2, 2)
    if nd == 3:
        kmax = 2
    kernel = tuple(draw(st.integers(1, kmax)) for _ in range(nd))
    dilation = draw(st.sampled_from([1, 2]) | st.tuples(*[st.integers(1, dmax)] * nd))
    dil = (dilation,) * nd if isinstance(dilation, int) else dilation
    # sizes around the window's span, so both fitting and non-fitting windows are drawn
    sizes = tuple(max(1, min(d * (k - 1) + 1 + draw(st.integers(-2, 3)), 7 if nd < 3 else 5))
                  for k, d in zip(kernel, dil))
    stride = draw(st.none() | st.tuples(*[st.integers(1, 3)] * nd))
    # padding of a window's whole span or more leaves windows with no input cell
    caps = [pmax if wide else min(pmax, d * (k - 1)) for k, d in zip(kernel, dil)]
    padding = draw(st.one_of(
        st.integers(0, min(caps)),
        st.tuples(*[st.integers(0, c) for c in caps]),
        st.tuples(*[st.tuples(st.integers(0, c), st.integers(0, c)) for c in caps]),
        st.sampled_from(["same", "valid"]),
    ))
    ceil_mode = draw(st.booleans())
    last = draw(st.booleans())
    batched = draw(st.booleans())
    # 8 or more channels-last channels take fastpool's channel-vector kernels
    lead = (draw(st.integers(1, 2)), draw(st.sampled_from([1, 2, 3, 8, 9])))
    return nd, sizes, kernel, stride, padding, dilation, ceil_mode, last, batched, lead


def make_x(shape, dtype, rng, kind="randn"):
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(max(info.min, -5), min(info.max, 5), size=shape, endpoint=True).astype(dt)
    if kind == "ties":
        return rng.integers(-2, 3, size=shape).astype(dt)
    if kind == "positive":
        return (np.abs(rng.standard_normal(shape)) + 0.1).astype(dt)
    x = rng.standard_normal(shape)
    if kind == "nan":
        x.reshape(-1)[rng.integers(0, x.size)] = np.nan
    return x.astype(dt)


def expected_as(exp64, dtype):
    dt = np.dtype(dtype)
    if dt == np.float16:
        return np.asarray(exp64).astype(np.float32).astype(np.float16)
    return np.asarray(exp64).astype(dt)


def assert_matches(actual, exp, dtype):
    exp = expected_as(exp, dtype)
    assert actual.dtype == exp.dtype and actual.shape == exp.shape
    dt = np.dtype(dtype)
    if dt == np.float64:
        np.testing.assert_allclose(actual, exp, rtol=1e-12, atol=1e-14)
    elif dt == np.float32:
        np.testing.assert_allclose(actual, exp, rtol=2e-6, atol=1e-6)
    elif dt == np.float16:
        np.testing.assert_allclose(actual.astype(np.float32), exp.astype(np.float32),
                                   rtol=2.0**-10, atol=2.0**-14)
    else:
        np.testing.assert_array_equal(actual, exp)


class Case:
    """A drawn geometry with data in the layout under test; results mapped back to channels-first."""

    def __init__(self, geo, dtype, seed, kind="randn"):
        (self.nd, self.sizes, self.k, self.s, self.p, self.d, self.c,
         self.last, self.batched, lead) = geo
        self.dtype = dtype
        self.rng = np.random.default_rng(seed)
        shape = (lead if self.batched else lead[1:]) + self.sizes
        self.x = make_x(shape, dtype, self.rng, kind)           # channels-first
        self.layout = "channels_last" if self.last else "channels_first"

    @property
    def xv(self):
        return ref.to_channels_last(self.x, self.nd) if self.last else self.x

    def user(self, a):
        return ref.to_channels_last(a, self.nd) if self.last else a

    def back(self, a):
        return ref.to_channels_first(a, self.nd) if self.last else a

    def grad(self, shape):
        return self.rng.standard_normal(shape).astype(self.dtype)

    def expect(self, ref_fn):
        """The reference result, or None where the reference rejects the geometry."""
        try:
            res = ref_fn()
        except ref.RefError:
            event("reference rejects the geometry")
            return None
        event("reference computes a result")
        return res


seeds = st.integers(0, 2**32 - 1)


@given(geometry(), st.sampled_from(FLOATS + INTS), st.sampled_from(["randn", "ties", "nan"]), seeds)
def test_max_pool(geo, dtype, kind, seed):
    cs = Case(geo, dtype, seed, kind)
    nd = cs.nd
    f, fb = getattr(fp, f"max_pool{nd}d"), getattr(fp, f"max_pool{nd}d_backward")
    args = (cs.k, cs.s, cs.p, cs.d, cs.c)
    res = cs.expect(lambda: ref.max_pool(cs.x, nd, *args))
    if res is None:
        with pytest.raises(fp.PoolingError):
            f(cs.xv, *args, layout=cs.layout)
        return
    exp, idx = res
    out, ires = f(cs.xv, *args, return_indices=True, layout=cs.layout)
    assert_matches(cs.back(out), exp, dtype)
    np.testing.assert_array_equal(cs.back(ires), idx)
    if np.dtype(dtype).kind == "f":
        g = cs.grad(exp.shape)
        gx = fb(cs.user(g), cs.xv, *args, layout=cs.layout)
        assert_matches(cs.back(gx), ref.max_pool_backward(g, cs.x, nd, *args), dtype)


@given(geometry(), st.sampled_from(FLOATS), st.booleans(), st.none() | st.integers(1, 6), seeds)
def test_avg_pool(geo, dtype, count_include_pad, divisor_override, seed):
    cs = Case(geo, dtype, seed)
    nd = cs.nd
    f, fb = getattr(fp, f"avg_pool{nd}d"), getattr(fp, f"avg_pool{nd}d_backward")
    opts = dict(count_include_pad=count_include_pad, divisor_override=divisor_override)
    kw = dict(stride=cs.s, padding=cs.p, ceil_mode=cs.c, dilation=cs.d, layout=cs.layout, **opts)
    exp = cs.expect(lambda: ref.avg_pool(cs.x, nd, cs.k, cs.s, cs.p, cs.d, cs.c, **opts))
    if exp is None:
        with pytest.raises(fp.PoolingError):
            f(cs.xv, cs.k, **kw)
        return
    assert_matches(cs.back(f(cs.xv, cs.k, **kw)), exp, dtype)
    g = cs.grad(exp.shape)
    gx = fb(cs.user(g), cs.xv, cs.k, **kw)
    assert_matches(cs.back(gx), ref.avg_pool_backward(g, cs.x, nd, cs.k, cs.s, cs.p, cs.d, cs.c, **opts),
                   dtype)


LP_OPTS = {"onnx": {}, "torch": {"torch_compat": True}, "mean": {"power_mean": True}}


@given(geometry(), st.sampled_from(["float64", "float32"]), st.sampled_from(list(LP_OPTS)),
       st.sampled_from([1, 2, 3, 1.5]), seeds)
def test_lp_pool(geo, dtype, mode, p, seed):
    kind = "positive" if mode == "torch" and p in (3, 1.5) else "randn"
    cs = Case(geo, dtype, seed, kind)
    nd = cs.nd
    f, fb = getattr(fp, f"lp_pool{nd}d"), getattr(fp, f"lp_pool{nd}d_backward")
    kw = dict(stride=cs.s, ceil_mode=cs.c, padding=cs.p, dilation=cs.d, layout=cs.layout, **LP_OPTS[mode])
    exp = cs.expect(lambda: ref.lp_pool(cs.x, nd, p, cs.k, cs.s, cs.p, cs.d, cs.c, mode=mode))
    if exp is None:
        with pytest.raises(fp.PoolingError):
            f(cs.xv, p, cs.k, **kw)
        return
    assert_matches(cs.back(f(cs.xv, p, cs.k, **kw)), exp, dtype)
    g = cs.grad(exp.shape)
    gx = fb(cs.user(g), cs.xv, p, cs.k, **kw)
    exp_g = ref.lp_pool_backward(g, cs.x, nd, p, cs.k, cs.s, cs.p, cs.d, cs.c, mode=mode)
    assert_matches(cs.back(gx), exp_g, dtype)


@st.composite
def adaptive_case(draw):
    nd = draw(st.integers(1, 3))
    sizes = tuple(draw(st.integers(1, 7 if nd < 3 else 4)) for _ in range(nd))
    osz = tuple(draw(st.none() | st.integers(1, 8 if nd < 3 else 5)) for _ in range(nd))
    return nd, sizes, osz, draw(st.booleans()), draw(st.booleans())


@given(adaptive_case(), st.sampled_from(["avg", "max"]), st.sampled_from(FLOATS), seeds)
def test_adaptive(case, kind, dtype, seed):
    nd, sizes, osz, last, batched = case
    geo = (nd, sizes, None, None, None, None, None, last, batched, (2, 3))
    cs = Case(geo, dtype, seed, "ties" if kind == "max" else "randn")
    f = getattr(fp, f"adaptive_{kind}_pool{nd}d")
    fb = getattr(fp, f"adaptive_{kind}_pool{nd}d_backward")
    if kind == "max":
        exp, idx = ref.adaptive_max_pool(cs.x, nd, osz)
        out, ires = f(cs.xv, osz, return_indices=True, layout=cs.layout)
        np.testing.assert_array_equal(cs.back(ires), idx)
        g = cs.grad(exp.shape)
        exp_g = ref.adaptive_max_pool_backward(g, cs.x, nd, osz)
    else:
        exp = ref.adaptive_avg_pool(cs.x, nd, osz)
        out = f(cs.xv, osz, layout=cs.layout)
        g = cs.grad(exp.shape)
        exp_g = ref.adaptive_avg_pool_backward(g, cs.x, nd, osz)
    assert_matches(cs.back(out), exp, dtype)
    assert_matches(cs.back(fb(cs.user(g), cs.xv, osz, layout=cs.layout)), exp_g, dtype)


@given(geometry(wide=True))
def test_rejects_exactly_where_the_reference_does(geo):
    # the geometry alone decides; checked for all three window reducers
    nd, sizes, k, s, p, d, c, last, batched, lead = geo
    x = np.zeros((lead if batched else lead[1:]) + sizes)
    rejected = False
    try:
        ref.window_axes(sizes, k, s, p, d, c)
    except ref.RefError:
        rejected = True
    event(f"rejected={rejected}")
    calls = [
        lambda: getattr(fp, f"max_pool{nd}d")(x, k, s, p, d, c),
        lambda: getattr(fp, f"avg_pool{nd}d")(x, k, s, p, c, dilation=d),
        lambda: getattr(fp, f"lp_pool{nd}d")(x, 2, k, s, c, padding=p, dilation=d),
    ]
    for call in calls:
        if rejected:
            with pytest.raises(fp.PoolingError):
                call()
        else:
            out = call()
            assert out.shape[-nd:] == tuple(len(a) for a in ref.window_axes(sizes, k, s, p, d, c))
