"""float16 channels-first max on CPUs that compute on halves (AVX512-FP16):
``_simd.half_rows32`` and ``half_wins32`` compare 32 halves a vector with the
halves' own max, and stride-2 windows come from 32-bit lanes of two halves.
Against the sequential rule in NumPy (a later value replaces if larger; NaN
rows are the caller's, flagged), bit for bit: ties of both zeros and small
integers decide which bits win, so an operand order swapped shows.  Where the
CPU lacks the instructions the path is not built, and these tests do not run."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

import fastpool as fp
from fastpool import _cpu, _simd

from probes import kernel_args
from reference import max_pool

pytestmark = pytest.mark.skipif(not _simd.has_avx512fp16(), reason="no AVX512-FP16 here: the halves' path is not built")

NEG_INF = np.uint16(0xFC00)


def _halves(rng, shape, nan=0):
    """Small integers, many of them +0 and -0, a few infinities; ``nan`` NaNs."""
    x = np.round(rng.standard_normal(shape) * 2).astype(np.float16)
    bits = x.reshape(-1).view(np.uint16)
    for value, count in ((0x8000, x.size // 6), (0x0000, x.size // 6), (0x7C00, 2), (0xFC00, 2), (0x0001, 2)):
        bits[rng.integers(0, bits.size, count)] = value
    if nan:
        bits[rng.integers(0, bits.size, nan)] = 0x7E01
    return x


def _rule(a, b):
    """``b if b > a else a`` on halves, the bits kept."""
    return np.where(b > a, b, a)


@njit
def _rows(x, rs, R, W, buf, pl):
    return _simd.half_rows32(x, 0, rs, R, W, buf, pl)


@njit
def _wins(buf, b0, out, oo, OW, s, K, d):
    _simd.half_wins32(buf, b0, out, oo, OW, s, K, d)


@pytest.mark.parametrize("W", [32, 33, 47, 64, 100])
@pytest.mark.parametrize("R", [1, 2, 3, 4, 5])
def test_rows_match_the_rule(W, R):
    rng = np.random.default_rng(W * 10 + R)
    rows = _halves(rng, (R, W + 3))
    buf = np.full(W + 9, 0x1234, np.uint16)
    nan = _rows(rows.reshape(-1).view(np.uint16), W + 3, R, W, buf, 4)
    want = rows[0, :W]
    for r in range(1, R):
        want = _rule(want, rows[r, :W])
    assert not nan
    np.testing.assert_array_equal(buf[4:4 + W], want.view(np.uint16))
    # the cells around the row are untouched
    assert (buf[:4] == 0x1234).all() and (buf[4 + W:] == 0x1234).all()


@pytest.mark.parametrize("R,row", [(R, row) for R in range(1, 5) for row in range(R)])
@pytest.mark.parametrize("col", [0, 17, 40])
def test_rows_flag_a_nan_in_any_row(R, row, col):
    rows = _halves(np.random.default_rng(R * 10 + row), (R, 41))
    rows.view(np.uint16)[row, col] = 0xFE02  # a NaN of the negative sign
    buf = np.empty(41, np.uint16)
    assert _rows(rows.reshape(-1).view(np.uint16), 41, R, 41, buf, 0)


@pytest.mark.parametrize("s,OW", [(1, 32), (1, 45), (1, 70), (2, 16), (2, 23), (2, 40)])
@pytest.mark.parametrize("K", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_windows_match_the_rule(s, OW, K, d):
    rng = np.random.default_rng(s * 1000 + OW * 10 + K + d * 7)
    # the last block's wide load ends s - 1 cells past its last window
    n = s * OW + (K - 1) * d + 1
    buf = _halves(rng, (n + 5,))
    out = np.full(OW + 6, 0x1234, np.uint16)
    _wins(buf.view(np.uint16), 5, out, 3, OW, s, K, d)
    taps = [buf[5 + k * d:5 + k * d + s * (OW - 1) + 1:s] for k in range(K)]
    want = taps[0]
    for t in taps[1:]:
        want = _rule(want, t)
    np.testing.assert_array_equal(out[3:3 + OW], want.view(np.uint16))
    assert (out[:3] == 0x1234).all() and (out[3 + OW:] == 0x1234).all()


CASES = [
    # (input shape, geometry)
    ((2, 3, 9, 56), dict(kernel_size=3, stride=2, padding=1)),  # 16 windows a block, an overlapping last one
    ((1, 2, 7, 64), dict(kernel_size=2, stride=2)),  # two taps, from one load
    ((1, 2, 11, 70), dict(kernel_size=(3, 5), stride=2, padding=(1, 2), dilation=(1, 2))),  # dilated: odd offsets
    ((1, 2, 9, 40), dict(kernel_size=3, stride=1, padding=1)),  # stride 1, 32 windows a block
    ((1, 2, 8, 37), dict(kernel_size=4, stride=1, ceil_mode=True)),  # four rows and taps, the loops
    ((1, 40, 28, 56), dict(kernel_size=3, stride=2, padding=1)),  # parallel chunks
]
IDS = ["k3s2p1", "k2s2", "dilated", "k3s1p1", "k4s1", "parallel"]


@pytest.mark.parametrize("nan", [0, 5], ids=["no-nan", "nan"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_max_pool2d_on_halves(monkeypatch, case, nan):
    shape, kw = case
    assert _cpu._HALVES
    x = _halves(np.random.default_rng(shape[-1] + nan), shape, nan)
    before = x.copy()
    ran = kernel_args(monkeypatch, ("cf_half_max_forward",), 0, lambda a: a.shape)
    got = fp.max_pool2d(x, **kw)
    assert ran, "cf_half_max_forward did not run"
    np.testing.assert_array_equal(x.view(np.uint16), before.view(np.uint16))
    # separable: each column's rows first, then the columns, so ties follow
    # the reference run with the W axis moved first (as test_half_rows)
    wkw = {k: (v[-1:] + v[:-1] if isinstance(v, tuple) else v) for k, v in kw.items()}
    want, _ = max_pool(np.moveaxis(x, -1, 2), 2, **wkw)
    want = np.moveaxis(want, 2, -1)
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))
