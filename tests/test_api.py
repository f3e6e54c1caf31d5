"""The public API's contract: clear errors, and inputs in any memory form.

Errors: every bad argument raises ``fastpool.PoolingError`` (a ``ValueError``)
or ``fastpool.PoolingTypeError`` (also a ``TypeError``) whose message starts
with the call and the input's shape, then names the argument and its value.

Input forms: strided, read-only, big-endian, Fortran-order, empty-batch,
unbatched, channels-last, float16, integer and list inputs must give the same
answer as the plain contiguous native-order case (or the documented cast of it).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import fastpool as fp
from fastpool import PoolingError, PoolingTypeError

X4 = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
PREFIX = "max_pool2d(input of shape (1, 1, 4, 4)): "


def prefixed(call: str, *parts: str) -> str:
    """A regex: the message starts with ``call: `` and then holds ``parts`` in order."""
    return "^" + re.escape(call + ": ") + ".*" + ".*".join(parts)


# ============================================================================ errors


def _err_cases():
    x = X4
    g22 = np.zeros((1, 1, 2, 2))
    mp = "max_pool2d(input of shape (1, 1, 4, 4))"
    mpb = "max_pool2d_backward(input of shape (1, 1, 4, 4))"
    ap = "avg_pool2d(input of shape (1, 1, 4, 4))"
    lp = "lp_pool2d(input of shape (1, 1, 4, 4))"
    E, T = PoolingError, PoolingTypeError
    cases = [
        # rank
        ("rank_low", lambda: fp.max_pool2d(np.zeros((4, 4)), 2), E,
         "max_pool2d(input of shape (4, 4))", [r"\bx\b", r"2-D"]),
        ("rank_high", lambda: fp.max_pool2d(np.zeros((1, 1, 1, 4, 4)), 2), E,
         "max_pool2d(input of shape (1, 1, 1, 4, 4))", [r"\bx\b", r"5-D"]),
        ("rank_1d", lambda: fp.avg_pool1d(np.zeros((2, 2, 2, 4)), 2), E,
         "avg_pool1d(input of shape (2, 2, 2, 4))", [r"\bx\b", r"4-D"]),
        ("rank_global", lambda: fp.global_avg_pool(np.zeros((3, 4))), E,
         "global_avg_pool(input of shape (3, 4))", [r"\bx\b", r"2-D"]),
        # kernel_size
        ("kernel_zero", lambda: fp.max_pool2d(x, 0), E, mp, ["kernel_size", r">= 1", r"\b0\b"]),
        ("kernel_neg_axis", lambda: fp.max_pool2d(x, (2, -1)), E, mp, ["kernel_size", r"-1"]),
        ("kernel_too_long", lambda: fp.max_pool2d(x, 5), E, mp, ["kernel_size", r"\b5\b"]),
        ("kernel_too_long_padded", lambda: fp.avg_pool2d(x, (2, 7), padding=1), E, ap,
         ["kernel_size", r"\b7\b"]),
        ("kernel_dilated_too_long", lambda: fp.max_pool2d(x, 3, dilation=2), E, mp,
         ["kernel_size", r"dilation=2"]),
        ("kernel_wrong_length", lambda: fp.max_pool2d(x, (2, 2, 2)), E, mp,
         ["kernel_size", re.escape("(2, 2, 2)")]),
        ("kernel_bool", lambda: fp.max_pool2d(x, True), T, mp, ["kernel_size", "True"]),
        ("kernel_float", lambda: fp.max_pool2d(x, 2.0), T, mp, ["kernel_size", r"2\.0"]),
        ("kernel_float_entry", lambda: fp.max_pool2d(x, (2, 2.5)), T, mp, ["kernel_size", r"2\.5"]),
        ("kernel_none", lambda: fp.max_pool2d(x, None), T, mp, ["kernel_size", "None"]),
        # stride, dilation, padding
        ("stride_zero", lambda: fp.max_pool2d(x, 2, stride=0), E, mp, ["stride", r">= 1", r"\b0\b"]),
        ("stride_neg", lambda: fp.avg_pool2d(x, 2, stride=(1, -2)), E, ap, ["stride", r"-2"]),
        ("stride_float", lambda: fp.max_pool2d(x, 2, stride=1.5), T, mp, ["stride", r"1\.5"]),
        ("dilation_zero", lambda: fp.max_pool2d(x, 2, dilation=0), E, mp, ["dilation", r">= 1", r"\b0\b"]),
        ("dilation_zero_lp", lambda: fp.lp_pool2d(x, 2, 2, dilation=(1, 0)), E, lp, ["dilation", r"\b0\b"]),
        ("padding_neg", lambda: fp.max_pool2d(x, 2, padding=-1), E, mp, ["padding", r">= 0", r"-1"]),
        ("padding_neg_pair", lambda: fp.avg_pool2d(x, 2, padding=((0, 1), (-3, 0))), E, ap,
         ["padding", r"-3"]),
        ("padding_word", lambda: fp.max_pool2d(x, 2, padding="full"), E, mp, ["padding", "'full'"]),
        ("padding_float", lambda: fp.max_pool2d(x, 2, padding=0.5), T, mp, ["padding", r"0\.5"]),
        # a window reading only padding: size 2, k=2, d=4, padding 3 -> output 1 spans cells 2 and 6
        ("empty_window_1d",
         lambda: fp.max_pool1d(np.zeros((1, 1, 2)), 2, stride=1, padding=3, dilation=4), E,
         "max_pool1d(input of shape (1, 1, 2))", ["window", "padding", r"dilation=4"]),
        ("empty_window_avg_2d",
         lambda: fp.avg_pool2d(np.zeros((1, 1, 2, 5)), 2, stride=1, padding=(3, 0), dilation=(4, 1)), E,
         "avg_pool2d(input of shape (1, 1, 2, 5))", ["window", "padding", r"dilation=4"]),
        # dtypes
        ("dtype_complex", lambda: fp.max_pool2d(x.astype(np.complex128), 2), T, mp, [r"\bx\b", "dtype", "complex128"]),
        ("dtype_bool", lambda: fp.max_pool2d(x > 3, 2), T, mp, [r"\bx\b", "dtype", "bool"]),
        ("dtype_object", lambda: fp.max_pool2d(x.astype(object), 2), T, mp, [r"\bx\b", "dtype", "object"]),
        ("dtype_int16", lambda: fp.max_pool2d(x.astype(np.int16), 2), T, mp, [r"\bx\b", "dtype", "int16"]),
        ("dtype_int16_avg", lambda: fp.avg_pool2d(x.astype(np.int16), 2), T, ap, [r"\bx\b", "dtype", "int16"]),
        ("dtype_uint16", lambda: fp.max_pool2d(x.astype(np.uint16), 2), T, mp, [r"\bx\b", "dtype", "uint16"]),
        ("dtype_str", lambda: fp.max_pool2d(x.astype("U3"), 2), T, mp, [r"\bx\b", "dtype", "U3"]),
        ("dtype_complex_global", lambda: fp.global_max_pool(x.astype(np.complex64)), T,
         "global_max_pool(input of shape (1, 1, 4, 4))", [r"\bx\b", "dtype", "complex64"]),
        ("backward_int_x", lambda: fp.max_pool2d_backward(g22, x.astype(np.int32), 2), T, mpb,
         ["floating", "int32"]),
        # layout
        ("layout_unknown", lambda: fp.max_pool2d(x, 2, layout="NHCW"), E, mp, ["layout", "'NHCW'"]),
        ("layout_none", lambda: fp.avg_pool2d(x, 2, layout=None), E, ap, ["layout", "None"]),
        # grad_output
        ("grad_shape", lambda: fp.max_pool2d_backward(np.zeros((1, 1, 3, 2)), x, 2), E, mpb,
         ["grad_output", re.escape("(1, 1, 2, 2)"), re.escape("(1, 1, 3, 2)")]),
        ("grad_rank", lambda: fp.max_pool2d_backward(np.zeros((1, 2, 2)), x, 2), E, mpb,
         ["grad_output", re.escape("(1, 2, 2)")]),
        ("grad_int", lambda: fp.max_pool2d_backward(np.zeros((1, 1, 2, 2), np.int64), x, 2), T, mpb,
         ["grad_output", "int64"]),
        ("grad_complex",
         lambda: fp.avg_pool2d_backward(np.zeros((1, 1, 2, 2), np.complex128), x, 2), T,
         "avg_pool2d_backward(input of shape (1, 1, 4, 4))", ["grad_output", "complex128"]),
        # indices
        ("indices_too_big",
         lambda: fp.max_pool2d_backward(g22, x, 2, indices=np.full((1, 1, 2, 2), 16)), E, mpb,
         ["indices", r"\b16\b"]),
        ("indices_negative",
         lambda: fp.max_pool2d_backward(g22, x, 2, indices=np.full((1, 1, 2, 2), -1)), E, mpb,
         ["indices", r"-1"]),
        ("indices_shape",
         lambda: fp.max_pool2d_backward(g22, x, 2, indices=np.zeros((1, 1, 2, 3), np.int64)), E, mpb,
         ["indices", re.escape("(1, 1, 2, 3)")]),
        ("indices_float",
         lambda: fp.max_pool2d_backward(g22, x, 2, indices=np.zeros((1, 1, 2, 2))), T, mpb,
         ["indices", "float64"]),
        # norm_type
        ("norm_zero", lambda: fp.lp_pool2d(x, 0, 2), E, lp, ["norm_type", r"\b0\b"]),
        ("norm_neg", lambda: fp.lp_pool2d(x, -1, 2), E, lp, ["norm_type", r"-1"]),
        ("norm_nan", lambda: fp.lp_pool2d(x, float("nan"), 2), E, lp, ["norm_type", "nan"]),
        ("norm_inf", lambda: fp.lp_pool2d(x, float("inf"), 2), E, lp, ["norm_type", "inf"]),
        ("norm_bool", lambda: fp.lp_pool2d(x, True, 2), T, lp, ["norm_type", "True"]),
        ("norm_str", lambda: fp.lp_pool2d(x, "2", 2), T, lp, ["norm_type", "'2'"]),
        ("norm_global", lambda: fp.global_lp_pool(x, 0.0), E,
         "global_lp_pool(input of shape (1, 1, 4, 4))", ["norm_type", r"0\.0"]),
        # divisor_override and other scalars
        ("divisor_zero", lambda: fp.avg_pool2d(x, 2, divisor_override=0), E, ap,
         ["divisor_override", r"\b0\b"]),
        ("divisor_float", lambda: fp.avg_pool2d(x, 2, divisor_override=2.0), T, ap,
         ["divisor_override", r"2\.0"]),
        ("ceil_mode_str", lambda: fp.max_pool2d(x, 2, ceil_mode="yes"), T, mp, ["ceil_mode", "'yes'"]),
        ("return_indices_str", lambda: fp.max_pool2d(x, 2, return_indices="yes"), T, mp,
         ["return_indices", "'yes'"]),
        ("output_size_zero",
         lambda: fp.adaptive_avg_pool2d(x, 0), E,
         "adaptive_avg_pool2d(input of shape (1, 1, 4, 4))", ["output_size", r"\b0\b"]),
        ("output_size_float",
         lambda: fp.adaptive_max_pool2d(x, (2, 2.5)), T,
         "adaptive_max_pool2d(input of shape (1, 1, 4, 4))", ["output_size", r"2\.5"]),
        # x passed by keyword still gets the shape prefix
        ("x_by_keyword", lambda: fp.max_pool2d(x=x, kernel_size=0), E, mp, ["kernel_size", r"\b0\b"]),
        ("list_input", lambda: fp.max_pool2d(x.tolist(), 2, stride=0), E, mp, ["stride", r"\b0\b"]),
    ]
    if hasattr(np, "float128"):
        cases.append(("dtype_float128", lambda: fp.max_pool2d(x.astype(np.float128), 2), T, mp,
                      [r"\bx\b", "dtype", "float128"]))
    return cases


ERR_CASES = _err_cases()


@pytest.mark.parametrize("case", ERR_CASES, ids=[c[0] for c in ERR_CASES])
def test_bad_argument_raises_clear_error(case):
    _, call, exc, where, parts = case
    with pytest.raises(exc, match=prefixed(where, *parts)) as info:
        call()
    assert isinstance(info.value, ValueError)
    if exc is PoolingTypeError:
        assert isinstance(info.value, TypeError)


def _one_bad_index(x, layout, bad, **kw):
    y, idx = fp.max_pool2d(x, 2, return_indices=True, layout=layout, **kw)
    idx = idx.copy()
    idx.flat[idx.size // 2 + 1] = bad
    return np.ones_like(y), idx


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("bad", [-3, 64 * 64, 2 ** 40])
def test_indices_range_checked_where_the_scatter_reads_them(layout, bad):
    # large enough for the parallel kernel (both its one-channel and its
    # channel-block paths); one bad index among valid ones
    x = np.random.default_rng(1).standard_normal((4, 8, 64, 64) if layout == "channels_first" else (4, 64, 64, 8),
                                                 dtype=np.float32)
    g, idx = _one_bad_index(x, layout, bad)
    saved = [a.copy() for a in (x, g, idx)]
    call = f"max_pool2d_backward(input of shape {x.shape})"
    with pytest.raises(PoolingError, match=prefixed(call, "indices", re.escape("[0, 4096)"), rf"got {bad}$")):
        fp.max_pool2d_backward(g, x, 2, layout=layout, indices=idx)
    for a, b in zip((x, g, idx), saved):
        np.testing.assert_array_equal(a, b)
    # the fractional and stochastic backward passes scatter through the same check
    with pytest.raises(PoolingError, match=rf"indices must lie in \[0, 4096\).*got {bad}$"):
        fp.fractional_max_pool2d_backward(g, x, 2, output_size=(32, 32), layout=layout, indices=idx)
    with pytest.raises(PoolingError, match=rf"indices must lie in \[0, 4096\).*got {bad}$"):
        fp.stochastic_pool2d_backward(g, np.abs(x), 2, layout=layout, indices=idx)


@pytest.mark.skipif(not hasattr(np, "float128"), reason="this platform's NumPy has no float128")
def test_float128_rejected():
    with pytest.raises(PoolingTypeError, match=prefixed("avg_pool2d(input of shape (1, 1, 4, 4))", r"\bx\b", "float128")):
        fp.avg_pool2d(X4.astype(np.float128), 2)


def test_exception_hierarchy():
    assert issubclass(PoolingError, ValueError)
    assert issubclass(PoolingTypeError, PoolingError)
    assert issubclass(PoolingTypeError, TypeError)


# ============================================================================ the operation table

RNG = np.random.default_rng(20240611)
SIZES = {1: (7,), 2: (5, 6), 3: (4, 5, 3)}


class Op:
    """One call of the public API: ``name{nd}d(x, *pos, **kw)`` and its backward."""

    def __init__(self, name, nd, pos=(), kw=None, glob=False):
        self.name, self.nd, self.pos, self.kw, self.glob = name, nd, tuple(pos), dict(kw or {}), glob
        self.fname = name if glob else f"{name}{nd}d"
        self.has_indices = "max" in name
        self.reducer = "max" if "max" in name else ("lp" if "lp" in name else "avg")

    def __repr__(self):
        kw = ",".join(f"{k}={v}" for k, v in self.kw.items())
        return f"{self.fname}[{kw}]" if not self.glob else f"{self.fname}{self.nd}d[{kw}]"

    def fwd(self, x, **extra):
        return getattr(fp, self.fname)(x, *self.pos, **self.kw, **extra)

    def fwd_idx(self, x, **extra):
        return getattr(fp, self.fname)(x, *self.pos, **self.kw, return_indices=True, **extra)

    def bwd(self, g, x, **extra):
        return getattr(fp, self.fname + "_backward")(g, x, *self.pos, **self.kw, **extra)


def _ops():
    """Every reducer and geometry at rank 2; one of each reducer family at ranks 1 and 3."""
    ops = [
        Op("max_pool", 2, kw=dict(kernel_size=3, stride=2, padding=1)),
        Op("max_pool", 2, kw=dict(kernel_size=2, stride=1, dilation=2, ceil_mode=True)),
        Op("avg_pool", 2, kw=dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
        Op("avg_pool", 2, kw=dict(kernel_size=2, stride=2, ceil_mode=True)),
        Op("lp_pool", 2, pos=(2.0,), kw=dict(kernel_size=2, stride=1)),
        Op("lp_pool", 2, pos=(3.0,), kw=dict(kernel_size=3, stride=2, padding=1, power_mean=True)),
        Op("adaptive_avg_pool", 2, kw=dict(output_size=3)),
        Op("adaptive_max_pool", 2, kw=dict(output_size=(4, 3))),
        Op("global_avg_pool", 2, glob=True),
        Op("global_max_pool", 2, glob=True, kw=dict(keepdims=False)),
        Op("global_lp_pool", 2, pos=(2.0,), glob=True),
    ]
    for nd in (1, 3):
        ops += [
            Op("max_pool", nd, kw=dict(kernel_size=3, stride=2, padding=1)),
            Op("avg_pool", nd, kw=dict(kernel_size=2, stride=1, padding=1, ceil_mode=True)),
            Op("lp_pool", nd, pos=(2.0,), kw=dict(kernel_size=2, stride=1, torch_compat=True)),
            Op("adaptive_max_pool", nd, kw=dict(output_size=3)),
            Op("adaptive_avg_pool", nd, kw=dict(output_size=2)),
            Op("global_max_pool", nd, glob=True),
        ]
    return ops


OPS = _ops()
OP_IDS = [repr(o) for o in OPS]
MAX_OPS = [o for o in OPS if o.has_indices]
MAX_IDS = [repr(o) for o in MAX_OPS]
NONMAX_OPS = [o for o in OPS if not o.has_indices]
NONMAX_IDS = [repr(o) for o in NONMAX_OPS]


def data(op, n=2, c=3, dtype=np.float64):
    """Distinct values (so the argmax is unique), both signs."""
    shape = (n, c) + SIZES[op.nd]
    v = RNG.permutation(int(np.prod(shape))).reshape(shape).astype(np.float64)
    return ((v - v.size / 2) / 4).astype(dtype)


def grad_for(out, dtype=np.float64):
    return RNG.standard_normal(out.shape).astype(dtype)


def run_all(op, x, g, **extra):
    """Forward, indices (max only) and backward, as a tuple of arrays."""
    res = [op.fwd(x, **extra)]
    if op.has_indices:
        out, idx = op.fwd_idx(x, **extra)
        np.testing.assert_array_equal(out, res[0])
        res.append(idx)
    res.append(op.bwd(g, x, **extra))
    return res


def assert_same(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        assert a.dtype == b.dtype, (a.dtype, b.dtype)
        np.testing.assert_array_equal(a, b)


def assert_same_up_to_sum_order(op, got, want):
    """Max pooling (values, indices, routed gradients) must match exactly; a sum
    computed through a different kernel may round in another order, so sums get
    a few ulps of the window's magnitude (a layout mix-up is off by far more)."""
    if op.reducer == "max":
        return assert_same(got, want)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


