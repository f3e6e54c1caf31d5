"""Channels-first global max through eight planes a step
(``_simd.plane_maxes8`` in ``_cpu.global_max_cf``): against the NumPy
reference on every dtype, with NaN and infinities in some planes, plane counts
that leave a remainder of planes and cells, and in the calling thread or the
pool."""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp

from probes import sprinkled
from reference import global_max_pool


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int8, np.uint8, np.int32, np.int64])
@pytest.mark.parametrize("shape", [(3, 7, 7, 7), (2, 8, 4, 4), (1, 17, 5, 10), (5, 13, 3, 21), (4, 64, 9, 9)], ids=str)
def test_global_max_matches_reference(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    x = sprinkled(rng, shape, dtype, 50, ((np.nan, 3), (np.inf, 2), (-np.inf, 4)))
    before = x.copy()
    got = fp.global_max_pool(x)
    np.testing.assert_array_equal(got, global_max_pool(x)[0])
    np.testing.assert_array_equal(x, before)


def test_each_cell_of_a_plane_can_win():
    # one plane per (position, plane slot): the winner at every cell, every tail cell
    S = 49
    x = np.full((2, 8 * S, 7, 7), -5.0, np.float32)
    for c in range(8 * S):
        x[c % 2, c, (c // 8) % 7, (c // 56) % 7] = float(c)
    np.testing.assert_array_equal(fp.global_max_pool(x), global_max_pool(x)[0])


def test_nan_wins_wherever_it_sits():
    x = np.zeros((1, 8, 4, 5), np.float64)
    for c in range(8):
        x[0, c].reshape(-1)[(3 * c) % 20] = np.nan
    x[0, 3, 1, 1] = np.inf
    got = fp.global_max_pool(x, keepdims=False)
    assert np.isnan(got).all()


_BLOCKS = {}


def _blocked(G):
    # the eight-plane reductions built for G planes a block (``_simd._PLANE_BLOCK``
    # picks one by the CPU): every G gives each plane the same order, so the same bits
    if G not in _BLOCKS:
        from numba import njit

        from fastpool import _simd

        if G == "one":   # a plane at a time, the order the eight-plane sums keep
            _BLOCKS[G] = njit(lambda x, S, b: _simd.plane_sum(x, b * S, S) / S)
            return _BLOCKS[G]
        sums, maxes = _simd._plane_sums8(G), _simd._plane_maxes8(G)

        @njit
        def run(x, S, means, tops):
            for t in range(x.size // (8 * S)):
                sums(x, t * 8 * S, S, means, t * 8, float(S))
                maxes(x, t * 8 * S, S, tops, t * 8)

        _BLOCKS[G] = run
    return _BLOCKS[G]


@pytest.mark.parametrize("G", [1, 2, 4, 8])
@pytest.mark.parametrize("S", [16, 49, 56, 100])
def test_every_plane_block_gives_the_same_bits(G, S):
    rng = np.random.default_rng(S)
    x = sprinkled(rng, (16, S), np.float32, 40, ((np.nan, 2), (-np.inf, 2)))
    x[3, : S // 2] = -0.0
    means, tops = np.empty(16, np.float32), np.empty(16, np.float32)
    _blocked(G)(x.reshape(-1), S, means, tops)
    want = np.array([_blocked("one")(x.reshape(-1), S, b) for b in range(16)]).astype(np.float32)
    np.testing.assert_array_equal(means, want)
    np.testing.assert_array_equal(np.signbit(means), np.signbit(want))
    np.testing.assert_array_equal(tops, global_max_pool(x.reshape(16, 1, S))[0].reshape(-1))
