"""Stochastic pooling: sampling frequencies, the inference form, both backward passes.

The sampling law is checked statistically (chi-square goodness of fit at a
fixed seed, so the test is deterministic) against probabilities computed by
the reference from the window values; the inference form against the NumPy
reference and PyTorch (ratio of two average pools, with autograd); the
backward passes against finite differences with the draw held fixed (the same
seed draws the same uniforms, and a tiny perturbation does not move a draw
across a cell boundary).
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
import pytest
import torch
import torch.nn.functional as tF

import fastpool as fp
import reference_family as rf
from fastpool import PoolingError, PoolingTypeError

RNG = np.random.default_rng(77)
SIZES = {1: (9,), 2: (7, 8), 3: (5, 6, 4)}
P_MIN = 1e-3   # a fixed seed makes each chi-square test deterministic; this is the level it passes


def chi2_sf(x, dof):
    """P(X > x) for a chi-square variable with integer ``dof``: the closed forms of
    the regularised upper incomplete gamma function Q(dof/2, x/2)."""
    h = x / 2.0
    if dof % 2 == 0:
        return math.exp(-h) * sum(h ** i / math.factorial(i) for i in range(dof // 2))
    tail = sum(math.exp((i - 0.5) * math.log(h) - h - math.lgamma(i + 0.5)) for i in range(1, (dof + 1) // 2))
    return math.erfc(math.sqrt(h)) + tail


def chisquare_pvalue(counts, expected):
    counts = np.asarray(counts, float)
    expected = np.asarray(expected, float)
    return chi2_sf(float(((counts - expected) ** 2 / expected).sum()), counts.size - 1)


def test_chi2_sf_matches_known_quantiles():
    # the 0.05 and 0.001 critical values of chi-square tables, even and odd dof
    for dof, q05, q001 in [(1, 3.841, 10.828), (2, 5.991, 13.816), (3, 7.815, 16.266),
                           (8, 15.507, 26.124), (25, 37.652, 52.620)]:
        assert abs(chi2_sf(q05, dof) - 0.05) < 2e-4
        assert abs(chi2_sf(q001, dof) - 0.001) < 2e-5


cl, cf = rf.cl, rf.cf
fd_check = functools.partial(rf.fd_check, eps=1e-7)


def test_sampling_frequencies_match_value_proportional_probabilities():
    # one 2x2 window [1, 2; 3, 4] in each of M planes: P(cell) = value / 10
    M = 4000
    x = np.tile(np.array([[1.0, 2.0], [3.0, 4.0]]), (M, 1, 1, 1))
    out, idx = fp.stochastic_pool2d(x, 2, rng=np.random.default_rng(0), return_indices=True)
    counts = np.bincount(idx.ravel(), minlength=4)
    probs = rf.window_probabilities([1, 2, 3, 4])
    assert chisquare_pvalue(counts, M * probs) > P_MIN
    np.testing.assert_array_equal(out.ravel(), x.reshape(M, 4)[np.arange(M), idx.ravel()])


def test_overlapping_padded_windows_sample_their_own_probabilities():
    # a 5x5 map (zeros included) pooled k3 s2 p1 in M identical planes: per window,
    # the drawn cells' frequencies follow value / window sum; zero cells never drawn
    M = 3000
    img = RNG.integers(0, 4, (5, 5)).astype(np.float64)
    img[2, 2] = 0.0
    x = np.tile(img, (M, 1, 1, 1))
    out, idx = fp.stochastic_pool2d(x, 3, 2, 1, rng=np.random.default_rng(1), return_indices=True)
    chi2, dof = 0.0, 0
    for oh in range(3):
        for ow in range(3):
            cells = [(h, w) for h in range(2 * oh - 1, 2 * oh + 2) for w in range(2 * ow - 1, 2 * ow + 2)
                     if 0 <= h < 5 and 0 <= w < 5]
            flat = [h * 5 + w for h, w in cells]
            probs = rf.window_probabilities([img[c] for c in cells])
            drawn = idx[:, 0, oh, ow]
            assert np.isin(drawn, flat).all()
            counts = np.array([(drawn == f).sum() for f in flat])
            assert counts[probs == 0].sum() == 0
            keep = probs > 0
            exp = M * probs[keep]
            chi2 += (((counts[keep] - exp) ** 2) / exp).sum()
            dof += keep.sum() - 1
            np.testing.assert_array_equal(out[:, 0, oh, ow], img.ravel()[drawn])
    assert chi2_sf(chi2, int(dof)) > P_MIN


def test_all_zero_window_draws_uniformly_and_outputs_zero():
    M = 3000
    x = np.zeros((M, 1, 3, 3))
    out, idx = fp.stochastic_pool2d(x, 3, rng=np.random.default_rng(2), return_indices=True)
    assert (out == 0).all()
    counts = np.bincount(idx.ravel(), minlength=9)
    assert chisquare_pvalue(counts, np.full(9, M / 9)) > P_MIN


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_training_draw_is_a_cell_of_its_window(nd, layout):
    x = RNG.uniform(0, 1, (2, 3) + SIZES[nd])
    xin = cl(x, nd) if layout == "channels_last" else x
    fn = getattr(fp, f"stochastic_pool{nd}d")
    out, idx = fn(xin, 2, rng=np.random.default_rng(3), return_indices=True, layout=layout)
    # the drawn value is the input at the drawn index, in that index's own window
    if layout == "channels_last":
        out, idx = cf(out, nd), cf(idx, nd)
    flat = x.reshape(6, -1)
    np.testing.assert_array_equal(out.reshape(6, -1), np.take_along_axis(flat, idx.reshape(6, -1), 1))
    osp = out.shape[2:]
    for o in np.ndindex(osp):
        cells = np.unravel_index(idx[(Ellipsis,) + o], SIZES[nd])
        for a in range(nd):
            assert ((cells[a] >= 2 * o[a]) & (cells[a] < 2 * o[a] + 2)).all()
    again = fn(xin, 2, rng=np.random.default_rng(3), layout=layout)
    np.testing.assert_array_equal(cf(again, nd) if layout == "channels_last" else again, out)


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("geom", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)])
def test_inference_form_vs_reference_and_torch_autograd(nd, geom):
    x = RNG.uniform(0, 1, (2, 3) + SIZES[nd])
    x[0, 0] = 0.0   # all-zero windows give 0
    fn, bw = getattr(fp, f"stochastic_pool{nd}d"), getattr(fp, f"stochastic_pool{nd}d_backward")
    out = fn(x, **geom, training=False)
    k, s, p = geom["kernel_size"], geom.get("stride", geom["kernel_size"]), geom.get("padding", 0)
    want = rf.stochastic_inference(x, nd, (k,) * nd, (s,) * nd, (p,) * nd)
    np.testing.assert_allclose(out, want, rtol=1e-13, atol=1e-15)
    # PyTorch: sum a^2 / sum a as a ratio of two average pools with the same divisor
    xt = torch.tensor(x, requires_grad=True)
    avg = getattr(tF, f"avg_pool{nd}d")
    s1, s2 = avg(xt, **geom), avg(xt * xt, **geom)
    yt = torch.where(s1 > 0, s2 / torch.where(s1 > 0, s1, 1.0), 0.0)
    np.testing.assert_allclose(out, yt.detach().numpy(), rtol=1e-13, atol=1e-15)
    g = RNG.standard_normal(out.shape)
    yt.backward(torch.tensor(g))
    gx = bw(g, x, **geom, training=False)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("nd", [1, 2])
def test_inference_backward_finite_differences(nd):
    x = RNG.uniform(0.1, 1, (1, 2) + SIZES[nd])
    geom = dict(kernel_size=3, stride=2, padding=1)
    fn = getattr(fp, f"stochastic_pool{nd}d")
    g = RNG.standard_normal(fn(x, **geom, training=False).shape)
    gx = getattr(fp, f"stochastic_pool{nd}d_backward")(g, x, **geom, training=False)
    fd_check(gx, lambda v: fn(v, **geom, training=False), x, g, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_training_backward_finite_differences_with_the_draw_fixed(nd, layout):
    x = RNG.uniform(0.1, 1, (1, 2) + SIZES[nd])
    if layout == "channels_last":
        x = cl(x, nd)
    geom = dict(kernel_size=3, stride=2, padding=1, layout=layout)
    fn = getattr(fp, f"stochastic_pool{nd}d")
    out, idx = fn(x, **geom, rng=np.random.default_rng(11), return_indices=True)
    g = RNG.standard_normal(out.shape)
    gx = getattr(fp, f"stochastic_pool{nd}d_backward")(g, x, **geom, indices=idx)
    fd_check(gx, lambda v: fn(v, **geom, rng=np.random.default_rng(11)), x, g, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("serial_below", [0, 1 << 40], ids=["parallel", "serial"])
def test_results_do_not_depend_on_thread_count_or_kernel_form(serial_below, monkeypatch):
    # serial_below=0 forces the parallel kernels even on tiny arrays; 2**40 their serial twins
    import fastpool._cpu as cpu
    x = RNG.uniform(0, 1, (3, 4, 19, 17))
    g = RNG.standard_normal((3, 4, 10, 9))

    def run():
        out, idx = fp.stochastic_pool2d(x, 3, 2, 1, rng=np.random.default_rng(4), return_indices=True)
        return (out, idx, fp.stochastic_pool2d_backward(g, x, 3, 2, 1, indices=idx),
                fp.stochastic_pool2d(x, 3, 2, 1, training=False),
                fp.stochastic_pool2d_backward(g, x, 3, 2, 1, training=False))

    want = run()   # the default choice of kernel
    monkeypatch.setattr(cpu, "SERIAL_BELOW", serial_below)
    before = numba.get_num_threads()
    try:
        for n in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(n)
            for a, b in zip(run(), want):
                np.testing.assert_array_equal(a, b)
    finally:
        numba.set_num_threads(before)


def test_dtypes():
    x = RNG.uniform(0, 1, (2, 3, 6, 6)).astype(np.float32)
    assert fp.stochastic_pool2d(x, 2, rng=np.random.default_rng(0)).dtype == np.float32
    assert fp.stochastic_pool2d(x, 2, training=False).dtype == np.float32
    xi = RNG.integers(0, 5, (2, 3, 6, 6)).astype(np.uint8)
    out, idx = fp.stochastic_pool2d(xi, 2, rng=np.random.default_rng(0), return_indices=True)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out.reshape(6, -1), np.take_along_axis(xi.reshape(6, -1), idx.reshape(6, -1), 1))


@pytest.mark.parametrize("call, exc, words", [
    (lambda x: fp.stochastic_pool2d(x - 1.5, 2), PoolingError, ["non-negative", "ReLU", "-0.5"]),
    (lambda x: fp.stochastic_pool2d(np.where(x > 0, np.nan, x), 2), PoolingError, ["finite", "nan"]),
    (lambda x: fp.stochastic_pool2d(x, 2, training=False, return_indices=True), PoolingError,
     ["return_indices", "training=True"]),
    (lambda x: fp.stochastic_pool2d(x, 2, rng=np.random.RandomState(0)), PoolingTypeError,
     ["rng", "Generator", "RandomState"]),
    (lambda x: fp.stochastic_pool2d_backward(np.ones((1, 2, 2, 2)), x, 2), PoolingError,
     ["indices=", "return_indices=True"]),
    (lambda x: fp.stochastic_pool2d_backward(np.ones((1, 2, 2, 2)), x, 2,
                                             indices=np.full((1, 2, 2, 2), 16)), PoolingError,
     ["indices", "16"]),
])
def test_errors(call, exc, words):
    x = np.ones((1, 2, 4, 4))
    with pytest.raises(exc) as e:
        call(x)
    assert "stochastic_pool2d" in str(e.value) and "(1, 2, 4, 4)" in str(e.value)
    for w in words:
        assert w in str(e.value)
