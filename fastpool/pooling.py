"""Public pooling functions and their backward passes.

Arguments follow ``torch.nn.functional`` (names, defaults, batched and unbatched
input), plus what PyTorch lacks: asymmetric ``(begin, end)`` padding,
``"same"``/``"valid"``, dilation for average and Lp pooling, and
``layout="channels_last"``.  Each ``f`` has an ``f_backward(grad_output, x,
<f's arguments>, *, indices=None)`` returning dL/dx with x's shape and dtype.

Dtypes: float16/32/64 everywhere (float16 computed in float32 and rounded
once, or, for channels-first max rows on the short vectors, compared as halves);
int8/uint8/int32/int64 for max pooling, which keeps the dtype.  Average
and Lp pooling of integer input return float64.
"""

from __future__ import annotations

import functools

import numpy as np

from . import _cpu
from . import _geometry as geo
from . import _memo
from ._core import (Canon, as_array, canon_grad, canonical, check_shape, check_rank, check_grad, check_indices, compute_dtype,
                    covers, cf_ahead, cf_flat_args, cf_row_args, cf_short_taken, divisor, divisor_rows, exact_divisor_rows,
                    flat4, flat_multipliers, float_backward_input, interior_args, kernel_input, public, quad_rows, read_only, stream_ahead, tables, cl_ahead)
from ._spec import (AdaptiveSpec, adaptive_spec, is_int, norm_type_value, normalize_layout,
                    window_spec)
from .errors import PoolingError, PoolingTypeError

LP_ONNX, LP_TORCH, LP_MEAN = 0, 1, 2
# a divisor is named by ``divisor``'s mode and override
_VALID = ("valid", None)

# ----------------------------------------------------------------------------- reducers


def _out_dtype(cn: Canon, reducer: str) -> np.dtype:
    if cn.dtype.kind != "f":
        return cn.dtype if reducer == "max" else np.dtype(np.float64)
    return cn.dtype


def _finish(cn: Canon, out5: np.ndarray, axes, dtype, out=None) -> np.ndarray:
    res = out5.reshape(cn.user_shape(t.out for t in axes))
    return _deliver(res if res.dtype == dtype else res.astype(dtype), out)


def _deliver(res: np.ndarray, out):
    if out is None:
        return res
    if not np.shares_memory(res, out):
        np.copyto(out, res)  # float16 results, computed in float32
    return out


def check_out(out, shape, dtype, inputs, what="out"):
    """``out=``: a writeable, C-contiguous array of the result's exact shape and
    dtype that shares no memory with any input (fastpool never writes its
    inputs); ``what`` names it in the messages."""
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise PoolingTypeError(f"{what} must be a NumPy array or None, got {type(out).__name__}")
    if tuple(out.shape) != tuple(shape):
        raise PoolingError(f"{what} must have the result's shape {tuple(shape)}, got {tuple(out.shape)}")
    if out.dtype != dtype:
        raise PoolingTypeError(f"{what} must have the result's dtype {np.dtype(dtype).name}, got {out.dtype.name}")
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise PoolingError(f"{what} must be C-contiguous and writeable"
                           f" (C-contiguous: {out.flags.c_contiguous}, writeable: {out.flags.writeable})")
    for name, a in inputs.items():
        if isinstance(a, np.ndarray) and np.may_share_memory(out, a):
            raise PoolingError(f"{what} must not share memory with the input {name}: fastpool never writes its inputs")
    return out


def _target(out, shape5, dt) -> np.ndarray:
    """Where a kernel writes: the caller's ``out`` when it has the compute dtype."""
    if out is not None and out.dtype == dt:
        return out.reshape(shape5)
    return np.empty(shape5, dt)


def _half_max(cn: Canon, axes, out=None):
    """float16 channels-first rows on the short vectors: pooled on the bits,
    without a float32 copy of the input."""
    out5, xk, ok, _ = _bits_max(cn, axes, out)
    lo0, nt0, d0, lo1, nt1, d1, _, _, d2 = tables(axes)
    _, pl, lb, s, k = cf_row_args(axes)
    _cpu.pick(_cpu.cf_half_max_forward, xk, ok)(xk, ok, *_cf_dims(cn.x5, out5),
                                                lo0, nt0, d0, lo1, nt1, d1, d2, pl, lb, s, k, *cf_ahead(axes, cn.x5))
    return _finish(cn, out5, axes, cn.dtype, out)


@geo.per_plan
def _wide_args(axes, C: int, itemsize: int):
    """``wide_max_forward``'s geometry when it applies: stride 1 and dilation 1
    on H and W, no window on D, a window of ``_WIDE_FROM`` cells or more on one
    axis, padding shorter than the window, rows of 8+ cells in and out, and
    padded planes small enough for its three buffers; else None."""
    t0, t1, t2 = geo.padded3(axes)
    if t0.taps.max() != 1 or t0.out != t0.n:
        return None
    if max(t1.kernel, t2.kernel) < _WIDE_FROM:
        return None
    for t in (t1, t2):
        if (t.stride != 1 or t.kernel < 1 or (t.step != 1 and t.kernel > 1) or max(t.pads) >= t.kernel
                or t.out != t.n + t.pads[0] + t.pads[1] - t.kernel + 1):
            return None
    if min(t2.n, t2.out) * C < 8:
        return None
    if (t1.out + t1.kernel - 1) * (t2.out + t2.kernel - 1) * C * itemsize > _WIDE_PLANE_BYTES:
        return None
    return tuple(np.int64(v) for v in (t1.n, t2.n * C, t1.out, t2.out * C, C, t1.pads[0], t2.pads[0],
                                       t1.kernel, t2.kernel))


