"""Channels-first rows long enough for ``_simd``'s 16-lane row passes (16+ cells) and
the window passes whose taps are shuffled out of two loads (stride 1, 2 or 3
adjacent taps; stride 2, 3 taps; 8+ outputs), against the NumPy reference: rows of
16-64 cells, widths that leave an overlapping last block, dilated taps beside them
(which keep one load per tap), NaN, infinities and signed zeros."""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp

from probes import assert_float32_avg, sprinkled
from reference import avg_pool, max_pool


def _data(rng, shape, dtype):
    return sprinkled(rng, shape, dtype, 20, ((np.nan, 5), (-np.inf, 3), (-0.0, 5)))


GEOMS = [
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=2, stride=1),
    dict(kernel_size=(2, 3), stride=1, padding=(0, 1)),
    dict(kernel_size=3, stride=1, padding=2, dilation=2),
    dict(kernel_size=(3, 2), stride=1, dilation=(1, 3)),
]
IDS = ["k3p1", "k2", "k2x3", "k3d2", "k32d13"]


@pytest.mark.parametrize("width", [16, 23, 41])
@pytest.mark.parametrize("geom", GEOMS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.float16])
def test_long_rows_max_match_reference(geom, width, dtype):
    x = _data(np.random.default_rng(width), (2, 3, 7, width), dtype)
    np.testing.assert_array_equal(fp.max_pool2d(x, **geom), max_pool(x, 2, **geom)[0])


@pytest.mark.parametrize("width", [16, 23, 41])
@pytest.mark.parametrize("geom", [g for g in GEOMS if "dilation" not in g], ids=IDS[:3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_long_rows_avg_match_reference(geom, width, dtype):
    x = _data(np.random.default_rng(width + 1), (2, 3, 7, width), dtype)
    got = fp.avg_pool2d(x, **geom)
    want = avg_pool(x, 2, **geom)
    # float32 adds in float32 (tests/test_sum32.py); float64: the reference
    # adds in another order
    if dtype == np.float32:
        assert_float32_avg(got, x, 2, **geom)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_long_rows_3d_planes_match_reference():
    x = _data(np.random.default_rng(3), (1, 2, 4, 5, 33), np.float32)
    for kw in (dict(kernel_size=(2, 3, 3), stride=1, padding=(0, 1, 1)), dict(kernel_size=(1, 2, 2), stride=1)):
        np.testing.assert_array_equal(fp.max_pool3d(x, **kw), max_pool(x, 3, **kw)[0])
        assert_float32_avg(fp.avg_pool3d(x, **kw), x, 3, **kw)


# 4-7 outputs of 3-tap stride-2 windows: the 4-lane window pass with K fixed at 3
@pytest.mark.parametrize("width", [9, 11, 13])
@pytest.mark.parametrize("geom", [dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=3, stride=2)],
                         ids=["k3s2p1", "k3s2"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8])
def test_short_stride2_rows_match_reference(geom, width, dtype):
    x = _data(np.random.default_rng(width + 2), (2, 3, 9, width), dtype)
    assert 4 <= fp.max_pool2d(x, **geom).shape[-1] <= 7
    np.testing.assert_array_equal(fp.max_pool2d(x, **geom), max_pool(x, 2, **geom)[0])
    got, want = fp.avg_pool2d(x, **geom), avg_pool(x, 2, **geom)
    if dtype == np.float32:
        assert_float32_avg(got, x, 2, **geom)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)


# 8+ outputs of 3-tap stride-2 windows: the window pass that picks adjacent
# taps of 32-bit cells with in-lane shuffles and permutes the result back,
# beside the one that loads each tap (other widths, dilated taps)
@pytest.mark.parametrize("width", [17, 23, 41, 64])
@pytest.mark.parametrize("geom", [dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=3, stride=2),
                                  dict(kernel_size=3, stride=2, padding=2, dilation=2)],
                         ids=["k3s2p1", "k3s2", "k3s2d2"])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.float16, np.float64, np.int8])
def test_long_stride2_rows_max_match_reference(geom, width, dtype):
    x = _data(np.random.default_rng(width + 3), (2, 3, 9, width), dtype)
    got = fp.max_pool2d(x, **geom)
    assert got.shape[-1] >= 8
    np.testing.assert_array_equal(got, max_pool(x, 2, **geom)[0])
