"""Small inputs run serial compilations of the same kernels: same answers, same bits."""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp
from fastpool import _cpu



CASES = [
    ("max", dict(kernel_size=3, stride=2, padding=1)),
    ("max", dict(kernel_size=5, stride=1, padding="same")),
    ("avg", dict(kernel_size=3, stride=1, padding=1, count_include_pad=False)),
    ("lp", dict(norm_type=2, kernel_size=2)),
]


def _run(kind, x, kw, layout):
    if kind == "max":
        out, idx = fp.max_pool2d(x, **kw, return_indices=True, layout=layout)
        g = fp.max_pool2d_backward(np.ones_like(out), x, **kw, layout=layout)
        return out, idx, g, fp.max_pool2d(x, **kw, layout=layout)
    if kind == "avg":
        out = fp.avg_pool2d(x, **kw, layout=layout)
        return out, fp.avg_pool2d_backward(np.ones_like(out), x, **kw, layout=layout)
    out = fp.lp_pool2d(x, **kw, layout=layout)
    return out, fp.lp_pool2d_backward(np.ones_like(out), x, **kw, layout=layout)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("kind,kw", CASES)
def test_serial_twins_equal_parallel_kernels(monkeypatch, kind, kw, layout):
    x = np.random.default_rng(3).standard_normal((2, 9, 7, 3)).astype(np.float32)
    monkeypatch.setattr(_cpu, "SERIAL_BELOW", 0)
    parallel = _run(kind, x, kw, layout)
    monkeypatch.setattr(_cpu, "SERIAL_BELOW", 1 << 40)
    serial = _run(kind, x, kw, layout)
    for a, b in zip(parallel, serial):
        np.testing.assert_array_equal(a, b)


def test_serial_path_taken_for_tiny_input(monkeypatch):
    monkeypatch.setattr(_cpu, "SERIAL_BELOW", 1 << 40)
    x = np.zeros((1, 1, 4, 4))
    assert _cpu.pick(_cpu.sep_max_forward, x, x) is not _cpu.sep_max_forward
    monkeypatch.setattr(_cpu, "SERIAL_BELOW", 0)
    assert _cpu.pick(_cpu.sep_max_forward, x, x) is _cpu.sep_max_forward


def _grad(forward, backward):
    return lambda x: backward(np.ones_like(forward(x)), x)


CHUNKED_CALLS = [
    # (public call, kernel it reaches, its outputs' argument positions); odd sizes
    # so that chunk bounds fall mid-plane and mid-row
    (lambda x: fp.max_pool2d(x, 3, stride=2, padding=1), "cf_max_forward", (1,)),
    (lambda x: fp.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False), "cf_sum_forward", (1,)),
    (lambda x: fp.max_pool2d(x, 3, stride=2, padding=1, return_indices=True), "cf_argmax_forward", (1, 2)),
    (_grad(lambda x: fp.max_pool2d(x, 3, stride=2, padding=1),
           lambda g, x: fp.max_pool2d_backward(g, x, 3, stride=2, padding=1)), "cf_argmax_backward", (2,)),
    (lambda x: fp.max_pool2d(x, 2, stride=1, layout="channels_last"), "cl_max_forward", (1,)),
    (lambda x: fp.max_pool2d(x, 3, stride=2, padding=1, layout="channels_last"), "cl_max_forward", (1,)),
    (lambda x: fp.avg_pool2d(x, 3, stride=1, padding=1, layout="channels_last"), "cl_sum_forward", (1,)),
    (lambda x: fp.global_avg_pool(x), "global_mean_cf", (1,)),
    (_grad(lambda x: fp.lp_pool2d(x, 2, kernel_size=3, stride=2),
           lambda g, x: fp.lp_pool2d_backward(g, x, 2, kernel_size=3, stride=2)), "lp_backward", (3,)),
]


@pytest.mark.parametrize("call,name,outs", CHUNKED_CALLS, ids=[c[1] for c in CHUNKED_CALLS])
def test_chunked_kernels_same_bits_for_any_chunk_count(monkeypatch, call, name, outs):
    """A chunked kernel's output does not depend on how many chunks its work is
    cut into: one (the serial path), fewer than the threads, odd counts, or
    more chunks than tasks (those past the last task do nothing)."""
    x = np.random.default_rng(5).standard_normal((3, 5, 19, 41)).astype(np.float32)
    x[0, 1, 4, 4] = np.nan
    seen = []
    real = _cpu.pick

    def spy(kernel, a, b):
        k = real(kernel, a, b)
        if getattr(kernel, "__name__", "") != name:
            return k

        def run(*args):
            seen.append(args)
            return k(*args)
        return run

    monkeypatch.setattr(_cpu, "pick", spy)
    call(x)
    assert seen, f"{name} was not reached"
    kernel = getattr(_cpu, name)
    assert isinstance(kernel, _cpu.Chunked)
    args = seen[0]
    kernel.serial(*args)
    want = [args[i].copy() for i in outs]
    for i in outs:
        args[i].fill(7)
    kernel.one_chunk(*args)  # the one-thread path of large inputs
    for i, w in zip(outs, want):
        np.testing.assert_array_equal(args[i], w, err_msg=f"{name}, one_chunk")
    addr = kernel._address(args)
    for nch in (1, 2, 3, 7, 64, 100_000):
        for i in outs:
            args[i].fill(7)
        _cpu._run_chunks(addr, nch, args)
        for i, w in zip(outs, want):
            np.testing.assert_array_equal(args[i], w, err_msg=f"{name}, {nch} chunks")
