"""Every backward pass against central finite differences (float64).

For L = sum(g * f(x)) with a random upstream g, dL/dx_i is estimated as
(L(x + eps e_i) - L(x - eps e_i)) / (2 eps).  All 2*x.size perturbed copies of
x are stacked on the batch axis and pooled in one call (pooling never mixes
batch entries), so each case costs two fastpool calls.  Data keep away from
the points where the operators are not differentiable: max windows hold
distinct values far apart compared with eps, Lp data stay away from 0.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import fastpool as fp

EPS = 1e-6
SHAPES = {1: (1, 2, 6), 2: (1, 2, 4, 5), 3: (1, 2, 3, 4, 3)}


def rng_for(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _ax(values, nd):
    return tuple(values[:nd])


def to_layout(x, nd, last):
    return np.ascontiguousarray(np.moveaxis(x, -(nd + 1), -1)) if last else x


def numeric_grad(f, x, g, eps=EPS):
    """Central differences of sum(g * f(x)); f takes a batch stacked on axis 0 of x."""
    m = x.size
    steps = (np.eye(m) * eps).reshape((m,) + x.shape)
    batch = np.concatenate([x + steps, x - steps])           # (2m, *x.shape)
    out = f(batch.reshape((2 * m * x.shape[0],) + x.shape[1:]))
    out = out.reshape((2 * m,) + g.shape)
    loss = (out * g).reshape(2 * m, -1).sum(axis=1)
    return ((loss[:m] - loss[m:]) / (2 * eps)).reshape(x.shape)


def check(f, fb, x, rng):
    out = f(x)
    g = rng.standard_normal(out.shape)
    expected = numeric_grad(f, x, g)
    actual = fb(g, x)
    assert actual.shape == x.shape and actual.dtype == np.float64
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-8)


def distinct(shape, rng):
    """Values at least 0.25 apart, so no window has a tie within eps."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.25 + rng.uniform(0, 0.01, n) - n * 0.125).reshape(shape)


def away_from_zero(shape, rng, signed):
    mag = rng.uniform(0.3, 1.5, shape)
    return mag * rng.choice([-1.0, 1.0], shape) if signed else mag


LAYOUTS = ["channels_first", "channels_last"]