# ============================================================================ memory forms


def _strided(x):
    big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
    big[..., ::2] = x
    v = big[..., ::2]
    assert not v.flags.c_contiguous
    return v


def _transposed(x):
    v = np.ascontiguousarray(np.swapaxes(x, 0, -1)).swapaxes(0, -1)
    assert not v.flags.c_contiguous
    return v


def _negative(x):
    v = np.ascontiguousarray(x[::-1, ..., ::-1])[::-1, ..., ::-1]
    assert v.strides[0] < 0 and v.strides[-1] < 0
    return v


def _fortran(x):
    v = np.asfortranarray(x)
    assert v.flags.f_contiguous and not v.flags.c_contiguous
    return v


def _readonly(x):
    v = x.copy()
    v.flags.writeable = False
    return v


def _channels_sliced(x):
    # every other channel of a wider array
    big = np.zeros((x.shape[0], 2 * x.shape[1]) + x.shape[2:], x.dtype)
    big[:, 1::2] = x
    return big[:, 1::2]


FORMS = {
    "strided": _strided,
    "transposed": _transposed,
    "negative_strides": _negative,
    "fortran": _fortran,
    "readonly": _readonly,
    "channel_slice": _channels_sliced,
}


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_memory_forms_match_contiguous(op, form):
    x = data(op)
    g = grad_for(op.fwd(x))
    want = run_all(op, x, g)
    xv = FORMS[form](x)
    gv = FORMS[form](g)
    np.testing.assert_array_equal(xv, x)
    assert_same(run_all(op, xv, gv), want)