def _max(cn: Canon, axes, want_idx: bool, out=None, iout=None):
    """Max pooling into ``out`` (values) and, with ``want_idx``, ``iout``
    (indices), each allocated where None."""
    planes = None if want_idx else _global_planes(cn, axes)
    if planes is not None:
        r = _target(out, (planes.shape[0],), planes.dtype)
        _cpu.pick(_cpu.global_max_cf, planes, r)(planes, r, stream_ahead(planes))
        return _finish(cn, r, axes, _out_dtype(cn, "max"), out)
    if not want_idx and cn.x5.size:
        wide = _wide_args(axes, cn.x5.shape[4], cn.x5.dtype.itemsize)
        if wide is not None:
            out5, xk, ok, low = _bits_max(cn, axes, out)
            _cpu.pick(_cpu.wide_max_forward, xk, ok)(xk, ok, *wide, low)
            return _finish(cn, out5, axes, _out_dtype(cn, "max"), out)
    if not want_idx and cn.x5.shape[4] == 1 and cn.x5.size:
        short = cf_short_taken(axes)
        if short is not None:
            return _short_max(cn, axes, short, out)
        flat = cf_flat_args(axes, True)
        if flat is not None:
            return _flat_max(cn, axes, flat, out)
    if (not want_idx and cn.x5.dtype == np.float16 and cn.x5.shape[4] == 1 and cn.x5.size
            and cf_row_args(axes)[0] == 2):
        return _half_max(cn, axes, out)
    xin = kernel_input(cn)
    osp = [t.out for t in axes]
    out5 = _target(out, cn.canon_shape(osp), xin.dtype)
    if not want_idx:
        if out5.size and xin.shape[4] > 1 and _running_max_ok(axes, xin[0, 0].nbytes):
            t1, t2 = axes[-2], axes[-1]
            b, c = xin.shape[0] * xin.shape[1], xin.shape[4]
            _cpu.pick(_cpu.vh_max_forward, xin, out5)(xin.reshape(b, t1.n, -1), out5.reshape(b, t1.out, -1), np.int64(c),
                                t1.lo, t1.taps, np.int64(t1.taps.max()),
                                t2.lo, t2.taps, np.int64(t2.taps.max()))
        elif out5.size and xin.shape[4] >= _CL_DIRECT_FROM and quad_rows(axes):
            _cpu.pick(_cpu.cl_quad_max_forward, xin, out5)(xin, out5, tables(axes)[0], *cl_ahead(axes, xin))
        elif out5.size and xin.shape[4] >= _CL_DIRECT_FROM and _window_cells(axes) <= _CL_DIRECT_CELLS:
            _cpu.pick(_cpu.cl_max_forward, xin, out5)(xin, out5, *tables(axes), *cl_ahead(axes, xin, rows=True))
        elif out5.size and xin.shape[4] == 1:
            _cpu.pick(_cpu.cf_max_forward, xin, out5)(xin.reshape(-1), out5.reshape(-1), *_cf_dims(xin, out5),
                                                      *tables(axes), *cf_row_args(axes, True),
                                                      _lowest(xin.dtype), *cf_ahead(axes, xin))
        elif out5.size:
            _cpu.pick(_cpu.sep_max_forward, xin, out5)(flat4(xin), flat4(out5), np.int64(xin.shape[4]), *tables(axes),
                                 *interior_args(axes))
        return _finish(cn, out5, axes, _out_dtype(cn, "max"), out)
    idx5 = _target(iout, cn.canon_shape(osp), np.int64)
    vec = _argmax_args(xin, axes)
    if out5.size and vec is not None:
        _cpu.pick(_cpu.cf_argmax_forward, xin, out5)(xin.reshape(-1), out5.reshape(-1), idx5.reshape(-1),
                                                     *_cf_dims(xin, out5), *vec, _lowest(xin.dtype),
                                                     *cf_ahead(axes, xin))
    elif out5.size and xin.shape[4] == 1:
        _cpu.pick(_cpu.sep_argmax_forward, xin, out5)(xin[..., 0], out5[..., 0], idx5[..., 0], *tables(axes))
    elif out5.size:
        _cpu.pick(_cpu.cl_argmax_forward, xin, out5)(xin, out5, idx5, *tables(axes))
    out = _finish(cn, out5, axes, _out_dtype(cn, "max"), out)
    return out, (idx5.reshape(out.shape) if iout is None else iout)


def _bits_max(cn: Canon, axes, out):
    """The output and the flat input, output and max identity the max kernels
    on flat arrays take: float16 as its bits, compared as halves (see ``_half_max``)."""
    out5 = _target(out, cn.canon_shape([t.out for t in axes]), cn.x5.dtype)
    if cn.x5.dtype == np.float16:
        return out5, cn.x5.reshape(-1).view(np.uint16), out5.reshape(-1).view(np.uint16), _cpu._HALF_NEG_INF
    return out5, cn.x5.reshape(-1), out5.reshape(-1), _lowest(cn.x5.dtype)


def _flat_max(cn: Canon, axes, flat, out=None):
    out5, xk, ok, low = _bits_max(cn, axes, out)
    _cpu.pick(_cpu.cf_flat_max_forward, xk, ok)(xk, ok, *_cf_dims(cn.x5, out5)[:5], *_flat_dims(axes), *flat, low,
                                                *cf_ahead(axes, cn.x5))
    return _finish(cn, out5, axes, _out_dtype(cn, "max"), out)


def _short_max(cn: Canon, axes, short, out=None):
    out5, xk, ok, low = _bits_max(cn, axes, out)
    _cpu.pick(_cpu.cf_short_max_forward, xk, ok)(xk, ok, *_cf_dims(cn.x5, out5), *tables(axes)[:6], *short, low,
                                                 *cf_ahead(axes, cn.x5))
    return _finish(cn, out5, axes, _out_dtype(cn, "max"), out)


@geo.per_plan
def _flat_dims(axes):
    t0, t1, _ = geo.padded3(axes)
    return t0.lo, t0.taps, np.int64(t0.step), t1.lo, np.int64(t1.step)


@geo.per_plan
def _whole_planes(axes) -> bool:
    """Whether the plan has one window, and it reads every cell of the input
    once: adaptive pooling to size 1, a window as large as the input.  Its
    channels-first planes then take the global kernels (adaptive average 7 -> 1
    on (64, 2048, 7, 7): 6.2 -> 0.6 ms, two threads)."""
    return all(t.out == 1 and int(t.lo[0]) == 0 and int(t.taps[0]) == t.n and (t.step == 1 or t.n == 1)
               for t in axes)


@geo.per_plan
def _plane_divisor(axes, mode: str, override=None) -> float:
    """The divisor of a ``_whole_planes`` plan's one window."""
    return float(divisor(axes, mode, override)[0, 0, 0])


def _global_planes(cn: Canon, axes):
    """``_global_cf``'s planes where ``_whole_planes`` holds, else None."""
    return _global_cf(cn) if _whole_planes(axes) else None


