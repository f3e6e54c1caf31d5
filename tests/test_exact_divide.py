"""float32 averages divided with fused multiply-adds (``_simd._exact_scaled``:
``q = s*y``, then ``q - (q*d - s)*y``, y the float32 nearest 1/d) where the
divisors are whole numbers up to ``_simd.EXACT_DIVISORS``: the same bits as the
float64 product ``float32(float64(s) * (1/d))`` the other passes round once.
Checked here on every class of float32 sum - normal, subnormal and the tiny
ones whose q is subnormal (where the rule alone breaks), zeros of both signs,
huge, infinite and NaN (payloads kept) - for every such divisor, through the
W pass itself against its float64 rows; and end to end through the pools.
``exhaustive_exact_divide.py`` here runs the same on every float32."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

import fastpool as fp
from fastpool import _core, _simd
from fastpool import _geometry as geo
from fastpool._spec import window_spec

from probes import kernel_args
from test_sum32 import numpy_avg32

pytestmark = pytest.mark.skipif(not _simd.has_fma(), reason="no FMA here: the float64 product is used")


@njit
def _scale(buf, out, mul, n):
    # one tap a window: out = buf scaled by the row's multipliers
    _simd.sum_wins(buf, 0, out, 0, mul, n, 1, 1, 1)


def _sums(rng, n):
    """float32 values of every class, as bits drawn from each range."""
    parts = [
        rng.integers(0x00000000, 0x00800000, n // 8),  # subnormal
        rng.integers(0x00800000, 0x0D800000, n // 8),  # normal, under 2^-100
        rng.integers(0x0D800000, 0x7F800000, n // 4),  # the rest of the normals
        rng.integers(0x3F800000, 0x40000000, n // 4),  # one binade, densely
        np.array([0, 1, 0x007FFFFF, 0x00800000, 0x7F7FFFFF, 0x7F800000, 0x7FC00000, 0x7F800001, 0x7FC12345]),
    ]
    bits = np.concatenate(parts).astype(np.uint32)
    bits = np.concatenate([bits, bits | np.uint32(0x80000000)])  # both signs
    n16 = -(-bits.size // 16) * 16
    bits = np.resize(bits, n16)
    return bits.view(np.float32)


@pytest.mark.parametrize("d", range(1, _simd.EXACT_DIVISORS + 1))
def test_scaling_is_the_float64_product_bit_for_bit(d):
    s = _sums(np.random.default_rng(d), 1 << 15)
    n = s.size
    pairs = np.concatenate([np.full(n, 1.0 / d, np.float32), np.full(n, d, np.float32)])
    got = np.empty(n, np.float32)
    _scale(s, got, pairs, n)
    with np.errstate(invalid="ignore"):  # NaN cast back to float32
        want = (s.astype(np.float64) * (1.0 / d)).astype(np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    # and through the float64 rows the pass takes otherwise
    old = np.empty(n, np.float32)
    _scale(s, old, np.full(n, 1.0 / d), n)
    np.testing.assert_array_equal(old.view(np.uint32), want.view(np.uint32))


def test_mixed_divisors_in_a_row():
    # one block's lanes with different divisors, a subnormal q among them
    rng = np.random.default_rng(5)
    n = 64
    d = rng.integers(1, _simd.EXACT_DIVISORS + 1, n).astype(np.float64)
    s = rng.standard_normal(n).astype(np.float32)
    s[7] = np.float32(6 * 2.0 ** -130)  # q subnormal: the block takes the float64 way
    s[40] = np.inf
    pairs = np.concatenate([(1.0 / d).astype(np.float32), d.astype(np.float32)])
    got = np.empty(n, np.float32)
    _scale(s, got, pairs, n)
    want = (s.astype(np.float64) * (1.0 / d)).astype(np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_rows_only_for_whole_divisors_in_range():
    spec = window_spec(2, 3, 1, 1, 1, False, "channels_first")
    axes = geo.plan(spec, (20, 40))
    pairs = _core.exact_divisor_rows(axes, 16, "pad")
    rows, _ = _core.divisor_rows(axes, "pad")
    assert pairs.dtype == np.float32 and pairs.shape == (rows.shape[0], 2 * rows.shape[1])
    np.testing.assert_array_equal(pairs[:, 40:], np.float32(9))
    np.testing.assert_array_equal(pairs[:, :40], np.float32(1 / 9))
    # count_include_pad=False: 4, 6 and 9 at the edges
    valid = _core.exact_divisor_rows(axes, 16, "valid")
    assert set(np.unique(valid[:, 40:])) == {4.0, 6.0, 9.0}
    # a divisor past the checked ones, or not a whole number: the float64 rows
    assert _core.exact_divisor_rows(axes, 16, "pad", _simd.EXACT_DIVISORS + 1) is None
    # rows of fewer than 16 windows
    assert _core.exact_divisor_rows(geo.plan(spec, (20, 15)), 16, "pad") is None


@pytest.mark.parametrize("kw", [dict(kernel_size=3, stride=1, padding=1),
                                dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
                                dict(kernel_size=(2, 4), stride=(1, 2), padding=(1, 2), ceil_mode=True),
                                dict(kernel_size=3, stride=1, divisor_override=7),
                                dict(kernel_size=3, stride=1, divisor_override=65)], ids=str)
@pytest.mark.parametrize("width", [70, 13], ids=["rows", "short rows"])
def test_averages_divided_exactly(monkeypatch, kw, width):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 3, 19, width)) * 100).astype(np.float32)
    x[0, 0, 4, 2:12] = np.float32(2.0 ** -140)  # sums whose q is subnormal
    x[1, 2, 7, 3] = np.inf
    x[1, 1, 3, 10] = np.nan
    # the W pass of the row kernels (16 windows or more), or the short rows' one
    # pass (with AVX-512), take the float32 rows unless a divisor is past the
    # checked ones
    rows = kernel_args(monkeypatch, ("cf_sum_forward",), 25, lambda a: a.dtype)
    short = kernel_args(monkeypatch, ("cf_short_sum_forward",), 17, lambda a: a.dtype)
    got = fp.avg_pool2d(x, **kw)
    ok = kw.get("divisor_override") != 65
    assert len(rows) + len(short) == 1
    assert all(t == (np.float32 if ok and got.shape[-1] >= 16 else np.float64) for t in rows)
    assert all(t == (np.float32 if ok else np.float64) for t in short)
    # the same additions in NumPy and the float64 product, bit for bit
    k, st = kw["kernel_size"], kw["stride"]
    if isinstance(k, int) and "divisor_override" not in kw and not kw.get("ceil_mode"):
        exact = numpy_avg32(x, k, st, kw.get("padding", 0), kw.get("count_include_pad", True))
        np.testing.assert_array_equal(got.view(np.uint32), exact.view(np.uint32))
    # float32 sums of values up to ~500 against float64 ones: a few of their ULP
    want = fp.avg_pool2d(x.astype(np.float64), **kw)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-3)


def test_tests_without_the_class_instruction(monkeypatch):
    # CPUs without AVX-512 DQ/VL find the blocks that take the float64 way with
    # integer compares of q's bits
    monkeypatch.setattr(_simd, "_has_fpclass", lambda: False)
    wins = _simd._wins(8, 1, "sum", 1)

    @njit
    def scale(buf, out, mul, n):
        wins(buf, 0, out, 0, mul, n, 1, 1)

    for d in (3, 6, 7, 10, 64):
        s = _sums(np.random.default_rng(d), 1 << 13)
        n = s.size
        got = np.empty(n, np.float32)
        scale(s, got, np.concatenate([np.full(n, 1.0 / d, np.float32), np.full(n, d, np.float32)]), n)
        with np.errstate(invalid="ignore"):
            want = (s.astype(np.float64) * (1.0 / d)).astype(np.float32)
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
