"""Channels-last 2x2 stride-2 max (``_cpu.cl_quad_max_forward``): the route it
takes and its values against the NumPy reference (on the channels-first
transpose), with NaN, infinities and ties, and with the read-ahead forced on
(``_core.cl_ahead``)."""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp
from fastpool import _core

from probes import kernel_args, sprinkled
from reference import max_pool

QUAD = ("cl_quad_max_forward",)


def _cf(x):
    return np.moveaxis(x, -1, 1)


def _cl(y):
    return np.moveaxis(y, 1, -1)


@pytest.mark.parametrize("ahead", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int8, np.uint8, np.int64])
@pytest.mark.parametrize("shape", [(2, 6, 10, 8), (1, 9, 16, 33), (1, 4, 8, 300)], ids=str)
def test_quads_match_reference(monkeypatch, shape, dtype, ahead):
    rng = np.random.default_rng(sum(shape))
    x = sprinkled(rng, shape, dtype, 40, ((np.nan, 5), (np.inf, 2), (-np.inf, 3), (0.0, 6), (-0.0, 6)))
    before = x.copy()
    if ahead:
        monkeypatch.setattr(_core, "AHEAD_FROM", 0)
    asked = kernel_args(monkeypatch, QUAD, 3)
    got = fp.max_pool2d(x, 2, 2, layout="channels_last")
    assert len(asked) == 1 and (asked[0] > 0) == ahead
    np.testing.assert_array_equal(got, _cl(max_pool(_cf(x), 2, 2, 2)[0]))
    np.testing.assert_array_equal(x, before)


def test_quads_3d_and_out(monkeypatch):
    x = sprinkled(np.random.default_rng(3), (2, 3, 6, 8, 16), np.float32, 10, ((np.nan, 4),))
    asked = kernel_args(monkeypatch, QUAD, 3)
    out = np.full((2, 3, 3, 4, 16), 7.0, np.float32)
    got = fp.max_pool3d(x, (1, 2, 2), (1, 2, 2), layout="channels_last", out=out)
    assert got is out and len(asked) == 1
    np.testing.assert_array_equal(out, _cl(max_pool(_cf(x), 3, (1, 2, 2), (1, 2, 2))[0]))


@pytest.mark.parametrize("kw", [dict(ceil_mode=True), dict(padding=1), dict(stride=1), dict(dilation=2)], ids=str)
def test_windows_not_whole_2x2_blocks_take_other_kernels(monkeypatch, kw):
    x = sprinkled(np.random.default_rng(4), (1, 7, 11, 8), np.float32, 10, ((np.nan, 2),))
    asked = kernel_args(monkeypatch, QUAD, 3)
    args = dict(dict(kernel_size=2, stride=2), **kw)
    got = fp.max_pool2d(x, **args, layout="channels_last")
    assert asked == []
    np.testing.assert_array_equal(got, _cl(max_pool(_cf(x), 2, **args)[0]))


def test_few_channels_take_the_row_kernels(monkeypatch):
    x = sprinkled(np.random.default_rng(5), (1, 8, 8, 3), np.float32, 10, ((np.nan, 2),))
    asked = kernel_args(monkeypatch, QUAD, 3)
    got = fp.max_pool2d(x, 2, 2, layout="channels_last")
    assert asked == []
    np.testing.assert_array_equal(got, _cl(max_pool(_cf(x), 2, 2, 2)[0]))