@pytest.mark.parametrize("dt", [">f4", ">f8", ">i4"])
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_big_endian_matches_native(op, dt):
    native = np.dtype(dt).newbyteorder("=")
    x = data(op) if native.kind == "f" else np.round(data(op) * 4)
    xn = x.astype(native)
    xb = x.astype(dt)
    assert xb.dtype.byteorder == ">" and xn.dtype.byteorder in "=<"
    want_out = op.fwd(xn)
    got_out = op.fwd(xb)
    assert got_out.dtype == want_out.dtype
    np.testing.assert_array_equal(got_out, want_out)
    if op.has_indices:
        np.testing.assert_array_equal(op.fwd_idx(xb)[1], op.fwd_idx(xn)[1])
    if native.kind == "f":
        g = grad_for(want_out)
        gb = g.astype(dt)
        want_g = op.bwd(g.astype(native), xn)
        got_g = op.bwd(gb, xb)
        assert got_g.dtype == want_g.dtype == native
        np.testing.assert_array_equal(got_g, want_g)


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_input_never_modified(op):
    x = data(op)
    x_keep = x.copy()
    out = op.fwd(x)
    g = grad_for(out)
    g_keep = g.copy()
    op.bwd(g, x)
    if op.has_indices:
        _, idx = op.fwd_idx(x)
        idx_keep = idx.copy()
        op.bwd(g, x, indices=idx)
        np.testing.assert_array_equal(idx, idx_keep)
    np.testing.assert_array_equal(x, x_keep)
    np.testing.assert_array_equal(g, g_keep)
    # read-only inputs everywhere are accepted, and the results are writable arrays
    xr, gr = _readonly(x), _readonly(g)
    res = run_all(op, xr, gr)
    if op.has_indices:
        idxr = _readonly(res[1])
        np.testing.assert_array_equal(op.bwd(gr, xr, indices=idxr), res[-1])
    for r in res:
        assert r.flags.writeable
        assert not np.shares_memory(r, x) and not np.shares_memory(r, xr)


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_integer_and_float16_inputs_not_modified(op):
    x = np.round(data(op) * 4).astype(np.int32)
    keep = x.copy()
    op.fwd(x)
    np.testing.assert_array_equal(x, keep)
    x16 = data(op, dtype=np.float16)
    keep16 = x16.copy()
    op.bwd(grad_for(op.fwd(x16), np.float16), x16)
    np.testing.assert_array_equal(x16, keep16)