WINDOWS = {
    "k3s1p1": lambda nd: (3, 1, 1, 1, False),
    "ceil_dil": lambda nd: (2, _ax((2, 1, 2), nd), _ax(((1, 0), (0, 1), (1, 1)), nd), 2, True),
    "tuples_asym": lambda nd: (_ax((3, 2, 2), nd), _ax((2, 1, 1), nd), _ax(((2, 0), (1, 1), (0, 1)), nd), 1, False),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("window", list(WINDOWS))
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_pool(nd, window, layout):
    k, s, p, d, c = WINDOWS[window](nd)
    rng = rng_for("max", nd, window, layout)
    last = layout == "channels_last"
    x = to_layout(distinct(SHAPES[nd], rng), nd, last)
    f, fb = getattr(fp, f"max_pool{nd}d"), getattr(fp, f"max_pool{nd}d_backward")
    check(lambda v: f(v, k, s, p, d, c, layout=layout),
          lambda g, v: fb(g, v, k, s, p, d, c, layout=layout), x, rng)


AVG_VARIANTS = {"count_pad": (True, None), "exclude_pad": (False, None), "divisor": (True, 3)}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("variant", list(AVG_VARIANTS))
@pytest.mark.parametrize("window", list(WINDOWS))
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_avg_pool(nd, window, variant, layout):
    k, s, p, d, c = WINDOWS[window](nd)
    cip, div = AVG_VARIANTS[variant]
    rng = rng_for("avg", nd, window, variant, layout)
    x = to_layout(rng.standard_normal(SHAPES[nd]), nd, layout == "channels_last")
    f, fb = getattr(fp, f"avg_pool{nd}d"), getattr(fp, f"avg_pool{nd}d_backward")
    check(lambda v: f(v, k, s, p, c, cip, div, dilation=d, layout=layout),
          lambda g, v: fb(g, v, k, s, p, c, cip, div, dilation=d, layout=layout), x, rng)


LP_MODES = {"onnx": {}, "torch": {"torch_compat": True}, "mean": {"power_mean": True}}
LP_CASES = [(m, p, False) for m in LP_MODES for p in (1.5, 2, 3)] + \
           [("onnx", p, True) for p in (1, 1.5, 2, 3)] + [("mean", 2, True)]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("mode,p,signed", LP_CASES,
                         ids=[f"{m}-p{p}-{'signed' if s else 'positive'}" for m, p, s in LP_CASES])
@pytest.mark.parametrize("window", ["k3s1p1", "ceil_dil"])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_lp_pool(nd, window, mode, p, signed, layout):
    k, s, pad, d, c = WINDOWS[window](nd)
    rng = rng_for("lp", nd, window, mode, p, signed, layout)
    x = to_layout(away_from_zero(SHAPES[nd], rng, signed), nd, layout == "channels_last")
    opts = LP_MODES[mode]
    f, fb = getattr(fp, f"lp_pool{nd}d"), getattr(fp, f"lp_pool{nd}d_backward")
    check(lambda v: f(v, p, k, s, c, padding=pad, dilation=d, layout=layout, **opts),
          lambda g, v: fb(g, v, p, k, s, c, padding=pad, dilation=d, layout=layout, **opts), x, rng)


ADAPTIVE = {1: [((7,), 4), ((3,), 5)], 2: [((5, 3), (3, 4)), ((4, 4), 2)],
            3: [((3, 4, 2), (2, 3, 3)), ((2, 2, 4), (1, None, 3))]}
ADAPTIVE_CASES = [(nd, i) for nd in ADAPTIVE for i in range(len(ADAPTIVE[nd]))]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("nd,case", ADAPTIVE_CASES, ids=[f"{nd}d-{i}" for nd, i in ADAPTIVE_CASES])
def test_adaptive(nd, case, kind, layout):
    sizes, osz = ADAPTIVE[nd][case]
    rng = rng_for("adaptive", nd, case, kind, layout)
    shape = (1, 2) + sizes
    data = distinct(shape, rng) if kind == "max" else rng.standard_normal(shape)
    x = to_layout(data, nd, layout == "channels_last")
    f = getattr(fp, f"adaptive_{kind}_pool{nd}d")
    fb = getattr(fp, f"adaptive_{kind}_pool{nd}d_backward")
    check(lambda v: f(v, osz, layout=layout), lambda g, v: fb(g, v, osz, layout=layout), x, rng)


GLOBAL_KINDS = ["avg", "max", "lp1", "lp1.5", "lp2", "lp3"]


@pytest.mark.parametrize("keepdims", [True, False])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", GLOBAL_KINDS)
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_global(nd, kind, layout, keepdims):
    rng = rng_for("global", nd, kind, layout, keepdims)
    shape = SHAPES[nd]
    if kind == "max":
        data = distinct(shape, rng)
    else:
        data = away_from_zero(shape, rng, signed=True)
    x = to_layout(data, nd, layout == "channels_last")
    if kind == "avg":
        f = lambda v: fp.global_avg_pool(v, keepdims=keepdims, layout=layout)  # noqa: E731
        fb = lambda g, v: fp.global_avg_pool_backward(g, v, keepdims=keepdims, layout=layout)  # noqa: E731
    elif kind == "max":
        f = lambda v: fp.global_max_pool(v, keepdims=keepdims, layout=layout)  # noqa: E731
        fb = lambda g, v: fp.global_max_pool_backward(g, v, keepdims=keepdims, layout=layout)  # noqa: E731
    else:
        p = float(kind[2:])
        f = lambda v: fp.global_lp_pool(v, p, keepdims=keepdims, layout=layout)  # noqa: E731
        fb = lambda g, v: fp.global_lp_pool_backward(g, v, p, keepdims=keepdims, layout=layout)  # noqa: E731
    check(f, fb, x, rng)
