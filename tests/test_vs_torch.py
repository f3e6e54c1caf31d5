"""fastpool against PyTorch (CPU) as an oracle.

Every configuration PyTorch accepts (padding <= kernel_size // 2, dilation for
max pooling only, divisor_override for 2-D/3-D average pooling, Lp pooling
without padding) is compared: forward values, return_indices, and the gradient
of ``sum(g * out)`` from autograd against fastpool's backward.  Channels-last
input is handed to torch as a permuted view, which for 2-D/3-D is a
``torch.channels_last``/``channels_last_3d`` tensor, so torch's channels-last
kernels are the oracle there.

float64 must agree to rtol 1e-12; float32 to a few ULP (both add small windows
in float32, in their own orders; fastpool adds larger ones in float64).
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastpool as fp

SIZES = {1: (7,), 2: (5, 6), 3: (4, 5, 3)}
LAYOUTS = [  # (layout, channels_last?, batched?)
    ("channels_first", False, True),
    ("channels_last", True, True),
    ("channels_first", False, False),
    ("channels_last", True, False),
]


def _ax(values, nd):
    return tuple(values[:nd])


def rng_for(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def randn(shape, dtype, rng, positive=False):
    x = rng.standard_normal(shape)
    if positive:
        x = np.abs(x) + 0.1
    return x.astype(dtype)


# Batched cases have 9 channels and unbatched ones the first 3: channels-last input
# with at least 8 channels takes fastpool's channel-vector kernels, fewer channels
# its row-buffer kernels.
CHANNELS = 9
UNBATCHED_CHANNELS = 3


def user_view(x, nd, last, batched):
    """x is channels-first batched (N, C, *sp); the array handed to fastpool."""
    v = x if batched else x[0, :UNBATCHED_CHANNELS]
    return np.ascontiguousarray(np.moveaxis(v, -(nd + 1), -1)) if last else v


def assert_close(actual, expected, dtype, what, ulps=4):
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if np.dtype(dtype) == np.float64:
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-13, err_msg=what)
    else:
        eps = float(np.finfo(np.float32).eps)
        np.testing.assert_allclose(actual, expected, rtol=ulps * eps, atol=ulps * eps, err_msg=what)


def torch_run(fn, xv, gv, nd, last, contiguous=False):
    """Run ``fn`` (channels-first torch op) on the user array ``xv``.

    Returns (out, indices or None, dL/dx for L = sum(g * out)) in xv's layout.
    ``contiguous`` hands torch a contiguous copy instead of the channels-last view.
    """
    xt = torch.tensor(xv, requires_grad=True)
    xin = xt.movedim(-1, -(nd + 1)) if last else xt
    if contiguous:
        xin = xin.contiguous()
    res = fn(xin)
    out, idx = res if isinstance(res, tuple) else (res, None)
    if last:
        out = out.movedim(-(nd + 1), -1)
        idx = None if idx is None else idx.movedim(-(nd + 1), -1)
    out.backward(torch.tensor(gv))
    return (out.detach().numpy(), None if idx is None else idx.numpy(), xt.grad.numpy())


def compare(nd, x, dtype, rng, torch_fn, fp_fn, fp_bwd, with_indices=False, ulps=4,
            layouts=LAYOUTS, torch_contiguous=False, values=None):
    """fp_fn(xv, layout) -> out or (out, idx); fp_bwd(gv, xv, layout, indices) -> dL/dx;
    values(xv, layout) -> out alone (max pooling without indices takes other kernels).

    x is channels-first batched; each layout combination sees the same data and
    the same upstream gradient.
    """
    with torch.no_grad():
        res = torch_fn(torch.tensor(x))
    g = randn(tuple((res[0] if isinstance(res, tuple) else res).shape), dtype, rng)
    for layout, last, batched in layouts:
        what = f"layout={layout} batched={batched}"
        xv = user_view(x, nd, last, batched)
        gv = user_view(g, nd, last, batched)
        res = fp_fn(xv, layout)
        out, idx = res if with_indices else (res, None)
        t_out, t_idx, t_grad = torch_run(torch_fn, xv, gv, nd, last, torch_contiguous)
        assert_close(out, t_out, dtype, "forward " + what, ulps)
        if values is not None:
            assert_close(values(xv, layout), t_out, dtype, "forward without indices " + what, ulps)
        if with_indices:
            assert idx.dtype == np.int64
            np.testing.assert_array_equal(idx, t_idx, err_msg="indices " + what)
        gx = fp_bwd(gv, xv, layout, None)
        assert_close(gx, t_grad, dtype, "backward " + what, ulps)
        if with_indices:
            gx2 = fp_bwd(gv, xv, layout, idx)
            assert_close(gx2, t_grad, dtype, "backward(indices=) " + what, ulps)


def fpf(name, nd):
    return getattr(fp, f"{name}{nd}d"), getattr(fp, f"{name}{nd}d_backward")


def tf(name, nd):
    return getattr(F, f"{name}{nd}d")


# ----------------------------------------------------------------------------- max

# (kernel_size, stride, padding, dilation, ceil_mode) with padding <= kernel_size // 2
MAX_WINDOWS = {
    "k2": lambda nd: (2, None, 0, 1, False),
    "k3s1p1": lambda nd: (3, 1, 1, 1, False),
    "tuples": lambda nd: (_ax((3, 2, 2), nd), _ax((2, 1, 2), nd), _ax((1, 0, 1), nd), 1, False),
    "ceil": lambda nd: (3, 2, 1, 1, True),
    "ceil_overhang": lambda nd: (2, 2, 0, 1, True),
    "dilation": lambda nd: (2, 1, 1, _ax((2, 3, 1), nd), False),
    "dilation_ceil": lambda nd: (3, 2, 1, _ax((2, 1, 2), nd), True),
    "k1": lambda nd: (_ax((1, 2, 1), nd), _ax((1, 2, 2), nd), 0, 1, False),
}


@pytest.mark.parametrize("data", ["randn", "ties"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("window", list(MAX_WINDOWS))
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_pool(nd, window, dtype, data):
    k, s, p, d, c = MAX_WINDOWS[window](nd)
    rng = rng_for("max", nd, window, dtype, data)
    shape = (2, CHANNELS) + SIZES[nd]
    x = randn(shape, dtype, rng) if data == "randn" else rng.integers(-2, 3, shape).astype(dtype)
    f, fb = fpf("max_pool", nd)
    compare(
        nd, x, dtype, rng,
        lambda t: tf("max_pool", nd)(t, k, s, p, d, ceil_mode=c, return_indices=True),
        lambda xv, lay: f(xv, k, s, p, d, c, return_indices=True, layout=lay),
        lambda gv, xv, lay, ind: fb(gv, xv, k, s, p, d, c, layout=lay, indices=ind),
        with_indices=True, values=lambda xv, lay: f(xv, k, s, p, d, c, layout=lay),
    )


# windows of 5+ cells along H/W take fastpool's running-maximum kernels (values only)
LARGE_SIZES = {2: (9, 12), 3: (3, 8, 9)}
LARGE_WINDOWS = {
    "k5s1p2": {2: ((5, 5), 1, 2, False), 3: ((1, 5, 5), 1, (0, 2, 2), False)},
    "k6_ceil": {2: ((6, 5), (3, 2), (2, 1), True), 3: ((1, 6, 5), (1, 3, 2), (0, 2, 1), True)},
    "k7x6_s2": {2: ((7, 6), 2, (3, 2), False), 3: ((1, 7, 6), (1, 2, 2), 0, False)},
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("window", list(LARGE_WINDOWS))
@pytest.mark.parametrize("nd", [2, 3])
def test_max_pool_large_windows(nd, window, dtype):
    k, s, p, c = LARGE_WINDOWS[window][nd]
    rng = rng_for("max_large", nd, window, dtype)
    x = randn((2, CHANNELS) + LARGE_SIZES[nd], dtype, rng)
    x.reshape(-1)[rng.choice(x.size, 5, replace=False)] = np.nan
    f, fb = fpf("max_pool", nd)
    compare(
        nd, x, dtype, rng,
        lambda t: tf("max_pool", nd)(t, k, s, p, ceil_mode=c, return_indices=True),
        lambda xv, lay: f(xv, k, s, p, 1, c, return_indices=True, layout=lay),
        lambda gv, xv, lay, ind: fb(gv, xv, k, s, p, 1, c, layout=lay, indices=ind),
        with_indices=True, values=lambda xv, lay: f(xv, k, s, p, 1, c, layout=lay),
    )


# ----------------------------------------------------------------------------- average

AVG_WINDOWS = {
    "k2": lambda nd: (2, None, 0, False),
    "k3s1p1": lambda nd: (3, 1, 1, False),
    "tuples": lambda nd: (_ax((3, 2, 2), nd), _ax((2, 1, 2), nd), _ax((1, 0, 1), nd), False),
    "ceil": lambda nd: (3, 2, 1, True),
    "ceil_overhang": lambda nd: (2, 2, 0, True),
    "ceil_tuples": lambda nd: (_ax((2, 3, 2), nd), _ax((3, 2, 2), nd), _ax((1, 1, 0), nd), True),
}
# torch.nn.functional.avg_pool1d has no divisor_override
AVG_VARIANTS = [(nd, cip, div) for nd in (1, 2, 3)
                for cip, div in [(True, None), (False, None), (True, 3), (False, 7)]
                if nd > 1 or div is None]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("window", list(AVG_WINDOWS))
@pytest.mark.parametrize("nd,cip,div", AVG_VARIANTS,
                         ids=[f"{nd}d-cip{a}-div{b}" for nd, a, b in AVG_VARIANTS])
def test_avg_pool(nd, window, cip, div, dtype):
    k, s, p, c = AVG_WINDOWS[window](nd)
    rng = rng_for("avg", nd, window, cip, div, dtype)
    x = randn((2, CHANNELS) + SIZES[nd], dtype, rng)
    extra = {} if nd == 1 else {"divisor_override": div}
    f, fb = fpf("avg_pool", nd)
    compare(
        nd, x, dtype, rng,
        lambda t: tf("avg_pool", nd)(t, k, s, p, ceil_mode=c, count_include_pad=cip, **extra),
        lambda xv, lay: f(xv, k, s, p, c, cip, div, layout=lay),
        lambda gv, xv, lay, ind: fb(gv, xv, k, s, p, c, cip, div, layout=lay),
    )


# ----------------------------------------------------------------------------- Lp

LP_WINDOWS = {
    "k2": lambda nd: (2, None, False),
    "k2s1": lambda nd: (2, 1, False),
    "tuples": lambda nd: (_ax((3, 2, 2), nd), _ax((2, 1, 2), nd), False),
    "ceil": lambda nd: (_ax((3, 2, 2), nd), 2, True),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("p", [1, 2, 3, 1.5])
@pytest.mark.parametrize("window", list(LP_WINDOWS))
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_lp_pool_torch_compat(nd, window, p, dtype):
    k, s, c = LP_WINDOWS[window](nd)
    rng = rng_for("lp", nd, window, p, dtype)
    # torch's signed x^p: fractional or odd p on negative windows gives NaN; keep those positive
    x = randn((2, CHANNELS) + SIZES[nd], dtype, rng, positive=p in (3, 1.5))
    f, fb = fpf("lp_pool", nd)
    # torch's lp_pool1d multiplies by kernel_size, so it needs a plain int
    tk, ts = (k[0], s[0] if isinstance(s, tuple) else s) if nd == 1 and isinstance(k, tuple) else (k, s)
    compare(
        nd, x, dtype, rng,
        lambda t: tf("lp_pool", nd)(t, p, tk, ts, ceil_mode=c),
        lambda xv, lay: f(xv, p, k, s, c, torch_compat=True, layout=lay),
        lambda gv, xv, lay, ind: fb(gv, xv, p, k, s, c, torch_compat=True, layout=lay),
        ulps=16,  # torch: pow, average, scale, pow, each rounded to float32
    )


# ----------------------------------------------------------------------------- adaptive

ADAPTIVE = {
    1: [((10,), 7), ((5,), 8), ((6,), 3), ((7,), None)],
    2: [((10, 5), (7, 8)), ((6, 4), (3, 2)), ((5, 7), (None, 3)), ((3, 4), 1)],
    3: [((5, 4, 3), (3, 5, 2)), ((4, 4, 2), (2, 2, 1)), ((3, 5, 4), (None, 2, 7))],
}
ADAPTIVE_CASES = [(nd, i) for nd in ADAPTIVE for i in range(len(ADAPTIVE[nd]))]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("nd,case", ADAPTIVE_CASES, ids=[f"{nd}d-{i}" for nd, i in ADAPTIVE_CASES])
def test_adaptive(nd, case, kind, dtype):
    sizes, osz = ADAPTIVE[nd][case]
    rng = rng_for("adaptive", nd, case, kind, dtype)
    x = randn((2, CHANNELS) + sizes, dtype, rng)
    f, fb = fpf(f"adaptive_{kind}_pool", nd)
    t_op = tf(f"adaptive_{kind}_pool", nd)
    # torch's 1-D adaptive pooling takes no None: spell out the kept size
    t_osz = sizes[0] if nd == 1 and osz is None else osz
    t = lambda xt, _osz, **kw: t_op(xt, t_osz, **kw)  # noqa: E731
    if kind == "max":
        compare(nd, x, dtype, rng,
                lambda xt: t(xt, osz, return_indices=True),
                lambda xv, lay: f(xv, osz, return_indices=True, layout=lay),
                lambda gv, xv, lay, ind: fb(gv, xv, osz, layout=lay, indices=ind),
                with_indices=True)
    else:
        compare(nd, x, dtype, rng, lambda xt: t(xt, osz),
                lambda xv, lay: f(xv, osz, layout=lay),
                lambda gv, xv, lay, ind: fb(gv, xv, osz, layout=lay))


# ----------------------------------------------------------------------------- global


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", ["avg", "max", "lp2", "lp3", "lp1.5"])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_global(nd, kind, dtype):
    rng = rng_for("global", nd, kind, dtype)
    x = randn((2, CHANNELS) + SIZES[nd], dtype, rng)
    dims = tuple(range(-nd, 0))
    if kind == "avg":
        t = lambda xt: xt.mean(dim=dims, keepdim=True)  # noqa: E731
        f = lambda xv, lay: fp.global_avg_pool(xv, layout=lay)  # noqa: E731
        fb = lambda gv, xv, lay, ind: fp.global_avg_pool_backward(gv, xv, layout=lay)  # noqa: E731
    elif kind == "max":
        t = lambda xt: tf("adaptive_max_pool", nd)(xt, 1, return_indices=True)  # noqa: E731
        f = lambda xv, lay: fp.global_max_pool(xv, return_indices=True, layout=lay)  # noqa: E731
        fb = lambda gv, xv, lay, ind: fp.global_max_pool_backward(gv, xv, layout=lay, indices=ind)  # noqa: E731
    else:
        p = float(kind[2:])
        t = lambda xt: torch.linalg.vector_norm(xt, ord=p, dim=dims, keepdim=True)  # noqa: E731
        f = lambda xv, lay: fp.global_lp_pool(xv, p, layout=lay)  # noqa: E731
        fb = lambda gv, xv, lay, ind: fp.global_lp_pool_backward(gv, xv, p, layout=lay)  # noqa: E731
    # global pooling takes batched input only
    compare(nd, x, dtype, rng, t, f, fb, with_indices=kind == "max", ulps=8,
            layouts=[lay for lay in LAYOUTS if lay[2]])


# ----------------------------------------------------------------------------- NaN, inf, ties


def _planted(nd, rng, dtype, how):
    shape = (2, CHANNELS) + SIZES[nd]
    x = randn(shape, dtype, rng)
    flat = x.reshape(-1)
    if how == "constant":
        x[...] = 1.5
    elif how == "nan_some":
        flat[rng.choice(flat.size, max(3, flat.size // 6), replace=False)] = np.nan
    elif how == "nan_many":  # several NaNs per window: the index is the last NaN's
        flat[rng.choice(flat.size, flat.size // 2, replace=False)] = np.nan
    elif how == "neg_inf":  # whole windows of -inf: the index is the window's first tap
        flat[rng.choice(flat.size, (3 * flat.size) // 4, replace=False)] = -np.inf
    elif how == "all_neg_inf":
        x[...] = -np.inf
    elif how == "inf_nan_mix":
        pick = rng.choice(flat.size, flat.size // 2, replace=False)
        flat[pick] = rng.choice([np.inf, -np.inf, np.nan], size=pick.size)
    elif how == "ties":
        x[...] = rng.integers(0, 2, shape)
    return x


SPECIAL = ["constant", "nan_some", "nan_many", "neg_inf", "all_neg_inf", "inf_nan_mix", "ties"]


@pytest.mark.parametrize("how", SPECIAL)
@pytest.mark.parametrize("window", ["k3s1p1", "dilation_ceil", "tuples"])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_pool_nan_inf_ties(nd, window, how):
    dtype = "float64"
    k, s, p, d, c = MAX_WINDOWS[window](nd)
    rng = rng_for("special", nd, window, how)
    x = _planted(nd, rng, dtype, how)
    f, fb = fpf("max_pool", nd)
    compare(
        nd, x, dtype, rng,
        lambda t: tf("max_pool", nd)(t, k, s, p, d, ceil_mode=c, return_indices=True),
        lambda xv, lay: f(xv, k, s, p, d, c, return_indices=True, layout=lay),
        lambda gv, xv, lay, ind: fb(gv, xv, k, s, p, d, c, layout=lay, indices=ind),
        with_indices=True, values=lambda xv, lay: f(xv, k, s, p, d, c, layout=lay),
        # see test_torch_channels_last_3d_all_neg_inf_window_index
        torch_contiguous=nd == 3 and "neg_inf" in how,
    )


@pytest.mark.xfail(strict=True, reason=(
    "torch's channels_last_3d max_pool3d kernel seeds a window's index without the depth "
    "offset (h*W + w instead of d*H*W + h*W + w), visible when no tap beats -inf; its "
    "contiguous kernel, the NumPy reference and fastpool use the first tap's full index"))
def test_torch_channels_last_3d_all_neg_inf_window_index():
    x = np.full((1, 2, 4, 5, 3), -np.inf)
    t = torch.tensor(x).contiguous(memory_format=torch.channels_last_3d)
    _, t_idx = F.max_pool3d(t, 3, 1, 1, return_indices=True)
    _, idx = fp.max_pool3d(x, 3, 1, 1, return_indices=True)
    _, t_idx_contig = F.max_pool3d(torch.tensor(x), 3, 1, 1, return_indices=True)
    np.testing.assert_array_equal(idx, t_idx_contig.numpy())  # holds
    np.testing.assert_array_equal(idx, t_idx.numpy())  # the divergence


@pytest.mark.parametrize("how", SPECIAL)
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_adaptive_and_global_max_nan_inf_ties(nd, how):
    dtype = "float32"
    rng = rng_for("special_adaptive", nd, how)
    x = _planted(nd, rng, dtype, how)
    osz = (5, 4, 2)[:nd]
    f, fb = fpf("adaptive_max_pool", nd)
    t = tf("adaptive_max_pool", nd)
    compare(nd, x, dtype, rng,
            lambda xt: t(xt, osz, return_indices=True),
            lambda xv, lay: f(xv, osz, return_indices=True, layout=lay),
            lambda gv, xv, lay, ind: fb(gv, xv, osz, layout=lay, indices=ind),
            with_indices=True)
    out, idx = fp.global_max_pool(x, return_indices=True)
    t_out, t_idx = t(torch.tensor(x), 1, return_indices=True)
    np.testing.assert_array_equal(out, t_out.numpy())
    np.testing.assert_array_equal(idx, t_idx.numpy())


def test_max_pool_first_maximum_and_last_nan_explicit():
    # one window, PyTorch's rule spelled out: ties keep the first, the last NaN wins
    x = np.array([[[1.0, 3.0, 3.0, 2.0]], [[np.nan, 0.0, np.nan, 5.0]]])
    out, idx = fp.max_pool1d(x, 4, return_indices=True)
    t_out, t_idx = F.max_pool1d(torch.tensor(x), 4, return_indices=True)
    np.testing.assert_array_equal(out, t_out.numpy())
    np.testing.assert_array_equal(idx, t_idx.numpy())
    assert idx[0, 0, 0] == 1 and idx[1, 0, 0] == 2 and np.isnan(out[1, 0, 0])
