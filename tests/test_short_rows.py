"""The short rows (``_core.cf_short_args``, ``_cpu.cf_short_*_forward``):
channels-first output rows whose W windows (stride 1 or 2, 1-3 taps) fit in
one vector, each made in registers from masked loads of its input rows and
stored with a masked store.  Checked against the NumPy reference on the
geometries that take them (and that they do), on the edges of the masks:
padding on either side only, ceil-mode windows that end in the padding, a
window reaching the vector's last lane, rows of 1 cell, windows on D and
dilation and strides on H."""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp
from fastpool import _core
from fastpool import _geometry as geo
from fastpool import _simd
from fastpool._spec import window_spec

from probes import assert_float32_avg, kernel_args, sprinkled
from reference import avg_pool, max_pool

SHORT = ("cf_short_max_forward", "cf_short_sum_forward")
_HAS_AVX512 = _simd.has_avx512


@pytest.fixture(autouse=True)
def short_rows_on(monkeypatch):
    # without AVX-512 the short rows are correct but slower than the row
    # kernels, and not taken; here they are, on any CPU
    monkeypatch.setattr("fastpool._simd.has_avx512", lambda: True)

CASES = [
    # nd, input shape, kernel, stride, padding, dilation, ceil_mode
    (2, (2, 3, 14, 14), 3, 2, 1, 1, False),
    (2, (2, 3, 14, 14), 3, 1, 1, 1, False),
    (2, (1, 2, 7, 7), 3, 1, 1, 1, False),
    (2, (1, 2, 9, 13), 3, 2, 1, 1, True),
    (2, (1, 2, 9, 16), (3, 2), 2, 0, 1, False),     # the last window on the vector's last lanes
    (2, (1, 2, 9, 15), 3, 1, 0, 1, False),          # 13 windows, the last one on lanes 12-14
    (2, (1, 2, 10, 11), 2, 2, 1, 1, True),          # 2x2 with padding: not the 2x2 rows
    (2, (1, 2, 8, 9), 2, 2, 0, 1, True),            # ceil mode: the last window has one cell
    (2, (1, 2, 9, 12), (1, 2), (1, 2), 0, 1, False),
    (2, (1, 2, 8, 9), 1, 2, 0, 1, False),           # one tap: every other cell
    (2, (1, 2, 9, 13), (3, 2), (1, 1), ((1, 1), (0, 1)), 1, False),
    (2, (1, 2, 9, 13), 3, (2, 1), ((0, 0), (2, 0)), 1, False),
    (2, (1, 2, 12, 9), (3, 3), (3, 2), ((2, 0), (1, 1)), (2, 1), True),
    (2, (1, 3, 6, 1), (3, 1), 1, (1, 0), 1, False),  # rows of one cell
    (3, (1, 2, 5, 9, 12), 3, 2, 1, 1, False),        # windows on D: 2 or 3 planes a row
    (3, (1, 2, 6, 7, 8), (2, 3, 3), (1, 2, 1), ((0, 1), (1, 1), (1, 1)), 1, True),
    (1, (2, 3, 10), 3, 2, 1, 1, False),
]

AVG_CASES = [c for c in CASES if c[5] == 1]   # averages take no dilation


def _geom(case):
    nd, shape, kernel, stride, padding, dilation, ceil = case
    return nd, shape, dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil), dilation


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int8, np.uint8, np.int32])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_short_max_matches_reference(monkeypatch, case, dtype):
    nd, shape, geom, dilation = _geom(case)
    x = sprinkled(np.random.default_rng(shape[-1] + 7 * shape[-2]), shape, dtype, 30,
                  ((np.nan, 3), (-np.inf, 4), (np.inf, 1)))
    taken = kernel_args(monkeypatch, SHORT, 0, conv=lambda a: a.size)
    got = getattr(fp, f"max_pool{nd}d")(x, **geom, dilation=dilation)
    assert taken, "the short rows were not taken"
    np.testing.assert_array_equal(got, max_pool(x, nd, **geom, dilation=dilation)[0])


