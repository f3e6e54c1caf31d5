"""The flat planes (``_core.cf_flat_args``, ``_cpu.cf_flat_*_forward``): planes
of short rows whose W windows are stride 1, one per cell, pooled a group of
whole rows at a time, the W taps that fall off a row masked.  Checked against
the NumPy reference on the geometries that take them (and that they do), on
the edges of the masks: windows of 1-4 taps, padding on one side only, rows of
4-7 cells (4-lane passes), groups that split a plane, windows on D and
dilation on H."""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp
from fastpool import _core
from fastpool import _geometry as geo
from fastpool._spec import window_spec

from probes import assert_float32_avg, kernel_args, sprinkled
from reference import avg_pool, max_pool

FLAT = ("cf_flat_max_forward", "cf_flat_sum_forward")

CASES = [
    # nd, input shape, kernel, padding, dilation
    (2, (2, 3, 14, 14), 3, 1, 1),
    (2, (1, 2, 7, 7), 3, 1, 1),
    (2, (1, 3, 5, 4), 3, 1, 1),
    (2, (1, 2, 6, 32), 3, 1, 1),
    (2, (1, 2, 9, 13), (3, 2), ((1, 1), (0, 1)), 1),
    (2, (1, 2, 9, 13), (2, 2), ((1, 0), (1, 0)), 1),
    (2, (1, 2, 11, 10), (4, 4), ((2, 1), (1, 2)), 1),
    (2, (1, 2, 9, 12), (1, 3), (0, 1), 1),
    (2, (1, 2, 9, 12), (3, 1), (1, 0), 1),
    (2, (1, 2, 12, 9), (3, 3), ((3, 0), (1, 1)), (2, 1)),
    # past FLAT_CELLS: a plane in several groups of rows
    (2, (1, 2, 150, 16), 3, 1, 1),
    (3, (1, 2, 5, 9, 12), 3, 1, 1),
    (3, (1, 2, 6, 7, 8), (2, 3, 3), ((0, 1), (1, 1), (1, 1)), 1),
    (1, (2, 3, 20), 3, 1, 1),
]


AVG_CASES = [c for c in CASES if c[4] == 1]   # averages take no dilation


@pytest.fixture(autouse=True)
def no_short_rows(monkeypatch):
    # rows of up to 14 cells take the short rows first (test_short_rows.py);
    # here the flat planes' masks are tested on them too
    monkeypatch.setattr("fastpool._simd.has_avx512", lambda: False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int8, np.uint8, np.int32])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_flat_max_matches_reference(monkeypatch, case, dtype):
    nd, shape, kernel, padding, dilation = case
    x = sprinkled(np.random.default_rng(shape[-1] + 7 * shape[-2]), shape, dtype, 30,
                  ((np.nan, 3), (-np.inf, 4), (np.inf, 1)))
    taken = kernel_args(monkeypatch, FLAT, 0, conv=lambda a: a.size)
    geom = dict(kernel_size=kernel, stride=1, padding=padding, dilation=dilation)
    got = getattr(fp, f"max_pool{nd}d")(x, **geom)
    assert taken, "the flat planes were not taken"
    np.testing.assert_array_equal(got, max_pool(x, nd, **geom)[0])


