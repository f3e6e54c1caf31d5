"""fastpool against the independent NumPy reference (tests/reference.py).

A grid over rank (1-3 spatial axes), window geometry (int / tuple / asymmetric
(begin, end) padding / "same" / "valid", dilation, ceil_mode), reducer options,
dtype, layout (channels_first, channels_last and the NCHW-style aliases) and
batched / unbatched input.  Forward values, max indices and backward passes are
all checked; backward is compared with the reference's scatter loops.

Tolerances: float64 rtol 1e-12; float32 a few ULP (fastpool adds small
windows in float32, larger ones in float64, see tests/test_sum32.py; the
reference is float64 rounded to float32); float16
against the reference rounded to float32 and then to float16 (fastpool computes
float16 in float32), so at most one float16 ULP apart.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import fastpool as fp
import reference as ref

SIZES = {1: (7,), 2: (5, 6), 3: (4, 5, 3)}
ALIAS_CF = {1: "NCW", 2: "NCHW", 3: "NCDHW"}
ALIAS_CL = {1: "NWC", 2: "NHWC", 3: "NDHWC"}
FLOATS = ("float64", "float32", "float16")
INTS = ("int8", "uint8", "int32", "int64")

FN = {
    (kind, nd): getattr(fp, f"{kind}{nd}d")
    for kind in ("max_pool", "avg_pool", "lp_pool", "adaptive_avg_pool", "adaptive_max_pool")
    for nd in (1, 2, 3)
}


def _ax(values, nd):
    return tuple(values[:nd])


# name -> (kernel_size, stride, padding, dilation, ceil_mode) as functions of nd
WINDOWS = {
    "k2": lambda nd: (2, None, 0, 1, False),
    "k3s1p1": lambda nd: (3, 1, 1, 1, False),
    "tuples": lambda nd: (_ax((3, 2, 2), nd), _ax((2, 1, 2), nd), _ax((1, 0, 1), nd), 1, False),
    "asym_pad": lambda nd: (3, 2, _ax(((0, 2), (2, 1), (1, 0)), nd), 1, False),
    "same_s2": lambda nd: (3, 2, "same", 1, False),
    "same_dil": lambda nd: (2, 1, "same", 2, False),
    "valid": lambda nd: (_ax((2, 3, 2), nd), 2, "valid", 1, False),
    "dilation": lambda nd: (2, 1, 1, _ax((2, 3, 1), nd), False),
    "ceil": lambda nd: (3, 2, 1, 1, True),
    "ceil_overhang": lambda nd: (2, 2, 0, 1, True),
    "ceil_asym_dil": lambda nd: (2, _ax((3, 2, 2), nd), _ax(((1, 0), (0, 1), (1, 1)), nd), 2, True),
    "big_pad": lambda nd: (3, 3, 2, 1, False),
    "mixed_pad_ceil": lambda nd: (3, _ax((1, 2, 2), nd), _ax(((2, 1), 1, (0, 2)), nd), 1, True),
}
LP_WINDOWS = ("k2", "tuples", "asym_pad", "same_dil", "ceil", "ceil_asym_dil")


def layouts(nd):
    """(layout argument, channels_last?, batched?) combinations run for every case."""
    return [
        ("channels_first", False, True),
        ("channels_last", True, True),
        ("channels_first", False, False),
        (ALIAS_CF[nd], False, True),
        (ALIAS_CL[nd].lower(), True, False),
    ]


def rng_for(*key):
    """A generator seeded from the test's parameters (stable across processes)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


# Batched cases have 9 channels and unbatched ones the first 3: channels-last input
# with at least 8 channels takes fastpool's channel-vector kernels, fewer channels
# its row-buffer kernels.  The reference vectorises over channels, so this is cheap.
CHANNELS = 9
UNBATCHED_CHANNELS = 3


