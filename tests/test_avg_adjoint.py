"""Average-pooling backward as a forward pooling of grad_output
(``pooling._adjoint_box``): where the windows have stride 1, dilation 1 and one
divisor, dL/dx is the box sum of grad_output over the transposed windows, run
through the forward kernels.  Checked against the NumPy reference's adjoint
(every window's share scattered back), on both layouts, 1-D to 3-D, with
asymmetric and "same" padding, and the cases that must keep the general
kernel (``sep_avg_backward``)."""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp
from fastpool import _geometry as geo
from fastpool import pooling
from fastpool._spec import window_spec

from probes import kernel_args
from reference import avg_pool_backward, to_channels_first, to_channels_last

ADJOINT = [
    # nd, input shape (channels first), keyword arguments
    (1, (2, 3, 40), dict(kernel_size=3, stride=1, padding=1)),
    (1, (2, 3, 9), dict(kernel_size=5, stride=1, padding=((1, 3),))),
    (2, (2, 3, 14, 14), dict(kernel_size=3, stride=1, padding=1)),
    (2, (1, 4, 9, 37), dict(kernel_size=(2, 4), stride=1, padding=(1, 2))),
    (2, (1, 2, 7, 50), dict(kernel_size=3, stride=1, padding=0)),
    (2, (1, 3, 8, 11), dict(kernel_size=(3, 1), stride=1, padding=(1, 0), divisor_override=5)),
    (2, (1, 2, 12, 12), dict(kernel_size=5, stride=1, padding="same")),
    (2, (1, 3, 6, 9), dict(kernel_size=2, stride=1, padding=1, ceil_mode=True)),
    (3, (1, 2, 5, 6, 41), dict(kernel_size=3, stride=1, padding=1)),
    (3, (2, 9, 4, 5, 6), dict(kernel_size=(1, 3, 3), stride=1, padding=(0, 1, 1))),
]


def _bwd(nd, g, x, kw, layout):
    return getattr(fp, f"avg_pool{nd}d_backward")(g, x, **kw, layout=layout)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", ADJOINT, ids=str)
def test_adjoint_box_matches_reference(monkeypatch, case, dtype, layout):
    nd, shape, kw = case
    rng = np.random.default_rng(len(shape) + shape[-1])
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(getattr(fp, f"avg_pool{nd}d")(x, **kw).shape).astype(dtype)
    general = kernel_args(monkeypatch, ("sep_avg_backward",), 0, lambda a: a.shape)
    if layout == "channels_last":
        got = to_channels_first(_bwd(nd, to_channels_last(g, nd), to_channels_last(x, nd), kw, layout), nd)
    else:
        got = _bwd(nd, g, x, kw, layout)
    assert general == []
    want = avg_pool_backward(g.astype(np.float64), x.astype(np.float64), nd, **kw)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


GENERAL = [
    (2, (1, 2, 9, 10), dict(kernel_size=3, stride=2, padding=1)),                          # stride 2
    (2, (1, 2, 9, 10), dict(kernel_size=3, stride=1, padding=1, count_include_pad=False)),  # border divisors
    (2, (1, 2, 9, 10), dict(kernel_size=3, stride=1, padding=1, dilation=2)),               # dilation
]


@pytest.mark.parametrize("case", GENERAL, ids=str)
def test_other_windows_keep_the_general_kernel(monkeypatch, case):
    nd, shape, kw = case
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape)
    g = rng.standard_normal(fp.avg_pool2d(x, **kw).shape)
    general = kernel_args(monkeypatch, ("sep_avg_backward",), 0, lambda a: a.shape)
    got = fp.avg_pool2d_backward(g, x, **kw)
    assert len(general) == 1
    np.testing.assert_allclose(got, avg_pool_backward(g, x, nd, **kw), rtol=1e-12, atol=1e-12)


def test_transposed_windows():
    # k4 s1 padding (1, 2) on 9 cells: 9 outputs, window o over cells o-1 .. o+2,
    # so cell i is read by outputs i-2 .. i+1 (those that exist)
    axes = geo.plan(window_spec(1, 4, 1, ((1, 2),), 1, False, "channels_first"), (9,))
    adj, d = pooling._adjoint_box(axes, "pad")
    (u,) = adj
    assert d == 4.0 and u.n == 9 and u.out == 9
    for i in range(9):
        outs = [o for o in range(9) if o - 1 <= i <= o + 2]
        assert list(range(u.lo[i], u.lo[i] + u.taps[i])) == outs
