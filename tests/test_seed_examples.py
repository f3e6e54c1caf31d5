"""The worked examples of the specification, checked value for value.

These numbers come from the specification (and are easy to derive by hand),
not from fastpool, so they are written out here.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp
from fastpool._geometry import plan
from fastpool._spec import adaptive_spec, window_spec

GRID = np.array([[1, 3, 2, 4],
                 [5, 6, 1, 2],
                 [7, 2, 3, 1],
                 [4, 8, 5, 6]], dtype=np.float64)
MAX_K2 = np.array([[6, 4], [8, 6]], dtype=np.float64)
AVG_K2 = np.array([[3.75, 2.25], [5.25, 3.75]])
UPSTREAM = np.array([[1, 2], [3, 4]], dtype=np.float64)
MAX_K2_GRAD = np.array([[0, 0, 0, 2],
                        [0, 1, 0, 0],
                        [0, 0, 0, 0],
                        [0, 3, 0, 4]], dtype=np.float64)

# PyTorch's adaptive bins for 10 -> 7: start = floor(i*10/7), end = ceil((i+1)*10/7)
BINS_10_TO_7 = [(0, 2), (1, 3), (2, 5), (4, 6), (5, 8), (7, 9), (8, 10)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_max_pool_grid(dtype):
    x = GRID.astype(dtype)[None, None]
    out = fp.max_pool2d(x, 2)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out[0, 0], MAX_K2)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.int64])
def test_max_pool_grid_integer(dtype):
    out = fp.max_pool2d(GRID.astype(dtype)[None, None], 2)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out[0, 0], MAX_K2.astype(dtype))


def test_max_pool_grid_indices():
    # the maxima sit at (1,1), (0,3), (3,1), (3,3): flat h*W + w with W = 4
    _, idx = fp.max_pool2d(GRID[None, None], 2, return_indices=True)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx[0, 0], [[5, 3], [13, 15]])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_avg_pool_grid(dtype):
    out = fp.avg_pool2d(GRID.astype(dtype)[None, None], 2)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out[0, 0], AVG_K2.astype(dtype))


def test_avg_pool_grid_integer_input_gives_float64():
    out = fp.avg_pool2d(GRID.astype(np.int32)[None, None], 2)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out[0, 0], AVG_K2)


def test_max_pool_grid_backward():
    x = GRID[None, None]
    g = fp.max_pool2d_backward(UPSTREAM[None, None], x, 2)
    assert g.shape == x.shape and g.dtype == x.dtype
    np.testing.assert_array_equal(g[0, 0], MAX_K2_GRAD)
    # with the forward's indices handed back, the same gradient
    _, idx = fp.max_pool2d(x, 2, return_indices=True)
    g2 = fp.max_pool2d_backward(UPSTREAM[None, None], x, 2, indices=idx)
    np.testing.assert_array_equal(g2[0, 0], MAX_K2_GRAD)


def test_grid_channels_last_and_unbatched():
    x_cl = GRID[None, :, :, None]          # (N, H, W, C)
    np.testing.assert_array_equal(fp.max_pool2d(x_cl, 2, layout="NHWC")[0, :, :, 0], MAX_K2)
    np.testing.assert_array_equal(fp.avg_pool2d(x_cl, 2, layout="NHWC")[0, :, :, 0], AVG_K2)
    g = fp.max_pool2d_backward(UPSTREAM[None, :, :, None], x_cl, 2, layout="NHWC")
    np.testing.assert_array_equal(g[0, :, :, 0], MAX_K2_GRAD)
    np.testing.assert_array_equal(fp.max_pool2d(GRID[None], 2)[0], MAX_K2)  # (C, H, W)


def test_adaptive_bins_10_to_7_plan():
    (t,) = plan(adaptive_spec(1, 7), (10,))
    assert t.n == 10 and t.out == 7
    starts = t.lo.tolist()
    ends = (t.lo + t.taps).tolist()
    assert list(zip(starts, ends)) == BINS_10_TO_7


def test_adaptive_bins_10_to_7_behaviour():
    x = np.arange(10, dtype=np.float64)[None, None]   # (N, C, L)
    mx = fp.adaptive_max_pool1d(x, 7)
    # arange is increasing, so each bin's max is its last cell, end - 1
    np.testing.assert_array_equal(mx[0, 0], [e - 1 for _, e in BINS_10_TO_7])
    av = fp.adaptive_avg_pool1d(x, 7)
    np.testing.assert_allclose(av[0, 0], [(s + e - 1) / 2 for s, e in BINS_10_TO_7], rtol=0, atol=1e-15)
    _, idx = fp.adaptive_max_pool1d(x, 7, return_indices=True)
    np.testing.assert_array_equal(idx[0, 0], [e - 1 for _, e in BINS_10_TO_7])


def test_adaptive_bins_10_to_7_in_2d_and_3d():
    # the bins are per axis, so a 2-D/3-D input whose value is the last axis's
    # coordinate shows the same bins on that axis
    x2 = np.broadcast_to(np.arange(10.0), (1, 1, 3, 10))
    np.testing.assert_array_equal(fp.adaptive_max_pool2d(x2, (3, 7))[0, 0, 0],
                                  [e - 1 for _, e in BINS_10_TO_7])
    x3 = np.broadcast_to(np.arange(10.0)[:, None, None], (1, 1, 10, 2, 2))
    np.testing.assert_allclose(fp.adaptive_avg_pool3d(x3, (7, 1, 1))[0, 0, :, 0, 0],
                               [(s + e - 1) / 2 for s, e in BINS_10_TO_7], rtol=0, atol=1e-15)


def test_32x32_k3_s2_p1_gives_16x16():
    x = np.random.default_rng(0).standard_normal((1, 2, 32, 32))
    for f in (fp.max_pool2d, fp.avg_pool2d):
        assert f(x, 3, stride=2, padding=1).shape == (1, 2, 16, 16)
    assert fp.lp_pool2d(x, 2, 3, stride=2, padding=1).shape == (1, 2, 16, 16)
    spec = window_spec(2, 3, 2, 1)
    assert [t.out for t in plan(spec, (32, 32))] == [16, 16]
    assert fp.pooling.output_shape(spec, (1, 2, 32, 32)) == (1, 2, 16, 16)