def _avg(cn: Canon, axes, dv: tuple, out=None):
    planes = _global_planes(cn, axes)
    if planes is not None:
        # the one window's divisor: the cells, or the padded window's, or the override
        r = _target(out, (planes.shape[0],), compute_dtype(_out_dtype(cn, "avg")))
        _cpu.pick(_cpu.global_mean_cf, planes, r)(planes, r, _plane_divisor(axes, *dv), stream_ahead(planes))
        return _finish(cn, r, axes, _out_dtype(cn, "avg"), out)
    xin = kernel_input(cn)
    osp = [t.out for t in axes]
    dt = compute_dtype(_out_dtype(cn, "avg"))
    out5 = _target(out, cn.canon_shape(osp), dt)
    if out5.size:
        _sum_forward(xin, out5, 0, 1.0, 0, dv, 1.0, axes)
    return _finish(cn, out5, axes, _out_dtype(cn, "avg"), out)


def _lp(cn: Canon, axes, p: float, mode: int, dv: tuple, area: float, keep5=False, out=None):
    xin = kernel_input(cn)
    osp = [t.out for t in axes]
    dt = compute_dtype(_out_dtype(cn, "lp"))
    out5 = _target(out, cn.canon_shape(osp), dt)
    if out5.size:
        pmode = 2 if mode == LP_TORCH else 1
        fmode = {LP_ONNX: 1, LP_TORCH: 2, LP_MEAN: 3}[mode]
        _sum_forward(xin, out5, pmode, p, fmode, dv, area, axes)
    if keep5:
        return out5
    return _finish(cn, out5, axes, _out_dtype(cn, "lp"), out)


# Channels-last with at least this many channels reduces C-vectors per tap
# directly; fewer channels go through the row-buffer kernels.
_CL_DIRECT_FROM = 8

# The direct channels-last kernel reads every window cell per output; past this
# many cells the row-buffer kernel's 2K reads per output (K taps per axis) win.
_CL_DIRECT_CELLS = 16


def _cf_dims(xin, out5):
    # Python ints type as int64 like np.int64, the same compiled signature
    return xin.shape[1:4] + out5.shape[1:4]


def _argmax_args(x5, axes):
    """Geometry for the channels-first argmax rows (``_cpu.cf_argmax_forward``),
    or None where they do not apply: channels-last, uneven W windows, or a plane
    or row buffer of 2**30 cells or more (positions are int32)."""
    if x5.shape[4] != 1:
        return None
    return _argmax_geometry(axes)