# ============================================================================ batch, layout


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_empty_batch(op):
    x1 = data(op, n=1)
    out1 = op.fwd(x1)
    x0 = x1[:0]
    out0 = op.fwd(x0)
    assert out0.shape == (0,) + out1.shape[1:]
    assert out0.dtype == out1.dtype
    gx = op.bwd(np.zeros(out0.shape), x0)
    assert gx.shape == x0.shape and gx.dtype == x0.dtype
    if op.has_indices:
        o, i = op.fwd_idx(x0)
        assert o.shape == i.shape == out0.shape and i.dtype == np.int64
        assert op.bwd(np.zeros(out0.shape), x0, indices=i).shape == x0.shape
    # and channels-last
    out_l = op.fwd(np.moveaxis(x0, 1, -1), layout="channels_last")
    want_l = np.moveaxis(out1, 1, -1) if out1.ndim > 2 else out1
    assert out_l.shape == (0,) + want_l.shape[1:]


@pytest.mark.parametrize("op", [o for o in OPS if not o.glob], ids=[repr(o) for o in OPS if not o.glob])
def test_unbatched_equals_batched_first(op):
    x = data(op)
    g = grad_for(op.fwd(x))
    batched = run_all(op, x, g)
    assert_same(run_all(op, x[0], g[0]), [r[0] for r in batched])
    # channels-last unbatched (*spatial, C): the channels-last batched call's
    # first bit for bit, and the channels-first one's up to the order of sums
    # (the layouts' sum kernels differ)
    xl, gl = np.moveaxis(x[0], 0, -1), np.moveaxis(g[0], 0, -1)
    got = run_all(op, xl, gl, layout="channels_last")
    batched_last = run_all(op, np.moveaxis(x, 1, -1), np.moveaxis(g, 1, -1), layout="channels_last")
    assert_same(got, [r[0] for r in batched_last])
    assert_same_up_to_sum_order(op, got, [np.moveaxis(r[0], 0, -1) for r in batched])