def make_x(nd, dtype, kind, rng, shape=None):
    shape = (2, CHANNELS) + (SIZES[nd] if shape is None else tuple(shape))
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        x = rng.integers(max(info.min, -4), min(info.max, 4), size=shape, endpoint=True).astype(dt)
        # the extremes of the type, so no sentinel in the kernel can beat them
        flat = x.reshape(-1)
        flat[rng.choice(flat.size, 4, replace=False)] = [info.min, info.max, info.min, info.max]
        return x
    if kind == "ties":
        return rng.integers(-3, 4, size=shape).astype(dt)
    if kind == "positive":
        return (np.abs(rng.standard_normal(shape)) + 0.1).astype(dt)
    x = rng.standard_normal(shape)
    if kind == "special":
        flat = x.reshape(-1)
        pick = rng.choice(flat.size, 6, replace=False)
        flat[pick] = [np.nan, np.nan, -np.inf, np.inf, -np.inf, np.nan]
    return x.astype(dt)


def expected_as(exp64, dtype):
    """The reference value as fastpool should return it in ``dtype``."""
    dt = np.dtype(dtype)
    if dt == np.float16:
        return np.asarray(exp64).astype(np.float32).astype(np.float16)
    return np.asarray(exp64).astype(dt)


def assert_close(actual, expected, dtype, what):
    dt = np.dtype(dtype)
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if dt == np.float64:
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-14, err_msg=what)
    elif dt == np.float32:
        np.testing.assert_allclose(actual, expected, rtol=2e-6, atol=1e-6, err_msg=what)
    elif dt == np.float16:
        np.testing.assert_allclose(actual.astype(np.float32), expected.astype(np.float32),
                                   rtol=2.0**-10, atol=2.0**-14, err_msg=what)
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=what)


def views(x, nd, last, batched):
    """The user array for a layout: x is channels-first (N, C, *sp)."""
    v = x if batched else x[0, :UNBATCHED_CHANNELS]
    return ref.to_channels_last(v, nd) if last else v


def back(a, nd, last):
    """A fastpool result in the layout under test -> channels-first."""
    return ref.to_channels_first(a, nd) if last else a


def run_layouts(nd, x, g, expected, fwd, bwd, exp_grad, dtype, out_dtype=None, idx=None,
                values=None):
    """Check forward (and indices, backward) for every layout combination.

    fwd(xv, layout) -> output or (output, indices); bwd(gv, xv, layout, indices) -> dL/dx;
    values(xv, layout) -> output alone (max pooling without indices takes other kernels).
    expected / exp_grad / idx are float64 / int64 channels-first batched references.
    """
    out_dtype = dtype if out_dtype is None else out_dtype
    for layout, last, batched in layouts(nd):
        what = f"layout={layout} batched={batched}"
        xv = views(x, nd, last, batched)
        sel = (lambda a: a) if batched else (lambda a: a[0, :UNBATCHED_CHANNELS])
        res = fwd(xv, layout)
        if idx is not None:
            res, ires = res
            np.testing.assert_array_equal(back(ires, nd, last), sel(idx), err_msg="indices " + what)
            assert ires.dtype == np.int64
        assert_close(back(res, nd, last), expected_as(sel(expected), out_dtype), out_dtype, "forward " + what)
        if values is not None:
            assert_close(back(values(xv, layout), nd, last), expected_as(sel(expected), out_dtype),
                         out_dtype, "forward without indices " + what)
        if bwd is None:
            continue
        gv = views(g, nd, last, batched)
        gx = bwd(gv, xv, layout, None)
        assert_close(back(gx, nd, last), expected_as(sel(exp_grad), dtype), dtype, "backward " + what)
        if idx is not None:
            gx2 = bwd(gv, xv, layout, ires)
            assert_close(back(gx2, nd, last), expected_as(sel(exp_grad), dtype), dtype,
                         "backward(indices=) " + what)


def grad_for(out_shape, dtype, rng):
    return rng.standard_normal(out_shape).astype(dtype)


# ----------------------------------------------------------------------------- max