@geo.per_plan
def _argmax_geometry(axes):
    t0, t1, t2 = geo.padded3(axes)
    if not t2.stride or t0.n * t1.n * t2.n >= 2 ** 30:
        return None
    _, pl, lb, s, k = cf_row_args(axes)
    if (lb // s + 1) * s >= 2 ** 30:
        return None
    return (t0.lo, t0.taps, np.int64(t0.step), t1.lo, t1.taps, np.int64(t1.step),
            pl, lb, s, k, np.int64(t2.step))


@functools.lru_cache(maxsize=None)
def _lowest(dt: np.dtype):
    """The max identity that fills a row buffer's padding cells."""
    return dt.type(-np.inf) if dt.kind == "f" else dt.type(np.iinfo(dt).min)


@geo.per_plan
def _window_cells(axes) -> int:
    return int(np.prod([int(t.taps.max()) for t in axes]))


# Running maxima serve channels-last maps from this window size where the wide
# kernel below does not (strides above 1, planes past its bound).  (The bound was
# measured on channels-first rows against the older separable loops: k5 18 vs
# 22 ms, a tie at k9, van Herk ahead at k13.)
_RUNNING_MAX_FROM = 9


# Stride-1 windows from this many taps on H or W take the sparse table
# (``wide_max_forward``).  (8, 256, 56, 56) float32 channels-first, against the
# row kernels, 1 thread: k3 and k4 even, k5 0.76x the time, k9 0.52x, k13 0.35x.
_WIDE_FROM = 5

# Its padded-plane bound: channels-last planes, 2 threads, against van Herk and
# the separable rows: 0.3-0.4x the time up to 1.2 MB planes, even at 1.35 MB
# (k5), 1.4-2.6x slower at 3.6-4 MB.
_WIDE_PLANE_BYTES = 1 << 20


# van Herk keeps two plane-sized buffers per running task: above this plane
# size they cost more memory than they save time (and stop fitting in L2)
_RUNNING_MAX_PLANE_BYTES = 1 << 18


@geo.per_plan
def _running_max_ok(axes, plane_bytes=0) -> bool:
    """van Herk applies: contiguous, overlapping windows on H or W (dilation 1),
    none on D, every window either full (K cells) or touching an end of its
    axis, and a plane small enough for the running buffers."""
    if len(axes) < 2 or plane_bytes > _RUNNING_MAX_PLANE_BYTES:
        return False
    if len(axes) == 3 and (axes[0].taps.max() != 1 or axes[0].out != axes[0].n):
        return False
    t1, t2 = axes[-2], axes[-1]
    if max(int(t1.taps.max()), int(t2.taps.max())) < _RUNNING_MAX_FROM:
        return False
    for t in (t1, t2):
        K = t.taps.max()
        if t.step != 1 and K > 1:
            return False
        if not np.all((t.taps == K) | (t.lo == 0) | (t.lo + t.taps == t.n)):
            return False
    # without overlap (global pooling, stride >= window) the direct loops read each cell once
    return any(t.out > 1 and int(t.lo[1] - t.lo[0]) < int(t.taps.max()) for t in (t1, t2))


# 2x2 channels-last windows that do not overlap read each tap in a pass
# of its own once the input is this large and a tap's channels this long:
# (8, 56, 56, 256) float32, 1 thread, 1.78x faster than one pass over all four
# taps (1.8x on 2 threads; (64, 14, 14, 512) 1.3x; 16 x 56 x 56 x 128 1.3x;
# 12.8 MB 1.05-1.6x); in cache (3.2-6.4 MB) one pass is 1.15-1.2x faster, and
# at 64 channels the two are even.  The four-tap pass interleaves four read
# streams a row apart; a software prefetch ahead of them did not help.  (A
# 3x3 stride-1 window's one pass is 1.3-1.6x faster than its tap passes at
# every size: it reuses each row.)
_CL_APART_BYTES = 8 << 20
_CL_APART_TAP_BYTES = 512


def _cl_taps_apart(xin, axes) -> bool:
    return (xin.nbytes >= _CL_APART_BYTES and xin.shape[4] * xin.itemsize >= _CL_APART_TAP_BYTES
            and _apart_windows(axes))


@geo.per_plan
def _apart_windows(axes) -> bool:
    """Whether the windows are 2 cells on H and W that never overlap."""
    return len(axes) >= 2 and all(t.kernel == 2 and t.stride >= t.step + 1 for t in axes[-2:])


# Windows with several taps on D take the separable kernel over fewer
# channels than this, and at any channel count when they overlap on H: its
# passes run along whole rows (W*C values) and then add each input row's
# depth taps once (``_cpu._DEEP_ROWS``), where the channels-last kernel's run
# over a few vectors of channels per tap, every tap of every window.
# Measured (float32, 2 threads, one process, paired), separable /
# channels-last on (N, 8, 56, 56, C): k3 s1 p1 0.55 at C=96, 0.56-0.58 at
# 128-256, 0.73 at 512; k3 s2 p1 0.53-0.70 at 96-256.  Without the overlap
# (k2 s2) the separable kernel's rows are read once and the channels-last
# kernel wins from 96 channels: 1.26 at 96, 0.89 at 256, 1.11 at 512.  Below
# 96 the separable kernel won either way even before its rows were vectorised
# (k2 s2 0.35-1.06, k3 0.21-0.76).
# (With one tap on D the channels-last kernel's whole-window passes win: 2-D
# k3 s1 p1 on (8, 56, 56, 256) 1.78x faster than the separable one.)
_CL_DEEP_BELOW = 96


@geo.per_plan
def _deep_rows(axes) -> tuple:
    """(several taps on D, windows overlapping on H) of a 3-D plan."""
    if len(axes) != 3 or int(axes[0].taps.max()) < 2:
        return False, False
    t = axes[1]
    ends = t.lo + (t.taps - 1) * t.step + 1
    return True, bool(np.any(t.lo[1:] < ends[:-1]))


def _deep_narrow(xin, axes) -> bool:
    deep, overlap = _deep_rows(axes)
    return deep and (overlap or xin.shape[4] < _CL_DEEP_BELOW)


# Plain float32 averages over at most this many taps add in float32 in the row kernels
# (channels-first, and channels-last through the separable rows), as the channels-last
# direct kernels and PyTorch's and onnxruntime's do, in an order fixed by the kernel: the
# taps of each of a window's columns (rows and depth planes, in an order of their own in
# each kernel), then across the columns, scaled by 1 / divisor in float64
# (tests/test_sum32.py; README). Their float64 adds cost three conversions a cell. Medians
# of three alternated runs, two threads: (8, 256, 56, 56) k3 s1 p1 2.9 -> 2.1 ms, (64,
# 512, 14, 14) 3.9 -> 3.2, (8, 256, 3136) 1-D 3.4 -> 3.0, (8, 32, 8, 56, 56) 4.9 -> 4.1,
# channels-last (8, 8, 56, 56, 32) 5.8 -> 4.3. Larger windows stay in float64, where
# float32 rounding grows with the taps.
SUM32_TAPS = 27
_ACC32, _ACC64 = np.empty(0, np.float32), np.empty(0, np.float64)


def _sum_acc(out5, axes, pmode, fmode) -> np.ndarray:
    """An empty array of the dtype the row kernels' sums add in."""
    if out5.dtype != np.float32 or pmode != 0 or fmode != 0:
        return _ACC64
    return _ACC32 if _window_cells(axes) <= SUM32_TAPS else _ACC64


def _divide_rows(rdiv, axes, dv, acc, out5, windows):
    """The rows a kernel divides float32 sums by: ``exact_divisor_rows``' where
    the sums and the output are float32 and the divisors allow (the same bits,
    fewer instructions), else the float64 multipliers ``rdiv``."""
    if acc.dtype != np.float32 or out5.dtype != np.float32:
        return rdiv
    exact = exact_divisor_rows(axes, windows, *dv)
    return rdiv if exact is None else exact


def _sum_forward(xin, out5, pmode, p, fmode, dv, area, axes, narrow=True):
    # narrow=False: the row kernels add in float64 whatever the window (the
    # average's backward keeps its float64 sums)
    rdiv, rat = divisor_rows(axes, *dv)
    acc = _sum_acc(out5, axes, pmode, fmode) if narrow else _ACC64
    # Lp sums of |x|^p overflow float32 (p >= 8 on float16-sized values): only the
    # plain sums take the channels-last kernel, which accumulates in the output's dtype
    if xin.shape[4] >= _CL_DIRECT_FROM and pmode == 0 and fmode == 0 and quad_rows(axes):
        _cpu.pick(_cpu.cl_quad_sum_forward, xin, out5)(xin, out5, rdiv, rat, tables(axes)[0],
                                                       _cl_taps_apart(xin, axes), *cl_ahead(axes, xin))
        return
    if xin.shape[4] >= _CL_DIRECT_FROM and pmode == 0 and not _deep_narrow(xin, axes):
        _cpu.pick(_cpu.cl_sum_forward, xin, out5)(xin, out5, pmode, float(p), fmode, rdiv, rat, float(area),
                                                  _cl_taps_apart(xin, axes), *tables(axes))
        return
    if xin.shape[4] == 1 and pmode == 0 and fmode == 0:
        short = cf_short_taken(axes)
        if short is not None:
            rdiv = _divide_rows(rdiv, axes, dv, acc, out5, 1)
            _cpu.pick(_cpu.cf_short_sum_forward, xin, out5)(xin.reshape(-1), out5.reshape(-1), *_cf_dims(xin, out5),
                                                            *tables(axes)[:6], *short, rdiv, rat, *cf_ahead(axes, xin),
                                                            acc)
            return
        flat = cf_flat_args(axes)
        mul = None if flat is None else flat_multipliers(axes, *dv)
        if mul is not None:
            _cpu.pick(_cpu.cf_flat_sum_forward, xin, out5)(xin.reshape(-1), out5.reshape(-1),
                                                           *_cf_dims(xin, out5)[:5], *_flat_dims(axes), *flat[:6], mul,
                                                           *cf_ahead(axes, xin), acc)
            return
    if xin.shape[4] == 1:
        plain = pmode == 0 and fmode == 0
        rargs = cf_row_args(axes, plain, plain)
        if plain and rargs[0] == 2:
            rdiv = _divide_rows(rdiv, axes, dv, acc, out5, 16)
        _cpu.pick(_cpu.cf_sum_forward, xin, out5)(xin.reshape(-1), out5.reshape(-1), *_cf_dims(xin, out5),
                                                  *tables(axes), *rargs, pmode, float(p), fmode, rdiv, rat,
                                                  float(area), *cf_ahead(axes, xin), acc)
        return
    _cpu.pick(_cpu.sep_sum_forward, xin, out5)(flat4(xin), flat4(out5), np.int64(xin.shape[4]), pmode, float(p), fmode,
                         rdiv, rat, float(area), *tables(axes), *interior_args(axes), acc)


def _grad_buffers(cn: Canon, grad_output, axes, op, out=None):
    float_backward_input(cn)
    osp = [t.out for t in axes]
    g = check_grad(grad_output, cn.user_shape(osp), op)
    dt = compute_dtype(cn.dtype)
    return canon_grad(g, cn, osp, dt), _target(out, cn.x5.shape, dt)


def _to_user(cn: Canon, gx5: np.ndarray, out=None) -> np.ndarray:
    gx = gx5.reshape(cn.shape)
    return _deliver(gx if gx.dtype == cn.dtype else gx.astype(cn.dtype), out)


def _max_backward(cn: Canon, axes, grad_output, indices, op, out=None):
    g5, gx5 = _grad_buffers(cn, grad_output, axes, op, out)
    osp = [t.out for t in axes]
    vec = _argmax_args(cn.x5, axes) if indices is None and gx5.size else None
    if vec is not None:
        xin = kernel_input(cn)
        _cpu.pick(_cpu.cf_argmax_backward, xin, gx5)(xin.reshape(-1), g5.reshape(-1), gx5.reshape(-1),
                                                     *_cf_dims(xin, g5), *vec, _lowest(xin.dtype))
        return _to_user(cn, gx5, out)
    idx = _max(cn, axes, True)[1] if indices is None else check_indices(indices, cn.user_shape(osp))
    scatter_indices(cn, g5, idx, gx5, osp)
    return _to_user(cn, gx5, out)


# A plane of this many outputs and more has the scatter ask for its indices and
# gradients ahead (``_core.stream_ahead``): (32, 64, 112, 112) and (8, 256, 56,
# 56) k3 s2 p1 0.82-0.92x the time on two threads; (64, 512, 14, 14)'s 49-output
# planes 0.98-1.09x.
_SCATTER_AHEAD_FROM = 256


def _scatter_ahead(idx5):
    plane = idx5.shape[1] * idx5.shape[2] * idx5.shape[3]
    return stream_ahead(idx5) if plane >= _SCATTER_AHEAD_FROM else np.int64(0)


def scatter_indices(cn: Canon, g5, idx, gx5, osp) -> None:
    """``gx5`` = dL/dx of ``out = x.flat_plane[idx]``, each plane added in output
    order; the range of ``idx`` is checked as the kernel reads it."""
    if not gx5.size:
        return
    idx5 = read_only(np.ascontiguousarray(idx, dtype=np.int64).reshape(cn.canon_shape(osp)))
    b, c = gx5.shape[0], gx5.shape[4]
    n_bad, first = _cpu.pick(_cpu.scatter_max_backward, g5, gx5)(g5.reshape(b, -1, c), idx5.reshape(b, -1, c),
                                                                gx5.reshape(b, -1, c), _scatter_ahead(idx5))
    if n_bad:
        raise PoolingError(f"indices must lie in [0, {gx5.shape[1] * gx5.shape[2] * gx5.shape[3]}) "
                           f"(flat positions in one input plane), got {first}")


@geo.per_plan
def _adjoint_box(axes, mode: str, override=None):
    """The average's adjoint as a forward pooling of grad_output, where one
    holds: stride 1 and dilation 1 (or one tap) on every axis, and one divisor
    ``d`` for every window.  Input cell ``i`` is read by the windows ``i + pb -
    K + 1 .. i + pb``: a window of K over grad_output padded by ``(K - 1 - pb,
    K - 1 - pe)``.  ``(axes of that pooling, d)`` or None.  Through the forward
    kernels it took 0.18-0.27x the time of ``sep_avg_backward`` channels-first
    and 0.53x channels-last (k3 s1 p1 on (8, 256, 56, 56), (32, 64, 112, 112),
    (64, 512, 14, 14), (8, 32, 8, 56, 56), (8, 56, 56, 256); two threads)."""
    d = divisor(axes, mode, override)
    if not d.size or d.min() != d.max():
        return None
    adj = []
    for a, t in enumerate(axes):
        K, (pb, pe) = t.kernel, t.pads
        if t.stride != 1 or K < 1 or (K > 1 and t.step != 1) or max(pb, pe) > K - 1:
            return None
        try:
            u = geo.window_axis(a, t.out, K, 1, 1, K - 1 - pb, K - 1 - pe, False)
        except PoolingError:
            return None
        if u.out != t.n:
            return None
        adj.append(u)
    return tuple(adj), float(d.flat[0])


def _avg_backward(cn: Canon, axes, grad_output, dv, op, out=None):
    g5, gx5 = _grad_buffers(cn, grad_output, axes, op, out)
    adj = _adjoint_box(axes, *dv) if gx5.size else None
    if adj is not None:
        _sum_forward(g5, gx5, 0, 1.0, 0, ("pad", adj[1]), 1.0, adj[0], narrow=False)
        return _to_user(cn, gx5, out)
    if gx5.size:
        p0, c0, p1, c1, _, _ = covers(axes)
        t2 = geo.padded3(axes)[2]
        _cpu.pick(_cpu.sep_avg_backward, g5, gx5)(flat4(g5), flat4(gx5), np.int64(gx5.shape[4]), *divisor_rows(axes, *dv),
                                                  p0, c0, p1, c1, t2.lo, t2.taps, np.int64(t2.step), *interior_args(axes))
    return _to_user(cn, gx5, out)


def _lp_backward(cn: Canon, axes, grad_output, p, mode, dv, area, op, out=None):
    g5, gx5 = _grad_buffers(cn, grad_output, axes, op, out)
    if gx5.size:
        out5 = _lp(cn, axes, p, mode, dv, area, keep5=True)
        _cpu.pick(_cpu.lp_backward, g5, gx5)(g5, kernel_input(cn), out5, gx5, float(p), mode, divisor(axes, *dv),
                                             float(area), *covers(axes))
    return _to_user(cn, gx5, out)


# ----------------------------------------------------------------------------- argument checks


def _bool(name, v):
    if isinstance(v, (bool, np.bool_)) or (is_int(v) and v in (0, 1)):
        return bool(v)
    raise PoolingTypeError(f"{name} must be a bool, got {v!r}")


def _divisor_override(v):
    if v is None:
        return None
    if not is_int(v):
        raise PoolingTypeError(f"divisor_override must be an int or None, got {v!r}")
    if v < 1:
        raise PoolingError(f"divisor_override must be >= 1, got {v!r}")
    return int(v)


def _lp_mode(torch_compat, power_mean):
    torch_compat = _bool("torch_compat", torch_compat)
    power_mean = _bool("power_mean", power_mean)
    if torch_compat and power_mean:
        raise PoolingError("torch_compat and power_mean are different Lp definitions; pick one")
    return LP_TORCH if torch_compat else (LP_MEAN if power_mean else LP_ONNX)


def _max_outs(return_indices, out) -> tuple:
    """``(want indices, values out, indices out)`` from a max pooling's
    ``return_indices`` and ``out=``: an array, or with indices a pair of them
    (either may be None: allocated)."""
    want = _bool("return_indices", return_indices)
    if out is None:
        return want, None, None
    pair = isinstance(out, (tuple, list))
    if not want:
        if pair:
            raise PoolingTypeError(f"out must be a NumPy array or None, got {type(out).__name__}; a pair"
                                   " (values, indices) needs return_indices=True")
        return False, out, None
    if not (pair and len(out) == 2):
        got = f"a {type(out).__name__} of {len(out)}" if pair else type(out).__name__
        raise PoolingTypeError(f"with return_indices=True, out must be a pair (values, indices) of arrays, got {got}")
    return True, out[0], out[1]


def _apart(iout, values):
    if iout is not None and values is not None and np.may_share_memory(iout, values):
        raise PoolingError("out[1] (indices) must not share memory with out[0] (values)")
    return iout


def _max_pooled_out(want, out, iout, cn: Canon, axes, x) -> tuple:
    """A max pooling's ``out=`` checked: the values array and, with indices,
    the int64 indices array of the same shape, apart from it and the input."""
    shape = cn.user_shape(t.out for t in axes)
    out = check_out(out, shape, _out_dtype(cn, "max"), {"x": x}, "out[0] (values)" if want else "out")
    return out, _apart(check_out(iout, shape, np.int64, {"x": x}, "out[1] (indices)"), out)


def _pooled_out(out, cn: Canon, axes, reducer: str, x):
    return check_out(out, cn.user_shape(t.out for t in axes), _out_dtype(cn, reducer), {"x": x})


def _grad_out(out, cn: Canon, grad_output, x, indices):
    if out is None:
        return None
    float_backward_input(cn)
    return check_out(out, cn.shape, cn.dtype, {"grad_output": grad_output, "x": x, "indices": indices})


def _named(fn, name, doc):
    fn.__name__ = name
    fn.__qualname__ = name
    fn.__doc__ = doc
    return public(name, 1 if name.endswith("_backward") else 0)(fn)


# ----------------------------------------------------------------------------- max


def _make_max(nd):
    def max_pool(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                 return_indices=False, *, layout="channels_first", out=None):
        spec = window_spec(nd, kernel_size, stride, padding, dilation, ceil_mode, layout)
        want, out, iout = _max_outs(return_indices, out)
        cn = canonical(x, nd, spec.layout, allow_int=True)
        axes = geo.plan(spec, cn.spatial)
        return _max(cn, axes, want, *_max_pooled_out(want, out, iout, cn, axes, x))

    def max_pool_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1,
                          ceil_mode=False, return_indices=False, *, layout="channels_first",
                          indices=None, out=None):
        spec = window_spec(nd, kernel_size, stride, padding, dilation, ceil_mode, layout)
        cn = canonical(x, nd, spec.layout, allow_int=True)
        out = _grad_out(out, cn, grad_output, x, indices)
        return _max_backward(cn, geo.plan(spec, cn.spatial), grad_output, indices, "max_pool", out)

    name = f"max_pool{nd}d"
    return (
        _named(_memo.remembered(max_pool), name,
               f"{nd}-D max pooling; NaN propagates, ties go to the first maximum.\n\n"
               f"With ``return_indices=True`` also returns int64 flat indices into each\n"
               f"unpadded input plane (PyTorch's convention); ``out=`` then takes a pair\n"
               f"``(values, indices)`` (either may be None)."),
        _named(max_pool_backward, name + "_backward",
               f"Gradient of :func:`{name}` w.r.t. x; pass ``indices`` to skip re-finding the argmax."),
    )