@pytest.mark.parametrize("cip", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", AVG_CASES, ids=str)
def test_flat_avg_matches_reference(monkeypatch, case, dtype, cip):
    nd, shape, kernel, padding, _ = case
    x = sprinkled(np.random.default_rng(shape[-1] + 5 * shape[-2]), shape, dtype, 30, ((np.nan, 2), (np.inf, 1)))
    taken = kernel_args(monkeypatch, FLAT, 0, conv=lambda a: a.size)
    geom = dict(kernel_size=kernel, stride=1, padding=padding)
    got = getattr(fp, f"avg_pool{nd}d")(x, **geom, count_include_pad=cip)
    assert taken, "the flat planes were not taken"
    if dtype == np.float32:
        assert_float32_avg(got, x, nd, **geom, count_include_pad=cip)
    else:
        want = avg_pool(x, nd, **geom, count_include_pad=cip)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("padding", [((1, 1), (2, 1)), ((0, 2), (3, 0)), ((1, 1), (1, 2))], ids=str)
def test_flat_max_keeps_the_first_of_equal_zeros(monkeypatch, padding, dtype):
    # a window whose left taps fall in the padding: -0.0 then +0.0 in its
    # first columns gives -0.0, the first of the equal maxima
    x = np.full((1, 2, 6, 12), -5.0, dtype)
    x[..., 0::3] = -0.0
    x[..., 1::3] = 0.0
    taken = kernel_args(monkeypatch, ("cf_flat_max_forward",), 0, conv=lambda a: a.size)
    got = fp.max_pool2d(x, (3, 4), 1, padding)
    want = max_pool(x, 2, (3, 4), 1, padding)[0]
    assert taken
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    np.testing.assert_array_equal(got, want)


def test_flat_avg_divisor_override(monkeypatch):
    x = np.random.default_rng(3).standard_normal((2, 3, 10, 11))
    taken = kernel_args(monkeypatch, FLAT, 0, conv=lambda a: a.size)
    got = fp.avg_pool2d(x, 3, 1, 1, divisor_override=7)
    assert taken
    np.testing.assert_allclose(got, avg_pool(x, 2, 3, 1, 1, divisor_override=7), rtol=1e-12)


def test_flat_avg_zero_signs_match_row_kernels(monkeypatch):
    # a window of -0.0 cells sums to -0.0 unless a padding 0 enters it: the
    # masked taps add +0.0 where the row kernels' padding cells did
    x = np.full((1, 1, 6, 9), -0.0, np.float32)
    x[0, 0, 2, 4] = 1.0
    flat = fp.avg_pool2d(x, 3, 1, 1)
    monkeypatch.setattr("fastpool.pooling.cf_flat_args", lambda axes: None)
    rows = fp.avg_pool2d(x, 3, 1, 1)
    np.testing.assert_array_equal(np.signbit(flat), np.signbit(rows))
    np.testing.assert_array_equal(flat, rows)


@pytest.mark.parametrize("spatial, kernel, stride, padding, takes", [
    ((14, 14), 3, 1, 1, True),
    ((14, 33), 3, 1, 1, False),          # rows past FLAT_MAX_W
    ((14, 3), 3, 1, 1, False),           # rows of fewer than 4 cells
    ((14, 14), 3, 2, 1, False),          # stride 2 on W
    ((14, 14), (3, 3), (2, 1), 1, False),  # stride 2 on H
    ((14, 14), 3, 1, 0, False),          # fewer outputs than cells on W
])
def test_flat_routing(spatial, kernel, stride, padding, takes):
    axes = geo.plan(window_spec(2, kernel, stride, padding, 1, False, "channels_first"), spatial)
    assert (_core.cf_flat_args(axes) is not None) == takes


@pytest.mark.parametrize("spatial, kernel, stride, padding, takes", [
    ((14, 14), 3, 2, 1, True),
    ((14, 10), 3, (1, 2), 1, True),
    ((9, 12), (2, 3), (3, 2), (0, 1), True),
    ((14, 16), 3, 2, 1, False),          # rows past FLAT_S2_W
    ((14, 8), 3, 2, 1, False),           # rows short of it
    ((14, 14), 2, 2, 0, False),          # 2 taps: the 2x2 quads
    ((14, 13), 3, 2, 1, False),          # W is not 2 * OW
    ((14, 14), 3, 2, 0, False),
    ((14, 14), 3, 3, 1, False),          # stride 3
])
def test_flat_stride2_routing(spatial, kernel, stride, padding, takes):
    axes = geo.plan(window_spec(2, kernel, stride, padding, 1, False, "channels_first"), spatial)
    assert (_core.cf_flat_args(axes, True) is not None) == takes
    assert _core.cf_flat_args(axes) is None or stride == 1    # averages keep stride 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int8, np.uint8, np.int32])
@pytest.mark.parametrize("case", [
    # nd, input shape, kernel, stride, padding, dilation
    (2, (2, 3, 14, 14), 3, 2, 1, 1),
    (2, (1, 2, 14, 10), 3, (1, 2), 1, 1),
    (2, (1, 2, 10, 12), (2, 3), (3, 2), (0, 1), 1),  # runs of 2 input rows, 3 apart
    (2, (1, 2, 150, 12), 3, 2, 1, 1),               # a plane in several groups of rows
    (2, (1, 2, 7, 14), 3, 2, ((0, 2), (1, 0)), 1),
    (2, (1, 2, 15, 14), 3, 2, 1, (2, 1)),           # dilation on H
    (3, (1, 2, 5, 9, 14), 3, 2, 1, 1),              # windows on D
    (1, (2, 3, 12), 3, 2, 1, 1),
], ids=str)
def test_flat_stride2_max_matches_reference(monkeypatch, case, dtype):
    nd, shape, kernel, stride, padding, dilation = case
    x = sprinkled(np.random.default_rng(shape[-1] + 5 * shape[-2]), shape, dtype, 30,
                  ((np.nan, 3), (-np.inf, 4), (np.inf, 1)))
    if dtype in (np.float32, np.float64, np.float16):
        x[..., 0, 0::3] = -0.0
        x[..., 0, 1::3] = 0.0
    taken = kernel_args(monkeypatch, FLAT, 0, conv=lambda a: a.size)
    geom = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation)
    got = getattr(fp, f"max_pool{nd}d")(x, **geom)
    want = max_pool(x, nd, **geom)[0]
    assert taken, "the flat planes were not taken"
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def test_flat_segments_and_groups():
    axes = geo.plan(window_spec(2, 3, 1, 1, 1, False, "channels_first"), (150, 16))
    segs, col, pl, k, g, lb, s = _core.cf_flat_args(axes)
    # top row reads 2 input rows, then 148 rows of 3, then the bottom row's 2
    assert segs.tolist() == [[0, 1, 2, 1], [1, 148, 3, 1], [149, 1, 2, 1]]
    assert g == _core.FLAT_CELLS // 16 and col.tolist() == list(range(16)) * int(g)
    assert (pl, k, s) == (1, 3, 1) and lb >= pl + g * 16 + k - 1


def test_flat_stride2_segments_and_columns():
    # stride 2 on H: the top row reads 2 input rows, the six below 3 each,
    # their first rows 2 apart
    axes = geo.plan(window_spec(2, 3, 2, 1, 1, False, "channels_first"), (14, 14))
    segs, col, pl, k, g, lb, s = _core.cf_flat_args(axes, True)
    assert segs.tolist() == [[0, 1, 2, 1], [1, 6, 3, 2]]
    assert col.tolist() == list(range(7)) * int(g) and s == 2
    assert lb >= 2 * g * 7 + k - 1