# ties exercise the first-maximum rule, special values NaN propagation and infinities
MAX_DATA = [("float64", "randn")] + \
           [(dt, kind) for dt in FLOATS for kind in ("ties", "special")] + \
           [(dt, "ints") for dt in INTS]


@pytest.mark.parametrize("dtype,data", MAX_DATA, ids=[f"{d}-{k}" for d, k in MAX_DATA])
@pytest.mark.parametrize("window", list(WINDOWS))
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_pool(nd, window, dtype, data):
    k, s, p, d, c = WINDOWS[window](nd)
    rng = rng_for("max", nd, window, dtype, data)
    x = make_x(nd, dtype, data, rng)
    exp, idx = ref.max_pool(x, nd, k, s, p, d, c)
    assert exp.dtype == x.dtype
    f, fb = FN["max_pool", nd], getattr(fp, f"max_pool{nd}d_backward")
    floating = np.dtype(dtype).kind == "f"
    g = grad_for(exp.shape, dtype, rng) if floating else None
    exp_grad = ref.max_pool_backward(g, x, nd, k, s, p, d, c) if floating else None
    run_layouts(
        nd, x, g, exp,
        lambda xv, lay: f(xv, k, s, p, d, c, return_indices=True, layout=lay),
        (lambda gv, xv, lay, ind: fb(gv, xv, k, s, p, d, c, layout=lay, indices=ind)) if floating else None,
        exp_grad, dtype, idx=idx,
        values=lambda xv, lay: f(xv, k, s, p, d, c, layout=lay),
    )


# Windows of 5 or more cells along H/W (dilation 1, none along D) take fastpool's
# running-maximum kernels when no indices are asked for; larger inputs give them
# interior windows as well as clipped ones.
LARGE_SIZES = {2: (9, 12), 3: (3, 8, 9)}
LARGE_WINDOWS = {
    "k5s1p2": lambda nd: ((1, 5, 5) if nd == 3 else (5, 5), 1, (0, 2, 2) if nd == 3 else 2, 1, False),
    "k7x6_s2": lambda nd: ((1, 7, 6) if nd == 3 else (7, 6), (1, 2, 2) if nd == 3 else 2,
                           0 if nd == 3 else (3, (2, 3)), 1, False),
    "k6_ceil": lambda nd: ((1, 6, 5) if nd == 3 else (6, 5), (1, 3, 2) if nd == 3 else (3, 2),
                           (0, 2, 1) if nd == 3 else (2, 1), 1, True),
    "k5_strided_valid": lambda nd: ((1, 5, 8) if nd == 3 else (5, 8), (1, 4, 1) if nd == 3 else (4, 1),
                                    "valid", 1, False),
}


@pytest.mark.parametrize("dtype,data", [("float64", "special"), ("float32", "ties"), ("int8", "ints"),
                                        ("float16", "randn")])
@pytest.mark.parametrize("window", list(LARGE_WINDOWS))
@pytest.mark.parametrize("nd", [2, 3])
def test_max_pool_large_windows(nd, window, dtype, data):
    k, s, p, d, c = LARGE_WINDOWS[window](nd)
    rng = rng_for("max_large", nd, window, dtype, data)
    x = make_x(nd, dtype, data, rng, LARGE_SIZES[nd])
    exp, idx = ref.max_pool(x, nd, k, s, p, d, c)
    f, fb = FN["max_pool", nd], getattr(fp, f"max_pool{nd}d_backward")
    floating = np.dtype(dtype).kind == "f"
    g = grad_for(exp.shape, dtype, rng) if floating else None
    exp_grad = ref.max_pool_backward(g, x, nd, k, s, p, d, c) if floating else None
    run_layouts(
        nd, x, g, exp,
        lambda xv, lay: f(xv, k, s, p, d, c, return_indices=True, layout=lay),
        (lambda gv, xv, lay, ind: fb(gv, xv, k, s, p, d, c, layout=lay, indices=ind)) if floating else None,
        exp_grad, dtype, idx=idx,
        values=lambda xv, lay: f(xv, k, s, p, d, c, layout=lay),
    )