# ----------------------------------------------------------------------------- average


def _avg_div(count_include_pad, divisor_override):
    return ("pad" if count_include_pad else "valid", divisor_override)


def _make_avg(nd):
    def avg_pool(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None, *, dilation=1,
                 layout="channels_first", out=None):
        spec = window_spec(nd, kernel_size, stride, padding, dilation, ceil_mode, layout)
        cip = _bool("count_include_pad", count_include_pad)
        dov = _divisor_override(divisor_override)
        cn = canonical(x, nd, spec.layout, allow_int=True)
        axes = geo.plan(spec, cn.spatial)
        out = _pooled_out(out, cn, axes, "avg", x)
        return _avg(cn, axes, _avg_div(cip, dov), out)

    def avg_pool_backward(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                          count_include_pad=True, divisor_override=None, *, dilation=1,
                          layout="channels_first", indices=None, out=None):
        spec = window_spec(nd, kernel_size, stride, padding, dilation, ceil_mode, layout)
        cip = _bool("count_include_pad", count_include_pad)
        dov = _divisor_override(divisor_override)
        cn = canonical(x, nd, spec.layout, allow_int=True)
        out = _grad_out(out, cn, grad_output, x, indices)
        axes = geo.plan(spec, cn.spatial)
        return _avg_backward(cn, axes, grad_output, _avg_div(cip, dov), "avg_pool", out)

    name = f"avg_pool{nd}d"
    return (
        _named(_memo.remembered(avg_pool), name,
               f"{nd}-D average pooling. The divisor is ``divisor_override`` if given, else the\n"
               f"taps inside input and explicit padding (``count_include_pad=True``), else\n"
               f"the taps inside the input. Integer input gives float64."),
        _named(avg_pool_backward, name + "_backward", f"Gradient of :func:`{name}` w.r.t. x."),
    )


