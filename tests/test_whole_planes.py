"""Windowed pooling whose one window reads every cell of its plane (adaptive
pooling to size 1, a window as large as the input, padded or not) takes the
global kernels on channels-first planes (``pooling._whole_planes``): against
the NumPy reference, with the divisor each mode gives, NaN and infinities, and
the geometries that must not take them."""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp

from probes import kernel_args, sprinkled
from reference import adaptive_avg_pool, adaptive_max_pool, avg_pool, max_pool

GLOBAL = ("global_mean_cf", "global_max_cf")


def _global_calls(monkeypatch):
    return kernel_args(monkeypatch, GLOBAL, 0, conv=lambda a: a.shape)


def _data(rng, shape, dtype):
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -1000), min(info.max, 1000), shape, endpoint=True).astype(dtype)
    return sprinkled(rng, shape, dtype, 20, ((np.nan, 1), (np.inf, 1), (-np.inf, 1)))


def _close(got, want):
    # float64 plane sums in another order than the reference's, rounded once
    # (the reference computes in float64): within one unit in the last place
    assert got.shape == want.shape
    if got.dtype == np.float64:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)
    else:
        np.testing.assert_allclose(got, want.astype(got.dtype), rtol=float(np.finfo(got.dtype).eps), atol=0,
                                   equal_nan=True)


SHAPES = {1: (2, 3, 13), 2: (2, 3, 7, 9), 3: (2, 3, 3, 5, 6)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_adaptive_avg_to_one(nd, dtype, monkeypatch):
    x = _data(np.random.default_rng(nd), SHAPES[nd], dtype)
    seen = _global_calls(monkeypatch)
    got = getattr(fp, f"adaptive_avg_pool{nd}d")(x, 1)
    assert seen == [(6, x[0, 0].size)]
    _close(got, adaptive_avg_pool(x, nd, (1,) * nd))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int8, np.uint8, np.int32, np.int64])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_adaptive_max_to_one(nd, dtype, monkeypatch):
    x = _data(np.random.default_rng(10 + nd), SHAPES[nd], dtype)
    seen = _global_calls(monkeypatch)
    got = getattr(fp, f"adaptive_max_pool{nd}d")(x, 1)
    assert seen == [(6, x[0, 0].size)]
    want = adaptive_max_pool(x, nd, (1,) * nd)[0]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("padding, divisor_override", [(0, None), (1, None), (2, None), (1, 5), (0, 3)])
def test_avg_window_as_large_as_the_input(padding, divisor_override, count_include_pad, monkeypatch):
    # a 7x9 input, the window its size plus the padding: one output cell, whose
    # divisor counts the padding or not, or is overridden
    x = _data(np.random.default_rng(padding), (3, 4, 7, 9), np.float32)
    k = (7 + 2 * padding, 9 + 2 * padding)
    seen = _global_calls(monkeypatch)
    got = fp.avg_pool2d(x, k, 1, padding, count_include_pad=count_include_pad, divisor_override=divisor_override)
    assert seen == [(12, 63)]
    want = avg_pool(x, 2, k, 1, padding, count_include_pad=count_include_pad, divisor_override=divisor_override)
    _close(got, want)