@pytest.mark.parametrize("alias", ["channels_last", "NHWC"])
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_channels_last_equals_transposed_channels_first(op, alias):
    x = data(op)
    out = op.fwd(x)
    g = grad_for(out)
    want = run_all(op, x, g)
    to_last = (lambda a: np.moveaxis(a, 1, -1)) if out.ndim > 2 else (lambda a: a)
    xl = np.moveaxis(x, 1, -1)
    gl = to_last(g)
    got = run_all(op, xl, gl, layout=alias)
    expect = [to_last(want[0])] + ([to_last(want[1])] if op.has_indices else []) + [np.moveaxis(want[-1], 1, -1)]
    assert_same_up_to_sum_order(op, got, expect)
    # the cached indices, in channels-last form, drive backward to the same gradient
    if op.has_indices:
        gi = op.bwd(gl, xl, layout=alias, indices=got[1])
        np.testing.assert_array_equal(gi, expect[-1])


@pytest.mark.parametrize("alias", ["NCHW", "ncw", "Channels_First"])
@pytest.mark.parametrize("op", MAX_OPS[:3], ids=MAX_IDS[:3])
def test_channels_first_aliases(op, alias):
    x = data(op)
    g = grad_for(op.fwd(x))
    assert_same(run_all(op, x, g, layout=alias), run_all(op, x, g))


