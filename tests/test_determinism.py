"""Backward passes are bit-identical whatever the thread count.

Overlapping windows make an input cell collect several upstream gradients; a
kernel that let threads race on that sum, or split it by thread, would give
results that change in the last bits with ``numba.set_num_threads``.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

import fastpool as fp

RNG = np.random.default_rng(1234)
MAX_THREADS = numba.config.NUMBA_NUM_THREADS

pytestmark = pytest.mark.skipif(
    MAX_THREADS < 2, reason=f"Numba has {MAX_THREADS} thread(s) here; nothing to compare"
)

# Small calls run serial kernels; these inputs are large enough (> 2**15 cells)
# to go through the parallel ones, which are what a thread count could change.
SHAPES = {1: (4, 8, 1301), 2: (2, 4, 71, 73), 3: (2, 3, 21, 24, 29)}
PARALLEL_FROM = getattr(fp._cpu, "SERIAL_BELOW", 0)


def _cases():
    cases = []
    for nd in (1, 2, 3):
        cases += [
            ("max_pool", nd, (), dict(kernel_size=3, stride=1, padding=1)),
            ("max_pool", nd, (), dict(kernel_size=3, stride=2, dilation=2, ceil_mode=True)),
            ("avg_pool", nd, (), dict(kernel_size=3, stride=1, padding=1)),
            ("avg_pool", nd, (), dict(kernel_size=4, stride=2, padding=2, ceil_mode=True,
                                      count_include_pad=False)),
            ("lp_pool", nd, (2.0,), dict(kernel_size=3, stride=1)),
            ("lp_pool", nd, (3.0,), dict(kernel_size=3, stride=2, ceil_mode=True, torch_compat=True)),
            ("lp_pool", nd, (1.5,), dict(kernel_size=2, stride=1, dilation=2, power_mean=True)),
            ("adaptive_avg_pool", nd, (), dict(output_size=7)),
            ("adaptive_max_pool", nd, (), dict(output_size=7)),
        ]
    cases += [("global_avg_pool", None, (), {}), ("global_max_pool", None, (), {}),
              ("global_lp_pool", None, (2.0,), {})]
    return cases


CASES = _cases()
IDS = [f"{n}{'' if nd is None else f'{nd}d'}-{'-'.join(f'{k}={v}' for k, v in kw.items())}"
       for n, nd, _, kw in CASES]


@pytest.fixture
def restore_threads():
    before = numba.get_num_threads()
    yield
    numba.set_num_threads(before)


def _data(nd, dtype, layout):
    shape = SHAPES[nd or 2]
    # a coarse grid of values: many ties for max, sums whose rounding depends on order
    x = (RNG.integers(-6, 7, size=shape) / 3 + RNG.standard_normal(shape) * 1e-3)
    if layout == "channels_last":
        x = np.moveaxis(x, 1, -1).copy()
    return x.astype(dtype)


def _run(name, nd, pos, kw, x, g, layout):
    fname = name if nd is None else f"{name}{nd}d"
    out = getattr(fp, fname)(x, *pos, **kw, layout=layout)
    gx = getattr(fp, fname + "_backward")(g, x, *pos, **kw, layout=layout)
    return out, gx


def _bits(a):
    return a.dtype.str, a.shape, a.tobytes()


# float64 sums show any change of summation order; float32 ones are accumulated
# in float64 and rounded once, so one layout of them is enough
@pytest.mark.parametrize("dtype, layout", [(np.float64, "channels_first"),
                                           (np.float64, "channels_last"),
                                           (np.float32, "channels_first")])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backward_bit_identical_across_thread_counts(case, dtype, layout, restore_threads):
    name, nd, pos, kw = case
    x = _data(nd, dtype, layout)
    assert x.size >= PARALLEL_FROM, "the input must be large enough for the parallel kernels"
    fname = name if nd is None else f"{name}{nd}d"
    out_shape = getattr(fp, fname)(x, *pos, **kw, layout=layout).shape
    g = RNG.standard_normal(out_shape).astype(dtype)

    results = {}
    for n in sorted({1, 2, MAX_THREADS}):
        numba.set_num_threads(n)
        results[n] = [_bits(a) for a in _run(name, nd, pos, kw, x, g, layout)]
    # a second pass at full width catches run-to-run variation too
    numba.set_num_threads(MAX_THREADS)
    again = [_bits(a) for a in _run(name, nd, pos, kw, x, g, layout)]

    ref_out, ref_gx = results[1]
    for n, (out, gx) in results.items():
        assert gx == ref_gx, f"backward differs between 1 and {n} threads"
        assert out == ref_out, f"forward differs between 1 and {n} threads"
    assert again == results[1]