# ----------------------------------------------------------------------------- Lp


def _lp_scale(spec, mode):
    """Divisor (``divisor``'s mode and override) and kernel area for the Lp mode
    (unused entries are harmless)."""
    if mode == LP_TORCH:
        return ("pad", None), float(np.prod(spec.window))
    return _VALID, 1.0


def _make_lp(nd):
    def lp_pool(x, norm_type, kernel_size, stride=None, ceil_mode=False, *, padding=0,
                dilation=1, torch_compat=False, power_mean=False, layout="channels_first", out=None):
        p = norm_type_value(norm_type)
        mode = _lp_mode(torch_compat, power_mean)
        spec = window_spec(nd, kernel_size, stride, padding, dilation, ceil_mode, layout)
        cn = canonical(x, nd, spec.layout, allow_int=True)
        axes = geo.plan(spec, cn.spatial)
        out = _pooled_out(out, cn, axes, "lp", x)
        dv, area = _lp_scale(spec, mode)
        return _lp(cn, axes, p, mode, dv, area, out=out)

    def lp_pool_backward(grad_output, x, norm_type, kernel_size, stride=None, ceil_mode=False, *,
                         padding=0, dilation=1, torch_compat=False, power_mean=False,
                         layout="channels_first", indices=None, out=None):
        p = norm_type_value(norm_type)
        mode = _lp_mode(torch_compat, power_mean)
        spec = window_spec(nd, kernel_size, stride, padding, dilation, ceil_mode, layout)
        cn = canonical(x, nd, spec.layout, allow_int=True)
        out = _grad_out(out, cn, grad_output, x, indices)
        axes = geo.plan(spec, cn.spatial)
        dv, area = _lp_scale(spec, mode)
        return _lp_backward(cn, axes, grad_output, p, mode, dv, area, "lp_pool", out)

    name = f"lp_pool{nd}d"
    return (
        _named(_memo.remembered(lp_pool), name,
               f"{nd}-D power-average pooling.\n\n"
               f"Default: ONNX ``LpPool``, ``(sum |x|^p)^(1/p)`` over the taps inside the input.\n"
               f"``torch_compat=True``: exactly ``torch.nn.functional.lp_pool{nd}d`` (signed x^p;\n"
               f"partial ceil-mode windows scaled by the full kernel area).\n"
               f"``power_mean=True``: ``(mean |x|^p)^(1/p)``, from average (p=1) to max (p->inf)."),
        _named(lp_pool_backward, name + "_backward",
               f"Gradient of :func:`{name}` w.r.t. x (0 where a window's sum is 0)."),
    )