# ============================================================================ dtypes


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_float16_is_float32_rounded(op):
    x16 = data(op, dtype=np.float16)
    x32 = x16.astype(np.float32)
    out16 = op.fwd(x16)
    assert out16.dtype == np.float16
    np.testing.assert_array_equal(out16, op.fwd(x32).astype(np.float16))
    g16 = grad_for(out16, np.float16)
    gx16 = op.bwd(g16, x16)
    assert gx16.dtype == np.float16 and gx16.shape == x16.shape
    np.testing.assert_array_equal(gx16, op.bwd(g16.astype(np.float32), x32).astype(np.float16))
    if op.has_indices:
        np.testing.assert_array_equal(op.fwd_idx(x16)[1], op.fwd_idx(x32)[1])


INT_DTYPES = [np.int8, np.uint8, np.int32, np.int64]


def int_data(op, dtype):
    info = np.iinfo(dtype)
    lo, hi = max(int(info.min), -(2 ** 40)), min(int(info.max), 2 ** 40)
    x = RNG.integers(lo, hi, size=(2, 3) + SIZES[op.nd], endpoint=True, dtype=np.int64)
    x.flat[0], x.flat[1] = lo, hi  # the extremes of the range
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("op", MAX_OPS, ids=MAX_IDS)
def test_integer_max_keeps_dtype(op, dtype):
    x = int_data(op, dtype)
    out = op.fwd(x)
    assert out.dtype == dtype
    ref = op.fwd(x.astype(np.float64))
    np.testing.assert_array_equal(out, ref.astype(dtype))
    o2, idx = op.fwd_idx(x)
    np.testing.assert_array_equal(o2, out)
    # integers may repeat (uint8/int8), so compare the values the indices point at
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    picked = np.take_along_axis(flat, idx.reshape(idx.shape[0], idx.shape[1], -1), axis=-1)
    np.testing.assert_array_equal(picked.reshape(out.shape), out)


