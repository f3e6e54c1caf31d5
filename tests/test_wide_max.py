"""Stride-1 max over wide windows (fastpool/_cpu.py ``wide_max_forward``, a
sparse table of pairwise maxima, running maxima down the planes of windows of
4 rows or more) against the NumPy reference: values, NaN
propagation, every dtype route, both layouts, padding, and the geometries
that must not take it."""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp
from fastpool import _cpu

from probes import sprinkled
from reference import max_pool

# (spatial input, kernel, padding): square and oblong windows, one wide axis
# with a narrow other, padding from none to the largest the rule allows
GEOMETRIES = [
    ((13, 29), 5, 2),
    ((16, 19), 9, 4),
    ((20, 21), 13, 6),
    ((11, 17), (7, 3), (3, 1)),
    ((9, 24), (1, 6), (0, 3)),
    ((12, 10), (6, 1), (2, 0)),
    ((10, 23), (4, 8), (2, 3)),
    # windows whose last pass is a triple (9 = 3 x 3, 27 = 3 x 9) or whose
    # rows the first pass takes whole (2 and 3 rows)
    ((12, 30), (3, 9), (1, 4)),
    ((9, 31), (2, 27), (1, 13)),
    ((30, 11), (27, 2), (13, 1)),
]


def _taken(monkeypatch):
    seen = []
    real = _cpu.pick

    def spy(kernel, a, b):
        seen.append(getattr(kernel, "__name__", getattr(getattr(kernel, "py_func", None), "__name__", "")))
        return real(kernel, a, b)

    monkeypatch.setattr(_cpu, "pick", spy)
    return seen


def _data(rng, shape, dtype):
    x = sprinkled(rng, shape, dtype, 40, ((np.nan, 3), (-np.inf, 3), (np.inf, 3)))
    if np.dtype(dtype).kind == "f":
        # a plane of nothing but -inf and a plane with no NaN: both code paths
        x[0, 0] = -np.inf
        x[-1, -1] = np.where(np.isnan(x[-1, -1]), 1.0, x[-1, -1])
        return x
    info = np.iinfo(dtype)
    x.reshape(-1)[rng.integers(0, x.size, 2)] = info.min
    x.reshape(-1)[rng.integers(0, x.size, 2)] = info.max
    return x


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int8])
@pytest.mark.parametrize("size,kernel,padding", GEOMETRIES)
def test_wide_max_matches_reference(monkeypatch, size, kernel, padding, dtype, layout):
    rng = np.random.default_rng(hash((size, str(kernel), np.dtype(dtype).name)) % 2**32)
    x = _data(rng, (2, 3) + size, dtype)
    want = max_pool(x.astype(np.float64) if dtype == np.float16 else x, 2, kernel, 1, padding)[0].astype(dtype)
    xin = x if layout == "channels_first" else np.ascontiguousarray(np.moveaxis(x, 1, -1))
    before = xin.copy()
    seen = _taken(monkeypatch)
    got = fp.max_pool2d(xin, kernel, 1, padding, layout=layout)
    assert "wide_max_forward" in seen
    np.testing.assert_array_equal(xin, before)
    if layout == "channels_last":
        got = np.moveaxis(got, -1, 1)
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("ndim,shape,kernel,padding", [
    (1, (2, 4, 40), 9, 4),
    (3, (1, 2, 3, 12, 14), (1, 5, 7), (0, 2, 3)),
])
def test_wide_max_1d_and_3d_planes(monkeypatch, ndim, shape, kernel, padding):
    x = _data(np.random.default_rng(ndim), shape, np.float32)
    seen = _taken(monkeypatch)
    got = getattr(fp, f"max_pool{ndim}d")(x, kernel, 1, padding)
    assert "wide_max_forward" in seen
    np.testing.assert_array_equal(got, max_pool(x, ndim, kernel, 1, padding)[0])