# ----------------------------------------------------------------------------- adaptive


def _make_adaptive(nd):
    def adaptive_avg_pool(x, output_size, *, layout="channels_first", out=None):
        spec = adaptive_spec(nd, output_size, layout)
        cn = canonical(x, nd, spec.layout, allow_int=True)
        axes = geo.plan(spec, cn.spatial)
        out = _pooled_out(out, cn, axes, "avg", x)
        return _avg(cn, axes, _VALID, out)

    def adaptive_avg_pool_backward(grad_output, x, output_size, *, layout="channels_first",
                                   indices=None, out=None):
        spec = adaptive_spec(nd, output_size, layout)
        cn = canonical(x, nd, spec.layout, allow_int=True)
        out = _grad_out(out, cn, grad_output, x, indices)
        axes = geo.plan(spec, cn.spatial)
        return _avg_backward(cn, axes, grad_output, _VALID, "adaptive_avg_pool", out)

    def adaptive_max_pool(x, output_size, return_indices=False, *, layout="channels_first", out=None):
        spec = adaptive_spec(nd, output_size, layout)
        want, out, iout = _max_outs(return_indices, out)
        cn = canonical(x, nd, spec.layout, allow_int=True)
        axes = geo.plan(spec, cn.spatial)
        return _max(cn, axes, want, *_max_pooled_out(want, out, iout, cn, axes, x))

    def adaptive_max_pool_backward(grad_output, x, output_size, return_indices=False, *,
                                   layout="channels_first", indices=None, out=None):
        spec = adaptive_spec(nd, output_size, layout)
        cn = canonical(x, nd, spec.layout, allow_int=True)
        out = _grad_out(out, cn, grad_output, x, indices)
        return _max_backward(cn, geo.plan(spec, cn.spatial), grad_output, indices, "adaptive_max_pool", out)

    bins = ("Bins follow PyTorch: ``start = floor(i*n/out)``, ``end = ceil((i+1)*n/out)``;\n"
            "``None`` in ``output_size`` keeps that axis's size.")
    a, m = f"adaptive_avg_pool{nd}d", f"adaptive_max_pool{nd}d"
    return (
        _named(_memo.remembered(adaptive_avg_pool), a, f"{nd}-D adaptive average pooling. " + bins),
        _named(adaptive_avg_pool_backward, a + "_backward", f"Gradient of :func:`{a}` w.r.t. x."),
        _named(_memo.remembered(adaptive_max_pool), m, f"{nd}-D adaptive max pooling. " + bins),
        _named(adaptive_max_pool_backward, m + "_backward", f"Gradient of :func:`{m}` w.r.t. x."),
    )


max_pool1d, max_pool1d_backward = _make_max(1)
max_pool2d, max_pool2d_backward = _make_max(2)
max_pool3d, max_pool3d_backward = _make_max(3)
avg_pool1d, avg_pool1d_backward = _make_avg(1)
avg_pool2d, avg_pool2d_backward = _make_avg(2)
avg_pool3d, avg_pool3d_backward = _make_avg(3)
lp_pool1d, lp_pool1d_backward = _make_lp(1)
lp_pool2d, lp_pool2d_backward = _make_lp(2)
lp_pool3d, lp_pool3d_backward = _make_lp(3)
(adaptive_avg_pool1d, adaptive_avg_pool1d_backward,
 adaptive_max_pool1d, adaptive_max_pool1d_backward) = _make_adaptive(1)
(adaptive_avg_pool2d, adaptive_avg_pool2d_backward,
 adaptive_max_pool2d, adaptive_max_pool2d_backward) = _make_adaptive(2)
(adaptive_avg_pool3d, adaptive_avg_pool3d_backward,
 adaptive_max_pool3d, adaptive_max_pool3d_backward) = _make_adaptive(3)


# ----------------------------------------------------------------------------- global


def _global_cf(cn: Canon):
    """Channels-first global pooling reduces contiguous planes: (B, S) views."""
    if cn.layout != "channels_first" or cn.x5.size == 0:
        return None
    xin = kernel_input(cn)
    return xin.reshape(xin.shape[0], -1)


