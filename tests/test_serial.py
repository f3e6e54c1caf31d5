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