# ----------------------------------------------------------------------------- average


AVG_VARIANTS = {
    "count_pad": dict(count_include_pad=True, divisor_override=None),
    "exclude_pad": dict(count_include_pad=False, divisor_override=None),
    "divisor3": dict(count_include_pad=True, divisor_override=3),
    "divisor5_nopad": dict(count_include_pad=False, divisor_override=5),
}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("variant", list(AVG_VARIANTS))
@pytest.mark.parametrize("window", list(WINDOWS))
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_avg_pool(nd, window, variant, dtype):
    k, s, p, d, c = WINDOWS[window](nd)
    opts = AVG_VARIANTS[variant]
    rng = rng_for("avg", nd, window, variant, dtype)
    x = make_x(nd, dtype, "randn", rng)
    exp = ref.avg_pool(x, nd, k, s, p, d, c, **opts)
    g = grad_for(exp.shape, dtype, rng)
    exp_grad = ref.avg_pool_backward(g, x, nd, k, s, p, d, c, **opts)
    f, fb = FN["avg_pool", nd], getattr(fp, f"avg_pool{nd}d_backward")
    run_layouts(
        nd, x, g, exp,
        lambda xv, lay: f(xv, k, s, p, c, opts["count_include_pad"], opts["divisor_override"],
                          dilation=d, layout=lay),
        lambda gv, xv, lay, ind: fb(gv, xv, k, s, p, c, dilation=d, layout=lay, **opts),
        exp_grad, dtype,
    )


@pytest.mark.parametrize("window", ["k3s1p1", "ceil", "asym_pad"])
@pytest.mark.parametrize("dtype", INTS)
def test_avg_pool_integer_input_gives_float64(dtype, window):
    nd = 2
    k, s, p, d, c = WINDOWS[window](nd)
    x = make_x(nd, dtype, "ints", rng_for("avgint", dtype, window))
    exp = ref.avg_pool(x, nd, k, s, p, d, c)
    out = fp.avg_pool2d(x, k, s, p, c, dilation=d)
    assert_close(out, exp, "float64", "integer avg")


# ----------------------------------------------------------------------------- Lp


LP_MODES = {"onnx": {}, "torch": dict(torch_compat=True), "mean": dict(power_mean=True)}


def lp_data(mode, p):
    # torch's signed x^p is NaN for negative x and fractional (or odd, after the root) p
    return "positive" if mode == "torch" and p in (3, 1.5) else "randn"


def _check_lp(nd, window, mode, p, dtype):
    k, s, pad, d, c = WINDOWS[window](nd)
    rng = rng_for("lp", nd, window, mode, p, dtype)
    x = make_x(nd, dtype, lp_data(mode, p), rng)
    exp = ref.lp_pool(x, nd, p, k, s, pad, d, c, mode=mode)
    g = grad_for(exp.shape, dtype, rng)
    exp_grad = ref.lp_pool_backward(g, x, nd, p, k, s, pad, d, c, mode=mode)
    f, fb = FN["lp_pool", nd], getattr(fp, f"lp_pool{nd}d_backward")
    opts = LP_MODES[mode]
    run_layouts(
        nd, x, g, exp,
        lambda xv, lay: f(xv, p, k, s, c, padding=pad, dilation=d, layout=lay, **opts),
        lambda gv, xv, lay, ind: fb(gv, xv, p, k, s, c, padding=pad, dilation=d, layout=lay, **opts),
        exp_grad, dtype,
    )


LP_P_DTYPE = [(p, "float64") for p in (1, 2, 3, 1.5)] + [(p, "float32") for p in (2, 1.5)]


@pytest.mark.parametrize("p,dtype", LP_P_DTYPE, ids=[f"p{p}-{d}" for p, d in LP_P_DTYPE])
@pytest.mark.parametrize("mode", list(LP_MODES))
@pytest.mark.parametrize("window", LP_WINDOWS)
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_lp_pool(nd, window, mode, p, dtype):
    _check_lp(nd, window, mode, p, dtype)


