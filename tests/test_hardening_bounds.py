"""Every kernel under Numba's bounds checking: no computed position reads or writes
outside its array.

A subprocess runs with ``NUMBA_BOUNDSCHECK=1`` (every array access checked; an
out-of-bounds one raises ``IndexError`` instead of touching foreign memory) and
``NUMBA_CACHE_DIR`` in a fresh temporary directory, so the kernels are compiled
anew with the checks rather than loaded from a cache built without them.

Numba does not check bounds inside ``prange`` loops of ``parallel=True`` kernels
(measured with numba 0.68.1: an out-of-bounds write in a prange body passes
silently under NUMBA_BOUNDSCHECK=1, the same write in a plain njit loop raises).
So the subprocess runs every call serially (``FASTPOOL_SERIAL_BELOW`` above any
size): through the chunked kernels' bodies (``_cpu.Chunked``), which the
parallel path runs too, one chunk at a time, and through the other kernels'
serial twins, the same loop bodies compiled without ``parallel``; the checks
apply there, and test_serial.py holds the serial runs bit-identical to the
parallel ones.  Canary kernels prove the checks are live.

The cases reach every kernel of fastpool/_cpu.py and fastpool/_cpu_family.py
(asserted: each one's twin ran) through the public functions, on tiny and on
moderately sized inputs, through their fast paths (separable rows, the short-
vector rows of fastpool/_simd.py, channels-last direct, van Herk running maxima,
argmax, scatter backward, global planes) and border paths (padding, dilation,
ceil mode, overlapping adaptive bins, RoIs over the edges), and each result
equals the same call in this (unchecked, parallel) process.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import zlib

import numpy as np

import fastpool as fp

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Each case: (name, callable(fp, rng) -> result); run in both processes.
CASES = r'''
import numpy as np

def _x(rng, shape, positive=False):
    x = rng.standard_normal(shape).astype(np.float32)
    return np.abs(x) if positive else x

def cases():
    c = {}
    for tag, cf, cl in (("tiny", (1, 1, 3, 4), (1, 3, 4, 9)), ("mid", (2, 5, 23, 29), (2, 23, 29, 9))):
        n1 = (cf[0], cf[1], cf[2] * cf[3])
        c[f"max sep 2d {tag}"] = lambda fp, r, s=cf: fp.max_pool2d(_x(r, s), 3, 2, 1, ceil_mode=True)
        c[f"max sep 1d dil {tag}"] = lambda fp, r, s=n1: fp.max_pool1d(_x(r, s), 3, 2, ((2, 1),), dilation=2, ceil_mode=True)
        c[f"max sep 3d {tag}"] = lambda fp, r, s=cf: fp.max_pool3d(_x(r, s[:2] + (3,) + s[2:]), (2, 3, 2), (1, 2, 1), (1, 1, 0), ceil_mode=True)
        c[f"max cf wide window {tag}"] = lambda fp, r, s=cf: fp.max_pool2d(_x(r, s), (9, 10), 1, (4, 5))
        c[f"max cf wide window same {tag}"] = lambda fp, r, s=cf: fp.max_pool2d(_x(r, s), 10, 1, "same")
        # whole 2x2 stride-2 windows straight from the rows: 8-lane rows with an overlapping
        # last block, 4-lane rows, and planes of a 3-D input
        c[f"max cf quads {tag}"] = lambda fp, r, s=cf: fp.max_pool2d(_x(r, s[:2] + (6, 19)), 2, 2)
        c[f"avg cf quads 4-lane {tag}"] = lambda fp, r, s=cf: fp.avg_pool2d(_x(r, s[:2] + (5, 12)), 2)
        c[f"avg cf quads 3d {tag}"] = lambda fp, r, s=cf: fp.avg_pool3d(_x(r, s[:2] + (3, 4, 18)), (1, 2, 2), (2, 2, 2))
        # the sparse table's NaN-aware passes, and its float16 bits on channels-last rows
        c[f"max wide window nan {tag}"] = lambda fp, r, s=cf: fp.max_pool2d(np.where(_x(r, s) > 1.0, np.nan, _x(r, s)).astype(np.float32), (5, 7), 1, (2, 3))
        c[f"max wide window half cl {tag}"] = lambda fp, r, s=cl: fp.max_pool2d(_x(r, s).astype(np.float16), (6, 5), 1, (3, 2), layout="channels_last")
        # short vectors: 8-lane rows with a 4-lane output row, then 4-lane rows
        c[f"max cf vector rows {tag}"] = lambda fp, r, s=cf: fp.max_pool2d(_x(r, s[:3] + (14,)), 2, 2)
        c[f"avg cf vector rows {tag}"] = lambda fp, r, s=cf: fp.avg_pool2d(_x(r, s[:3] + (20,)), 3, 1, 0)
        # flat planes: rows past the short rows' vector, one on a 3-D window
        c[f"max cf flat {tag}"] = lambda fp, r, s=cf: fp.max_pool2d(_x(r, s[:3] + (20,)), 3, 1, 1)
        c[f"avg cf flat {tag}"] = lambda fp, r, s=cf: fp.avg_pool2d(_x(r, s[:3] + (20,)), 3, 1, 1)
        c[f"avg cf flat 3d {tag}"] = lambda fp, r, s=cf: fp.avg_pool3d(_x(r, s[:2] + (3,) + s[2:3] + (20,)), (2, 3, 3), 1, (0, 1, 1))

        def flat_s2(fp, r, s=cf):
            # stride-2 flat windows, where the short rows (forced on here) are off
            cheap = fp._simd.has_avx512
            fp._simd.has_avx512 = lambda: False
            try:
                return (fp.max_pool2d(_x(r, s[:3] + (14,)), 3, 2, 1), fp.max_pool2d(_x(r, s[:3] + (10,)), 3, (1, 2), 1),
                        fp.max_pool2d(_x(r, s[:3] + (12,)).astype(np.float16), 3, 2, 1))
            finally:
                fp._simd.has_avx512 = cheap
        c[f"max cf flat s2 {tag}"] = flat_s2
        # short rows: masked loads and stores, rows of 2 or 3 taps, windows on D, float16 bits
        c[f"max cf short {tag}"] = lambda fp, r, s=cf: fp.max_pool2d(_x(r, s[:3] + (14,)), 3, 2, 1)
        c[f"avg cf short {tag}"] = lambda fp, r, s=cf: fp.avg_pool2d(_x(r, s[:3] + (7,)), 3, 1, 1, count_include_pad=False)
        c[f"avg cf short 3d {tag}"] = lambda fp, r, s=cf: fp.avg_pool3d(_x(r, s[:2] + (3,) + s[2:3] + (9,)), (2, 3, 3), 1, (0, 1, 1))
        c[f"max cf short half {tag}"] = lambda fp, r, s=cf: fp.max_pool2d(_x(r, s[:3] + (13,)).astype(np.float16), 3, 2, 1, ceil_mode=True)
        c[f"avg cl quads {tag}"] = lambda fp, r, s=cl: fp.avg_pool2d(_x(r, s[:1] + (6, 10) + s[3:]), 2, layout="NHWC")
        c[f"max cl quads {tag}"] = lambda fp, r, s=cl: fp.max_pool2d(_x(r, s[:1] + (6, 10) + s[3:]), 2, layout="NHWC")
        c[f"avg cf vector rows 3d {tag}"] = lambda fp, r, s=cf: fp.avg_pool3d(_x(r, s[:2] + (3,) + s[2:3] + (21,)), 3, (1, 1, 2), 1)
        c[f"max van Herk cl {tag}"] = lambda fp, r, s=cl: fp.max_pool2d(_x(r, s), (1, 9), (1, 2), (0, 4), layout="NHWC")
        c[f"max sep cl few channels {tag}"] = lambda fp, r, s=cl[:3] + (3,): fp.max_pool2d(_x(r, s), 3, 2, 1, ceil_mode=True, layout="NHWC")
        # float16 widened to float32 (tiny: 1 output a row) and on the bits (mid: 8-lane rows)
        c[f"max float16 {tag}"] = lambda fp, r, s=cf: fp.max_pool2d(_x(r, s).astype(np.float16), 3, 2, 1, dilation=(1, 2))

        def half_nan(fp, r, s=cf):
            # 8-lane widened rows, and a NaN's rows redone on the bits
            x = _x(r, s[:3] + (12,)).astype(np.float16)
            x[..., 1, 5] = np.nan
            return fp.max_pool2d(x, 3, 2)
        c[f"max float16 widened {tag}"] = half_nan
        c[f"max cl direct {tag}"] = lambda fp, r, s=cl: fp.max_pool2d(_x(r, s), 3, 2, 1, dilation=(2, 1), layout="NHWC")
        # the direct kernel's windows over planes (two-plane windows, edges repeating a tap)
        c[f"max cl direct 3d {tag}"] = lambda fp, r, s=cl: fp.max_pool3d(_x(r, s[:1] + (3,) + s[1:]), 2, 1, 1, layout="NDHWC")
        c[f"argmax cf {tag}"] = lambda fp, r, s=cf: fp.max_pool2d(_x(r, s), 3, 2, ((1, 2), (0, 1)), ceil_mode=True, return_indices=True)
        # the argmax rows' other passes: stride 1, planes of 3-D windows, the loops
        c[f"argmax cf s1 3d s3 {tag}"] = lambda fp, r, s=cf: (
            fp.max_pool2d(_x(r, s), 2, 1, 1, return_indices=True),
            fp.max_pool3d(_x(r, s[:2] + (3,) + s[2:]), 2, 1, 1, return_indices=True),
            fp.max_pool2d(_x(r, s), 3, 3, 1, return_indices=True))
        c[f"argmax cl {tag}"] = lambda fp, r, s=cl: fp.max_pool2d(_x(r, s), 2, 1, 1, return_indices=True, layout="NHWC")
        c[f"adaptive max idx {tag}"] = lambda fp, r, s=cf: fp.adaptive_max_pool2d(_x(r, s), (5, 7), return_indices=True)
        c[f"avg sep {tag}"] = lambda fp, r, s=cf: fp.avg_pool2d(_x(r, s), 3, 2, 1, ceil_mode=True, count_include_pad=False)
        c[f"avg cl direct {tag}"] = lambda fp, r, s=cl: fp.avg_pool2d(_x(r, s), (2, 3), 1, (1, 1), layout="NHWC")
        # three-tap averages of the separable rows' fused pass, over depth rows
        c[f"avg sep 3d cl {tag}"] = lambda fp, r, s=cl: fp.avg_pool3d(_x(r, s[:1] + (3,) + s[1:]), 3, 1, 1, layout="NDHWC")
        c[f"adaptive avg {tag}"] = lambda fp, r, s=cf: fp.adaptive_avg_pool2d(_x(r, s), (5, 7))
        # windows end to end (stride = window): adaptive bins that divide the input, k4 s4
        c[f"avg end to end {tag}"] = lambda fp, r, s=cf: (fp.adaptive_avg_pool2d(_x(r, s[:2] + (20, 28)), (5, 7)),
                                                          fp.avg_pool2d(_x(r, s), 4, 4, 1, ceil_mode=True))
        c[f"lp sep {tag}"] = lambda fp, r, s=cf: fp.lp_pool2d(_x(r, s), 2.0, 3, 2, True, padding=1, torch_compat=True)
        c[f"lp cl {tag}"] = lambda fp, r, s=cl: fp.lp_pool2d(_x(r, s), 3.0, 2, 1, layout="NHWC", power_mean=True)
        c[f"global max {tag}"] = lambda fp, r, s=cf: fp.global_max_pool(_x(r, s))
        c[f"global max idx cl {tag}"] = lambda fp, r, s=cl: fp.global_max_pool(_x(r, s), layout="NHWC", return_indices=True)
        c[f"global avg {tag}"] = lambda fp, r, s=cf: fp.global_avg_pool(_x(r, s))
        c[f"global lp {tag}"] = lambda fp, r, s=cf: fp.global_lp_pool(_x(r, s), 3.0)
        c[f"global avg cl {tag}"] = lambda fp, r, s=cl: fp.global_avg_pool(_x(r, s), layout="NHWC")

        def max_bw(fp, r, s=cf):
            x = _x(r, s)
            y = fp.max_pool2d(x, 3, 2, 1, ceil_mode=True)
            return fp.max_pool2d_backward(_x(r, y.shape), x, 3, 2, 1, ceil_mode=True)
        c[f"max backward cf {tag}"] = max_bw

        def max_bw_idx(fp, r, s=cf):
            x = _x(r, s)
            y, i = fp.max_pool2d(x, 3, (1, 2), 1, return_indices=True)
            return fp.max_pool2d_backward(_x(r, y.shape), x, 3, (1, 2), 1, indices=i)
        c[f"max backward cf indices {tag}"] = max_bw_idx

        def max_bw_cl(fp, r, s=cl):
            x = _x(r, s)
            y, i = fp.max_pool2d(x, 2, 1, 1, return_indices=True, layout="NHWC")
            return fp.max_pool2d_backward(_x(r, y.shape), x, 2, 1, 1, layout="NHWC", indices=i)
        c[f"max backward cl {tag}"] = max_bw_cl

        def avg_bw(fp, r, s=cf):
            x = _x(r, s)
            y = fp.avg_pool2d(x, 3, 2, 1, True, dilation=(1, 2))
            return fp.avg_pool2d_backward(_x(r, y.shape), x, 3, 2, 1, True, dilation=(1, 2))
        c[f"avg backward {tag}"] = avg_bw

        def avg_bw_cl(fp, r, s=cl):
            x = _x(r, s)
            y = fp.adaptive_avg_pool2d(x, (4, 6), layout="NHWC")
            return fp.adaptive_avg_pool2d_backward(_x(r, y.shape), x, (4, 6), layout="NHWC")
        c[f"adaptive avg backward cl {tag}"] = avg_bw_cl

        def lp_bw(fp, r, s=cf):
            x = _x(r, s)
            y = fp.lp_pool2d(x, 2.0, 3, 2, True, padding=1)
            return fp.lp_pool2d_backward(_x(r, y.shape), x, 2.0, 3, 2, True, padding=1)
        c[f"lp backward {tag}"] = lp_bw

        def unpool(fp, r, s=cf):
            x = _x(r, s)
            y, i = fp.max_pool2d(x, 2, return_indices=True)
            out = fp.max_unpool2d(y, i, 2, output_size=(s[2] // 2 * 2 + 1, s[3] // 2 * 2 + 1))
            return out, fp.max_unpool2d_backward(_x(r, out.shape), y, i, 2, output_size=out.shape)
        c[f"unpool {tag}"] = unpool

        def frac(fp, r, s=cf):
            x = _x(r, s)
            smp = r.random((s[0], s[1], 2))
            y, i = fp.fractional_max_pool2d(x, 2, output_size=(s[2] // 2, s[3] // 2), samples=smp, return_indices=True)
            return y, fp.fractional_max_pool2d_backward(_x(r, y.shape), x, 2, output_size=y.shape[2:], indices=i)
        c[f"fractional {tag}"] = frac

        def stoch(fp, r, s=cf):
            x = _x(r, s, positive=True)
            y, i = fp.stochastic_pool2d(x, 3, 2, 1, rng=np.random.default_rng(1), return_indices=True)
            gt = fp.stochastic_pool2d_backward(_x(r, y.shape), x, 3, 2, 1, indices=i)
            yi = fp.stochastic_pool2d(x, 3, 2, 1, training=False)
            return y, gt, yi, fp.stochastic_pool2d_backward(_x(r, yi.shape), x, 3, 2, 1, training=False)
        c[f"stochastic {tag}"] = stoch

        def roi(fp, r, s=cf):
            x = _x(r, s)
            N, C, H, W = s
            k = 7
            b = np.stack([r.integers(0, N, k), r.uniform(-2, W, k), r.uniform(-2, H, k),
                          r.uniform(0, W + 2, k), r.uniform(0, H + 2, k)], 1)
            b[:, 3] += b[:, 1]
            b[:, 4] += b[:, 2]
            y, a = fp.roi_pool(x, b, (2, 3), 0.5, return_indices=True)
            gp = fp.roi_pool_backward(_x(r, y.shape), x, b, (2, 3), 0.5, indices=a)
            z = fp.roi_align(x, b, (3, 2), 1.0, -1, True)
            ga = fp.roi_align_backward(_x(r, z.shape), x, b, (3, 2), 1.0, -1, True)
            zl = fp.roi_align(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), b, (2, 2), 1.0, 2, False, layout="NHWC")
            return y, a, gp, z, ga, zl
        c[f"roi {tag}"] = roi
    return c
'''

SCRIPT = CASES + r'''
import os, sys, pickle, zlib
import numba
from numba import njit

@njit
def _canary_read(a):
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i + 1]
    return s

@njit
def _canary_write(a, i):
    a[np.uint64(i)] = 1.0   # the kernels index with unsigned ints

canary = []
for f, args in ((_canary_read, (np.zeros(8),)), (_canary_write, (np.zeros(8), -1))):
    try:
        f(*args)
        canary.append("no IndexError")
    except IndexError:
        canary.append("IndexError")

import fastpool as fp
from fastpool import _cpu, _cpu_family, _simd

_simd.has_avx512 = lambda: True   # the short rows run here on any CPU

@njit
def _canary_vector(x, buf):
    _simd.max_rows(x, 0, 8, 2, 0, 1, 8, buf, 0)   # the second row runs past x's end

try:
    _canary_vector(np.zeros(12, np.float32), np.zeros(8, np.float32))
    canary.append("no IndexError")
except IndexError:
    canary.append("IndexError")

results = {}
for name, f in cases().items():
    results[name] = f(fp, np.random.default_rng(zlib.crc32(name.encode())))
kernels = sorted(k for mod in (_cpu, _cpu_family) for k, v in vars(mod).items()
                 if isinstance(v, _cpu.Chunked)
                 or (hasattr(v, "py_func") and getattr(v, "targetoptions", {}).get("parallel")
                     and v is not _cpu._drive))
# chunked kernels run their bodies serially here (every call is below SERIAL_BELOW)
twins_run = sorted([k.py_func.__name__ for k, t in _cpu._SERIAL.items() if t.signatures]
                   + [k for k, v in vars(_cpu).items() if isinstance(v, _cpu.Chunked) and v.body.signatures])
with open(sys.argv[1], "wb") as fh:
    pickle.dump((canary, numba.config.BOUNDSCHECK, fp._cpu.SERIAL_BELOW, kernels, twins_run, results), fh)
'''


def _flat(v):
    return list(v) if isinstance(v, tuple) else [v]


def test_every_kernel_stays_in_bounds(tmp_path, monkeypatch):
    ns = {}
    exec(compile(textwrap.dedent(CASES), "cases", "exec"), ns)
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "numba_cache"),
               FASTPOOL_SERIAL_BELOW=str(2**62),
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / "results.pkl"
    script = tmp_path / "bounds.py"
    script.write_text(SCRIPT)
    r = subprocess.run([sys.executable, str(script), str(out)], env=env, capture_output=True, text=True,
                       timeout=600, cwd=str(tmp_path))
    assert r.returncode == 0, f"bounds-checked run failed:\n{r.stdout}\n{r.stderr[-4000:]}"
    canary, boundscheck, serial_below, kernels, twins_run, results = pickle.loads(out.read_bytes())
    # the third canary: fastpool/_simd.py's intrinsics check their rows' spans
    assert boundscheck and canary == ["IndexError"] * 3, "the subprocess did not check bounds"
    assert serial_below == 2**62
    assert len(kernels) >= 20 and twins_run == kernels, (
        f"kernels never run under bounds checks: {sorted(set(kernels) - set(twins_run))}")
    # the same calls here, without bounds checks, give the same results (through
    # the same kernels: the short rows forced on as there; float32 averages'
    # bits depend on the kernel)
    monkeypatch.setattr(fp._simd, "has_avx512", lambda: True)
    for name, f in ns["cases"]().items():
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        want = _flat(f(fp, rng))
        got = _flat(results[name])
        assert len(got) == len(want), name
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w, err_msg=name)
