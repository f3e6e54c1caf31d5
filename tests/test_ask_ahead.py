"""The channels-first max, argmax and average rows and 2x2 quads that ask for their input ahead
(``_core.cf_ahead``, ``_cpu._ask_ahead``): the same values as the NumPy
reference when the hint is on (forced on small inputs here: it is meant for
inputs about the last cache's size and larger), and the hint's reach."""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp
from fastpool import _core
from fastpool import _geometry as geo
from fastpool._spec import AdaptiveSpec, window_spec

from probes import assert_float32_avg, kernel_args, sprinkled
from reference import adaptive_avg_pool, avg_pool, global_avg_pool, global_max_pool, max_pool, max_pool_backward

CASES = [
    # nd, input shape, kernel, stride, padding
    (2, (2, 3, 40, 37), 3, 2, 1),
    (2, (1, 2, 19, 40), 3, 1, 1),   # rows past FLAT_MAX_W: the row kernels
    (2, (1, 3, 33, 17), (2, 3), (2, 1), (1, 0)),   # 15 windows: past the short rows
    (3, (1, 2, 7, 12, 18), 3, 2, 1),
    (1, (2, 3, 97), 3, 2, 1),
    (2, (2, 3, 16, 40), 2, 2, 0),   # whole 2x2 windows: the quads
]


def _force_on(monkeypatch):
    monkeypatch.setattr(_core, "AHEAD_FROM", 0)
    monkeypatch.setattr(_core, "AHEAD_ROW_BYTES", 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int8])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_rows_asked_ahead_match_reference(monkeypatch, case, dtype):
    nd, shape, k, s, p = case
    x = sprinkled(np.random.default_rng(len(shape) + shape[-1]), shape, dtype, 30, ((np.nan, 3), (-np.inf, 2)))
    _force_on(monkeypatch)
    names = ("cf_max_forward", "cf_half_max_forward")
    asked = kernel_args(monkeypatch, names, 23 if dtype != np.float16 else 19)
    got = getattr(fp, f"max_pool{nd}d")(x, k, s, p)
    assert asked and all(a > 0 for a in asked)
    np.testing.assert_array_equal(got, max_pool(x, nd, k, s, p)[0])


# where each kernel takes ``ahead``
_AHEAD_AT = {"cf_short_max_forward": 18, "cf_short_sum_forward": 19, "cf_flat_max_forward": 20,
             "cf_flat_sum_forward": 19}


@pytest.mark.parametrize("op, dtype", [("max", np.float32), ("max", np.float16), ("max", np.int32),
                                       ("avg", np.float32), ("avg", np.float16)], ids=str)
@pytest.mark.parametrize("case", [
    # nd, input shape, kernel, stride, padding, kernel asked
    (2, (2, 3, 14, 14), 3, 2, 1, "short"),
    (2, (1, 2, 9, 7), (2, 3), (1, 2), (1, 1), "short"),
    (3, (1, 2, 5, 6, 9), 3, (1, 2, 2), 1, "short"),
    (2, (2, 3, 14, 24), 3, 1, 1, "flat"),
    (3, (1, 2, 5, 6, 20), 3, 1, 1, "flat"),
], ids=str)
def test_short_rows_and_flat_planes_asked_ahead_match_reference(monkeypatch, case, op, dtype):
    nd, shape, k, s, p, kind = case
    rng = np.random.default_rng(sum(shape))
    x = (rng.integers(-500, 500, shape) if dtype == np.int32 else rng.standard_normal(shape)).astype(dtype)
    _force_on(monkeypatch)
    monkeypatch.setattr("fastpool._simd.has_avx512", lambda: True)   # short rows on any CPU
    names = (f"cf_{kind}_max_forward", f"cf_{kind}_sum_forward")
    asked = kernel_args(monkeypatch, names, _AHEAD_AT)
    got = getattr(fp, f"{op}_pool{nd}d")(x, k, s, p)
    assert asked and all(a > 0 for a in asked)
    if op == "max":
        np.testing.assert_array_equal(got, max_pool(x, nd, k, s, p)[0])
    elif dtype == np.float32:
        assert_float32_avg(got, x, nd, kernel_size=k, stride=s, padding=p)
    else:
        np.testing.assert_allclose(got, avg_pool(x, nd, k, s, p).astype(dtype), rtol=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("shape", [(2, 3, 16, 40), (1, 2, 6, 10)], ids=str)
def test_quad_averages_asked_ahead_match_reference(monkeypatch, shape, dtype):
    x = np.random.default_rng(shape[-1]).standard_normal(shape).astype(dtype)
    _force_on(monkeypatch)
    asked = kernel_args(monkeypatch, ("cf_sum_forward",), 28)
    got = fp.avg_pool2d(x, 2, 2)
    assert asked and all(a > 0 for a in asked)
    want = avg_pool(x, 2, 2, 2)
    np.testing.assert_allclose(got, want.astype(dtype), rtol={np.float16: 1e-3}.get(dtype, 1e-6))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 11, 40), (1, 2, 9, 200)], ids=["asks", "rows past 512 bytes"])