@pytest.mark.parametrize("p", [2, 1.5])
@pytest.mark.parametrize("mode", list(LP_MODES))
@pytest.mark.parametrize("window", ["tuples", "ceil_asym_dil"])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_lp_pool_float16(nd, window, mode, p):
    _check_lp(nd, window, mode, p, "float16")


# ----------------------------------------------------------------------------- adaptive


# (input spatial sizes, output_size): dividing, non-dividing (10 -> 7), growing (5 -> 8), None
ADAPTIVE = {
    1: [((10,), 7), ((5,), 8), ((6,), 3), ((7,), None), ((4,), 1)],
    2: [((10, 5), (7, 8)), ((6, 4), (3, 2)), ((5, 7), (None, 3)), ((3, 4), 1), ((4, 6), 4)],
    3: [((5, 4, 3), (3, 5, 2)), ((4, 4, 2), (2, 2, 1)), ((3, 5, 4), (None, 2, 7)), ((2, 3, 4), 2)],
}
ADAPTIVE_CASES = [(nd, i) for nd in ADAPTIVE for i in range(len(ADAPTIVE[nd]))]


@pytest.mark.parametrize("dtype", FLOATS + INTS)
@pytest.mark.parametrize("nd,case", ADAPTIVE_CASES, ids=[f"{nd}d-{i}" for nd, i in ADAPTIVE_CASES])
def test_adaptive_max_pool(nd, case, dtype):
    sizes, osz = ADAPTIVE[nd][case]
    rng = rng_for("amax", nd, case, dtype)
    x = make_x(nd, dtype, "ties" if dtype == "float16" else "special", rng, sizes)
    exp, idx = ref.adaptive_max_pool(x, nd, osz)
    floating = np.dtype(dtype).kind == "f"
    g = grad_for(exp.shape, dtype, rng) if floating else None
    exp_grad = ref.adaptive_max_pool_backward(g, x, nd, osz) if floating else None
    f, fb = FN["adaptive_max_pool", nd], getattr(fp, f"adaptive_max_pool{nd}d_backward")
    run_layouts(
        nd, x, g, exp,
        lambda xv, lay: f(xv, osz, return_indices=True, layout=lay),
        (lambda gv, xv, lay, ind: fb(gv, xv, osz, layout=lay, indices=ind)) if floating else None,
        exp_grad, dtype, idx=idx,
    )


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("nd,case", ADAPTIVE_CASES, ids=[f"{nd}d-{i}" for nd, i in ADAPTIVE_CASES])
def test_adaptive_avg_pool(nd, case, dtype):
    sizes, osz = ADAPTIVE[nd][case]
    rng = rng_for("aavg", nd, case, dtype)
    x = make_x(nd, dtype, "randn", rng, sizes)
    exp = ref.adaptive_avg_pool(x, nd, osz)
    g = grad_for(exp.shape, dtype, rng)
    exp_grad = ref.adaptive_avg_pool_backward(g, x, nd, osz)
    f, fb = FN["adaptive_avg_pool", nd], getattr(fp, f"adaptive_avg_pool{nd}d_backward")
    run_layouts(
        nd, x, g, exp,
        lambda xv, lay: f(xv, osz, layout=lay),
        lambda gv, xv, lay, ind: fb(gv, xv, osz, layout=lay),
        exp_grad, dtype,
    )


# ----------------------------------------------------------------------------- global