def test_int64_max_is_exact_beyond_float64():
    # 2**62 + 1 and 2**62 collapse in float64; the integer path must not round through it
    base = 2 ** 62
    x = np.array([base, base + 1, base + 3, base + 2, -base, base - 1, base + 7, base + 5], np.int64)
    x = x.reshape(1, 1, 8)
    want = sliding_window_view(x, 3, axis=-1).max(-1)
    np.testing.assert_array_equal(fp.max_pool1d(x, 3, stride=1), want)
    np.testing.assert_array_equal(fp.max_pool1d(x, 2), x.reshape(1, 1, 4, 2).max(-1))
    np.testing.assert_array_equal(fp.global_max_pool(x, keepdims=False), [[base + 7]])


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.int64])
def test_integer_max_ignores_padding(dtype):
    # a padded border must not leak a 0 (or any fill value) into an all-negative / all-max window
    info = np.iinfo(dtype)
    x = np.full((1, 1, 3, 3), info.min, dtype)
    x[0, 0, 1, 1] = info.min + 1
    out = fp.max_pool2d(x, 2, stride=1, padding=1)
    want = np.full((1, 1, 4, 4), info.min, dtype)
    want[0, 0, 1:3, 1:3] = info.min + 1
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("op", NONMAX_OPS, ids=NONMAX_IDS)
def test_integer_avg_lp_give_float64(op, dtype):
    x = int_data(op, dtype)
    if op.reducer == "lp":
        x = (x // max(1, np.iinfo(dtype).max // 100)).astype(dtype)  # keep |x|^p well inside float64
    out = op.fwd(x)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, op.fwd(x.astype(np.float64)))


