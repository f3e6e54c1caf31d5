"""float16 input is widened to float32 inside fastpool (Numba has no CPU float16):
every one of the 65536 half bit patterns must widen exactly as NumPy's cast does."""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp
from fastpool import _cpu

import reference as ref

ALL_HALVES = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)


@pytest.mark.parametrize("kernel", ["parallel", "serial"])
def test_every_half_widens_like_numpy(kernel):
    f = _cpu.f16_to_f32 if kernel == "parallel" else _cpu._serial_twin(_cpu.f16_to_f32)
    got = np.full(ALL_HALVES.size, 7.0, np.float32)
    f(ALL_HALVES, got)
    want = ALL_HALVES.view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    # finite values, infinities, signed zeros and subnormals: bit for bit
    np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))
    # NaNs stay NaN with their sign (the hardware cast also sets the quiet bit)
    assert np.isnan(got[nan]).all()
    np.testing.assert_array_equal(np.signbit(got[nan]), np.signbit(want[nan]))
    assert nan.sum() == 2 * 1023  # 2 signs x (2**10 - 1) nonzero mantissas


def test_float16_pooling_matches_the_reference_on_every_half():
    # each half value appears in some window, with NaN, inf and subnormals among them
    rng = np.random.default_rng(0)
    x = rng.permutation(ALL_HALVES).view(np.float16).reshape(4, 4, 64, 64)
    got = fp.max_pool2d(x, 3, 2, 1)
    want, _ = ref.max_pool(x.astype(np.float64), 2, 3, 2, 1)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, want.astype(np.float16))
    avg = fp.avg_pool2d(x, 2, 2)
    with np.errstate(invalid="ignore"):  # inf + -inf in a window is NaN, as intended
        want_avg = ref.avg_pool(x.astype(np.float64), 2, 2, 2)
    np.testing.assert_array_equal(avg, want_avg.astype(np.float32).astype(np.float16))


@pytest.mark.parametrize("shape", [(2, 3, 14, 15), (1, 40, 56, 56)])  # serial and parallel kernels
@pytest.mark.parametrize("k,s,p,d,ceil", [(2, 2, 0, 1, False), (3, 2, 1, 1, False), (3, 1, 1, 1, False),
                                          (5, 1, 2, 1, False), (4, 2, 1, 1, True), (3, 1, 2, 2, False)])
def test_float16_channels_first_max_moves_the_bits(shape, k, s, p, d, ceil):
    # these rows are pooled on the half bits directly: values as the float64
    # reference, and a NaN comes out with the payload it went in with
    rng = np.random.default_rng(k * 10 + s)
    x = (rng.standard_normal(shape) * 100).astype(np.float16)
    bits = x.view(np.uint16)
    for value, count in ((0x7E01, 5), (0xFC00, 5), (0x7C00, 3), (0x8000, 9), (0x0001, 3)):
        bits.flat[rng.integers(0, x.size, count)] = value  # NaN with payload, -inf, inf, -0.0, subnormal
    before = x.copy()
    got = fp.max_pool2d(x, k, s, p, dilation=d, ceil_mode=ceil)
    want, _ = ref.max_pool(x.astype(np.float64), 2, k, s, p, d, ceil)
    assert got.dtype == np.float16 and got.shape == want.shape
    nan = np.isnan(want)
    assert nan.any() and np.array_equal(np.isnan(got), nan)
    assert (got.view(np.uint16)[nan] == 0x7E01).all()
    np.testing.assert_array_equal(got[~nan], want[~nan].astype(np.float16))
    out = np.empty_like(got)
    assert fp.max_pool2d(x, k, s, p, dilation=d, ceil_mode=ceil, out=out) is out
    np.testing.assert_array_equal(out.view(np.uint16), got.view(np.uint16))
    np.testing.assert_array_equal(x.view(np.uint16), before.view(np.uint16))