@pytest.mark.parametrize("cip", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", AVG_CASES, ids=str)
def test_short_avg_matches_reference(monkeypatch, case, dtype, cip):
    nd, shape, geom, _ = _geom(case)
    x = sprinkled(np.random.default_rng(shape[-1] + 5 * shape[-2]), shape, dtype, 30, ((np.nan, 2), (np.inf, 1)))
    taken = kernel_args(monkeypatch, SHORT, 0, conv=lambda a: a.size)
    got = getattr(fp, f"avg_pool{nd}d")(x, **geom, count_include_pad=cip)
    assert taken, "the short rows were not taken"
    if dtype == np.float32:
        assert_float32_avg(got, x, nd, **geom, count_include_pad=cip)
    else:
        want = avg_pool(x, nd, **geom, count_include_pad=cip)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_short_avg_of_integers_and_divisor_override(monkeypatch):
    x = np.random.default_rng(3).integers(-128, 128, (2, 3, 10, 11)).astype(np.int8)
    taken = kernel_args(monkeypatch, SHORT, 0, conv=lambda a: a.size)
    got = fp.avg_pool2d(x, 3, 2, 1, divisor_override=7)
    assert taken and got.dtype == np.float64
    np.testing.assert_allclose(got, avg_pool(x.astype(np.float64), 2, 3, 2, 1, divisor_override=7), rtol=1e-12)


@pytest.mark.parametrize("op", ["max", "avg"])
def test_short_rows_equal_the_row_kernels(monkeypatch, op):
    # the same bits as the row buffer's passes: sums in the same order, max
    # keeping the first of equal values (signed zeros) and NaN
    x = np.random.default_rng(5).standard_normal((3, 4, 14, 14)).astype(np.float32)
    x[0, 0, 3, :5] = -0.0
    x[0, 0, 4, 2:6] = 0.0
    x[1, 1, 7, 7] = np.nan
    f = fp.max_pool2d if op == "max" else fp.avg_pool2d
    short = f(x, 3, 2, 1)
    monkeypatch.setattr("fastpool._simd.has_avx512", lambda: False)
    rows = f(x, 3, 2, 1)
    np.testing.assert_array_equal(np.signbit(short), np.signbit(rows))
    np.testing.assert_array_equal(short, rows)


@pytest.mark.parametrize("op", ["max", "avg"])
def test_short_rows_wait_for_avx512(monkeypatch, op):
    # a CPU without AVX-512 takes the row kernels for the same geometry
    monkeypatch.setattr("fastpool._simd.has_avx512", lambda: False)
    taken = kernel_args(monkeypatch, SHORT, 0, conv=lambda a: a.size)
    x = np.random.default_rng(8).standard_normal((2, 3, 14, 14)).astype(np.float32)
    if op == "max":
        np.testing.assert_array_equal(fp.max_pool2d(x, 3, 2, 1), max_pool(x, 2, 3, 2, 1)[0])
    else:
        assert_float32_avg(fp.avg_pool2d(x, 3, 2, 1), x, 2, kernel_size=3, stride=2, padding=1)
    assert not taken


@pytest.mark.parametrize("features, cheap", [("+avx2,+avx512f,+fma", True), ("+avx2,-avx512f", False),
                                             ("+avx2,+avx512vl", False), ("", False)])
def test_has_avx512_follows_numbas_cpu_features(monkeypatch, features, cheap):
    monkeypatch.setattr("numba.core.config.CPU_FEATURES", features)
    assert _HAS_AVX512.__wrapped__() is cheap


def test_short_rows_do_not_write_past_their_outputs():
    # the masked stores end at each row's last output: an output that is a
    # slice of a larger array leaves its neighbours as they were
    x = np.random.default_rng(6).standard_normal((2, 3, 14, 14)).astype(np.float32)
    big = np.full(2 * 3 * 7 * 7 + 64, 7.0, np.float32)
    out = big[32:32 + 2 * 3 * 7 * 7].reshape(2, 3, 7, 7)
    fp.max_pool2d(x, 3, 2, 1, out=out)
    np.testing.assert_array_equal(out, max_pool(x, 2, 3, 2, 1)[0])
    assert (big[:32] == 7.0).all() and (big[32 + out.size:] == 7.0).all()


@pytest.mark.parametrize("spatial, kernel, stride, padding, ceil, takes", [
    ((14, 14), 3, 2, 1, False, True),
    ((14, 14), 3, 1, 1, False, True),
    ((14, 13), 3, 2, 1, False, True),
    ((14, 15), 3, 2, 1, False, False),      # 8 windows end on lane 16
    ((14, 16), 3, 2, 1, False, False),      # 8 windows end on lane 16
    ((14, 16), 3, 1, 1, False, False),      # 16 windows end on lane 17
    ((14, 14), 2, 2, 0, False, False),      # whole 2x2 windows: the 2x2 rows
    ((14, 14), 4, 1, 1, False, False),      # 4 taps
    ((14, 14), 3, 3, 1, False, False),      # stride 3
    ((14, 14), (3, 3), (2, 1), 1, True, True),
])
def test_short_routing(spatial, kernel, stride, padding, ceil, takes):
    axes = geo.plan(window_spec(2, kernel, stride, padding, 1, ceil, "channels_first"), spatial)
    assert (_core.cf_short_args(axes) is not None) == takes


def test_short_dilated_rows_are_not_taken():
    axes = geo.plan(window_spec(2, 3, 1, 1, 2, False, "channels_first"), (14, 14))
    assert _core.cf_short_args(axes) is None
    one_tap = geo.plan(window_spec(2, (3, 1), 1, 0, 2, False, "channels_first"), (14, 14))
    assert _core.cf_short_args(one_tap) is not None   # one tap: dilation moves nothing
