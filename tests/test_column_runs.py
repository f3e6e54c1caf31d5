"""The running maxima down a plane that the wide stride-1 max takes its H axis
from (``_simd.column_max``: van Herk / Gil-Werman runs of K rows, blocks of 1-8
vectors side by side) against the NumPy reference: rows whose width leaves each
block size and an overlapping last vector, planes shorter than a run and ones
with whole runs inside, padding from none to K - 1, NaN, infinities and signed
zeros (the first of equal maxima, the last NaN)."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

import fastpool as fp
from fastpool import _simd

from probes import kernel_args, sprinkled
from reference import max_pool

# 8 * U + r cells: every block size U = 1..8 with and without the last vector
WIDTHS = [8, 11, 16, 23, 24, 37, 40, 48, 53, 56, 61, 64, 67, 79, 100, 136]


def _data(rng, shape, dtype):
    return sprinkled(rng, shape, dtype, 20, ((np.nan, 2), (-np.inf, 3), (0.0, 6), (-0.0, 6)))


@njit
def _column(x, H, WC, ph, K, OH, lowest, nan):
    P = np.empty((OH + K - 1) * WC, x.dtype)
    out = np.full(OH * WC + 3, x.dtype.type(7), x.dtype)
    if nan:
        seen = _simd.column_max(x, 0, H, WC, ph, K, OH, lowest, P, out, 3, WC)
    else:
        seen = _simd.column_max_nonan(x, 0, H, WC, ph, K, OH, lowest, P, out, 3, WC)
    return out, seen


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("K,ph,H", [(4, 0, 9), (5, 2, 30), (13, 6, 3), (13, 6, 40), (7, 6, 20), (4, 3, 1)])
def test_column_max_matches_sequential_rule(width, K, ph, H):
    rng = np.random.default_rng(width * 100 + K * 10 + ph)
    # below zero but for the zeros, so that windows often peak at both signs
    # of zero and the first one must win
    x = -np.abs(rng.standard_normal((H, width))).astype(np.float32)
    x.reshape(-1)[rng.integers(0, x.size, x.size // 4)] = 0.0
    x.reshape(-1)[rng.integers(0, x.size, x.size // 4)] = -0.0
    x.reshape(-1)[rng.integers(0, x.size, 2)] = np.nan
    OH = H + 2 * ph - K + 1
    # the sequential rule straight: a later value replaces if larger or NaN
    pad = np.full((OH + K - 1, width), -np.inf, np.float32)
    pad[ph:ph + H] = x
    want = pad[:OH].copy()
    for h in range(1, K):
        b = pad[h:h + OH]
        take = (b > want) | np.isnan(b)
        want = np.where(take, b, want)
    got, seen = _column(x.reshape(-1), H, width, ph, K, OH, -np.inf, True)
    np.testing.assert_array_equal(got[3:].view(np.uint32), want.reshape(-1).view(np.uint32))
    assert (got[:3] == 7).all()
    assert seen == bool(np.isnan(x).any())
    clean = np.where(np.isnan(x), np.float32(1.5), x)
    got, seen = _column(clean.reshape(-1), H, width, ph, K, OH, -np.inf, False)
    pad[ph:ph + H] = clean
    want = pad[:OH].copy()
    for h in range(1, K):
        want = np.where(pad[h:h + OH] > want, pad[h:h + OH], want)
    np.testing.assert_array_equal(got[3:].view(np.uint32), want.reshape(-1).view(np.uint32))
    assert not seen


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int8])
@pytest.mark.parametrize("width", [w for w in WIDTHS if w % 3])
def test_wide_max_with_column_runs_matches_reference(monkeypatch, dtype, width):
    rng = np.random.default_rng(width)
    x = _data(rng, (2, 3, 17, width), dtype)
    want = max_pool(x.astype(np.float64) if dtype == np.float16 else x, 2, (9, 3), 1, (4, 1))[0].astype(dtype)
    seen = kernel_args(monkeypatch, ("wide_max_forward",), 9)
    got = fp.max_pool2d(x, (9, 3), 1, (4, 1))
    assert seen == [9]
    np.testing.assert_array_equal(got, want)
