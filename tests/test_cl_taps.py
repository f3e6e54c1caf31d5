"""Whole 2x2 channels-last windows that do not overlap read each tap in a pass
of its own on large inputs (``pooling._cl_taps_apart``).  Both forms must give
the direct kernel's documented sum bit for bit: the window's cells added in
row-major order from zero in the output's dtype, then scaled by 1/divisor in
float64 and rounded once."""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp
from fastpool import pooling

from probes import kernel_args, sprinkled
from reference import avg_pool


def _apart_flags(monkeypatch):
    """The ``apart`` argument each ``cl_sum_forward`` or ``cl_quad_sum_forward``
    (whole 2x2 stride-2 windows) call got."""
    where = {"cl_sum_forward": 8, "cl_quad_sum_forward": 5}
    return kernel_args(monkeypatch, tuple(where), where, bool)


def _row_major_avg(x, k, s, divisor=None):
    """NumPy model of the channels-last sum: ``(x`` NHWC, unpadded windows)."""
    n, h, w, c = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    acc_t = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    out = np.empty((n, oh, ow, c), acc_t)
    scale = 1.0 / (divisor or k * k)
    for i in range(oh):
        for j in range(ow):
            acc = np.zeros((n, c), acc_t)
            for dy in range(k):
                for dx in range(k):
                    acc = acc + x[:, i * s + dy, j * s + dx].astype(acc_t)
            out[:, i, j] = (acc.astype(np.float64) * scale).astype(acc_t)
    return out


def _data(rng, shape, dtype):
    return sprinkled(rng, shape, dtype, 30, ((-0.0, 6), (np.nan, 3), (np.inf, 2)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
@pytest.mark.parametrize("geom", [(2, 2, None), (2, 3, None), (2, 2, 3)], ids=["k2s2", "k2s3", "divisor3"])
def test_tap_passes_match_the_row_major_sum(monkeypatch, dtype, geom):
    k, s, div = geom
    x = _data(np.random.default_rng(k * 10 + s), (2, 9, 11, 160), dtype)
    seen = _apart_flags(monkeypatch)
    kw = dict(layout="channels_last", divisor_override=div)
    monkeypatch.setattr(pooling, "_CL_APART_BYTES", 0)
    apart = fp.avg_pool2d(x, k, s, **kw)
    monkeypatch.setattr(pooling, "_CL_APART_BYTES", 1 << 62)
    onepass = fp.avg_pool2d(x, k, s, **kw)
    assert seen == [True, False]
    want = _row_major_avg(x, k, s, div)
    assert apart.dtype == want.dtype
    for got in (apart, onepass):
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
    x_first = np.moveaxis(x, -1, 1)
    np.testing.assert_allclose(np.moveaxis(apart, -1, 1).astype(np.float64),
                               avg_pool(x_first, 2, k, s, divisor_override=div),
                               rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 0, equal_nan=True)


def test_float16_tap_passes_agree_with_one_pass(monkeypatch):
    x = _data(np.random.default_rng(5), (1, 8, 8, 256), np.float16)
    seen = _apart_flags(monkeypatch)
    monkeypatch.setattr(pooling, "_CL_APART_BYTES", 0)
    apart = fp.avg_pool2d(x, 2, 2, layout="channels_last")
    monkeypatch.setattr(pooling, "_CL_APART_BYTES", 1 << 62)
    onepass = fp.avg_pool2d(x, 2, 2, layout="channels_last")
    assert seen == [True, False]
    np.testing.assert_array_equal(apart.view(np.uint16), onepass.view(np.uint16))
    np.testing.assert_allclose(np.moveaxis(apart, -1, 1).astype(np.float64),
                               avg_pool(np.moveaxis(x, -1, 1), 2, 2, 2), rtol=2e-3, atol=1e-3, equal_nan=True)


@pytest.mark.parametrize("case", [
    dict(shape=(2, 64, 64, 256), k=2, s=2, want=True),    # 8 MiB, 1 KiB taps
    dict(shape=(1, 64, 64, 256), k=2, s=2, want=False),   # 4 MiB: in cache, one pass
    dict(shape=(8, 64, 64, 64), k=2, s=2, want=False),    # 256-byte taps
    dict(shape=(2, 64, 64, 256), k=2, s=1, want=False),   # overlapping windows
    dict(shape=(2, 64, 64, 256), k=3, s=3, want=False),   # 3x3 windows keep one pass
    dict(shape=(2, 64, 64, 256), k=(2, 3), s=3, want=False),
], ids=["large", "small", "few-channels", "overlap", "k3s3", "k23"])
def test_which_inputs_take_tap_passes(monkeypatch, case):
    x = np.zeros(case["shape"], np.float32)
    seen = _apart_flags(monkeypatch)
    fp.avg_pool2d(x, case["k"], case["s"], layout="channels_last")
    assert seen == [case["want"]]


@pytest.mark.parametrize("case", [
    dict(c=8, k=3, s=1, p=1, kernel="sep_sum_forward"),
    dict(c=32, k=2, s=2, p=0, kernel="sep_sum_forward"),
    dict(c=pooling._CL_DEEP_BELOW - 1, k=3, s=2, p=1, kernel="sep_sum_forward"),
    dict(c=pooling._CL_DEEP_BELOW, k=2, s=2, p=0, kernel="cl_sum_forward"),
    dict(c=pooling._CL_DEEP_BELOW, k=3, s=1, p=1, kernel="sep_sum_forward"),  # overlap on H
    dict(c=300, k=(2, 3, 2), s=(2, 2, 2), p=(0, 1, 0), kernel="sep_sum_forward"),
    dict(c=300, k=(2, 2, 3), s=(2, 2, 1), p=(0, 0, 1), kernel="cl_sum_forward"),  # overlap on W only
    dict(c=32, k=(1, 3, 3), s=1, p=(0, 1, 1), kernel="cl_sum_forward"),  # one tap on D
], ids=["c8", "c32-k2", "below", "at-k2", "at-k3", "wide-overlap", "wide-w-overlap", "one-d-tap"])
def test_deep_windows_over_few_channels_take_the_separable_kernel(monkeypatch, case):
    """3-D channels-last averages with several taps on D run the separable
    kernel (float64 sums) below ``_CL_DEEP_BELOW`` channels, and at any count
    when their windows overlap on H; either kernel matches the reference."""
    x = _data(np.random.default_rng(case["c"]), (2, 5, 6, 7, case["c"]), np.float32)
    seen = kernel_args(monkeypatch, ("sep_sum_forward", "cl_sum_forward"), 0, lambda a: a.ndim)
    got = fp.avg_pool3d(x, case["k"], case["s"], case["p"], layout="channels_last")
    want_ndim = 4 if case["kernel"] == "sep_sum_forward" else 5  # sep takes (B, D, H, W*C) views
    assert seen == [want_ndim]
    np.testing.assert_allclose(np.moveaxis(got, -1, 1).astype(np.float64),
                               avg_pool(np.moveaxis(x, -1, 1), 3, case["k"], case["s"], case["p"]),
                               rtol=1e-5, atol=1e-5, equal_nan=True)
