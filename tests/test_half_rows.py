"""float16 channels-first max rows widened to float32 (``_simd.half_rows``):
each half is converted once and compared with the CPU's max instruction, which
keeps the first of equal values (-0 and +0 included) but not a NaN; rows that
hold a NaN are redone on the bits.  The kernel is separable (each column's rows,
then the columns), so its ties follow the reference run on an input whose W
axis is moved first.  Every case must match that bit for bit, NaN payloads
included, with ties made likely: small integers, both zeros and infinities."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import fastpool as fp

from probes import kernel_args
from reference import max_pool

CASES = [
    # (input shape, geometry): which rows
    ((2, 3, 9, 40), dict(kernel_size=3, stride=2, padding=1)),  # 16 lanes, an overlapping last block
    ((2, 3, 7, 12), dict(kernel_size=3, stride=2)),  # 8 lanes
    ((2, 2, 10, 33), dict(kernel_size=(2, 3), stride=(1, 2), padding=1, dilation=(2, 1))),  # two rows, dilated
    ((2, 2, 9, 21), dict(kernel_size=2, stride=2, ceil_mode=True)),  # one row at the ceil-mode end
    ((1, 2, 6, 17), dict(kernel_size=(1, 3), stride=(1, 2), padding=(0, 1))),  # one row a window
    ((1, 2, 9, 24), dict(kernel_size=(4, 2), stride=1, padding=(2, 1))),  # four rows: the loop over rows
    ((2, 3, 8, 6), dict(kernel_size=2, stride=1)),  # rows of 4-7 cells stay on the bits
    ((1, 40, 56, 56), dict(kernel_size=3, stride=2, padding=1)),  # parallel chunks
]
IDS = ["k3s2p1-w40", "k3s2-w12", "k2x3d2", "ceil", "k1x3", "k4x2", "w6", "parallel"]

CASES_3D = [
    ((1, 2, 5, 9, 20), dict(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))),  # one plane: widened
    ((1, 2, 4, 9, 20), dict(kernel_size=(2, 3, 3), stride=2, padding=1)),  # two planes: on the bits
]


def _data(rng, shape, nan):
    x = np.round(rng.standard_normal(shape) * 2).astype(np.float16)
    bits = x.reshape(-1).view(np.uint16)
    specials = [(0x8000, x.size // 8), (0x0000, x.size // 16), (0x7C00, 4), (0xFC00, 4), (0x0001, 4), (0x8001, 4)]
    if nan:
        specials += [(0x7E01, 3), (0xFE02, 3), (0x7C05, 2)]  # NaNs of both signs, one signalling
    for value, count in specials:
        bits[rng.integers(0, bits.size, count)] = value
    return x


def _check(x, kw, monkeypatch):
    nd = x.ndim - 2
    # with AVX-512, rows this short take the short-row kernel instead
    monkeypatch.setattr("fastpool._simd.has_avx512", lambda: False)
    names = kernel_args(monkeypatch, ("cf_half_max_forward",), 0, lambda a: a.shape)
    before = x.copy()
    got = (fp.max_pool2d if nd == 2 else fp.max_pool3d)(x, **kw)
    assert names, "cf_half_max_forward did not run"
    np.testing.assert_array_equal(x.view(np.uint16), before.view(np.uint16))
    # the geometry per axis with W's moved to the front, as the input's W axis
    wkw = {k: (v[-1:] + v[:-1] if isinstance(v, tuple) else v) for k, v in kw.items()}
    want, _ = max_pool(np.moveaxis(x, -1, 2), nd, **wkw)
    want = np.moveaxis(want, 2, -1)
    assert got.dtype == np.float16 and got.shape == want.shape
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


@pytest.mark.parametrize("nan", [False, True], ids=["no-nan", "nan"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_half_rows_bit_for_bit(monkeypatch, case, nan):
    shape, kw = case
    _check(_data(np.random.default_rng(len(shape) * 7 + shape[-1]), shape, nan), kw, monkeypatch)


@pytest.mark.parametrize("nan", [False, True], ids=["no-nan", "nan"])
@pytest.mark.parametrize("case", CASES_3D, ids=["one-plane", "two-planes"])
def test_half_rows_3d_bit_for_bit(monkeypatch, case, nan):
    shape, kw = case
    _check(_data(np.random.default_rng(shape[2]), shape, nan), kw, monkeypatch)


def test_a_nan_in_one_row_leaves_the_others_widened(monkeypatch):
    # one NaN: its rows are redone on the bits, and their outputs hold it
    rng = np.random.default_rng(5)
    x = _data(rng, (1, 4, 20, 40), False)
    x.view(np.uint16)[0, 2, 11, 17] = 0x7D23
    _check(x, dict(kernel_size=3, stride=2, padding=1), monkeypatch)
    y = fp.max_pool2d(x, 3, 2, 1)
    # the windows over rows 9-11 and 11-13 and columns 15-17 and 17-19
    assert (y.view(np.uint16) == 0x7D23).sum() == 4


GENERIC = r"""
import sys
import numpy as np
sys.path.insert(0, {tests!r})
import fastpool as fp
from fastpool import _simd
from reference import max_pool
assert not _simd.has_avx()
rng = np.random.default_rng(3)
for nan in (False, True):
    x = np.round(rng.standard_normal((2, 3, 9, 40)) * 2).astype(np.float16)
    x.view(np.uint16)[0, :, ::3, ::5] = 0x8000
    if nan:
        x.view(np.uint16)[1, 1, 4, 7] = 0x7E01
    got = fp.max_pool2d(x, 3, 2, 1)
    want = np.moveaxis(max_pool(np.moveaxis(x, -1, 2), 2, 3, 2, 1)[0], 2, -1)
    assert np.array_equal(got.view(np.uint16), want.view(np.uint16)), nan
print("ok")
"""


def test_half_rows_without_avx_bit_for_bit(tmp_path):
    # a CPU without AVX (here: Numba compiling for a generic x86-64) combines
    # the widened rows with a select in place of the max instruction
    env = dict(os.environ, NUMBA_CPU_NAME="generic", NUMBA_CACHE_DIR=str(tmp_path))
    env.pop("NUMBA_CPU_FEATURES", None)
    tests = str(pathlib.Path(__file__).parent)
    r = subprocess.run([sys.executable, "-c", GENERIC.format(tests=tests)], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
