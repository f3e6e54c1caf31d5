"""Channels-first float32 averages over small windows add in float32.

Up to ``pooling.SUM32_TAPS`` taps, the row kernels (channels-first, and the
separable rows of channels-last input with few channels) add a window's taps
in float32 in a fixed order: over the rows (and depth planes) of each column,
then across the columns, and scale the sum by ``1 / divisor`` in float64 with
one rounding to float32.  NumPy does the same additions here on the zero-padded
input, slice by slice, and the results must be the same bits (a padding zero
added first changes nothing but the sign of a zero sum, which ``==`` ignores).
Larger windows add in float64: there the float32 slices' result differs, and
the reference in float64 is met to a few float32 ULP.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp
from fastpool import pooling

from probes import kernel_args
from reference import avg_pool


def _taps(xp, axis, k, s, n):
    """The k slices of xp along axis that a stride-s window reads, n windows."""
    return [np.take(xp, np.arange(j, j + s * (n - 1) + 1, s), axis=axis) for j in range(k)]


def _added(parts):
    t = parts[0]
    for p in parts[1:]:
        t = t + p
    return t


def numpy_avg32(x, k, s, p, count_include_pad=True, depth_first=True):
    """Window averages of float32 x (N, C, *sp) with k taps, stride s, padding p
    on every spatial axis, added in float32 in the kernels' order: the window's
    H taps (and D taps: all D taps of each row first when ``depth_first``, else
    each plane's rows first, then the planes), then its W taps."""
    nd = x.ndim - 2
    pad = [(0, 0), (0, 0)] + [(p, p)] * nd
    xp = np.pad(x, pad)
    ones = np.pad(np.ones(x.shape[2:]), [(p, p)] * nd)
    outs = [(n + 2 * p - k) // s + 1 for n in x.shape[2:]]

    def columns(a, lead):
        # a's H taps (axis lead + nd - 2) and D taps (axis lead + nd - 3) added
        if nd == 1:
            return a
        h = lead + nd - 2
        if nd == 2:
            return _added(_taps(a, h, k, s, outs[-2]))
        d = lead
        if depth_first:
            return _added(_taps(_added(_taps(a, d, k, s, outs[0])), h, k, s, outs[1]))
        planes = _taps(a, d, k, s, outs[0])
        return _added([_added(_taps(q, h, k, s, outs[1])) for q in planes])

    total = _added(_taps(columns(xp, 2), x.ndim - 1, k, s, outs[-1]))
    if count_include_pad:
        div = np.float64(k ** nd)
    else:
        c = ones
        for ax in range(nd):
            c = _added(_taps(c, ax, k, s, outs[ax]))
        div = c
    return (total.astype(np.float64) * (1.0 / div)).astype(np.float32)


# where each kernel takes the accumulator's dtype (an empty array)
_ACC_AT = {"cf_sum_forward": 30, "cf_flat_sum_forward": 21, "sep_sum_forward": 23, "cf_short_sum_forward": 21}

CASES = [
    # nd, input shape, kernel, stride, padding, the kernel that runs
    (2, (2, 3, 19, 56), 3, 1, 1, "cf_sum_forward"),        # 8-lane rows
    (2, (2, 3, 17, 45), 3, 2, 1, "cf_sum_forward"),        # stride 2
    (2, (1, 4, 9, 40), 2, 1, 0, "cf_sum_forward"),         # two taps
    (2, (2, 3, 14, 14), 3, 1, 1, "cf_flat_sum_forward"),   # planes of short rows
    (1, (2, 3, 301), 3, 1, 1, "cf_sum_forward"),
    (3, (1, 3, 5, 9, 40), 3, 1, 1, "cf_sum_forward"),      # depth planes first (deep rows)
    (3, (1, 3, 5, 9, 20), 3, 1, 1, "cf_flat_sum_forward"),  # each plane's rows first
    # rows in one vector, where the CPU has AVX-512 (forced on here): each
    # plane's rows first, where the row kernels take the planes first
    (2, (2, 3, 9, 14), 3, 1, 1, "cf_short_sum_forward"),
    (3, (1, 3, 5, 9, 12), 3, 2, 1, "cf_short_sum_forward"),
    # channels-last with few channels: the separable rows (depth planes first)
    (2, (2, 4, 19, 23), 3, 1, 1, "sep_sum_forward"),
    (3, (1, 32, 5, 9, 12), 3, 1, 1, "sep_sum_forward"),
    (3, (1, 4, 7, 9, 11), 3, 2, 1, "sep_sum_forward"),
]


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_small_windows_add_in_float32(monkeypatch, case, count_include_pad):
    nd, shape, k, s, p, name = case
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    # magnitudes far apart, where float32 and float64 sums part
    x *= np.exp2(np.random.default_rng(7).integers(-12, 12, shape)).astype(np.float32)
    before = x.copy()
    # the short rows run where AVX-512 is, and take the other kernels' rows
    monkeypatch.setattr("fastpool._simd.has_avx512", lambda: name == "cf_short_sum_forward")
    acc = kernel_args(monkeypatch, (name,), _ACC_AT[name], conv=lambda a: a.dtype)
    if name == "sep_sum_forward":
        cl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        got = getattr(fp, f"avg_pool{nd}d")(cl, k, s, p, count_include_pad=count_include_pad, layout="channels_last")
        got = np.moveaxis(got, -1, 1)
    else:
        got = getattr(fp, f"avg_pool{nd}d")(x, k, s, p, count_include_pad=count_include_pad)
    assert acc == [np.float32], f"{name}: {acc}"
    rows_first = name in ("cf_flat_sum_forward", "cf_short_sum_forward")
    want = numpy_avg32(x, k, s, p, count_include_pad, depth_first=not rows_first)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(x, before)
    # and a few float32 ULP from the float64 reference
    np.testing.assert_allclose(got, avg_pool(x, nd, k, s, p, count_include_pad=count_include_pad),
                               rtol=1e-5, atol=1e-6 * float(np.abs(x).max()))


def test_larger_windows_add_in_float64():
    x = np.random.default_rng(2).standard_normal((2, 3, 20, 48)).astype(np.float32)
    x *= np.exp2(np.random.default_rng(8).integers(-12, 12, x.shape)).astype(np.float32)
    assert 7 * 7 > pooling.SUM32_TAPS
    got = fp.avg_pool2d(x, 7, 1, 3)
    want = avg_pool(x, 2, 7, 1, 3)
    # float64 sums rounded once: the float64 reference rounded, to within one ULP
    np.testing.assert_array_almost_equal_nulp(got, want.astype(np.float32), nulp=1)
    assert not np.array_equal(got, numpy_avg32(x, 7, 1, 3)), "float32 slices should part from float64 sums here"


def test_float16_and_float64_keep_their_rules():
    x = np.random.default_rng(3).standard_normal((2, 3, 19, 56))
    got64 = fp.avg_pool2d(x, 3, 1, 1)
    np.testing.assert_allclose(got64, avg_pool(x, 2, 3, 1, 1), rtol=1e-13, atol=1e-15)
    h = x.astype(np.float16)
    got16 = fp.avg_pool2d(h, 3, 1, 1)
    assert got16.dtype == np.float16
    np.testing.assert_array_equal(got16, numpy_avg32(h.astype(np.float32), 3, 1, 1).astype(np.float16))


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_float32_sums_past_float32s_range_overflow(layout):
    """As PyTorch's: a float32 sum past float32's range is inf although the average
    would fit; float64 input keeps it."""
    big = np.full((1, 2, 8, 16), 3e38)
    if layout == "channels_last":
        big = np.ascontiguousarray(np.moveaxis(big, 1, -1))
    got32 = fp.avg_pool2d(big.astype(np.float32), 3, 1, 1, count_include_pad=False, layout=layout)
    got64 = fp.avg_pool2d(big, 3, 1, 1, count_include_pad=False, layout=layout)
    np.testing.assert_allclose(got64, 3e38, rtol=1e-15)
    assert np.isinf(got32).all()
