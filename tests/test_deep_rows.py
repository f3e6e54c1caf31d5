"""3-D averages with several taps on D add each input row's depth taps once,
in groups of rows, and each output row's window rows from there (channels
first: ``_cpu._cf_avg_deep``; channels last over few channels: the separable
kernel).  Groups end where a plane ends, where a chunk ends, or after
``_DEEP_ROWS`` input rows; none of that may change a bit."""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp
from fastpool import _cpu
from reference import avg_pool

GEOMETRIES = [
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=2, stride=2),
    dict(kernel_size=(5, 3, 3), stride=(1, 2, 1), padding=(2, 1, 0), count_include_pad=False),
    dict(kernel_size=(2, 4, 3), stride=(1, 1, 2), ceil_mode=True),
    dict(kernel_size=3, stride=1, padding=(1, 2, 1), dilation=(1, 2, 1)),
]


def _pool(x, layout, **kw):
    if layout == "channels_first":
        return fp.avg_pool3d(x, **kw)
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    return np.moveaxis(fp.avg_pool3d(xl, **kw, layout="channels_last"), -1, 1)


# channels first: rows past the flat planes' 32 cells (the row kernels take
# them); channels last: 3 channels, the separable kernel
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("W", [41, 67])
@pytest.mark.parametrize("kw", GEOMETRIES, ids=[str(i) for i in range(len(GEOMETRIES))])
def test_deep_windows_match_the_reference(kw, W, layout):
    # H = 61: a plane's rows take several groups of at most _DEEP_ROWS input rows
    x = np.random.default_rng(3).standard_normal((2, 3, 6, 61, W)).astype(np.float32)
    want = avg_pool(x, 3, **kw)
    np.testing.assert_allclose(_pool(x, layout, **kw), want, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(_pool(x.astype(np.float64), layout, **kw), want, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("layout,name", [("channels_first", "cf_sum_forward"),
                                         ("channels_last", "sep_sum_forward")])
def test_deep_windows_same_bits_for_any_chunk_count(monkeypatch, layout, name):
    """Chunks that start and end mid-plane and mid-group give the bits of one chunk."""
    x = np.random.default_rng(4).standard_normal((3, 2, 5, 57, 41)).astype(np.float32)
    x[1, 1, 2, 30, 7] = np.nan
    seen = []
    real = _cpu.pick
    kernel = getattr(_cpu, name)

    def spy(k, a, b):
        picked = real(k, a, b)
        if k is kernel:
            def run(*args):
                seen.append(args)
                return picked(*args)
            return run
        return picked

    monkeypatch.setattr(_cpu, "pick", spy)
    ref = _pool(x, layout, kernel_size=3, stride=1, padding=1)
    assert seen, f"{name} was not reached"
    args = seen[0]
    out = args[1]
    kernel.serial(*args)
    want = out.copy()
    addr = kernel._address(args)
    for nch in (2, 3, 7, 64, 1000):
        out.fill(7)
        _cpu._run_chunks(addr, nch, args)
        np.testing.assert_array_equal(out, want, err_msg=f"{nch} chunks")
    np.testing.assert_allclose(ref, avg_pool(x, 3, 3, 1, 1), rtol=2e-6, atol=1e-6)