def _global(x, layout, allow_int=True):
    layout = normalize_layout(layout)
    cn = canonical(x, None, layout, allow_int=allow_int)
    if len(cn.spatial) > 3:
        raise PoolingError(f"x must have 1 to 3 spatial axes, got {len(cn.spatial)}")
    return cn, geo.plan("global", cn.spatial)


def _global_out(out, cn: Canon, keepdims, dtype, x, what="out"):
    """``out=`` of a global pooling: the result's shape (``keepdims`` or not) and
    dtype; returns it and its keepdims view, where the kernels write."""
    if out is None:
        return None, None
    shape = cn.user_shape((1,) * len(cn.spatial)) if _bool("keepdims", keepdims) else cn.lead + cn.trail
    out = check_out(out, shape, dtype, {"x": x}, what)
    return out, out.reshape(cn.user_shape((1,) * len(cn.spatial)))


def _squeeze(cn: Canon, out, keepdims):
    if _bool("keepdims", keepdims):
        return out
    return out.reshape(cn.lead + cn.trail)


def _unsqueezed(cn: Canon, grad_output, keepdims):
    g = as_array(grad_output, "grad_output")
    if not _bool("keepdims", keepdims):
        want = cn.lead + cn.trail
        if tuple(g.shape) != want:
            raise PoolingError(f"grad_output must have the forward output's shape {want}, got {tuple(g.shape)}")
        return g.reshape(cn.user_shape((1,) * len(cn.spatial)))
    return g


@public("global_avg_pool")
@_memo.remembered
def global_avg_pool(x, *, keepdims=True, layout="channels_first", out=None):
    """Mean over every spatial axis: ``(N, C, *spatial) -> (N, C, 1, ...)`` (or ``(N, C)``)."""
    cn, axes = _global(x, layout)
    out, o5 = _global_out(out, cn, keepdims, _out_dtype(cn, "avg"), x)
    # one window over each whole plane: _avg takes the global kernel where it applies
    res = _avg(cn, axes, _VALID, o5)
    return out if out is not None else _squeeze(cn, res, keepdims)


@public("global_avg_pool_backward", 1)
def global_avg_pool_backward(grad_output, x, *, keepdims=True, layout="channels_first", indices=None,
                             out=None):
    """Gradient of :func:`global_avg_pool` w.r.t. x."""
    cn, axes = _global(x, layout)
    out = _grad_out(out, cn, grad_output, x, indices)
    g = _unsqueezed(cn, grad_output, keepdims)
    return _avg_backward(cn, axes, g, _VALID, "global_avg_pool", out)


@public("global_max_pool")
@_memo.remembered
def global_max_pool(x, *, keepdims=True, return_indices=False, layout="channels_first", out=None):
    """Max over every spatial axis (NaN propagates, first maximum wins)."""
    want, out, iout = _max_outs(return_indices, out)
    cn, axes = _global(x, layout)
    out, o5 = _global_out(out, cn, keepdims, _out_dtype(cn, "max"), x, "out[0] (values)" if want else "out")
    iout, i5 = _global_out(iout, cn, keepdims, np.int64, x, "out[1] (indices)")
    _apart(iout, out)
    res = _max(cn, axes, want, o5, i5)
    if isinstance(res, tuple):
        return (out if out is not None else _squeeze(cn, res[0], keepdims),
                iout if iout is not None else _squeeze(cn, res[1], keepdims))
    return out if out is not None else _squeeze(cn, res, keepdims)


@public("global_max_pool_backward", 1)
def global_max_pool_backward(grad_output, x, *, keepdims=True, return_indices=False,
                             layout="channels_first", indices=None, out=None):
    """Gradient of :func:`global_max_pool` w.r.t. x."""
    cn, axes = _global(x, layout)
    out = _grad_out(out, cn, grad_output, x, indices)
    g = _unsqueezed(cn, grad_output, keepdims)
    if indices is not None:
        indices = _unsqueezed(cn, indices, keepdims)
    return _max_backward(cn, axes, g, indices, "global_max_pool", out)


@public("global_lp_pool")
@_memo.remembered
def global_lp_pool(x, norm_type=2.0, *, keepdims=True, layout="channels_first", out=None):
    """ONNX ``GlobalLpPool``: ``(sum |x|^p)^(1/p)`` over every spatial axis."""
    p = norm_type_value(norm_type)
    cn, axes = _global(x, layout)
    out, o5 = _global_out(out, cn, keepdims, _out_dtype(cn, "lp"), x)
    planes = _global_cf(cn)
    if planes is None:
        res = _lp(cn, axes, p, LP_ONNX, _VALID, 1.0, out=o5)
    else:
        r = _target(o5, (planes.shape[0],), compute_dtype(_out_dtype(cn, "lp")))
        _cpu.pick(_cpu.global_lp_cf, planes, r)(planes, r, p)
        res = _finish(cn, r, axes, _out_dtype(cn, "lp"), o5)
    return out if out is not None else _squeeze(cn, res, keepdims)


@public("global_lp_pool_backward", 1)
def global_lp_pool_backward(grad_output, x, norm_type=2.0, *, keepdims=True,
                            layout="channels_first", indices=None, out=None):
    """Gradient of :func:`global_lp_pool` w.r.t. x."""
    p = norm_type_value(norm_type)
    cn, axes = _global(x, layout)
    out = _grad_out(out, cn, grad_output, x, indices)
    g = _unsqueezed(cn, grad_output, keepdims)
    return _lp_backward(cn, axes, g, p, LP_ONNX, _VALID, 1.0, "global_lp_pool", out)


def output_shape(spec, x_shape, nd=None):
    """The output shape a spec gives for an input shape (no data needed)."""
    if isinstance(spec, AdaptiveSpec) or hasattr(spec, "window"):
        nd = spec.nd
    layout = spec.layout if hasattr(spec, "layout") else "channels_first"
    x_shape = check_shape(x_shape)
    if len(x_shape) not in (nd + 1, nd + 2):
        raise PoolingError(f"input_shape must be {nd + 2}-D (batched) or {nd + 1}-D (unbatched) for "
                           f"{nd}-D pooling, got {len(x_shape)}-D: {x_shape}")
    check_rank(x_shape, nd, "input_shape")
    sp = x_shape[len(x_shape) - nd:] if layout == "channels_first" else x_shape[len(x_shape) - nd - 1:-1]
    axes = geo.plan(spec, sp)
    if layout == "channels_first":
        return x_shape[: len(x_shape) - nd] + tuple(t.out for t in axes)
    return x_shape[: len(x_shape) - nd - 1] + tuple(t.out for t in axes) + x_shape[-1:]