@pytest.mark.parametrize("kw", [dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=(3, 2), stride=2)], ids=str)
def test_average_rows_asked_ahead_match_reference(monkeypatch, shape, dtype, kw):
    # the vector rows of one plane (_cpu._cf_avg_vec), which ask on rows up to
    # _cpu._AVG_ASK_ROW_BYTES
    x = np.random.default_rng(shape[-1]).standard_normal(shape).astype(dtype)
    _force_on(monkeypatch)
    asked = kernel_args(monkeypatch, ("cf_sum_forward",), 28)
    got = fp.avg_pool2d(x, **kw)
    assert asked and all(a > 0 for a in asked)
    if dtype == np.float32:
        assert_float32_avg(got, x, 2, **kw)
    else:
        np.testing.assert_allclose(got, avg_pool(x, 2, kw["kernel_size"], kw["stride"], kw.get("padding", 0)),
                                   rtol=1e-12)


def test_reach():
    axes = geo.plan(window_spec(2, 3, 2, 1, 1, False, "channels_first"), (112, 112))
    small = np.zeros((1, 1, 112, 112), np.float32)
    assert _core.cf_ahead(axes, small) == (0, 0)
    # nbytes of a broadcast view counts every cell without allocating them
    big = np.broadcast_to(np.float32(0), (_core.AHEAD_FROM // 4,))
    ahead, n = _core.cf_ahead(axes, big)
    # stride 2 on H: each output row reads two new input rows of 112 cells
    assert n == 2 * 112
    assert ahead == _core.AHEAD_BYTES // 4
    wide = geo.plan(window_spec(2, 3, 2, 1, 1, False, "channels_first"), (9, 4096))
    assert _core.cf_ahead(wide, big) == (2 * 4096, 2 * 4096)
    # 2x2 quads of rows shorter than AHEAD_ROW_BYTES do not ask, however large
    # the input; other windows on the same rows do
    cells = (_core.AHEAD_ROW_BYTES - 1) // 4
    quads = geo.plan(window_spec(2, 2, 2, 0, 1, False, "channels_first"), (112, cells))
    assert _core.quad_rows(quads) and _core.cf_ahead(quads, big) == (0, 0)
    short = geo.plan(window_spec(2, 3, 2, 1, 1, False, "channels_first"), (112, cells))
    assert _core.cf_ahead(short, big) == (4096, 2 * cells)


def test_threshold_bounds():
    # a VM's sysfs can name a socket's whole cache: the threshold stops at the cap
    assert 0 < _core.AHEAD_FROM <= _core.AHEAD_CAP < _core.CL_ROWS_AHEAD_BELOW
    axes = geo.plan(window_spec(2, 3, 2, 1, 1, False, "channels_last"), (112, 112))
    below = np.broadcast_to(np.float32(0), (1, 1, 112, 112, (_core.CL_ROWS_AHEAD_BELOW // 4 - 1) // (112 * 112)))
    above = np.broadcast_to(np.float32(0), (1, 1, 112, 112, -(-_core.CL_ROWS_AHEAD_BELOW // (4 * 112 * 112))))
    assert below.nbytes >= _core.AHEAD_FROM
    # the max rows ask below their bound and not from it; the quads ask at any size
    assert _core.cl_ahead(axes, below, rows=True)[0] > 0
    assert _core.cl_ahead(axes, above, rows=True) == (0, 0)
    assert _core.cl_ahead(axes, above)[0] > 0


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32])
def test_channels_last_rows_asked_ahead_match_reference(monkeypatch, dtype):
    rng = np.random.default_rng(7)
    x = sprinkled(rng, (2, 9, 11, 16), dtype, 30, ((np.nan, 3), (-np.inf, 2)))
    _force_on(monkeypatch)
    asked = kernel_args(monkeypatch, ("cl_max_forward",), 11)
    got = fp.max_pool2d(x, 3, 2, 1, layout="channels_last")
    assert asked and all(a > 0 for a in asked)
    want = np.moveaxis(max_pool(np.moveaxis(x, -1, 1), 2, 3, 2, 1)[0], 1, -1)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_average_asked_ahead_matches_reference(monkeypatch, dtype):
    x = np.random.default_rng(8).standard_normal((3, 17, 7, 7)).astype(dtype)
    _force_on(monkeypatch)
    asked = kernel_args(monkeypatch, ("global_mean_cf",), 3)
    got = fp.global_avg_pool(x)
    assert asked == [_core.AHEAD_BYTES // x.itemsize]
    np.testing.assert_allclose(got, global_avg_pool(x), rtol=1e-6)


@pytest.mark.parametrize("kw", [dict(kernel_size=3, stride=1, padding=1),
                                dict(kernel_size=(2, 3, 3), stride=(1, 2, 1), padding=(0, 1, 1))], ids=str)
def test_deep_rows_asked_ahead_match_reference(monkeypatch, kw):
    # rows past the flat planes' 32 cells with several taps on D: _cpu._cf_avg_deep
    x = np.random.default_rng(9).standard_normal((2, 3, 6, 9, 41)).astype(np.float32)
    _force_on(monkeypatch)
    asked = kernel_args(monkeypatch, ("cf_sum_forward",), 28)
    got = fp.avg_pool3d(x, **kw)
    assert asked and all(a > 0 for a in asked)
    assert_float32_avg(got, x, 3, **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("call", ["avg k4", "adaptive 7"])
def test_tile_rows_asked_ahead_match_reference(monkeypatch, call, dtype):
    # windows end to end on W, 4+ cells each: _cpu._cf_avg_tiles
    x = np.random.default_rng(12).standard_normal((2, 3, 29, 28)).astype(dtype)
    _force_on(monkeypatch)
    asked = kernel_args(monkeypatch, ("cf_sum_forward",), 28)
    if call == "avg k4":
        axes = geo.plan(window_spec(2, 4, 4, 0, 1, False, "channels_first"), x.shape[2:])
        got, want = fp.avg_pool2d(x, 4), avg_pool(x, 2, 4, 4, 0)
    else:
        axes = geo.plan(AdaptiveSpec(2, (7, 7), "channels_first"), x.shape[2:])
        got, want = fp.adaptive_avg_pool2d(x, 7), adaptive_avg_pool(x, 2, (7, 7))
    assert _core.tile_rows(axes)
    assert asked and all(a > 0 for a in asked)
    # sums in another order than the reference's: its rounding, near cancelling sums included
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(got, want.astype(dtype), rtol=tol, atol=tol * np.abs(x).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scatter_asked_ahead_matches_reference(monkeypatch, dtype):
    # planes of 16 x 17 outputs: past _SCATTER_AHEAD_FROM, with a partial last block of 16
    x = sprinkled(np.random.default_rng(10), (2, 3, 32, 34), dtype, 10, ((np.nan, 3),))
    y, idx = fp.max_pool2d(x, 3, 2, 1, return_indices=True)
    g = np.random.default_rng(11).standard_normal(y.shape).astype(dtype)
    _force_on(monkeypatch)
    asked = kernel_args(monkeypatch, ("scatter_max_backward",), 3)
    got = fp.max_pool2d_backward(g, x, 3, 2, 1, indices=idx)
    assert asked == [_core.AHEAD_BYTES // 8]
    # float32 adds a cell's shares in float32, the reference in float64
    want = max_pool_backward(g, x, 2, 3, 2, 1)
    tol = 1e-6 if dtype == np.float32 else 0.0
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(g).max())


@pytest.mark.parametrize("dtype", [np.float32, np.int8])
def test_global_max_asked_ahead_matches_reference(monkeypatch, dtype):
    x = sprinkled(np.random.default_rng(12), (3, 11, 7, 7), dtype, 30, ((np.nan, 2),))
    _force_on(monkeypatch)
    asked = kernel_args(monkeypatch, ("global_max_cf",), 2)
    got = fp.global_max_pool(x)
    assert asked == [_core.AHEAD_BYTES // x.itemsize]
    np.testing.assert_array_equal(got, global_max_pool(x)[0])


@pytest.mark.parametrize("dtype", [np.float32, np.int8])
@pytest.mark.parametrize("case", CASES[:5], ids=str)
def test_argmax_asked_ahead_matches_reference(monkeypatch, case, dtype):
    nd, shape, k, s, p = case
    x = sprinkled(np.random.default_rng(shape[-1]), shape, dtype, 30, ((np.nan, 3), (-np.inf, 2)))
    _force_on(monkeypatch)
    asked = kernel_args(monkeypatch, ("cf_argmax_forward",), 21)
    y, idx = getattr(fp, f"max_pool{nd}d")(x, k, s, p, return_indices=True)
    assert asked and all(a > 0 for a in asked)
    want, want_idx = max_pool(x, nd, k, s, p)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(y, want)
