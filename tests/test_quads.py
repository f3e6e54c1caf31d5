"""Whole 2x2 stride-2 windows on channels-first rows (``_simd.max_quads`` /
``avg_quads``: both rows and both taps of a window in one pass, no row buffer)
against the NumPy reference, and the geometries next to them that must keep the
row kernels."""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp

from probes import assert_float32_avg, kernel_args, sprinkled
from reference import avg_pool, max_pool


def _rows_kind(monkeypatch):
    """The ``uniform`` argument each channels-first kernel call got."""
    return kernel_args(monkeypatch, ("cf_max_forward", "cf_sum_forward"), 17)


def _data(rng, shape, dtype):
    return sprinkled(rng, shape, dtype, 30, ((np.nan, 4), (-np.inf, 2)))


# (input spatial shape): 8-lane rows with an overlapping last block, an odd
# width and height (the last column and row read by no window), 4-lane rows
SIZES = [(6, 40), (7, 19), (4, 14), (10, 8)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.uint8])
@pytest.mark.parametrize("size", SIZES)
def test_max_quads_match_reference(monkeypatch, size, dtype):
    x = _data(np.random.default_rng(size[1]), (2, 3) + size, dtype)
    seen = _rows_kind(monkeypatch)
    got = fp.max_pool2d(x, 2, 2)
    assert seen == [3]
    np.testing.assert_array_equal(got, max_pool(x, 2, 2, 2)[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.uint8])
@pytest.mark.parametrize("size", SIZES)
def test_avg_quads_match_reference(monkeypatch, size, dtype):
    x = _data(np.random.default_rng(size[0]), (2, 3) + size, dtype)
    seen = _rows_kind(monkeypatch)
    got = fp.avg_pool2d(x, 2, 2)
    assert seen == [3]
    want = avg_pool(x, 2, 2, 2)
    assert got.dtype == (np.float64 if np.dtype(dtype).kind in "iu" else dtype)
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-12)


def test_quads_on_3d_planes_and_divisor_override(monkeypatch):
    x = _data(np.random.default_rng(7), (2, 3, 4, 6, 18), np.float32)
    seen = _rows_kind(monkeypatch)
    np.testing.assert_array_equal(fp.max_pool3d(x, (1, 2, 2), (2, 2, 2)), max_pool(x, 3, (1, 2, 2), (2, 2, 2))[0])
    np.testing.assert_allclose(fp.avg_pool3d(x, (1, 2, 2), (1, 2, 2), divisor_override=3),
                               avg_pool(x, 3, (1, 2, 2), (1, 2, 2), divisor_override=3), rtol=1e-6)
    assert seen == [3, 3]


@pytest.mark.parametrize("kw", [
    dict(kernel_size=2, stride=2, padding=1),          # windows in the padding
    dict(kernel_size=2, stride=2, ceil_mode=True),     # a one-cell last window
    dict(kernel_size=2, stride=(2, 1)),                # stride 1 on W
    dict(kernel_size=(3, 2), stride=2),                # three rows
], ids=["padded", "ceil", "stride21", "k32"])
def test_other_geometries_keep_the_row_kernels(monkeypatch, kw):
    x = _data(np.random.default_rng(8), (2, 3, 7, 19), np.float32)
    seen = _rows_kind(monkeypatch)
    got = fp.max_pool2d(x, **kw)
    avg = fp.avg_pool2d(x, **kw)
    assert 3 not in seen and len(seen) == 2
    np.testing.assert_array_equal(got, max_pool(x, 2, **kw)[0])
    assert_float32_avg(avg, x, 2, **kw)