# planes long enough for the vectorised (reassociated) channels-first reductions
GLOBAL_SIZES = {1: (37,), 2: (9, 11), 3: (4, 5, 6)}
GLOBAL_KINDS = ["avg", "max", "lp1", "lp2", "lp3", "lp1.5"]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("keepdims", [True, False])
@pytest.mark.parametrize("kind", GLOBAL_KINDS)
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_global_pool(nd, kind, keepdims, dtype):
    rng = rng_for("global", nd, kind, keepdims, dtype)
    x = make_x(nd, dtype, "special" if kind == "max" and dtype != "float16" else "randn", rng,
               GLOBAL_SIZES[nd])
    if kind == "max":
        exp, idx = ref.global_max_pool(x, keepdims)
    elif kind == "avg":
        exp, idx = ref.global_avg_pool(x, keepdims), None
    else:
        p = float(kind[2:])
        exp, idx = ref.global_lp_pool(x, p, keepdims), None
    g = grad_for(exp.shape, dtype, rng)
    if kind == "max":
        exp_grad = ref.global_max_pool_backward(g, x, keepdims)
    elif kind == "avg":
        exp_grad = ref.global_avg_pool_backward(g, x, keepdims)
    else:
        exp_grad = ref.global_lp_pool_backward(g, x, p, keepdims)

    for layout, last in [("channels_first", False), ("channels_last", True),
                         (ALIAS_CF[nd], False), (ALIAS_CL[nd].lower(), True)]:
        what = f"layout={layout}"
        xv = ref.to_channels_last(x, nd) if last else x
        # with keepdims=False the output is (N, C) in either layout
        out_back = (lambda a: ref.to_channels_first(a, nd)) if last and keepdims else (lambda a: a)
        gv = ref.to_channels_last(g, nd) if last and keepdims else g
        if kind == "max":
            out, ires = fp.global_max_pool(xv, keepdims=keepdims, return_indices=True, layout=layout)
            np.testing.assert_array_equal(out_back(ires), idx, err_msg=what)
            gx = fp.global_max_pool_backward(gv, xv, keepdims=keepdims, layout=layout)
            gx2 = fp.global_max_pool_backward(gv, xv, keepdims=keepdims, layout=layout, indices=ires)
            assert_close(back(gx2, nd, last), expected_as(exp_grad, dtype), dtype, "backward(indices=) " + what)
        elif kind == "avg":
            out = fp.global_avg_pool(xv, keepdims=keepdims, layout=layout)
            gx = fp.global_avg_pool_backward(gv, xv, keepdims=keepdims, layout=layout)
        else:
            out = fp.global_lp_pool(xv, p, keepdims=keepdims, layout=layout)
            gx = fp.global_lp_pool_backward(gv, xv, p, keepdims=keepdims, layout=layout)
        assert_close(out_back(out), expected_as(exp, dtype), dtype, "forward " + what)
        assert_close(back(gx, nd, last), expected_as(exp_grad, dtype), dtype, "backward " + what)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
@pytest.mark.parametrize("size", [(1,), (7, 7), (5, 7), (4, 4), (3, 2, 3)])
def test_global_avg_pool_same_sums_in_any_batch(size, dtype):
    # channels-first sums run eight planes at a time and the rest one by one:
    # each plane must get the same bits either way, NaN and inf included
    rng = rng_for("global_batch", size, dtype)
    x = make_x(len(size), dtype, "special" if dtype != "int32" else "randn", rng, size)
    x = np.concatenate([x] * 2)  # (4, 9, ...): 36 planes, four blocks of eight and four more
    whole = fp.global_avg_pool(x)
    for n in range(x.shape[0]):
        for c0 in (0, 5):
            part = fp.global_avg_pool(x[n:n + 1, c0:c0 + 3])
            np.testing.assert_array_equal(part, whole[n:n + 1, c0:c0 + 3])
    odt = "float64" if dtype == "int32" else dtype  # the mean of integers is float64
    assert_close(whole, expected_as(ref.global_avg_pool(x), odt), odt, "forward")


@pytest.mark.parametrize("dtype", INTS)
def test_global_max_pool_integers(dtype):
    x = make_x(2, dtype, "ints", rng_for("gmaxint", dtype), (3, 4))
    exp, idx = ref.global_max_pool(x)
    out, ires = fp.global_max_pool(x, return_indices=True)
    assert_close(out, exp, dtype, "global max")
    np.testing.assert_array_equal(ires, idx)
