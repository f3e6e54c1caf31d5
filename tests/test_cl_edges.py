"""Channels-last max over windows of up to three taps a row and column
(``_cpu.cl_max_forward``): windows cut by the edges repeat their last row or
column instead of taking a slower path, and windows over planes combine the
planes' maxima.  Deeper windows and fewer channels take the row-buffer kernel
(``_cpu.sep_max_forward``), whose two- and three-tap windows along W reduce in
one pass over the channels; being separable, it takes the cells column by
column (W outermost, then D, then H), as the reference does on an input whose
W axis is moved first.  Both rest on the max rule (the first largest value, or the
last NaN), so the result must match the NumPy reference bit for bit, with ties
made likely: small integers, both zeros, NaN of both signs and infinities."""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp

from probes import kernel_args, sprinkled
from reference import max_pool

CASES = [
    # (input spatial shape, geometry): which edge windows
    ((9, 11), dict(kernel_size=3, stride=2, padding=1)),  # two-tap first row and column
    ((8, 10), dict(kernel_size=3, stride=1, padding=1)),  # both ends cut
    ((7, 9), dict(kernel_size=2, stride=1, padding=1)),  # one-tap edges of two-tap windows
    ((9, 12), dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 1), dilation=(2, 1))),  # dilated rows
    ((6, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),  # ceil-mode ends
    ((1, 5), dict(kernel_size=(1, 3), stride=1, padding=(0, 1))),  # one row a window
    ((10, 10), dict(kernel_size=4, stride=2, padding=1)),  # four taps: the general path, three at the edges
]
IDS = ["k3s2p1", "k3s1p1", "k2s1p1", "k3x2d2", "ceil", "k1x3", "k4"]

CASES_3D = [
    ((4, 6, 7), dict(kernel_size=2, stride=1, padding=1)),  # two planes a window
    ((5, 6, 7), dict(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))),  # one plane
    ((5, 5, 5), dict(kernel_size=(2, 3, 2), stride=2, padding=1)),  # one or two planes
]
IDS_3D = ["k2", "k1x3x3", "k2x3x2"]


def _data(rng, shape, dtype):
    if np.dtype(dtype).kind != "f":
        return rng.integers(-3, 4, shape).astype(dtype)
    x = np.round(sprinkled(rng, shape, np.float64, 2)).astype(dtype)
    flat = x.reshape(-1)
    for value, count in ((-0.0, 40), (0.0, 20), (np.nan, 6), (-np.nan, 6), (np.inf, 4), (-np.inf, 4)):
        flat[rng.integers(0, flat.size, count)] = value
    return x


def _check(x, nd, kw, monkeypatch, kernel="cl_max_forward", w_first=False):
    names = kernel_args(monkeypatch, (kernel,), 0, lambda a: a.shape)
    before = x.copy()
    got = (fp.max_pool2d if nd == 2 else fp.max_pool3d)(x, layout="channels_last", **kw)
    assert names, f"{kernel} did not run"
    np.testing.assert_array_equal(x, before)
    xr = np.moveaxis(x, -1, 1)
    if w_first:
        # the window's geometry per axis, W's moved to the front
        kw = {k: (v if not isinstance(v, tuple) else v[-1:] + v[:-1]) for k, v in kw.items()}
        xr = np.moveaxis(xr, -1, 2)
    want, _ = max_pool(xr, nd, **kw)
    if w_first:
        want = np.moveaxis(want, 2, -1)
    want = np.moveaxis(want, 1, -1)
    assert got.dtype == want.dtype and got.shape == want.shape
    ut = np.dtype(f"u{x.dtype.itemsize}")
    np.testing.assert_array_equal(got.view(ut), want.view(ut))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.uint8, np.int64])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_edge_windows_bit_for_bit(monkeypatch, dtype, case):
    shape, kw = case
    x = _data(np.random.default_rng(len(IDS) * shape[0] + shape[1]), (2, *shape, 24), dtype)
    _check(x, 2, kw, monkeypatch)


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
@pytest.mark.parametrize("case", CASES_3D, ids=IDS_3D)
def test_plane_windows_bit_for_bit(monkeypatch, dtype, case):
    shape, kw = case
    x = _data(np.random.default_rng(sum(shape)), (2, *shape, 16), dtype)
    _check(x, 3, kw, monkeypatch)


SEP_CASES = [
    ((2, 5, 9, 11), dict(kernel_size=3, stride=2, padding=1), 32),  # 27 cells: three taps along W
    ((2, 5, 9, 11), dict(kernel_size=(3, 3, 2), stride=1, padding=(1, 0, 1)), 16),  # two taps along W
    ((1, 7, 9), dict(kernel_size=(3, 3), stride=(1, 2), padding=1, dilation=(1, 2)), 3),  # few channels
    ((1, 7, 9), dict(kernel_size=(2, 4), stride=1, padding=(0, 2)), 5),  # four taps: the loop over taps
]
SEP_IDS = ["3d-k3", "3d-k2", "2d-few-k3d2", "2d-few-k4"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
@pytest.mark.parametrize("case", SEP_CASES, ids=SEP_IDS)
def test_row_buffer_windows_bit_for_bit(monkeypatch, dtype, case):
    shape, kw, c = case
    nd = len(shape) - 1
    x = _data(np.random.default_rng(c), shape + (c,), dtype)
    _check(x, nd, kw, monkeypatch, "sep_max_forward", w_first=True)