@pytest.mark.parametrize("call", [
    lambda x: fp.max_pool2d(x, 4, 1, 1),                  # narrow on both axes
    lambda x: fp.max_pool2d(x, 5, 2, 2),                  # stride 2
    lambda x: fp.max_pool2d(x, 5, 1, 4, dilation=2),      # dilation
    lambda x: fp.max_pool3d(x[:, :, None].repeat(3, 2), (2, 5, 5), 1, (0, 2, 2)),  # a window on D
], ids=["k4", "stride2", "dilation2", "depth2"])
def test_other_geometries_keep_the_row_kernels(monkeypatch, call):
    x = _data(np.random.default_rng(5), (2, 3, 16, 18), np.float32)
    seen = _taken(monkeypatch)
    call(x)
    assert "wide_max_forward" not in seen


def test_wide_max_serial_twin_equals_parallel(monkeypatch):
    x = _data(np.random.default_rng(6), (3, 5, 15, 22), np.float32)
    monkeypatch.setattr(_cpu, "SERIAL_BELOW", 0)
    parallel = fp.max_pool2d(x, (9, 5), 1, (4, 2))
    monkeypatch.setattr(_cpu, "SERIAL_BELOW", 1 << 40)
    serial = fp.max_pool2d(x, (9, 5), 1, (4, 2))
    np.testing.assert_array_equal(parallel.view(np.uint32), serial.view(np.uint32))


def _column_first_max(x, k, s, p):
    """Max over (N, C, H, W) windows in the separable order: each column's
    taps top to bottom, then the columns left to right, each step by PyTorch's
    rule (a later value wins if larger or NaN); only the winners of ties
    between -0.0 and 0.0, or among NaNs, depend on that order."""
    def along(a, axis, K, S, P):
        n = a.shape[axis]
        m = (n + 2 * P - K) // S + 1
        best = have = None
        for t in range(K):
            pos = np.arange(m) * S - P + t
            ok = (pos >= 0) & (pos < n)
            v = np.take(a, np.clip(pos, 0, n - 1), axis=axis)
            okb = np.broadcast_to(ok.reshape([-1 if i == axis else 1 for i in range(a.ndim)]), v.shape)
            if best is None:
                best, have = v.copy(), okb.copy()
                continue
            take = okb & (~have | (v > best) | np.isnan(v))
            best, have = np.where(take, v, best), have | okb
        return best

    return along(along(x, 2, k[0], s, p[0]), 3, k[1], s, p[1])


@pytest.mark.parametrize("layout,channels,kernel,stride,padding,route", [
    ("channels_first", 3, (5, 5), 1, (2, 2), "wide_max_forward"),
    ("channels_first", 3, (13, 9), 1, (6, 4), "wide_max_forward"),
    ("channels_last", 3, (9, 9), 1, (4, 4), "wide_max_forward"),
    ("channels_last", 3, (13, 13), 2, (6, 6), "vh_max_forward"),
    ("channels_last", 3, (9, 11), 2, (4, 5), "vh_max_forward"),
    ("channels_first", 3, (3, 3), 1, (1, 1), "cf_max_forward"),
    ("channels_first", 3, (3, 3), 2, (1, 1), "cf_max_forward"),
])
def test_separable_max_kernels_break_ties_column_first(monkeypatch, layout, channels, kernel, stride, padding,
                                                        route):
    """Signed zeros and NaN payloads come out bit for bit as the column-first
    order picks them, in every separable kernel (the running maxima scanned
    their suffixes from the later cell and let it win ties)."""
    rng = np.random.default_rng(sum(kernel) + stride)
    x = rng.integers(-1, 2, (2, channels, 40, 37)).astype(np.float32)
    x[x == 0] = np.where(rng.random(int((x == 0).sum())) < 0.5, -0.0, 0.0).astype(np.float32)
    flat = x.reshape(-1)
    nan_at = rng.integers(0, flat.size, 40)
    flat[nan_at] = np.nan
    flat.view(np.uint32)[nan_at] |= rng.integers(1, 8, nan_at.size).astype(np.uint32)
    want = _column_first_max(x, kernel, stride, padding)
    xin = x if layout == "channels_first" else np.ascontiguousarray(np.moveaxis(x, 1, -1))
    seen = _taken(monkeypatch)
    got = fp.max_pool2d(xin, kernel, stride, padding, layout=layout)
    assert route in seen
    if layout == "channels_last":
        got = np.moveaxis(got, -1, 1)
    np.testing.assert_array_equal(np.ascontiguousarray(got).view(np.uint32), want.view(np.uint32))
