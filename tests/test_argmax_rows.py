"""Channels-first max with indices through ``_simd.argmax_rows`` and
``_simd.argmax_wins`` (8- and 4-lane blocks, stride 1 and 2, three taps and
other counts, windows on D) and their loop fallbacks (rows under 4 cells,
3-D rows under 8, strides above 2, rows of under 4 outputs), against the NumPy
reference: values, PyTorch's indices (first maximum; with NaN, the last NaN),
and the gradient without saved indices.  Ties are made likely: small integers,
NaN, infinities and both zeros."""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp

from probes import sprinkled
from reference import max_pool, max_pool_backward

CASES = [
    # (input spatial shape, geometry): what each exercises
    ((9, 37), dict(kernel_size=3, stride=2, padding=1)),  # 8 lanes, s2, K3, R3
    ((9, 37), dict(kernel_size=3, stride=1, padding=1)),  # 8 lanes, s1, K3
    ((8, 29), dict(kernel_size=(2, 4), stride=(1, 2), padding=(0, 2))),  # s2, K4, R2
    ((7, 30), dict(kernel_size=2, stride=1, dilation=(1, 3))),  # s1, K2, dilated taps
    ((6, 12), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),  # 8-lane rows, 4-lane taps
    ((6, 7), dict(kernel_size=2, stride=1)),  # 4-lane rows and taps
    ((5, 9), dict(kernel_size=(1, 3), stride=(1, 2), padding=(0, 1))),  # one row a window, 4-lane taps
    ((7, 3), dict(kernel_size=2, stride=1, padding=1)),  # rows under 4 cells: loops
    ((7, 20), dict(kernel_size=3, stride=3, padding=1)),  # stride 3: the taps' loop
    ((7, 20), dict(kernel_size=(3, 5), stride=(2, 4), padding=(1, 2), dilation=(1, 2))),  # stride 4
]
IDS = ["s2k3", "s1k3", "s2k4", "s1k2d3", "s2k3w4", "w7", "k1x3", "w3", "s3", "s4d2"]

CASES_3D = [
    ((3, 5, 21), dict(kernel_size=(2, 3, 3), stride=(1, 2, 2), padding=(1, 1, 1))),  # planes, 8 lanes
    ((4, 5, 6), dict(kernel_size=(2, 2, 2), stride=1)),  # planes on 6-cell rows: loops
    ((4, 5, 6), dict(kernel_size=(1, 2, 2), stride=1)),  # one plane a window, 4 lanes
]
IDS_3D = ["planes", "planes-w6", "plane-w6"]


def _data(seed, shape, dtype):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind != "f":
        return sprinkled(rng, shape, dtype, 2)
    x = sprinkled(rng, shape, dtype, 1, ((np.nan, 6), (np.inf, 2), (-np.inf, 4), (0.0, 9), (-0.0, 9)))
    return np.round(x * 2) / 2  # ties between values as well as zeros


def _check(x, nd, geom):
    fn = getattr(fp, f"max_pool{nd}d")
    got, idx = fn(x, **geom, return_indices=True)
    want, want_idx = max_pool(x, nd, **geom)
    np.testing.assert_array_equal(idx, want_idx)
    # assert_array_equal counts -0.0 == 0.0 and NaN == NaN: compare the bits
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
    if x.dtype.kind != "f":
        return  # no gradient of integer inputs
    g = _data(7, got.shape, np.float64)
    g[~np.isfinite(g)] = 1.5
    gx = getattr(fp, f"max_pool{nd}d_backward")(g, x, **geom)
    np.testing.assert_array_equal(gx, max_pool_backward(g, x, nd, **geom))


@pytest.mark.parametrize("shape,geom", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.uint8, np.int64])
def test_argmax_rows_2d_match_reference(shape, geom, dtype):
    _check(_data(sum(shape), (2, 3) + shape, dtype), 2, geom)


@pytest.mark.parametrize("shape,geom", CASES_3D, ids=IDS_3D)
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_argmax_rows_3d_match_reference(shape, geom, dtype):
    _check(_data(sum(shape), (2, 2) + shape, dtype), 3, geom)


def test_argmax_rows_1d_and_large_batch_match_reference():
    # 1-D rows and enough rows to split across every chunk of the parallel path
    x = _data(5, (3, 4, 101), np.float32)
    _check(x, 1, dict(kernel_size=3, stride=2, padding=1))
    x = _data(6, (4, 64, 23, 31), np.float32)
    _check(x, 2, dict(kernel_size=3, stride=2, padding=1))