def test_max_window_as_large_as_the_input_and_out(monkeypatch):
    x = _data(np.random.default_rng(5), (2, 5, 6, 6), np.float32)
    x[1, 2, 3, 3] = np.nan
    before = x.copy()
    out = np.full((2, 5, 1, 1), 7.0, np.float32)
    seen = _global_calls(monkeypatch)
    res = fp.max_pool2d(x, 6, out=out)
    assert res is out and seen == [(10, 36)]
    np.testing.assert_array_equal(out, max_pool(x, 2, 6)[0])
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("call", [
    # a second window (ceil mode, stride), a window that leaves a cell out, dilated taps,
    # indices, channels-last: each takes the windowed kernels
    lambda x: fp.avg_pool2d(x, 6, 1),
    lambda x: fp.max_pool2d(x, (4, 5), ceil_mode=True),
    lambda x: fp.max_pool2d(x, (7, 8), 1),
    lambda x: fp.max_pool2d(x, (4, 5), dilation=2),
    lambda x: fp.adaptive_max_pool2d(x, 1, return_indices=True)[0],
    lambda x: fp.adaptive_avg_pool2d(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), 1, layout="channels_last"),
    lambda x: fp.adaptive_avg_pool2d(x, (1, 2)),
])
def test_other_windows_do_not_take_the_global_kernels(call, monkeypatch):
    x = _data(np.random.default_rng(6), (2, 3, 7, 9), np.float32)
    seen = _global_calls(monkeypatch)
    call(x)
    assert seen == []


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_results_match_the_windowed_kernels(nd, monkeypatch):
    # the global kernels against the windowed ones they replace, routing off
    x = _data(np.random.default_rng(20 + nd), SHAPES[nd], np.float64)
    avg, mx = getattr(fp, f"adaptive_avg_pool{nd}d")(x, 1), getattr(fp, f"adaptive_max_pool{nd}d")(x, 1)
    monkeypatch.setattr(fp.pooling, "_global_planes", lambda cn, axes: None)
    seen = _global_calls(monkeypatch)
    # (the windowed average multiplies by 1 / divisor, the global one divides)
    np.testing.assert_allclose(avg, getattr(fp, f"adaptive_avg_pool{nd}d")(x, 1), rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(mx, getattr(fp, f"adaptive_max_pool{nd}d")(x, 1))
    assert seen == []


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.int64])
def test_integer_average(dtype, monkeypatch):
    x = _data(np.random.default_rng(30), (2, 3, 5, 7), dtype)
    seen = _global_calls(monkeypatch)
    got = fp.adaptive_avg_pool2d(x, 1)
    assert seen == [(6, 35)]
    want = adaptive_avg_pool(x, 2, (1, 1))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)


def test_padded_max_on_negative_data(monkeypatch):
    # padding never wins a max: every cell below zero
    x = -np.abs(_data(np.random.default_rng(31), (2, 3, 5, 6), np.float32)) - 1
    seen = _global_calls(monkeypatch)
    got = fp.max_pool2d(x, (7, 8), 1, 1)
    assert seen == [(6, 30)]
    np.testing.assert_array_equal(got, max_pool(x, 2, (7, 8), 1, 1)[0])


@pytest.mark.parametrize("mode", ["avg", "max"])
def test_ceil_mode_and_3d_padded(mode, monkeypatch):
    x = _data(np.random.default_rng(32), (2, 2, 3, 4, 5), np.float32)
    seen = _global_calls(monkeypatch)
    # (3, 4, 5) planes, windows one cell past them on each side: ceil mode's
    # second window would start in the end padding, so there is one
    kw = dict(kernel_size=(4, 5, 6), stride=(4, 5, 6), padding=(1, 1, 1), ceil_mode=True)
    if mode == "avg":
        got = fp.avg_pool3d(x, **kw)
        want = avg_pool(x, 3, **kw)
        _close(got, want)
    else:
        got = fp.max_pool3d(x, **kw)
        np.testing.assert_array_equal(got, max_pool(x, 3, **kw)[0])
    assert seen == [(4, 60)]


@pytest.mark.parametrize("mode", ["avg", "max"])
def test_float16_out(mode, monkeypatch):
    x = _data(np.random.default_rng(33), (2, 3, 6, 5), np.float16)
    before = x.copy()
    out = np.zeros((2, 3, 1, 1), np.float16)
    seen = _global_calls(monkeypatch)
    res = getattr(fp, f"adaptive_{mode}_pool2d")(x, 1, out=out)
    assert res is out and seen == [(6, 30)]
    want = adaptive_avg_pool(x, 2, (1, 1)) if mode == "avg" else adaptive_max_pool(x, 2, (1, 1))[0]
    if mode == "avg":
        _close(out, want)
    else:
        np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(x.view(np.uint16), before.view(np.uint16))