def test_integer_backward_is_rejected_but_float_int_values_work():
    x = np.arange(16, dtype=np.int64).reshape(1, 1, 4, 4)
    with pytest.raises(PoolingTypeError, match="int64"):
        fp.avg_pool2d_backward(np.ones((1, 1, 2, 2)), x, 2)


# ============================================================================ lists


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_lists_as_input(op):
    x = data(op)
    g = grad_for(op.fwd(x))
    assert_same(run_all(op, x.tolist(), g.tolist()), run_all(op, x, g))


def test_nested_tuple_and_int_list():
    xi = [[[3, 1, 4, 1, 5, 9]]]
    out = fp.max_pool1d(xi, 2)
    assert out.dtype == np.asarray(xi).dtype
    np.testing.assert_array_equal(out, [[[3, 4, 9]]])
    np.testing.assert_array_equal(fp.avg_pool1d(((1.0, 2.0, 3.0, 5.0),), 2), [[1.5, 4.0]])


def test_plan_derived_arguments_are_keyed_by_plan_identity():
    """Kernel arguments derived from a plan are memoised per plan object: the
    same object hits, an equal but distinct one (an evicted, rebuilt plan) is
    recomputed, and results stay right past the cache's bound."""
    from fastpool import _geometry as geo
    from fastpool._spec import window_spec

    calls = []

    @geo.per_plan
    def outs(axes, extra):
        calls.append(extra)
        return tuple(t.out for t in axes) + (extra,)

    spec = window_spec(2, 3, 2, 1)
    a = geo.plan(spec, (14, 14))
    assert outs(a, 1) == (7, 7, 1) and outs(a, 1) == (7, 7, 1) and calls == [1]
    assert outs(a, 2) == (7, 7, 2) and calls == [1, 2]
    b = geo._window_plan.__wrapped__(spec, (14, 14))  # equal tables, another object
    assert b is not a
    assert outs(b, 1) == (7, 7, 1) and calls == [1, 2, 1]
    for n in range(5, 1300):  # more plans than the cache holds
        assert outs(geo._window_plan.__wrapped__(spec, (n, 9)), 0) == ((n - 1) // 2 + 1, 5, 0)
    assert outs(a, 1) == (7, 7, 1)
    x = np.random.default_rng(0).standard_normal((2, 3, 14, 14)).astype(np.float32)
    ref = sliding_window_view(np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf),
                              (3, 3), axis=(2, 3))[:, :, ::2, ::2].max(axis=(-2, -1))
    for _ in range(2):
        np.testing.assert_array_equal(fp.max_pool2d(x, 3, 2, 1), ref)


def test_cached_window_specs_keep_every_argument_check():
    """Specs of plain int/tuple/str arguments are cached; a cached spec for 2
    must not let True (== 1, a bool) or other near-equal values through."""
    from fastpool._spec import window_spec

    x = np.arange(2 * 3 * 6 * 6, dtype=np.float32).reshape(2, 3, 6, 6)
    ref = fp.max_pool2d(x, 2, 1, 1, 1, True)
    assert window_spec(2, 2, 1, 1) is window_spec(2, 2, 1, 1)
    assert window_spec(2, [2, 2], (1, 1), [(1, 1), (1, 1)]) == window_spec(2, 2, 1, 1)
    np.testing.assert_array_equal(fp.max_pool2d(x, (2, 2), 1, ((1, 1), (1, 1)), 1, 1), ref)
    for bad in (dict(kernel_size=True), dict(kernel_size=(2, True)), dict(stride=True),
                dict(padding=(True, 0)), dict(dilation=(1, False)), dict(ceil_mode=2), dict(ceil_mode="yes")):
        args = dict(kernel_size=2, stride=1, padding=1, dilation=1, ceil_mode=True) | bad
        with pytest.raises((PoolingError, PoolingTypeError)):
            fp.max_pool2d(x, **args)
    with pytest.raises(PoolingError, match="kernel_size must be >= 1"):
        fp.max_pool2d(x, 0)
    with pytest.raises(PoolingError, match="kernel_size must be >= 1"):
        fp.max_pool2d(x, 0)  # a raise is not cached
