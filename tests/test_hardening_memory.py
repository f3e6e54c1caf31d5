"""No hidden copies: for contiguous input, a forward call's peak extra memory is its
output (plus the indices when asked), measured with tracemalloc (NumPy reports
every array allocation to it) on a 64 MiB input.

Allowed on top: the per-axis window tables and per-task row buffers (the slack
below: 2 MiB or a tenth of the output), and, for average
and Lp pooling, the per-output-position divisor table and its reciprocal (two
float64 arrays of one output plane; small next to a batch of planes).  float16
input is converted to float32 once (numba has no CPU float16), a documented
copy, so it is measured separately with that allowance.  Each call runs once
before it is measured, so compilation's allocations are not counted.
"""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

import fastpool as fp

MB = 1 << 20
SLACK = 2 * MB


def _peak(call):
    call()   # compile (or load) the kernels outside the measurement
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = call()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    outs = out if isinstance(out, tuple) else (out,)
    return peak, sum(o.nbytes for o in outs), outs[0]


@pytest.fixture(scope="module")
def x32():
    return np.random.default_rng(0).standard_normal((4, 16, 512, 512), np.float32)   # 64 MiB


@pytest.fixture(scope="module")
def x32_last(x32):
    return np.ascontiguousarray(x32.transpose(0, 2, 3, 1))


CALLS = {
    "max_pool2d k2": lambda x, xl: fp.max_pool2d(x, 2),
    "max_pool2d k3 s2 p1 indices": lambda x, xl: fp.max_pool2d(x, 3, 2, 1, return_indices=True),
    "max_pool2d k9 s1 on small planes": lambda x, xl: fp.max_pool2d(x.reshape(256, 256, 256), 9, 1, 4),
    "max_pool2d k7 s1": lambda x, xl: fp.max_pool2d(x, 7, 1, 3),
    "max_pool2d NHWC": lambda x, xl: fp.max_pool2d(xl, 3, 2, 1, layout="NHWC"),
    "max_pool2d NHWC indices": lambda x, xl: fp.max_pool2d(xl, 2, layout="NHWC", return_indices=True),
    "max_pool2d NHWC k5 s1": lambda x, xl: fp.max_pool2d(xl, 5, 1, 2, layout="NHWC"),
    "max_pool2d NHWC k9 s1": lambda x, xl: fp.max_pool2d(xl, 9, 1, 4, layout="NHWC"),
    "avg_pool2d": lambda x, xl: fp.avg_pool2d(x, 3, 2, 1),
    "avg_pool2d NHWC": lambda x, xl: fp.avg_pool2d(xl, 2, layout="NHWC"),
    "lp_pool2d": lambda x, xl: fp.lp_pool2d(x, 2.0, 2),
    "adaptive_avg_pool2d": lambda x, xl: fp.adaptive_avg_pool2d(x, (100, 77)),
    "adaptive_max_pool2d indices": lambda x, xl: fp.adaptive_max_pool2d(x, 7, True),
    "global_avg_pool": lambda x, xl: fp.global_avg_pool(x),
    "global_max_pool NHWC": lambda x, xl: fp.global_max_pool(xl, layout="NHWC"),
    "max_pool1d": lambda x, xl: fp.max_pool1d(x.reshape(64, 512, 512), 4),
    "avg_pool3d": lambda x, xl: fp.avg_pool3d(x, 2),
}


def _divisor_bytes(name, out):
    if not name.startswith(("avg", "lp", "adaptive_avg")):
        return 0
    plane = out.shape[-3:] if name.endswith("3d") else out.shape[-2:]
    if "NHWC" in name:
        plane = out.shape[-3:-1]
    return 2 * 8 * int(np.prod(plane))


@pytest.mark.parametrize("name", sorted(CALLS))
def test_forward_allocates_only_its_output(name, x32, x32_last):
    peak, out_bytes, out = _peak(lambda: CALLS[name](x32, x32_last))
    assert peak <= out_bytes + _divisor_bytes(name, out) + max(SLACK, out_bytes // 10), (
        f"{name}: peak {peak / MB:.1f} MiB for an output of {out_bytes / MB:.1f} MiB "
        f"(input {x32.nbytes / MB:.0f} MiB): a hidden copy")


def test_float16_copies_once_to_float32():
    x = np.random.default_rng(1).standard_normal((4, 16, 256, 512)).astype(np.float16)   # 16 MiB
    peak, out_bytes, _ = _peak(lambda: fp.max_pool2d(x, 2))
    # the float32 working copy, the float32 result and its float16 rounding
    assert peak <= 2 * x.nbytes + out_bytes * 3 + SLACK, peak / MB


def test_integer_average_reads_the_input_in_place():
    x = np.random.default_rng(2).integers(-100, 100, (4, 16, 512, 512), dtype=np.int8)   # 16 MiB
    peak, out_bytes, out = _peak(lambda: fp.avg_pool2d(x, 2))
    assert peak <= out_bytes + _divisor_bytes("avg", out) + SLACK, peak / MB
