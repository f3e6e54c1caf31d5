"""Channels-first averages whose W windows lie end to end (stride = kernel, a
multiple of 4 cells, 4+ windows: adaptive averages that divide their input evenly,
k = s averages), which add four windows at a time from float64 row sums
(``_core.tile_rows``), against the NumPy reference: widths that leave an
overlapping last block of four windows or cells past the last window, H and D
windows padded, clipped or adaptive beside them, NaN and infinities."""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp
from fastpool import _core
from fastpool import _geometry as geo

from probes import kernel_args, sprinkled
from reference import adaptive_avg_pool, avg_pool


def _rows_kind(monkeypatch):
    """The ``uniform`` argument each ``cf_sum_forward`` call got (4: the tiles)."""
    return kernel_args(monkeypatch, ("cf_sum_forward",), 17)


def _data(rng, shape, dtype):
    return sprinkled(rng, shape, dtype, 20, ((np.nan, 2), (np.inf, 2), (-np.inf, 2)))


def _close(got, want):
    # float64 sums, in another order than the reference's, rounded once to
    # got's type: within one unit in the last place of the rounded reference
    # (float64: the orders' rounding, where windows of cells of about 20 cancel)
    if got.dtype == np.float64:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)
    else:
        np.testing.assert_allclose(got, want.astype(got.dtype), rtol=float(np.finfo(got.dtype).eps), atol=0,
                                   equal_nan=True)


def _takes_tiles(n, kernel_size, stride, padding=(0, 0), ceil_mode=False):
    axes = tuple(geo.window_axis(a, n[a], kernel_size[a], stride[a], 1, padding[a], padding[a], ceil_mode)
                 for a in range(2))
    return _core.tile_rows(axes)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("ow", [4, 5, 7, 9])
@pytest.mark.parametrize("k", [4, 8, 12, 32])
def test_adaptive_tiles_match_reference(k, ow, dtype, monkeypatch):
    # 3 * k // 2 rows in 3 bins: bins of k // 2 rows, or overlapping ones (k 4, 12)
    x = _data(np.random.default_rng(k * 10 + ow), (2, 3, 3 * k // 2 + k % 8, k * ow), dtype)
    seen = _rows_kind(monkeypatch)
    got = fp.adaptive_avg_pool2d(x, (3, ow))
    assert seen == [4]
    want = adaptive_avg_pool(x, 2, (3, ow))
    _close(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.uint8])
@pytest.mark.parametrize("geom", [
    dict(kernel_size=(3, 8), stride=(2, 8), padding=(1, 0)),
    dict(kernel_size=(2, 4), stride=(1, 4), count_include_pad=False, padding=(1, 0)),
    dict(kernel_size=(5, 8), stride=(3, 8), ceil_mode=True),
    dict(kernel_size=8, stride=8, divisor_override=7),
    dict(kernel_size=(1, 8), stride=(1, 8)),
], ids=["k3x8p1", "k2x4cip", "k5x8ceil", "k8div7", "k1x8"])
@pytest.mark.parametrize("width", [32, 38, 72])
def test_avg_tiles_match_reference(geom, width, dtype, monkeypatch):
    if geom.get("ceil_mode"):
        width -= width % 8  # else the last window is cut short on W: no tiles
    x = _data(np.random.default_rng(width), (2, 3, 17, width), dtype)
    seen = _rows_kind(monkeypatch)
    got = fp.avg_pool2d(x, **geom)
    assert seen == [4]
    want = avg_pool(x, 2, **geom)
    _close(got, want)


def test_tiles_3d_and_1d_match_reference(monkeypatch):
    rng = np.random.default_rng(5)
    x = _data(rng, (2, 2, 7, 8, 40), np.float32)
    y = _data(rng, (3, 4, 96), np.float64)
    seen = _rows_kind(monkeypatch)
    _close(fp.adaptive_avg_pool3d(x, (3, 2, 5)), adaptive_avg_pool(x, 3, (3, 2, 5)))
    _close(fp.avg_pool3d(x, (2, 3, 8), (2, 2, 8)), avg_pool(x, 3, (2, 3, 8), (2, 2, 8)))
    _close(fp.avg_pool3d(x, (2, 3, 8), (1, 2, 8), dilation=(2, 1, 1)),
           avg_pool(x, 3, (2, 3, 8), (1, 2, 8), dilation=(2, 1, 1)))
    _close(fp.adaptive_avg_pool1d(y, 6), adaptive_avg_pool(y, 1, 6))
    assert seen == [4] * 4


def test_tiles_leave_input_unchanged_and_fill_out():
    x = _data(np.random.default_rng(7), (1, 4, 16, 64), np.float32)
    before = x.copy()
    out = np.full((1, 4, 2, 8), 123.0, np.float32)
    fp.adaptive_avg_pool2d(x, (2, 8), out=out)
    np.testing.assert_array_equal(x, before)
    _close(out, adaptive_avg_pool(x, 2, (2, 8)))


def test_tiles_geometry():
    # the cases above take the tiles; windows that do not lie end to end, whole,
    # 4+ of a multiple of 4 cells, do not
    n = (16, 64)
    assert _takes_tiles(n, (2, 8), (2, 8))
    assert _takes_tiles(n, (3, 4), (1, 4), (1, 0))
    assert not _takes_tiles(n, (6, 6), (6, 6))
    assert not _takes_tiles(n, (2, 8), (2, 4))
    assert not _takes_tiles(n, (2, 8), (2, 8), (0, 4))
    assert not _takes_tiles(n, (2, 32), (2, 32))
    dilated = (geo.window_axis(0, 16, 2, 2, 1, 0, 0, False), geo.window_axis(1, 64, 4, 4, 2, 0, 0, False))
    assert not _core.tile_rows(dilated)
    assert not _takes_tiles((16, 60), (8, 8), (8, 8), (0, 0), True)
    ad = (geo.adaptive_axis(56, 7), geo.adaptive_axis(56, 7))
    assert _core.tile_rows(ad)
    assert not _core.tile_rows((geo.adaptive_axis(56, 7), geo.adaptive_axis(58, 7)))


def test_sum_tiles_scales_each_window_by_its_own_multiplier():
    # through the pooling calls every window of a row has the same divisor
    from numba import njit

    from fastpool import _simd

    @njit
    def run(buf, out, mul, OW, K):
        _simd.sum_tiles(buf, 0, out, 1, mul, OW, K)

    rng = np.random.default_rng(9)
    for K, OW in ((4, 5), (8, 7), (12, 4), (16, 9)):
        buf = rng.standard_normal(K * OW)
        mul = rng.random(OW) + 0.5
        out = np.full(OW + 2, 7.0)
        run(buf, out, mul, OW, K)
        want = buf.reshape(OW, K).sum(axis=1) * mul
        np.testing.assert_allclose(out[1:-1], want, rtol=1e-13, atol=1e-13)
        assert out[0] == out[-1] == 7.0
