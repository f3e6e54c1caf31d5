"""Numba CPU kernels.

Every kernel works on a canonical 5-D view ``(B, D, H, W, C)``: channels-first
input is ``(N*C, D, H, W, 1)``, channels-last is ``(N, D, H, W, C)``, and 1-D and
2-D inputs have singleton ``D``/``H``.  Geometry arrives as per-axis tables
(see ``_geometry``), so one kernel per reducer serves fixed, padded, dilated,
ceil-mode, adaptive and global pooling; the kernels only choose how to walk
the windows fast (row buffers, channel vectors, running maxima).

Every output element is computed by one thread in an order fixed by the
geometry, never by the thread count, so results are bit-identical for any
number of threads: backward passes gather per input cell, or scatter within
one plane per task.  Sums accumulate in float64 and are rounded once, except
the channels-last direct kernel, which accumulates in the output's precision
in the window's row-major order, as PyTorch's channels-last kernel does.
"""

from __future__ import annotations

import hashlib
import os
import types
from functools import partial

import numba
import numpy as np
from llvmlite import ir as llir
from numba import njit, prange, typeof
from numba import types as nbtypes
from numba._dispatcher import compute_fingerprint as _fingerprint
from numba.core import cgutils
from numba.core.caching import FunctionCache
from numba.core.runtime import nrt
from numba.extending import intrinsic
from numba.np.ufunc.parallel import _launch_threads

from . import _memo, _simd

_CACHE = os.environ.get("FASTPOOL_NUMBA_CACHE", "1") != "0"


class _LoadCache(FunctionCache):
    """Numba's disk cache, loading without refreshing the target context first.

    ``Cache.load_overload`` refreshes it, which imports and installs every
    typing and lowering registry (50-odd modules): 0.1-0.15 s of the first
    call in a new process, against 0.1 s for loading the code itself.  Only
    compiling needs them, and Numba's compiler refreshes both contexts before
    it compiles, so a cache miss still finds them; running loaded code needs
    Numba's runtime, initialised here as the refresh would."""

    def load_overload(self, sig, target_context):
        nrt.rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)


def cached_jit(**options):
    """``njit(**options)``, cached on disk through ``_LoadCache`` unless
    ``FASTPOOL_NUMBA_CACHE=0``."""
    def wrap(f):
        d = njit(**options)(f)
        if _CACHE and hasattr(d, "enable_caching"):  # not with NUMBA_DISABLE_JIT
            d._cache = _LoadCache(d.py_func)
        return d
    return wrap


_jit = cached_jit(parallel=True, nogil=True, fastmath=False)


# ----------------------------------------------------------------------------- chunked kernels
#
# A ``parallel=True`` kernel links the code of every function its prange body
# calls, then optimises and emits all of it again in each of the modules Numba
# builds for it (the gufunc, its two wrappers, the kernel): cf_max_forward
# took 20 s per dtype to compile that way, its body alone 8 s.  So the row
# kernels are written as one chunk of their rows, ``body(ch, nch, *args)``
# doing chunk ``ch`` of ``nch``, and compiled once, serially.  The serial path
# calls the body with (0, 1); the parallel path hands the body's address to
# ``_run_chunks``, whose prange over the chunks calls it through the pointer
# and so links none of it.  A body does nothing on a chunk past its tasks.

# Chunks: several a thread balance uneven rows, but each allocates its buffers
# (a body call each): 4 a thread measured as fast as 64 chunks on (8, 256, 56,
# 56) inputs and cut a (1, 16, 32, 32) call from 26 to 9 us.  Numba's thread
# count, not the number in use: asking for that costs 1.5 us a call.
_NCH = min(64, 4 * numba.config.NUMBA_NUM_THREADS)
# float16 max computes on halves where the CPU can (``_cf_half_max_native``)
_HALVES = _simd.has_avx512fp16()
# The channels-first average rows (``_cf_avg_vec``) ask ahead (``_core.cf_ahead``)
# on rows up to this many bytes.  On the 2-vCPU Xeon, k3 s1 p1 averages of
# 103 MB, two threads, alternated: 112-cell rows 0.89x the time asking (13.8-14.6
# -> 12.4-13.1 ms), 224-cell rows 0.85-0.97x, 448-cell rows even; the Zen 5
# machine measured 224-cell rows 1.34x slower asking.
_AVG_ASK_ROW_BYTES = 512


@intrinsic
def _call_body(typingctx, addr, ch, nch, args):
    """``body(ch, nch, *args)`` for the compiled body at ``addr``."""
    argtys = (nbtypes.int64, nbtypes.int64) + tuple(args.types)

    def codegen(context, builder, sig, llargs):
        a, c, n, tup = llargs
        fnty = context.call_conv.get_function_type(nbtypes.none, argtys)
        fn = builder.inttoptr(a, fnty.as_pointer())
        status, _ = context.call_conv.call_function(builder, fn, nbtypes.none, argtys,
                                                    [c, n] + cgutils.unpack_tuple(builder, tup))
        with builder.if_then(status.is_error, likely=False):
            context.call_conv.return_status_propagate(builder, status)
        return context.get_dummy_value()

    return nbtypes.none(nbtypes.int64, nbtypes.int64, nbtypes.int64, args), codegen


@intrinsic
def _framed(typingctx, addr, args):
    """-> (adapter, frame): ``addr`` and ``args`` stored in the calling
    function's frame, and the address of ``adapter(ch, nch, frame)``, which
    calls ``body(ch, nch, *args)`` for the body at ``addr`` from there.  The
    parallel driver then has one signature for every body."""
    argtys = (nbtypes.int64, nbtypes.int64) + tuple(args.types)

    def codegen(context, builder, sig, llargs):
        a, tup = llargs
        # The arrays go to the body without their meminfo, as Numba's own
        # parallel (gufunc) wrappers pass them: every view a body takes then
        # skips the reference count, an atomic update of one counter that the
        # threads' views of the same array all share.  The caller's arguments
        # keep the arrays alive for the call.  (With it, cl_sum_forward on
        # (8, 8, 56, 56, 32) float32, k3 s1 p1, took 48-65 ms against 20.)
        vals = cgutils.unpack_tuple(builder, tup)
        for i, ty in enumerate(args.types):
            if isinstance(ty, nbtypes.Array):
                ary = context.make_array(ty)(context, builder, value=vals[i])
                ary.meminfo = cgutils.get_null_value(ary.meminfo.type)
                vals[i] = ary._getvalue()
        tup = context.make_tuple(builder, sig.args[1], vals)
        i32 = llir.IntType(32)
        st = llir.LiteralStructType([llir.IntType(64), context.get_value_type(sig.args[1])])
        frame = cgutils.alloca_once(builder, st)
        builder.store(a, builder.gep(frame, [i32(0), i32(0)]))
        builder.store(tup, builder.gep(frame, [i32(0), i32(1)]))
        cc = context.call_conv
        name = "fastpool_adapter_" + hashlib.sha1(str(argtys).encode()).hexdigest()[:16]
        adapter = cgutils.get_or_insert_function(builder.module, cc.get_function_type(nbtypes.none, (nbtypes.int64,) * 3),
                                                 name)
        if adapter.is_declaration:
            adapter.linkage = "internal"
            ab = llir.IRBuilder(adapter.append_basic_block("entry"))
            ch, nch, p = cc.get_arguments(adapter)
            sp = ab.inttoptr(p, st.as_pointer())
            body = ab.inttoptr(ab.load(ab.gep(sp, [i32(0), i32(0)])), cc.get_function_type(nbtypes.none, argtys).as_pointer())
            vals = cgutils.unpack_tuple(ab, ab.load(ab.gep(sp, [i32(0), i32(1)])))
            status, _ = cc.call_function(ab, body, nbtypes.none, argtys, [ch, nch] + vals)
            with cgutils.if_unlikely(ab, status.is_error):
                cc.return_status_propagate(ab, status)
            cc.return_value(ab, context.get_dummy_value())
        return context.make_tuple(builder, sig.return_type,
                                  [builder.ptrtoint(adapter, llir.IntType(64)), builder.ptrtoint(frame, llir.IntType(64))])

    return nbtypes.UniTuple(nbtypes.int64, 2)(addr, args), codegen


@cached_jit(parallel=True, nogil=True)
def _drive(adapter, nch, frame):
    for ch in prange(nch):
        _call_body(adapter, np.int64(ch), nch, (frame,))


@cached_jit(nogil=True)
def _run_chunks(addr, nch, args):
    """``body(ch, nch, *args)`` for every chunk ``ch`` of ``nch``, in parallel,
    for the body at ``addr``.  Compiled per signature of ``args`` but serial and
    small (0.2 s); the prange, whose compiling took 0.7-1.6 s a signature
    when it took ``args`` itself, is compiled once."""
    adapter, frame = _framed(addr, args)
    if nch == 1:
        _call_body(adapter, np.int64(0), np.int64(1), (frame,))
    else:
        _drive(adapter, nch, frame)


class Chunked:
    """A kernel compiled as one chunk of its work (see above): ``k(*args)``
    runs its chunks in parallel, ``k.serial(*args)`` all of it in the calling
    thread."""

    def __init__(self, py_body, fastmath=False):
        self.py_func = py_body
        self.__name__ = py_body.__name__
        self.__doc__ = py_body.__doc__
        self.body = cached_jit(nogil=True, fastmath=fastmath)(py_body)
        self._addresses = {}

    def __call__(self, *args, _nch=_NCH):
        # Numba's own dispatch key: arguments with equal fingerprints get the
        # same compiled body
        key = _fingerprint(args)
        addr = self._addresses.get(key)
        if addr is None:
            addr = self._addresses[key] = self._address(args)
        _run_chunks(addr, _nch, args)

    def _address(self, args):
        # _run_chunks loaded from Numba's cache does not start the thread pool
        # that _drive's prange needs (compiling it does): a call before any
        # other parallel code in the process crashed
        _launch_threads()
        sig = (nbtypes.int64, nbtypes.int64) + tuple(typeof(a) for a in args)
        self.body.compile(sig)
        cres = self.body.overloads[sig]
        return cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)

    def serial(self, *args):
        self.body(0, 1, *args)

    def one_chunk(self, *args):
        """``serial``, through ``_run_chunks`` (arrays without meminfo, see
        ``_framed``): 2-5 us more a call, 1.5x faster on (8, 8, 56, 56, 32)
        channels-last k3 averages."""
        self(*args, _nch=1)


# Scratch arrays a body allocates carry a meminfo, and Numba takes and drops a
# reference (an atomic update) each time one is passed to an inlined helper or
# swapped between variables.  A body works on an unowned alias of each
# (``_unowned``), whose reference counting is a call that finds no meminfo,
# and keeps the owner alive past its last use (``_keep``).


@intrinsic
def _unowned(typingctx, a):
    """``a`` without its meminfo (see above); valid while ``a`` lives."""
    if not isinstance(a, nbtypes.Array):
        return None

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, value=args[0])
        ary.meminfo = cgutils.get_null_value(ary.meminfo.type)
        return ary._getvalue()

    return a(a), codegen


@intrinsic
def _keep(typingctx, a):
    """Nothing: a use of ``a`` (arrays, or a tuple of them) here, so that Numba
    frees them no earlier."""

    def codegen(context, builder, sig, args):
        return context.get_dummy_value()

    return nbtypes.none(a), codegen


@njit(inline="always")
def _lp_term(v, p, signed):
    if p == 1.0:
        return v if signed else abs(v)
    if p == 2.0:
        return v * v
    return v ** p if signed else abs(v) ** p


# ----------------------------------------------------------------------------- Lp backward
#
# Not separable (each window's gradient scales by its own output), so each
# input cell gathers over the outputs that read it through the inverse tables.


@Chunked
def lp_backward(ch, nch, g, x, out, gx, p, mode, div, area, p0, c0, p1, c1, p2, c2):
    """Gradient of ``lp_forward`` for the same ``mode``; 0 where a window's sum is 0."""
    B, D, H, W, C = gx.shape
    n = B * D * H
    for f in range(ch * n // nch, (ch + 1) * n // nch):
        b = f // (D * H)
        r = f - b * (D * H)
        z = r // H
        y = r - z * H
        for xx in range(W):
            for c in range(C):
                v = np.float64(x[b, z, y, xx, c])
                if mode == 1:
                    # d/dv of v^p, PyTorch's pow backward: p * v^(p-1)
                    dv = p * v ** (p - 1.0) if p != 1.0 else 1.0
                else:
                    av = abs(v)
                    if av == 0.0:
                        dv = 0.0
                    elif p == 1.0:
                        dv = 1.0 if v > 0 else -1.0
                    else:
                        dv = av ** (p - 1.0) * (1.0 if v > 0 else -1.0)
                acc = 0.0
                for a in range(p0[z], p0[z + 1]):
                    od = c0[a]
                    for e in range(p1[y], p1[y + 1]):
                        oh = c1[e]
                        for q in range(p2[xx], p2[xx + 1]):
                            ow = c2[q]
                            o = np.float64(out[b, od, oh, ow, c])
                            go = np.float64(g[b, od, oh, ow, c])
                            if mode == 1:
                                # out = A^(1/p), A = sum v^p * area / div
                                a_ = o ** p
                                if a_ != 0.0:
                                    acc += go * (1.0 / p) * o / a_ * area / div[od, oh, ow] * dv
                            elif o != 0.0:
                                t = go * o ** (1.0 - p) * dv
                                if mode == 2:
                                    t = t / div[od, oh, ow]
                                acc += t
                gx[b, z, y, xx, c] = acc


# ----------------------------------------------------------------------------- separable fast paths
#
# A max or a sum over a product window is separable: reduce the window's rows
# (D and H taps) into a row buffer with contiguous, vectorisable loops over the
# whole row (W*C values), then reduce along W.  Along W, outputs whose windows
# are full and evenly spaced (the "interior", from ``_geometry.interior``) run
# tap-outer / output-inner; the clipped border outputs walk the table.  These
# serve channels-last maps with too few channels for the direct C-vector
# kernels; channels-first rows have their own kernels below.  Rows are handed
# out in chunks so each chunk allocates its buffers once.


@njit(inline="always")
def _maxnan(a, b):
    # PyTorch's update: a later value wins if larger or NaN, so NaN propagates;
    # bitwise '|' keeps it one select (no short-circuit branch) for the vectoriser
    return b if (b > a) | (b != b) else a


@njit(inline="always")
def _row_of(r, OD, OH):
    b = r // (OD * OH)
    q = r - b * (OD * OH)
    od = q // OH
    return b, od, q - od * OH


@njit(inline="always")
def _next_row(b, od, oh, OD, OH):
    # stepping costs less than three 64-bit divisions per row (measured ~10% on k3 rows)
    oh += 1
    if oh == OH:
        oh = 0
        od += 1
        if od == OD:
            od = 0
            b += 1
    return b, od, oh


@njit(inline="always")
def _chunks(total, nch):
    # no more chunks than tasks; one when there are none
    return max(min(total, nch), 1)


@njit(inline="always")
def _copy(dst, src):
    # a loop, not ``dst[:] = src``: outside a prange Numba compiles slice
    # assignment to a generic strided copy (kernels 1.1-1.25x slower)
    for i in range(dst.size):
        dst[_u(i)] = src[_u(i)]


@njit(inline="always")
def _fill(dst, v):
    for i in range(dst.size):
        dst[_u(i)] = v


@njit(inline="always")
def _u(i):
    # Numba wraps negative indices unless the index type is unsigned; that
    # check in a loop body blocks vectorisation (measured 5x on row loops)
    return np.uint64(i)


@njit(inline="always")
def _hmax_border(buf, orow, C, lo2, nt2, d2, o0, o1):
    for ow in range(o0, o1):
        for c in range(C):
            m = buf[_u(lo2[ow] * C + c)]
            for k in range(1, nt2[ow]):
                m = _maxnan(m, buf[_u((lo2[ow] + k * d2) * C + c)])
            orow[_u(ow * C + c)] = m


@njit(inline="always")
def _hmax_row(buf, orow, C, OW, lo2, nt2, d2, ia, ib, ibase, istep, K):
    """Max along W of a row buffer: interior C-vectors tap-outer, borders by table."""
    e = d2 * C
    for ow in range(ia, ib):
        s0 = (ibase + ow * istep) * C
        if K == 3:
            # one pass over the channels: with a pass a tap, loading and
            # storing the output each time, (8, 32, 8, 56, 56) channels-last
            # k3 s2 p1 took 2.1-2.4 ms against 1.4-1.6 (two threads)
            for c in range(C):
                m = _maxnan(buf[_u(s0 + c)], buf[_u(s0 + e + c)])
                orow[_u(ow * C + c)] = _maxnan(m, buf[_u(s0 + 2 * e + c)])
            continue
        if K == 2:
            for c in range(C):
                orow[_u(ow * C + c)] = _maxnan(buf[_u(s0 + c)], buf[_u(s0 + e + c)])
            continue
        for c in range(C):
            orow[_u(ow * C + c)] = buf[_u(s0 + c)]
        for k in range(1, K):
            s1 = s0 + k * d2 * C
            for c in range(C):
                orow[_u(ow * C + c)] = _maxnan(orow[_u(ow * C + c)], buf[_u(s1 + c)])
    _hmax_border(buf, orow, C, lo2, nt2, d2, 0, ia)
    _hmax_border(buf, orow, C, lo2, nt2, d2, ib, OW)


@njit(inline="always")
def _hsum_border(buf, acc, C, lo2, nt2, d2, o0, o1):
    for ow in range(o0, o1):
        for c in range(C):
            s = acc.dtype.type(0)
            for k in range(nt2[ow]):
                s += buf[_u((lo2[ow] + k * d2) * C + c)]
            acc[_u(ow * C + c)] = s


@Chunked
def sep_max_forward(ch, nch, x, out, C, lo0, nt0, d0, lo1, nt1, d1, lo2, nt2, d2,
                    ia, ib, ibase, istep, K):
    B, D, H, WC = x.shape
    OD, OH, OWC = out.shape[1], out.shape[2], out.shape[3]
    OW = OWC // C
    total = B * OD * OH
    nch = _chunks(total, nch)
    if ch >= nch:
        return
    buf = np.empty(WC, x.dtype)
    xf = x.reshape(-1)
    r0, r1, b, od, oh = _row_task(ch, nch, total, OD, OH)
    for r in range(r0, r1):
        if r > r0:
            b, od, oh = _next_row(b, od, oh, OD, OH)
        if WC >= 8:
            # _simd's vectors, in the loop's tap order: (8, 32, 8, 56, 56)
            # channels-last k3 s2 p1 7.9 -> 2.2 ms on an AVX2 AMD EPYC, two
            # threads (same process); LLVM's loop below ran it at a quarter of that
            _simd.max_rows(xf, ((b * D + lo0[od]) * H + lo1[oh]) * WC, d1 * WC, nt1[oh], d0 * H * WC, nt0[od], WC,
                           buf, 0)
            _hmax_row(buf, out[b, od, oh], C, OW, lo2, nt2, d2, ia, ib, ibase, istep, K)
            continue
        first = True
        for i in range(nt0[od]):
            z = lo0[od] + i * d0
            for j in range(nt1[oh]):
                y = lo1[oh] + j * d1
                row = x[b, z, y]
                if first:
                    _copy(buf, row)
                    first = False
                else:
                    for w in range(WC):
                        buf[w] = _maxnan(buf[w], row[w])
        _hmax_row(buf, out[b, od, oh], C, OW, lo2, nt2, d2, ia, ib, ibase, istep, K)


# Windows with several taps on D: each output row's window reads nt0 * nt1
# input rows, and neighbouring output rows of a plane share most of them.  So
# the taps' planes are added once per input row (at least ``_DEEP_ROWS`` rows
# at a time, as one long row: no loop over rows), into a buffer in float64,
# and each output row adds its window's rows from there as a 2-D window
# would.  The sum's order (each row over the planes, then the rows) is fixed
# by the geometry, not by where a chunk starts.
_DEEP_ROWS = 24


@njit(inline="always")
def _deep_span(nt0, nt1, d1):
    """Whether any window has several taps on D (``nt0``), and the most input
    rows a window spans on H."""
    deep = False
    for i in range(nt0.size):
        deep |= nt0[i] > 1
    span = 1
    for i in range(nt1.size):
        span = max(span, (nt1[i] - 1) * d1 + 1)
    return deep, span


@njit(inline="always")
def _same_from(a, i, j):
    # whether a[i:j] holds one value (no NaN here: multipliers 1 / divisor)
    for k in range(i + 1, j):
        if a[k] != a[i]:
            return False
    return True


@Chunked
def sep_sum_forward(ch, nch, x, out, C, pmode, p, fmode, rdiv, rat, area,
                    lo0, nt0, d0, lo1, nt1, d1, lo2, nt2, d2, ia, ib, ibase, istep, K, acc0):
    """Window sums of x (pmode 0), |x|^p (1) or x^p (2) in ``acc0``'s dtype
    (an empty array: ``pooling._sum_acc``), then finalised:
    fmode 0: sum / div (average); 1: sum^(1/p) (ONNX Lp); 2: (sum/div*area)^(1/p)
    (PyTorch's lp_pool); 3: (sum/div)^(1/p) (power mean).  ``rdiv[rat[od, oh]]``
    holds output row (od, oh)'s 1/div (``_core.divisor_rows``): a multiply
    vectorises where a divide costs ~1 ns per output (measured)."""
    B, D, H, WC = x.shape
    OD, OH, OWC = out.shape[1], out.shape[2], out.shape[3]
    OW = OWC // C
    total = B * OD * OH
    nch = _chunks(total, nch)
    if ch >= nch:
        return
    inv = 1.0 / p
    buf = np.empty(WC, acc0.dtype)
    acc = np.empty(OWC, acc0.dtype)
    # plain sums add whole rows in _simd's vectors: with one tap on D, from x;
    # with several and windows that overlap on H, through a buffer of rows
    # added over the depth taps (see _DEEP_ROWS), refilled from the row a
    # window starts at when it does not hold the window's rows.  (Without the
    # overlap the buffer is one more pass for nothing: (8, 8, 56, 56, 32) k2 s2
    # 1.46 -> 2.16 ms.)
    xf = x.reshape(-1)
    vec = pmode == 0 and WC >= 4
    deep, span = _deep_span(nt0, nt1, d1)
    overlap = False
    for i in range(1, OH):
        overlap |= lo1[i] < lo1[i - 1] + (nt1[i - 1] - 1) * d1 + 1
    vec &= overlap or not deep
    deep &= vec
    G = max(span, _DEEP_ROWS) if deep else 0
    dbuf = np.empty(G * WC, acc0.dtype)
    gb, god, ya, ye = -1, -1, 0, 0
    r0, r1, b, od, oh = _row_task(ch, nch, total, OD, OH)
    for r in range(r0, r1):
        if r > r0:
            b, od, oh = _next_row(b, od, oh, OD, OH)
        if deep:
            y0 = lo1[oh]
            if gb != b or god != od or y0 < ya or y0 + (nt1[oh] - 1) * d1 + 1 > ye:
                gb, god, ya, ye = b, od, y0, min(H, y0 + G)
                _simd.sum_plane_rows(xf, ((b * D + lo0[od]) * H + ya) * WC, d0 * H * WC, nt0[od], (ye - ya) * WC,
                                     dbuf, 0)
            _simd.sum_plane_rows(dbuf, (y0 - ya) * WC, d1 * WC, nt1[oh], WC, buf, 0)
        elif vec:
            _simd.sum_plane_rows(xf, ((b * D + lo0[od]) * H + lo1[oh]) * WC, d1 * WC, nt1[oh], WC, buf, 0)
        else:
            _fill(buf, 0.0)
            for i in range(nt0[od]):
                z = lo0[od] + i * d0
                for j in range(nt1[oh]):
                    y = lo1[oh] + j * d1
                    row = x[b, z, y]
                    if pmode == 0:
                        for w in range(WC):
                            buf[w] += row[w]
                    elif pmode == 1:
                        for w in range(WC):
                            buf[w] += _lp_term(np.float64(row[w]), p, False)
                    else:
                        for w in range(WC):
                            buf[w] += _lp_term(np.float64(row[w]), p, True)
        orow = out[b, od, oh]
        drow = rdiv[rat[od, oh]]
        if fmode == 0 and K == 3:
            # averages of three taps: the taps, the divisor and the store in
            # one pass, in the order of the passes below (the same bits).
            # (8, 8, 56, 56, 32) channels-last k3 s1 p1 on two threads: 7.9-8.1 -> 6.3-6.7 ms
            e = d2 * C
            if istep == 1 and ib > ia and _same_from(drow, ia, ib):
                # stride 1 and one divisor: the interior's cells lie end to end
                # in buf as in the output row, one loop over all of them
                # ((8, 8, 56, 56, 32) k3 s1 p1: 32-cell loops a window before)
                dv = drow[ia]
                o = ibase * C
                for j in range(ia * C, ib * C):
                    orow[_u(j)] = ((buf[_u(o + j)] + buf[_u(o + e + j)]) + buf[_u(o + 2 * e + j)]) * dv
            else:
                for ow in range(ia, ib):
                    s0 = (ibase + ow * istep) * C
                    dv = drow[ow]
                    for c in range(C):
                        orow[_u(ow * C + c)] = ((buf[_u(s0 + c)] + buf[_u(s0 + e + c)]) + buf[_u(s0 + 2 * e + c)]) * dv
            _hsum_border(buf, acc, C, lo2, nt2, d2, 0, ia)
            _hsum_border(buf, acc, C, lo2, nt2, d2, ib, OW)
            for ow in range(OW):
                if ow < ia or ow >= ib:
                    for c in range(C):
                        orow[_u(ow * C + c)] = acc[_u(ow * C + c)] * drow[ow]
            continue
        for ow in range(ia, ib):
            s0 = (ibase + ow * istep) * C
            for c in range(C):
                acc[_u(ow * C + c)] = buf[_u(s0 + c)]
            for k in range(1, K):
                s1 = s0 + k * d2 * C
                for c in range(C):
                    acc[_u(ow * C + c)] += buf[_u(s1 + c)]
        _hsum_border(buf, acc, C, lo2, nt2, d2, 0, ia)
        _hsum_border(buf, acc, C, lo2, nt2, d2, ib, OW)
        for ow in range(OW):
            for c in range(C):
                q = _u(ow * C + c)
                if fmode == 0:
                    orow[q] = acc[q] * drow[ow]
                elif fmode == 1:
                    orow[q] = acc[q] ** inv
                elif fmode == 2:
                    orow[q] = ((acc[q] * drow[ow]) * area) ** inv
                else:
                    orow[q] = (acc[q] * drow[ow]) ** inv


@njit(inline="always")
def channel_blocks(C):
    """Channels per task and tasks per plane for kernels that split (plane,
    block of up to 16 channels) tasks."""
    cb = 16 if C > 16 else C
    return cb, (C + cb - 1) // cb


@njit(inline="always")
def channel_block(t, nblk, cb, C):
    """Task ``t`` of ``channel_blocks``' split -> (plane, first channel, end)."""
    b = t // nblk
    c0 = (t - b * nblk) * cb
    return b, c0, min(C, c0 + cb)


@_jit
def scatter_max_backward(g, idx, gx, ahead):
    """Per-task serial scatter in output order (PyTorch's order): deterministic.

    ``g``/``idx`` are (B, O, C) and ``gx`` is (B, S, C); tasks are (b, channel
    block).  Indices are range-checked here, where they are read anyway: a
    separate ``min``/``max`` pass over them cost as much as the scatter.  An
    index outside [0, S) adds nothing; -> (number of tasks that met one, the
    first such index of each task, or 0).
    """
    B, O, C = g.shape
    S = gx.shape[1]
    us = np.uint64(S)
    cb, nblk = channel_blocks(C)
    bad = np.zeros(B * nblk, np.uint8)
    badv = np.zeros(B * nblk, np.int64)
    if C == 1:
        # each plane is summed in a cached buffer and streamed out once
        gf, xi, xg = gx.reshape(-1), idx.reshape(-1), g.reshape(-1)
        for b in prange(B):
            b = np.int64(b)
            gp = np.zeros(S, gx.dtype)
            for o0 in range(0, O, 16):
                # ahead > 0: the indices and gradients ``ahead`` cells on
                _ask_ahead(xi, b * O + o0, ahead, 16)
                _ask_ahead(xg, b * O + o0, ahead, 16)
                # flat, not through the (strided) views of a plane: the
                # kernel on (32, 64, 112, 112) k3 s2 p1 took 11.3-11.5 ms
                # through them and 8.6-8.9 this way (two threads)
                for o in range(b * O + o0, b * O + min(o0 + 16, O)):
                    k = xi[_u(o)]
                    if _u(k) < us:
                        gp[_u(k)] += xg[_u(o)]
                    elif bad[b] == 0:
                        bad[b] = 1
                        badv[b] = k
            _simd.stream(gp, 0, gf, b * S, S)
    else:
        for t in prange(B * nblk):
            t = np.int64(t)
            b, c0, c1 = channel_block(t, nblk, cb, C)
            for s in range(S):
                for c in range(c0, c1):
                    gx[b, s, c] = 0.0
            for o in range(O):
                for c in range(c0, c1):
                    k = idx[b, o, c]
                    if _u(k) < us:
                        gx[b, _u(k), c] += g[b, o, c]
                    elif bad[t] == 0:
                        bad[t] = 1
                        badv[t] = k
    n = 0
    first = np.int64(0)
    for t in range(B * nblk):
        if bad[t] and n == 0:
            first = badv[t]
        n += bad[t]
    return n, first


@njit(inline="always")
def _hscatter_interior(buf, acc, ia, ib, base, step, K, d):
    for k in range(K):
        off = base + k * d
        for ow in range(ia, ib):
            acc[_u(off + ow * step)] += buf[_u(ow)]


@Chunked
def sep_avg_backward(ch, nch, g, gx, C, rdiv, rat, p0, c0, p1, c1, lo2, nt2, d2, ia, ib, ibase, istep, K):
    """Adjoint of the separable average: per input row, gather the covering
    output rows (times 1/div) into a buffer, then scatter it along W through
    the same window table as the forward pass (fixed order: deterministic)."""
    B, D, H, WC = gx.shape
    OD, OH, OWC = g.shape[1], g.shape[2], g.shape[3]
    OW = OWC // C
    total = B * D * H
    nch = _chunks(total, nch)
    if ch >= nch:
        return
    buf = np.empty(OWC, np.float64)
    acc = np.empty(WC, np.float64)
    r0, r1, b, z, y = _row_task(ch, nch, total, D, H)
    for r in range(r0, r1):
        if r > r0:
            b, z, y = _next_row(b, z, y, D, H)
        _fill(buf, 0.0)
        for a in range(p0[z], p0[z + 1]):
            od = c0[a]
            for e in range(p1[y], p1[y + 1]):
                oh = c1[e]
                grow = g[b, od, oh]
                drow = rdiv[rat[od, oh]]
                if C == 1:
                    for ow in range(OW):
                        buf[ow] += grow[ow] * drow[ow]
                else:
                    for ow in range(OW):
                        dv = drow[ow]
                        for c in range(C):
                            buf[_u(ow * C + c)] += grow[_u(ow * C + c)] * dv
        _fill(acc, 0.0)
        if C == 1:
            if istep == 1:
                _hscatter_interior(buf, acc, ia, ib, ibase, 1, K, d2)
            elif istep == 2:
                _hscatter_interior(buf, acc, ia, ib, ibase, 2, K, d2)
            else:
                _hscatter_interior(buf, acc, ia, ib, ibase, istep, K, d2)
            for ow in range(0, OW):
                if ow >= ia and ow < ib:
                    continue
                for k in range(nt2[ow]):
                    acc[_u(lo2[ow] + k * d2)] += buf[ow]
        else:
            for ow in range(OW):
                for k in range(nt2[ow]):
                    q = (lo2[ow] + k * d2) * C
                    for c in range(C):
                        acc[_u(q + c)] += buf[_u(ow * C + c)]
        xrow = gx[b, z, y]
        for w in range(WC):
            xrow[w] = acc[w]


# ----------------------------------------------------------------------------- channels-first rows
#
# Channels-first rows are short (14 to 112 cells in common networks), so the
# cost is in how many loops run per output row, not in the arithmetic.  Each
# row task reduces its window's rows into a buffer in one fused pass, with the
# padding kept as identity cells (-inf for max, 0 for sums) around the row, so
# every window along W is full in buffer coordinates: one uniform loop over
# the whole output row, no clipped borders (onnxruntime's MLAS does the same).
# Adaptive W windows (uneven) walk the table instead.


@njit(inline="always")
def _vmax_rows(x, o0, rs, R, W, buf, pl):
    """``buf[pl + w] = max over R rows of x[o0 + r*rs + w]``: 1-3 rows fused."""
    if R == 1:
        for w in range(W):
            buf[_u(pl + w)] = x[_u(o0 + w)]
        return
    o1 = o0 + rs
    if R == 2:
        for w in range(W):
            buf[_u(pl + w)] = _maxnan(x[_u(o0 + w)], x[_u(o1 + w)])
        return
    o2 = o1 + rs
    for w in range(W):
        buf[_u(pl + w)] = _maxnan(_maxnan(x[_u(o0 + w)], x[_u(o1 + w)]), x[_u(o2 + w)])
    _vmax_more(x, o0 + 3 * rs, rs, R - 3, W, buf, pl)


@njit(inline="always")
def _vmax_more(x, o0, rs, R, W, buf, pl):
    """``buf[pl + w] = max(buf[pl + w], rows...)``: further rows, and the next
    depth planes of a 3-D window."""
    for r in range(R):
        o = o0 + r * rs
        for w in range(W):
            buf[_u(pl + w)] = _maxnan(buf[_u(pl + w)], x[_u(o + w)])


@njit(inline="always")
def _vsum_rows(x, o0, rs, R, W, buf, pl):
    """``buf[pl + w] = sum over R rows of x[o0 + r*rs + w]`` in float64."""
    if R == 1:
        for w in range(W):
            buf[_u(pl + w)] = x[_u(o0 + w)]
        return
    o1 = o0 + rs
    if R == 2:
        for w in range(W):
            buf[_u(pl + w)] = np.float64(x[_u(o0 + w)]) + np.float64(x[_u(o1 + w)])
        return
    o2 = o1 + rs
    for w in range(W):
        buf[_u(pl + w)] = (np.float64(x[_u(o0 + w)]) + np.float64(x[_u(o1 + w)])) + np.float64(x[_u(o2 + w)])
    _vsum_more(x, o0 + 3 * rs, rs, R - 3, W, buf, pl)


@njit(inline="always")
def _vsum_more(x, o0, rs, R, W, buf, pl):
    for r in range(R):
        o = o0 + r * rs
        for w in range(W):
            buf[_u(pl + w)] += x[_u(o + w)]


@njit(inline="always")
def _vlp_rows(x, o0, rs, R, W, buf, pl, combine, p, signed):
    for r in range(R):
        o = o0 + r * rs
        if r == 0 and not combine:
            for w in range(W):
                buf[_u(pl + w)] = _lp_term(np.float64(x[_u(o + w)]), p, signed)
        else:
            for w in range(W):
                buf[_u(pl + w)] += _lp_term(np.float64(x[_u(o + w)]), p, signed)


@njit(inline="always")
def _hmax_uniform(buf, orow, oo, OW, s, K, d, pm, ev):
    """``orow[oo + o] = max(buf[o*s + k*d] for k < K)`` for every output."""
    if d == 1 and s == 1:
        if K == 2:
            for o in range(OW):
                orow[_u(oo + o)] = _maxnan(buf[_u(o)], buf[_u(o + 1)])
            return
        if K == 3:
            for o in range(OW):
                orow[_u(oo + o)] = _maxnan(_maxnan(buf[_u(o)], buf[_u(o + 1)]), buf[_u(o + 2)])
            return
    if d == 1 and s == 2 and K == 2:
        for o in range(OW):
            orow[_u(oo + o)] = _maxnan(buf[_u(2 * o)], buf[_u(2 * o + 1)])
        return
    if d == 1 and s == 2 and K >= 3:
        # a stride-2 window reads q, q+1, q+2: the third tap is the next
        # window's first, which LLVM cannot put in one interleaved load group
        # and turns into gathers (measured 3x slower).  Pair maxima
        # (q, q+1) once, then K // 2 pairs plus one even cell for odd K.
        h = K // 2
        n = OW + h - 1
        for j in range(n):
            a = buf[_u(2 * j)]
            pm[_u(j)] = _maxnan(a, buf[_u(2 * j + 1)])
            ev[_u(j)] = a
        ev[_u(n)] = buf[_u(2 * n)]
        if K == 3:
            for o in range(OW):
                orow[_u(oo + o)] = _maxnan(pm[_u(o)], ev[_u(o + 1)])
            return
        for o in range(OW):
            orow[_u(oo + o)] = pm[_u(o)]
        for i in range(1, h):
            for o in range(OW):
                orow[_u(oo + o)] = _maxnan(orow[_u(oo + o)], pm[_u(o + i)])
        if K & 1:
            for o in range(OW):
                orow[_u(oo + o)] = _maxnan(orow[_u(oo + o)], ev[_u(o + h)])
        return
    for o in range(OW):
        orow[_u(oo + o)] = buf[_u(o * s)]
    for k in range(1, K):
        for o in range(OW):
            orow[_u(oo + o)] = _maxnan(orow[_u(oo + o)], buf[_u(o * s + k * d)])


@njit(inline="always")
def _hsum_uniform(buf, dst, do, mul, mo, OW, s, K, d, ps, ev):
    """``dst[do + o] = sum(buf[o*s + k*d] for k < K) * mul[mo + o]``: the sum
    twin of ``_hmax_uniform``, scaled on the way out by an average's 1/divisor."""
    if d == 1 and s == 1:
        if K == 2:
            for o in range(OW):
                dst[_u(do + o)] = (buf[_u(o)] + buf[_u(o + 1)]) * mul[_u(mo + o)]
            return
        if K == 3:
            for o in range(OW):
                dst[_u(do + o)] = ((buf[_u(o)] + buf[_u(o + 1)]) + buf[_u(o + 2)]) * mul[_u(mo + o)]
            return
    if d == 1 and s == 2 and K == 2:
        for o in range(OW):
            dst[_u(do + o)] = (buf[_u(2 * o)] + buf[_u(2 * o + 1)]) * mul[_u(mo + o)]
        return
    if d == 1 and s == 2 and K >= 3:
        h = K // 2
        n = OW + h - 1
        for j in range(n):
            a = buf[_u(2 * j)]
            ps[_u(j)] = a + buf[_u(2 * j + 1)]
            ev[_u(j)] = a
        ev[_u(n)] = buf[_u(2 * n)]
        if K == 3:
            for o in range(OW):
                dst[_u(do + o)] = (ps[_u(o)] + ev[_u(o + 1)]) * mul[_u(mo + o)]
            return
        for i in range(1, h):
            for o in range(OW):
                ps[_u(o)] += ps[_u(o + i)]
        if K & 1:
            for o in range(OW):
                ps[_u(o)] += ev[_u(o + h)]
        for o in range(OW):
            dst[_u(do + o)] = ps[_u(o)] * mul[_u(mo + o)]
        return
    if d == 1 and s == K:
        # windows end to end, each summed in turn, in the same order as the
        # passes below: (32, 256, 56, 56) adaptive 56 -> 7 took 7.0-8.1 ms
        # through them and 6.5-6.8 ms this way (two threads)
        for o in range(OW):
            t = buf[_u(o * K)]
            for k in range(1, K):
                t += buf[_u(o * K + k)]
            dst[_u(do + o)] = t * mul[_u(mo + o)]
        return
    for o in range(OW):
        ev[_u(o)] = buf[_u(o * s)]
    for k in range(1, K):
        for o in range(OW):
            ev[_u(o)] += buf[_u(o * s + k * d)]
    for o in range(OW):
        dst[_u(do + o)] = ev[_u(o)] * mul[_u(mo + o)]


@njit(inline="always")
def _row_task(ch, nch, total, OD, OH):
    r0 = ch * total // nch
    b, od, oh = _row_of(r0, OD, OH)
    return r0, (ch + 1) * total // nch, b, od, oh


# Rows with stride 1 or 2 and 4+ cells in and out take _simd's short vectors
# (see _core.cf_row_args).  Each is a function of its own, not a branch of the
# kernel's loop: inlined there it compiled 4 s slower per dtype and ran 1.3x
# slower.  A row's W pass runs after the next row's rows pass, from the other
# half of a two-row buffer (``Lb`` cells each): straight after its own rows
# pass, its shifted loads straddle the just-written vectors, cannot take them
# from the store buffer and wait for the stores to retire (1.2-1.4x on 14- and
# 56-cell rows).


@njit(inline="always")
def _ask_ahead(x, o0, ahead, n):
    # the cells ``ahead`` on from a row pass's start, asked for in L2 so that
    # they are there when the pass reaches them (see ``_core.cf_ahead``)
    if ahead > 0 and o0 + ahead + n <= x.size:
        _simd.prefetch(x, o0 + ahead, n)


@cached_jit(nogil=True)
def _cf_max_vec(x, out, buf, Lb, r0, r1, b, od, oh, D, H, W, OD, OH, OW, lo0, nt0, d0, lo1, nt1, d1, d2, pl, s, K,
                ahead, an):
    # row r0 + p goes to the buffer's half p % 2; each pass has two call sites,
    # one per half (a half picked per row measured 1.1-1.4x slower)
    n = r1 - r0
    for p in range(0, n + 1, 2):
        if p < n:
            if p > 0:
                b, od, oh = _next_row(b, od, oh, OD, OH)
            o0 = ((b * D + lo0[od]) * H + lo1[oh]) * W
            _simd.max_rows(x, o0, d1 * W, nt1[oh], d0 * H * W, nt0[od], W, buf, pl)
            _ask_ahead(x, o0 + (nt0[od] - 1) * d0 * H * W, ahead, an)
        if p > 0:
            _simd.max_wins(buf, Lb, out, (r0 + p - 1) * OW, buf, OW, s, K, d2)
        if p + 1 < n:
            b, od, oh = _next_row(b, od, oh, OD, OH)
            o0 = ((b * D + lo0[od]) * H + lo1[oh]) * W
            _simd.max_rows(x, o0, d1 * W, nt1[oh], d0 * H * W, nt0[od], W, buf, pl + Lb)
            _ask_ahead(x, o0 + (nt0[od] - 1) * d0 * H * W, ahead, an)
        if p < n:
            _simd.max_wins(buf, 0, out, (r0 + p) * OW, buf, OW, s, K, d2)


@cached_jit(nogil=True)
def _cf_avg_vec(x, out, buf, Lb, r0, r1, b, od, oh, D, H, W, OD, OH, OW, lo0, nt0, d0, lo1, nt1, d1, d2, pl, s, K,
                rdiv, rat, ahead, an):
    n = r1 - r0
    aod, aoh, bod, boh = od, oh, od, oh
    for p in range(0, n + 1, 2):
        if p < n:
            if p > 0:
                b, od, oh = _next_row(b, od, oh, OD, OH)
            o0 = ((b * D + lo0[od]) * H + lo1[oh]) * W
            _simd.sum_rows(x, o0, d1 * W, nt1[oh], d0 * H * W, nt0[od], W, buf, pl)
            _ask_ahead(x, o0 + (nt0[od] - 1) * d0 * H * W, ahead, an)
            aod, aoh = od, oh
        if p > 0:
            _simd.sum_wins(buf, Lb, out, (r0 + p - 1) * OW, rdiv[rat[bod, boh]], OW, s, K, d2)
        if p + 1 < n:
            b, od, oh = _next_row(b, od, oh, OD, OH)
            o0 = ((b * D + lo0[od]) * H + lo1[oh]) * W
            _simd.sum_rows(x, o0, d1 * W, nt1[oh], d0 * H * W, nt0[od], W, buf, pl + Lb)
            _ask_ahead(x, o0 + (nt0[od] - 1) * d0 * H * W, ahead, an)
            bod, boh = od, oh
        if p < n:
            _simd.sum_wins(buf, 0, out, (r0 + p) * OW, rdiv[rat[aod, aoh]], OW, s, K, d2)


@cached_jit(nogil=True)
def _cf_avg_tiles(x, out, buf, r0, r1, b, od, oh, D, H, W, OD, OH, OW, lo0, nt0, d0, lo1, nt1, d1, K, rdiv, rat,
                  ahead, an):
    # W windows end to end (``_core.tile_rows``): the float64 row sums, then
    # four windows at a time
    for r in range(r0, r1):
        if r > r0:
            b, od, oh = _next_row(b, od, oh, OD, OH)
        _simd.sum_rows(x, ((b * D + lo0[od]) * H + lo1[oh]) * W, d1 * W, nt1[oh], d0 * H * W, nt0[od], W, buf, 0)
        _ask_ahead(x, ((b * D + lo0[od]) * H + lo1[oh]) * W, ahead, an)
        _simd.sum_tiles(buf, 0, out, r * OW, rdiv[rat[od, oh]], OW, K)


@cached_jit(nogil=True)
def _cf_avg_deep(x, out, buf, Lb, dbuf, r0, r1, b, od, oh, D, H, W, OD, OH, OW, lo0, nt0, d0, lo1, nt1, d1, d2, pl, s,
                 K, rdiv, rat, ahead):
    # see _DEEP_ROWS: groups of output rows of one (b, od) plane, each adding its
    # input rows over the depth taps into dbuf once
    G = dbuf.size // W
    r = r0
    while r < r1:
        # a group: output rows of one (b, od) plane whose input rows span at most G
        ya = lo1[oh]
        ye = ya + (nt1[oh] - 1) * d1 + 1
        n = 1
        while r + n < r1 and oh + n < OH:
            a = min(ya, lo1[oh + n])
            e = max(ye, lo1[oh + n] + (nt1[oh + n] - 1) * d1 + 1)
            if e - a > G:
                break
            ya, ye = a, e
            n += 1
        o0 = ((b * D + lo0[od]) * H + ya) * W
        # ahead > 0: the same rows a depth plane past the last tap, which the
        # next output depth reads new (stride 1 on D)
        na = o0 + nt0[od] * d0 * H * W
        if ahead > 0 and na + (ye - ya) * W <= x.size:
            _simd.prefetch(x, na, (ye - ya) * W)
        _simd.sum_plane_rows(x, o0, d0 * H * W, nt0[od], (ye - ya) * W, dbuf, 0)
        # row p's W pass after row p + 1's rows pass, from the other half (see
        # _cf_max_vec); one call site each (compiling them twice cost more)
        for p in range(n + 1):
            if p < n:
                _simd.sum_plane_rows(dbuf, (lo1[oh + p] - ya) * W, d1 * W, nt1[oh + p], W, buf, pl + (p % 2) * Lb)
            if p > 0:
                _simd.sum_wins(buf, ((p - 1) % 2) * Lb, out, (r + p - 1) * OW, rdiv[rat[od, oh + p - 1]], OW, s, K, d2)
        r += n
        b, od, oh = _next_row(b, od, oh + n - 1, OD, OH)  # the group's last row is in this plane


@Chunked
def cf_max_forward(ch, nch, x, out, D, H, W, OD, OH, OW, lo0, nt0, d0, lo1, nt1, d1, lo2, nt2, d2,
                   uniform, pl, Lb, s, K, lowest, ahead, an):
    """Channels-first max: x, out flat ``(planes * D*H*W)``, ``(planes * OD*OH*OW)``.

    ``uniform``: W windows start at ``o*s`` in a row buffer of ``Lb`` cells
    holding the input at ``pl`` (2: and the rows take ``_simd``'s short vectors,
    see ``_core.cf_row_args``); 0: they are read from the W table."""
    total = (out.size // (OD * OH * OW)) * OD * OH
    nch = _chunks(total, nch)
    if ch >= nch:
        return
    buf = np.empty(2 * Lb if uniform == 2 else Lb, x.dtype)
    _fill(buf, lowest)
    pm = np.empty(OW + K + 1, x.dtype)
    ev = np.empty(OW + K + 1, x.dtype)
    r0, r1, b, od, oh = _row_task(ch, nch, total, OD, OH)
    if uniform == 3:
        # 2x2 stride-2 windows, every one whole (``_core.quad_rows``)
        for r in range(r0, r1):
            if r > r0:
                b, od, oh = _next_row(b, od, oh, OD, OH)
            o0 = ((b * D + lo0[od]) * H + lo1[oh]) * W
            _ask_ahead(x, o0, ahead, an)
            _simd.max_quads(x, o0, W, out, r * OW, OW)
    elif uniform == 2:
        _cf_max_vec(x, out, buf, Lb, r0, r1, b, od, oh, D, H, W, OD, OH, OW, lo0, nt0, d0, lo1, nt1, d1, d2, pl, s, K,
                    ahead, an)
    else:
        for r in range(r0, r1):
            if r > r0:
                b, od, oh = _next_row(b, od, oh, OD, OH)
            for i in range(nt0[od]):
                o0 = ((b * D + lo0[od] + i * d0) * H + lo1[oh]) * W
                if i == 0:
                    _vmax_rows(x, o0, d1 * W, nt1[oh], W, buf, pl)
                else:
                    _vmax_more(x, o0, d1 * W, nt1[oh], W, buf, pl)
            oo = r * OW
            if uniform != 0:
                _hmax_uniform(buf, out, oo, OW, s, K, d2, pm, ev)
            else:
                for o in range(OW):
                    m = buf[_u(lo2[o])]
                    for k in range(1, nt2[o]):
                        m = _maxnan(m, buf[_u(lo2[o] + k * d2)])
                    out[_u(oo + o)] = m


@Chunked
def cf_half_max_forward(ch, nch, x, out, D, H, W, OD, OH, OW, lo0, nt0, d0, lo1, nt1, d1, d2, pl, Lb, s, K, ahead, an):
    """Channels-first float16 max on the bits (x, out flat uint16) of rows that
    take the short vectors (``cf_row_args``'s ``uniform == 2``); geometry as
    ``cf_max_forward``'s.  Half the bytes of widening the input to float32
    first.  Windows on one plane over rows of 8+ cells widen each row as it is
    read (``_cf_half_max_wide``); the others compare halves on the bits."""
    total = (out.size // (OD * OH * OW)) * OD * OH
    nch = _chunks(total, nch)
    if ch >= nch:
        return
    buf = np.full(2 * Lb, _HALF_NEG_INF)
    r0, r1, b, od, oh = _row_task(ch, nch, total, OD, OH)
    if _HALVES and W >= 32 and nt0.max() == 1 and ((s == 1 and OW >= 32) or (s == 2 and OW >= 16)):
        _cf_half_max_native(x, out, buf, Lb, r0, r1, b, od, oh, D, H, W, OD, OH, OW, lo0, lo1, nt1, d1, d2, pl, s, K,
                            ahead, an)
    elif W >= 8 and nt0.max() == 1:
        fbuf = np.full(2 * Lb, -np.inf, np.float32)
        _cf_half_max_wide(x, out, buf, fbuf, Lb, r0, r1, b, od, oh, D, H, W, OD, OH, OW, lo0, lo1, nt1, d1, d2, pl, s,
                          K, ahead, an)
    else:
        _cf_max_vec(x, out, buf, Lb, r0, r1, b, od, oh, D, H, W, OD, OH, OW, lo0, nt0, d0, lo1, nt1, d1, d2, pl, s, K,
                    ahead, an)


@cached_jit(nogil=True)
def _cf_half_max_native(x, out, buf, Lb, r0, r1, b, od, oh, D, H, W, OD, OH, OW, lo0, lo1, nt1, d1, d2, pl, s, K,
                        ahead, an):
    # ``_cf_half_max_wide`` on CPUs that compute on halves: the rows and the
    # windows on 32 halves a vector, with no widening (see ``_simd.half_rows32``)
    n = r1 - r0
    nan = np.zeros(n, np.bool_)
    b0, od0, oh0 = b, od, oh
    for p in range(0, n + 1, 2):
        if p < n:
            if p > 0:
                b, od, oh = _next_row(b, od, oh, OD, OH)
            o0 = ((b * D + lo0[od]) * H + lo1[oh]) * W
            nan[p] = _simd.half_rows32(x, o0, d1 * W, nt1[oh], W, buf, pl)
            _ask_ahead(x, o0, ahead, an)
        if p > 0:
            _simd.half_wins32(buf, Lb, out, (r0 + p - 1) * OW, OW, s, K, d2)
        if p + 1 < n:
            b, od, oh = _next_row(b, od, oh, OD, OH)
            o0 = ((b * D + lo0[od]) * H + lo1[oh]) * W
            nan[p + 1] = _simd.half_rows32(x, o0, d1 * W, nt1[oh], W, buf, pl + Lb)
            _ask_ahead(x, o0, ahead, an)
        if p < n:
            _simd.half_wins32(buf, 0, out, (r0 + p) * OW, OW, s, K, d2)
    _half_nan_rows(x, out, buf, nan, r0, b0, od0, oh0, D, H, W, OD, OH, OW, lo0, lo1, nt1, d1, d2, pl, s, K)


@cached_jit(nogil=True)
def _cf_half_max_wide(x, out, buf, fbuf, Lb, r0, r1, b, od, oh, D, H, W, OD, OH, OW, lo0, lo1, nt1, d1, d2, pl, s, K,
                      ahead, an):
    # ``_cf_max_vec`` for windows on one plane, each row widened to float32
    # (``_simd.half_rows``: one conversion a cell and the one-instruction max,
    # against a conversion of both sides at every comparison).  Rows that hold
    # a NaN are redone on the bits after the loop: the redo's code inside the
    # loop, never run, cost 1.6x the time ((2, 256, 56, 56) k3 s2 p1, one thread)
    n = r1 - r0
    nan = np.zeros(n, np.bool_)
    b0, od0, oh0 = b, od, oh
    for p in range(0, n + 1, 2):
        if p < n:
            if p > 0:
                b, od, oh = _next_row(b, od, oh, OD, OH)
            o0 = ((b * D + lo0[od]) * H + lo1[oh]) * W
            nan[p] = _simd.half_rows(x, o0, d1 * W, nt1[oh], W, fbuf, pl)
            _ask_ahead(x, o0, ahead, an)
        if p > 0:
            _simd.max_wins(fbuf, Lb, out, (r0 + p - 1) * OW, fbuf, OW, s, K, d2)
        if p + 1 < n:
            b, od, oh = _next_row(b, od, oh, OD, OH)
            o0 = ((b * D + lo0[od]) * H + lo1[oh]) * W
            nan[p + 1] = _simd.half_rows(x, o0, d1 * W, nt1[oh], W, fbuf, pl + Lb)
            _ask_ahead(x, o0, ahead, an)
        if p < n:
            _simd.max_wins(fbuf, 0, out, (r0 + p) * OW, fbuf, OW, s, K, d2)
    _half_nan_rows(x, out, buf, nan, r0, b0, od0, oh0, D, H, W, OD, OH, OW, lo0, lo1, nt1, d1, d2, pl, s, K)


@njit(inline="always")
def _half_nan_rows(x, out, buf, nan, r0, b, od, oh, D, H, W, OD, OH, OW, lo0, lo1, nt1, d1, d2, pl, s, K):
    # the output rows whose input rows hold a NaN, again on the bits
    for p in range(nan.size):
        if p > 0:
            b, od, oh = _next_row(b, od, oh, OD, OH)
        if nan[p]:
            o0 = ((b * D + lo0[od]) * H + lo1[oh]) * W
            _simd.max_rows(x, o0, d1 * W, nt1[oh], 0, 1, W, buf, pl)
            _simd.max_wins(buf, 0, out, (r0 + p) * OW, buf, OW, s, K, d2)


@Chunked
def cf_sum_forward(ch, nch, x, out, D, H, W, OD, OH, OW, lo0, nt0, d0, lo1, nt1, d1, lo2, nt2, d2,
                   uniform, pl, Lb, s, K, pmode, p, fmode, rdiv, rat, area, ahead, an, acc0):
    """Channels-first window sums in float64, finalised as ``sep_sum_forward``'s
    ``pmode`` / ``fmode`` say; geometry arguments as ``cf_max_forward``'s.
    Plain averages through the row vectors add in ``acc0``'s dtype (as
    ``sep_sum_forward``'s); where those are float32 into float32 (``uniform``
    2), ``rdiv`` may be ``_core.exact_divisor_rows``' float32 rows instead,
    which the W passes divide by (``_simd._exact_scaled``)."""
    total = (out.size // (OD * OH * OW)) * OD * OH
    nch = _chunks(total, nch)
    if ch >= nch:
        return
    inv = 1.0 / p
    o1, o2, o3, o4 = (np.zeros(Lb, np.float64), np.empty(OW, np.float64), np.empty(OW + K + 1, np.float64),
                      np.empty(OW + K + 1, np.float64))
    buf, acc, ps, ev = _unowned(o1), _unowned(o2), _unowned(o3), _unowned(o4)
    r0, r1, b, od, oh = _row_task(ch, nch, total, OD, OH)
    if uniform == 3:
        # 2x2 stride-2 averages, every window whole (``_core.quad_rows``)
        for r in range(r0, r1):
            if r > r0:
                b, od, oh = _next_row(b, od, oh, OD, OH)
            o0 = ((b * D + lo0[od]) * H + lo1[oh]) * W
            _ask_ahead(x, o0, ahead, an)
            _simd.avg_quads(x, o0, W, out, r * OW, rdiv[rat[od, oh]], OW)
    elif uniform == 2 and pmode == 0 and fmode == 0:
        deep, span = _deep_span(nt0, nt1, d1)
        abuf = np.zeros(2 * Lb, acc0.dtype)
        if deep:
            dbuf = np.empty(max(span, _DEEP_ROWS) * W, acc0.dtype)
            _cf_avg_deep(x, out, abuf, Lb, dbuf, r0, r1, b, od, oh, D, H, W, OD, OH, OW, lo0, nt0, d0, lo1, nt1, d1, d2,
                         pl, s, K, rdiv, rat, ahead)
        else:
            _cf_avg_vec(x, out, abuf, Lb, r0, r1, b, od, oh, D, H, W, OD, OH, OW, lo0, nt0, d0, lo1, nt1, d1, d2, pl, s,
                        K, rdiv, rat, ahead if W * x.itemsize <= _AVG_ASK_ROW_BYTES else 0, an)
    elif uniform == 4 and pmode == 0 and fmode == 0:
        _cf_avg_tiles(x, out, buf, r0, r1, b, od, oh, D, H, W, OD, OH, OW, lo0, nt0, d0, lo1, nt1, d1, K, rdiv, rat,
                      ahead, an)
    else:
        rflat = rdiv.reshape(-1)
        for r in range(r0, r1):
            if r > r0:
                b, od, oh = _next_row(b, od, oh, OD, OH)
            for i in range(nt0[od]):
                o0 = ((b * D + lo0[od] + i * d0) * H + lo1[oh]) * W
                if pmode == 0:
                    if i == 0:
                        _vsum_rows(x, o0, d1 * W, nt1[oh], W, buf, pl)
                    else:
                        _vsum_more(x, o0, d1 * W, nt1[oh], W, buf, pl)
                else:
                    _vlp_rows(x, o0, d1 * W, nt1[oh], W, buf, pl, i > 0, p, pmode == 2)
            oo = r * OW
            # the row of multipliers by its offset in rflat: a view of it per
            # row took and dropped a reference to rdiv (atomic, and shared by
            # the threads)
            mo = rat[od, oh] * OW
            if fmode == 0:
                # an average is finished in the W pass
                if uniform != 0:
                    _hsum_uniform(buf, out, oo, rflat, mo, OW, s, K, d2, ps, ev)
                else:
                    for o in range(OW):
                        t = 0.0
                        for k in range(nt2[o]):
                            t += buf[_u(lo2[o] + k * d2)]
                        out[_u(oo + o)] = t * rflat[_u(mo + o)]
            else:
                # Lp sums walk the table (one inlined W pass keeps compile time down)
                for o in range(OW):
                    t = 0.0
                    for k in range(nt2[o]):
                        t += buf[_u(pl + lo2[o] + k * d2)]
                    acc[_u(o)] = t
            if fmode == 1:
                for o in range(OW):
                    out[_u(oo + o)] = acc[_u(o)] ** inv
            elif fmode == 2:
                for o in range(OW):
                    out[_u(oo + o)] = ((acc[_u(o)] * rflat[_u(mo + o)]) * area) ** inv
            elif fmode == 3:
                for o in range(OW):
                    out[_u(oo + o)] = (acc[_u(o)] * rflat[_u(mo + o)]) ** inv
    _keep((o1, o2, o3, o4))


# Planes of short rows whose W windows are stride 1 and as many as the cells
# (``_core.cf_flat_args``): a group of whole output rows at a time, its rows
# pass over runs of rows that read the same number of input rows (one call a
# run: the rows of a run lie end to end in the input as in the buffer) and one
# windows pass over the group (``_simd``'s flat windows mask the taps that
# fall off a row).  (64, 512, 14, 14) k3 s1 average: 3.6 -> 2.6 ms on two
# threads, 6.9 -> 4.0 ms on one; max 4.5 -> 2.0 ms.


@njit(inline="always")
def _flat_rows_of(rows, runs, x, buf, i0, a, e, W, HW, segs, lo1, d1, d0, Q, pl):
    # the rows pass of output rows [a, e) of one plane into buf[pl:]; rows of
    # consecutive windows on H lie end to end, one call; strided ones take
    # ``runs`` (None where the geometry has none)
    for g in range(segs.shape[0]):
        s0 = max(segs[g, 0], a)
        s1 = min(segs[g, 0] + segs[g, 1], e)
        if s0 >= s1:
            continue
        if runs is None or segs[g, 3] == 1:
            rows(x, i0 + lo1[s0] * W, d1 * W, segs[g, 2], d0 * HW, Q, (s1 - s0) * W, buf, pl + (s0 - a) * W)
        elif Q == 1:
            runs(x, i0 + lo1[s0] * W, d1 * W, segs[g, 2], segs[g, 3] * W, s1 - s0, W, buf, pl + (s0 - a) * W)
        else:
            for oh in range(s0, s1):
                rows(x, i0 + lo1[oh] * W, d1 * W, segs[g, 2], d0 * HW, Q, W, buf, pl + (oh - a) * W)


@njit(inline="always")
def _flat_rows(rows, runs, x, buf, i0, a, e, W, HW, segs, lo1, d1, d0, Q, pl):
    # Q, the depth taps, a constant where it is 1 (2-D windows): the loop then
    # holds only the one-plane rows ((64, 16, 14, 14) k3 s2 p1 max, one thread:
    # 1.5x less time than with Q a variable; versioned per call instead, 1.3x)
    if Q == 1:
        _flat_rows_of(rows, runs, x, buf, i0, a, e, W, HW, segs, lo1, d1, d0, 1, pl)
    else:
        _flat_rows_of(rows, runs, x, buf, i0, a, e, W, HW, segs, lo1, d1, d0, Q, pl)


@Chunked
def cf_short_max_forward(ch, nch, x, out, D, H, W, OD, OH, OW, lo0, nt0, d0, lo1, nt1, d1, pl, s, K, lowest, ahead,
                         an):
    """Channels-first max of short rows (``_core.cf_short_args``), each output
    row from one vector (``_simd.max_short``); geometry as ``cf_max_forward``'s."""
    total = (out.size // (OD * OH * OW)) * OD * OH
    nch = _chunks(total, nch)
    if ch >= nch:
        return
    r0, r1, b, od, oh = _row_task(ch, nch, total, OD, OH)
    for r in range(r0, r1):
        if r > r0:
            b, od, oh = _next_row(b, od, oh, OD, OH)
        o0 = ((b * D + lo0[od]) * H + lo1[oh]) * W
        _ask_ahead(x, o0 + (nt0[od] - 1) * d0 * H * W, ahead, an)
        _simd.max_short(x, o0, d1 * W, nt1[oh], d0 * H * W, nt0[od], W, pl, out, r * OW, lo0, OW, s, K, lowest)


@Chunked
def cf_short_sum_forward(ch, nch, x, out, D, H, W, OD, OH, OW, lo0, nt0, d0, lo1, nt1, d1, pl, s, K, rdiv, rat, ahead,
                         an, acc0):
    """Channels-first window sums of short rows in ``acc0``'s dtype (as
    ``cf_sum_forward``'s), times the row's multipliers ``rdiv[rat[od, oh]]``
    (``_simd.sum_short``)."""
    total = (out.size // (OD * OH * OW)) * OD * OH
    nch = _chunks(total, nch)
    if ch >= nch:
        return
    r0, r1, b, od, oh = _row_task(ch, nch, total, OD, OH)
    for r in range(r0, r1):
        if r > r0:
            b, od, oh = _next_row(b, od, oh, OD, OH)
        o0 = ((b * D + lo0[od]) * H + lo1[oh]) * W
        _ask_ahead(x, o0 + (nt0[od] - 1) * d0 * H * W, ahead, an)
        _simd.sum_short(x, o0, d1 * W, nt1[oh], d0 * H * W, nt0[od], W, pl, out, r * OW, rdiv[rat[od, oh]], OW, s, K,
                        acc0.dtype.type(0))


@Chunked
def cf_flat_max_forward(ch, nch, x, out, D, H, W, OD, OH, lo0, nt0, d0, lo1, d1, segs, col, pL, K, G, Lb, s, lowest,
                        ahead, an):
    """Channels-first max of planes of short rows (see above); x, out flat as
    ``cf_max_forward``'s, ``segs`` as ``_core.cf_flat_args``', ``col[i] = i %
    OW``, ``G`` output rows a group, ``Lb`` cells of buffer, ``s`` W's stride
    (1, or 2 with ``W = 2 * OW``); ``ahead``, ``an`` as ``_core.cf_ahead``'s."""
    OW = W // s
    S = OH * OW
    planes = out.size // S
    nch = _chunks(planes, nch)
    if ch >= nch:
        return
    buf = np.full(Lb, lowest)
    for q in range(ch * planes // nch, (ch + 1) * planes // nch):
        b = q // OD
        od = q - b * OD
        i0 = (b * D + lo0[od]) * H * W
        for a in range(0, OH, G):
            e = min(a + G, OH)
            _ask_ahead(x, i0 + (nt0[od] - 1) * d0 * H * W + lo1[a] * W, ahead, (e - a) * an)
            _flat_rows(_simd.max_rows, _simd.max_row_runs, x, buf, i0, a, e, W, H * W, segs, lo1, d1, d0, nt0[od], pL)
            _simd.max_flat_wins(buf, 0, out, q * S + a * OW, buf, (e - a) * OW, K, col, W, pL, s)


@Chunked
def cf_flat_sum_forward(ch, nch, x, out, D, H, W, OD, OH, lo0, nt0, d0, lo1, d1, segs, col, pL, K, G, Lb, mul, ahead,
                        an, acc0):
    """Channels-first averages of planes of short rows, as
    ``cf_flat_max_forward`` (stride 1 on W: ``cf_flat_args`` without its
    stride); ``mul`` rows ``1 / divisor`` of a plane's outputs, one per output
    depth or a single one for all; sums in ``acc0``'s dtype, as
    ``cf_sum_forward``'s."""
    S = OH * W
    planes = out.size // S
    nch = _chunks(planes, nch)
    if ch >= nch:
        return
    buf = np.zeros(Lb, acc0.dtype)
    for q in range(ch * planes // nch, (ch + 1) * planes // nch):
        b = q // OD
        od = q - b * OD
        i0 = (b * D + lo0[od]) * H * W
        mrow = mul[od if mul.shape[0] > 1 else 0]
        for a in range(0, OH, G):
            e = min(a + G, OH)
            _ask_ahead(x, i0 + (nt0[od] - 1) * d0 * H * W + lo1[a] * W, ahead, (e - a) * an)
            _flat_rows(_simd.sum_rows, None, x, buf, i0, a, e, W, H * W, segs, lo1, d1, d0, nt0[od], pL)
            _simd.sum_flat_wins(buf, 0, out, q * S + a * W, mrow[a * W:], (e - a) * W, K, col, W, pL)


# ----------------------------------------------------------------------------- global, channels-first
#
# Each plane is one contiguous run; eight independent accumulators give the
# loop instruction-level parallelism without reassociating a single running
# sum or max across lanes (results stay independent of the thread count).


@Chunked
def global_max_cf(ch, nch, x, out, ahead):
    B, S = x.shape
    S8 = S - S % 8
    if S >= 16 and out.dtype == x.dtype:
        # eight planes a step through _simd.plane_maxes8, the last B % 8 below
        xf = x.reshape(-1)
        n = B // 8
        for t in range(ch * n // nch, (ch + 1) * n // nch):
            _ask_ahead(xf, t * 8 * S, ahead, 8 * S)
            _simd.plane_maxes8(xf, t * 8 * S, S, out, t * 8)
        b0, b1 = (n * 8, B) if ch == nch - 1 else (0, 0)
    else:
        b0, b1 = ch * B // nch, (ch + 1) * B // nch
    for b in range(b0, b1):
        m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = x[b, 0]
        for i in range(0, S8, 8):
            m0 = _maxnan(m0, x[b, i])
            m1 = _maxnan(m1, x[b, i + 1])
            m2 = _maxnan(m2, x[b, i + 2])
            m3 = _maxnan(m3, x[b, i + 3])
            m4 = _maxnan(m4, x[b, i + 4])
            m5 = _maxnan(m5, x[b, i + 5])
            m6 = _maxnan(m6, x[b, i + 6])
            m7 = _maxnan(m7, x[b, i + 7])
        for i in range(S8, S):
            m0 = _maxnan(m0, x[b, i])
        out[b] = _maxnan(_maxnan(_maxnan(m0, m1), _maxnan(m2, m3)),
                         _maxnan(_maxnan(m4, m5), _maxnan(m6, m7)))


@Chunked
def global_mean_cf(ch, nch, x, out, divisor, ahead):
    """``out[b] = sum(x[b]) / divisor`` per plane in ``_simd.plane_sum``'s order
    (no fastmath: the order is the one written there, whatever the thread
    count), eight planes a step through ``_simd.plane_sums8`` (the same sums;
    1.4x faster on 7x7 planes), the last ``B % 8`` one by one."""
    B, S = x.shape
    xf = x.reshape(-1)
    n = (B + 7) // 8
    for t in range(ch * n // nch, (ch + 1) * n // nch):
        b0 = t * 8
        if b0 + 8 <= B:
            _ask_ahead(xf, b0 * S, ahead, 8 * S)
            _simd.plane_sums8(xf, b0 * S, S, out, b0, divisor)
        else:
            for b in range(b0, B):
                out[b] = _simd.plane_sum(xf, b * S, S) / divisor


@partial(Chunked, fastmath={"reassoc"})
def global_lp_cf(ch, nch, x, out, p):
    """``out[b] = sum(|x[b]|**p) ** (1/p)`` per plane.  The terms rely on
    reassociation (only that: NaN and inf keep their meaning) to split each
    sum across SIMD lanes; the order is fixed at compile time, so results do
    not depend on the thread count."""
    B, S = x.shape
    inv = 1.0 / p
    n = B
    for b in range(ch * n // nch, (ch + 1) * n // nch):
        s = 0.0
        for i in range(S):
            s += _lp_term(np.float64(x[b, i]), p, False)
        out[b] = s ** inv


# ----------------------------------------------------------------------------- large stride-1 max windows
#
# van Herk / Gil-Werman: with blocks of K cells, the max over any window of at
# most K consecutive cells is max(suffix[a], prefix[e]) of its ends (or one of
# them when both ends share a block), so each output costs O(1) whatever K.
# Clipped border windows touch a block start (left) or the array end (right),
# so the same rule covers them.


@Chunked
def vh_max_forward(ch, nch, x, out, C, lo1, nt1, K1, lo2, nt2, K2):
    """x: (B, H, W*C) channels-last planes, out: (B, OH, OW*C); stride and dilation 1
    on H and W.  (Channels-first rows are faster through ``cf_max_forward``'s
    vectorised passes, up to 13-cell windows at least: measured 11 vs 23 ms at k9.)"""
    B, H, WC = x.shape
    OH, OWC = out.shape[1], out.shape[2]
    W = WC // C
    OW = OWC // C
    nch = _chunks(B, nch)
    if ch >= nch:
        return
    P = np.empty((H, WC), x.dtype)
    S = np.empty((H, WC), x.dtype)
    row = np.empty(WC, x.dtype)
    pw = np.empty(WC, x.dtype)
    sw = np.empty(WC, x.dtype)
    for b in range(ch * B // nch, (ch + 1) * B // nch):
        xb = x[b]
        for y in range(H):
            if y % K1 == 0:
                P[y] = xb[y]
            else:
                for w in range(WC):
                    P[y, w] = _maxnan(P[y - 1, w], xb[y, w])
        for y in range(H - 1, -1, -1):
            if y == H - 1 or (y + 1) % K1 == 0:
                S[y] = xb[y]
            else:
                for w in range(WC):
                    # the earlier cell first: ties keep it, as the row-major scan does
                    S[y, w] = _maxnan(xb[y, w], S[y + 1, w])
        for oh in range(OH):
            a = lo1[oh]
            e = a + nt1[oh] - 1
            if a // K1 == e // K1:
                if a % K1 == 0:
                    _copy(row, P[e])
                else:
                    _copy(row, S[a])
            else:
                for w in range(WC):
                    row[w] = _maxnan(S[a, w], P[e, w])
            orow = out[b, oh]
            for xx in range(W):
                q = xx * C
                if xx % K2 == 0:
                    pw[q:q + C] = row[q:q + C]
                else:
                    for c in range(C):
                        pw[q + c] = _maxnan(pw[q - C + c], row[q + c])
            for xx in range(W - 1, -1, -1):
                q = xx * C
                if xx == W - 1 or (xx + 1) % K2 == 0:
                    sw[q:q + C] = row[q:q + C]
                else:
                    for c in range(C):
                        sw[q + c] = _maxnan(row[q + c], sw[q + C + c])
            for ow in range(OW):
                a2 = lo2[ow]
                e2 = a2 + nt2[ow] - 1
                q = ow * C
                if a2 // K2 == e2 // K2:
                    if a2 % K2 == 0:
                        orow[q:q + C] = pw[e2 * C:e2 * C + C]
                    else:
                        orow[q:q + C] = sw[a2 * C:a2 * C + C]
                else:
                    for c in range(C):
                        orow[q + c] = _maxnan(sw[a2 * C + c], pw[e2 * C + c])


# ----------------------------------------------------------------------------- wide stride-1 max
#
# A stride-1 window of K taps is two overlapping windows of P taps (P >= K/2):
# max(m_P[i], m_P[i + K - P]); and m_3P[i] = max(m_P[i], m_P[i + P], m_P[i +
# 2P]), m_2P[i] = max(m_P[i], m_P[i + P]).  So a few flat passes of vector
# maxima (triple_max while 3P < K, then pair_max) do one axis, whatever K is: a
# sparse table, van Herk's cost without its serial running maxima.  An axis's
# last pass, a pair or for K = 3P a triple, writes straight where the next stage
# reads (k9: a copy pass less on each axis, (8, 256, 56, 56) 0.86-0.87x the time
# on 2 threads).  Tripling first takes fewer passes than doubling (K = 13: 1, 3,
# 9 and the final pair, against 1, 2, 4, 8 and the final; K = 5: 1, 3 and the
# final): measured k5 8%, k9 4-8%, k13 0-3% faster than doubling.  Each pass
# combines earlier ranges with later ones in order, so the result is the
# sequential rule's bit for bit (the first of equal maxima, the last NaN),
# overlapping ranges included.  A plane without NaN takes the one-instruction
# max (``_simd._vmax``), which agrees with the NaN rule there.
#
# Windows of 4 rows or more take the H axis from running maxima down the plane
# instead (``_simd.column_max``: three loads a cell, against 5 for k4-k5 and 8
# for k13 in the passes).  (8, 256, 56, 56) s1 "same", 2 threads, alternated
# in one process: k5 2.46 -> 2.40, k9 2.65 -> 2.42, k13 3.47 -> 2.93 ms (in
# cache, one thread, k13: 3.04 -> 2.40 us a plane).
COLUMN_RUNS_FROM = 4


def _wide_plane_fn(pair, triple, pair0, triple0, column):
    @njit(inline="always")
    def levels(src, P, step, K, n, d1, d2):
        # src holds maxima of P taps; -> (a, rs, tri): the max of K taps
        # ``step`` apart from a[i] is that of a[i + r*rs], r < 3 (tri) or r < 2,
        # i < n, which the caller's last pass takes into its destination.
        # Writes d1, d2 in turn.
        a = src
        dst = d1
        other = d2
        while 2 * P < K and 3 * P != K:
            if 3 * P < K:
                triple(a, 0, P * step, 3, 0, 1, n + (K - 3 * P) * step, dst, 0)
                P *= 3
            else:
                pair(a, 0, P * step, 2, 0, 1, n + (K - 2 * P) * step, dst, 0)
                P *= 2
            a, dst, other = dst, other, dst
        if 3 * P == K:
            return a, P * step, True
        return a, (K - P) * step, False

    @njit(inline="always")
    def last(a, ao, rs, tri, n, dst, do):
        if tri:
            triple(a, ao, rs, 3, 0, 1, n, dst, do)
        else:
            pair(a, ao, rs, 2, 0, 1, n, dst, do)

    @njit(inline="always")
    def plane(x, xo, out, oo, H, WC, OH, OWC, C, ph, pwc, KH, KW, t1, t2, t3, lowest, nxt):
        # t1 holds maxima of R0 rows (the first H level, straight from x; with
        # KH <= 3, or from the running maxima, that is the whole window on H,
        # and the W passes read t1); only its interior is written here, and
        # only H passes, which keep the padding columns' -inf, write it whole.
        # The next plane (at nxt, if >= 0) is asked for a row per row here, so
        # that it arrives while the passes run: from memory, (8, 256, 56, 56)
        # k13 took 0.82x the time on 1 and 2 threads ((8, 64, 112, 112) 0.86x;
        # 200 and 800 KB planes even).  All of it at once measured 1.1x slower.
        WpC = OWC + (KW - 1) * C
        u = t1
        if KH >= COLUMN_RUNS_FROM:
            # the next plane unasked: asked all at once before or after this,
            # or half and half, k13 took 1.06-1.08x the time
            seen = column(x, xo, H, WC, ph, KH, OH, lowest, t2, t1, pwc, WpC)
        else:
            seen = False
            R0 = 1 if KH == 1 else (2 if KH == 2 else 3)
            for t in range(OH + KH - R0):
                if nxt >= 0 and t < H:
                    _simd.prefetch(x, nxt + t * WC, WC)
                h = t - ph
                d = t * WpC + pwc
                lo, hi = max(h, 0), min(h + R0, H)
                if hi - lo == 3:
                    seen |= triple0(x, xo + lo * WC, WC, 3, 0, 1, WC, t1, d)
                elif hi > lo:
                    seen |= pair0(x, xo + lo * WC, WC if hi - lo == 2 else 0, 2, 0, 1, WC, t1, d)
                else:
                    # a loop, not a slice: a view takes a reference (see _simd._runs_pass)
                    for i in range(WC):
                        t1[d + i] = lowest
            if KH > R0:
                a, rs, tri = levels(t1, R0, WpC, KH, OH * WpC, t2, t1)
                u = t3
                last(a, 0, rs, tri, OH * WpC, t3, 0)
        b, rw, tri = levels(u, 1, C, KW, (OH - 1) * WpC + OWC, t2, t3)
        for oh in range(OH):
            last(b, oh * WpC, rw, tri, OWC, out, oo + oh * OWC)
        return seen

    return plane


# A plane is pooled with the one-instruction max, its first pass noting whether
# it read a NaN, and redone by the NaN rule if it did (a plane with a NaN costs
# two).  A NaN test of its own over each plane before the passes took 1.05-1.1x
# the time ((8, 256, 56, 56) k13, k5; two threads).
_wide_plane = _wide_plane_fn(_simd.pair_max, _simd.triple_max, _simd.pair_max_seen, _simd.triple_max_seen,
                             _simd.column_max)
_wide_plane_nonan = _wide_plane_fn(_simd.pair_max_nonan, _simd.triple_max_nonan, _simd.pair_max_nonan_seen,
                                   _simd.triple_max_nonan_seen, _simd.column_max_nonan)


@Chunked
def wide_max_forward(ch, nch, x, out, H, WC, OH, OWC, C, ph, pw, KH, KW, lowest):
    """Stride-1 max over KH x KW windows (dilation 1) of planes ``(H, W*C)``:
    x, out flat ``(planes * H*W*C)``, ``(planes * OH*OW*C)``; ``ph``, ``pw`` cells
    of padding (< KH, KW) before each axis.  ``W*C``, ``OW*C >= 8``."""
    HWC = H * WC
    planes = x.size // HWC
    cells = (OH + KH - 1) * (OWC + (KW - 1) * C)
    nch = _chunks(planes, nch)
    if ch >= nch:
        return
    o1, o2, o3 = np.full(cells, lowest), np.empty(cells, x.dtype), np.empty(cells, x.dtype)
    t1, t2, t3 = _unowned(o1), _unowned(o2), _unowned(o3)
    p1 = (ch + 1) * planes // nch
    for p in range(ch * planes // nch, p1):
        xo, oo = p * HWC, p * OH * OWC
        nxt = xo + HWC if p + 1 < p1 else -1
        if _wide_plane_nonan(x, xo, out, oo, H, WC, OH, OWC, C, ph, pw * C, KH, KW, t1, t2, t3, lowest, nxt):
            _wide_plane(x, xo, out, oo, H, WC, OH, OWC, C, ph, pw * C, KH, KW, t1, t2, t3, lowest, -1)
    _keep((o1, o2, o3))


# ----------------------------------------------------------------------------- channels-last direct
#
# With C contiguous, each window tap is a C-vector: reducing taps straight into
# the output pixel vectorises over C and reads the input from cache without
# the row buffer's extra pass (that buffer, W*C wide, overflows L1).


@njit(inline="always")
def _max9(xf, a, b1, b2, e1, e2, c):
    """The max of cell ``c`` of the nine C-vectors at rows ``a, b1, b2``, columns
    ``0, e1, e2`` on from them, in row-major order."""
    m = xf[_u(a + c)]
    m = _maxnan(m, xf[_u(a + e1 + c)])
    m = _maxnan(m, xf[_u(a + e2 + c)])
    m = _maxnan(m, xf[_u(b1 + c)])
    m = _maxnan(m, xf[_u(b1 + e1 + c)])
    m = _maxnan(m, xf[_u(b1 + e2 + c)])
    m = _maxnan(m, xf[_u(b2 + c)])
    m = _maxnan(m, xf[_u(b2 + e1 + c)])
    return _maxnan(m, xf[_u(b2 + e2 + c)])


@Chunked
def cl_max_forward(ch, nch, x, out, lo0, nt0, d0, lo1, nt1, d1, lo2, nt2, d2, ahead, an):
    B, D, H, W, C = x.shape
    OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    xf, of = x.reshape(-1), out.reshape(-1)
    total = B * OD * OH
    n = total
    WC = W * C
    for r in range(ch * n // nch, (ch + 1) * n // nch):
        b, od, oh = _row_of(r, OD, OH)
        y0 = (((b * D + lo0[od]) * H + lo1[oh]) * W) * C
        _ask_ahead(xf, y0 + (nt0[od] - 1) * d0 * H * WC, ahead, an)
        # rows and columns of up to three taps: one pass over the channels per
        # plane, indexing x and out flat (as cl_sum_forward's), in the taps'
        # row-major order.  Windows cut by the edges repeat their last row or
        # column: the max rule keeps the first largest value or the last NaN,
        # so a repeated neighbour changes no bit (and planes combine by the same
        # rule, which is associative in that sense).
        n1 = nt1[oh]
        rows_fit = 1 <= n1 <= 3 and nt0[od] >= 1
        y1 = min(1, n1 - 1) * d1 * WC
        y2 = min(2, n1 - 1) * d1 * WC
        for ow in range(OW):
            n2 = nt2[ow]
            q = (r * OW + ow) * C
            if rows_fit and 1 <= n2 <= 3:
                e1, e2 = min(1, n2 - 1) * d2 * C, min(2, n2 - 1) * d2 * C
                for i in range(nt0[od]):
                    a = y0 + i * d0 * H * WC + lo2[ow] * C
                    b1, b2 = a + y1, a + y2
                    if i == 0:
                        for c in range(C):
                            of[_u(q + c)] = _max9(xf, a, b1, b2, e1, e2, c)
                    else:
                        for c in range(C):
                            of[_u(q + c)] = _maxnan(of[_u(q + c)], _max9(xf, a, b1, b2, e1, e2, c))
                continue
            o = out[b, od, oh, ow]
            _copy(o, x[b, lo0[od], lo1[oh], lo2[ow]])
            for i in range(nt0[od]):
                z = lo0[od] + i * d0
                for j in range(nt1[oh]):
                    y = lo1[oh] + j * d1
                    for k in range(nt2[ow]):
                        v = x[b, z, y, lo2[ow] + k * d2]
                        for c in range(C):
                            o[c] = _maxnan(o[c], v[c])


@njit(inline="always")
def _cl_pair_taps(xf, of, y0, y1, a, e, q, C, dv, zero, acc, apart):
    """``of[q:q + C]`` = the 2x2 window of C-vectors at ``y0 + a``, ``y0 + a + e``,
    ``y1 + a``, ``y1 + a + e`` of ``xf``, added in that order from ``zero`` in
    out's dtype, times ``dv``; ``apart``: one tap a pass, through ``acc`` (see
    ``pooling._cl_taps_apart``)."""
    if apart:
        for c in range(C):
            acc[c] = zero + xf[_u(y0 + a + c)]
        for c in range(C):
            acc[c] += xf[_u(y0 + a + e + c)]
        for c in range(C):
            acc[c] += xf[_u(y1 + a + c)]
        for c in range(C):
            of[_u(q + c)] = (acc[c] + xf[_u(y1 + a + e + c)]) * dv
        return
    for c in range(C):
        of[_u(q + c)] = ((((zero + xf[_u(y0 + a + c)]) + xf[_u(y0 + a + e + c)]) + xf[_u(y1 + a + c)])
                         + xf[_u(y1 + a + e + c)]) * dv


@Chunked
def cl_sum_forward(ch, nch, x, out, pmode, p, fmode, rdiv, rat, area, apart, lo0, nt0, d0, lo1, nt1, d1, lo2, nt2, d2):
    """Channels-last twin of ``sep_sum_forward`` (same pmode/fmode meanings).

    Accumulates in ``out``'s dtype: float32 lanes are twice as many as float64
    ones (measured 1.5x on k3 s1 windows, 256 channels).  ``apart``: whole 2x2
    windows read their taps in one pass each (see ``pooling._cl_taps_apart``)."""
    B, D, H, W, C = x.shape
    OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    xf, of = x.reshape(-1), out.reshape(-1)
    total = B * OD * OH
    nch = _chunks(total, nch)
    if ch >= nch:
        return
    inv = 1.0 / p
    acc = np.zeros(C, out.dtype)
    zero = acc[0]
    r0, r1, b, od, oh = _row_task(ch, nch, total, OD, OH)
    for r in range(r0, r1):
        if r > r0:
            b, od, oh = _next_row(b, od, oh, OD, OH)
        # the window's first row and the next ones, flat: the whole-window
        # passes index x and out directly (through per-tap views they
        # measured 1.37x slower in cache, k2s2 on 64 channels)
        y0 = (((b * D + lo0[od]) * H + lo1[oh]) * W) * C
        y1 = y0 + d1 * W * C
        y2 = y1 + d1 * W * C
        for ow in range(OW):
            # Whole 3x3 and 2x2 windows: all taps in one pass over the
            # channels, one store each; two or three taps per pass
            # otherwise.  (A pass per tap loads and stores every
            # accumulator: 1.3-1.8x slower.)  Taps are added in the
            # same order from the same zero either way, so ints reach
            # out's dtype before any addition.
            if pmode == 0 and fmode == 0 and nt0[od] == 1 and nt1[oh] == nt2[ow] == 3:
                a, e = lo2[ow] * C, d2 * C
                q = (r * OW + ow) * C
                dv = rdiv[rat[od, oh], ow]
                for c in range(C):
                    of[_u(q + c)] = ((((((((zero + xf[_u(y0 + a + c)]) + xf[_u(y0 + a + e + c)])
                                           + xf[_u(y0 + a + 2 * e + c)]) + xf[_u(y1 + a + c)])
                                         + xf[_u(y1 + a + e + c)]) + xf[_u(y1 + a + 2 * e + c)])
                                       + xf[_u(y2 + a + c)]) + xf[_u(y2 + a + e + c)]
                                      + xf[_u(y2 + a + 2 * e + c)]) * dv
                continue
            if pmode == 0 and fmode == 0 and nt0[od] == 1 and nt1[oh] == nt2[ow] == 2:
                a, e = lo2[ow] * C, d2 * C
                q = (r * OW + ow) * C
                dv = rdiv[rat[od, oh], ow]
                _cl_pair_taps(xf, of, y0, y1, a, e, q, C, dv, zero, acc, apart)
                continue
            _fill(acc, 0.0)
            for i in range(nt0[od]):
                z = lo0[od] + i * d0
                for j in range(nt1[oh]):
                    y = lo1[oh] + j * d1
                    w0 = lo2[ow]
                    if pmode == 0 and nt2[ow] == 3:
                        t0, t1, t2 = x[b, z, y, w0], x[b, z, y, w0 + d2], x[b, z, y, w0 + 2 * d2]
                        for c in range(C):
                            acc[c] = ((acc[c] + t0[c]) + t1[c]) + t2[c]
                    elif pmode == 0 and nt2[ow] == 2:
                        t0, t1 = x[b, z, y, w0], x[b, z, y, w0 + d2]
                        for c in range(C):
                            acc[c] = (acc[c] + t0[c]) + t1[c]
                    else:
                        for k in range(nt2[ow]):
                            v = x[b, z, y, w0 + k * d2]
                            if pmode == 0:
                                for c in range(C):
                                    acc[c] += v[c]
                            else:
                                for c in range(C):
                                    acc[c] += _lp_term(np.float64(v[c]), p, pmode == 2)
            o = out[b, od, oh, ow]
            dv = rdiv[rat[od, oh], ow]
            if fmode == 0:
                for c in range(C):
                    o[c] = acc[c] * dv
            elif fmode == 1:
                for c in range(C):
                    o[c] = acc[c] ** inv
            elif fmode == 2:
                for c in range(C):
                    o[c] = ((acc[c] * dv) * area) ** inv
            else:
                for c in range(C):
                    o[c] = (acc[c] * dv) ** inv


@Chunked
def cl_quad_sum_forward(ch, nch, x, out, rdiv, rat, lo0, apart, ahead, an):
    """Channels-last averages of whole 2x2 stride-2 windows (``_core.quad_rows``):
    ``cl_sum_forward``'s 2x2 passes, the same additions in the same order, in a
    loop of their own.  Inside the general kernel the same passes measured
    1.2x slower ((8, 56, 56, 256) float32, in and out of cache)."""
    B, D, H, W, C = x.shape
    OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    xf, of = x.reshape(-1), out.reshape(-1)
    total = B * OD * OH
    nch = _chunks(total, nch)
    if ch >= nch:
        return
    acc = np.zeros(C, out.dtype)
    zero = acc[0]
    r0, r1, b, od, oh = _row_task(ch, nch, total, OD, OH)
    for r in range(r0, r1):
        if r > r0:
            b, od, oh = _next_row(b, od, oh, OD, OH)
        y0 = (((b * D + lo0[od]) * H + 2 * oh) * W) * C
        y1 = y0 + W * C
        drow = rdiv[rat[od, oh]]
        for ow in range(OW):
            a = 2 * ow * C
            # a pixel's cells ``ahead`` on, a pixel at a time: asked a whole
            # row at once they measured 1.05-1.22x slower than not at all
            # ((8, 56, 56, 256)); this way 0.60-0.83x on 25.7-103 MB inputs
            _ask_ahead(xf, y0 + a, ahead, 2 * C)
            _ask_ahead(xf, y1 + a, ahead, 2 * C)
            q = (r * OW + ow) * C
            _cl_pair_taps(xf, of, y0, y1, a, C, q, C, drow[ow], zero, acc, apart)


@Chunked
def cl_quad_max_forward(ch, nch, x, out, lo0, ahead, an):
    """Channels-last max of whole 2x2 stride-2 windows (``_core.quad_rows``):
    each output pixel's four C-vectors in one pass over the channels, in the
    taps' row-major order; ``cl_max_forward`` reads them one tap a pass."""
    B, D, H, W, C = x.shape
    OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    xf, of = x.reshape(-1), out.reshape(-1)
    total = B * OD * OH
    nch = _chunks(total, nch)
    if ch >= nch:
        return
    r0, r1, b, od, oh = _row_task(ch, nch, total, OD, OH)
    for r in range(r0, r1):
        if r > r0:
            b, od, oh = _next_row(b, od, oh, OD, OH)
        y0 = (((b * D + lo0[od]) * H + 2 * oh) * W) * C
        y1 = y0 + W * C
        for ow in range(OW):
            a = 2 * ow * C
            # a pixel's cells ``ahead`` on (see cl_quad_sum_forward)
            _ask_ahead(xf, y0 + a, ahead, 2 * C)
            _ask_ahead(xf, y1 + a, ahead, 2 * C)
            q = (r * OW + ow) * C
            for c in range(C):
                m = _maxnan(xf[_u(y0 + a + c)], xf[_u(y0 + a + C + c)])
                m = _maxnan(m, xf[_u(y1 + a + c)])
                of[_u(q + c)] = _maxnan(m, xf[_u(y1 + a + C + c)])


# ----------------------------------------------------------------------------- max with indices
#
# PyTorch scans a window in row-major order with `v > best or isnan(v)`: the
# first maximum wins, and with NaNs the last NaN.  The separable form keeps
# that answer: down each column the same rule picks (value, row); across the
# columns a candidate replaces the best if it is NaN and the best is not or
# sits on an earlier-or-equal row, or if neither is NaN and it is larger, or
# equal on an earlier row.


@njit(inline="always")
def _col_wins(v, r, best, br):
    if v != v:
        return (best == best) or (r >= br)
    if best != best:
        return False
    return (v > best) or (v == best and r < br)


@njit(inline="always")
def _argmax_rows(x, b, od, oh, buf, brow, lo0, nt0, d0, lo1, nt1, d1):
    """The window rows of output row (b, od, oh) reduced per column into
    ``buf`` (value) and ``brow`` (its row ``z*H + y``), taps in row-major order."""
    H, W = x.shape[2], x.shape[3]
    first = True
    for i in range(nt0[od]):
        z = lo0[od] + i * d0
        for j in range(nt1[oh]):
            y = lo1[oh] + j * d1
            row = x[b, z, y]
            rid = z * H + y
            if first:
                _copy(buf, row)
                _fill(brow, rid)
                first = False
            else:
                for w in range(W):
                    v = row[w]
                    take = (v > buf[w]) or (v != v)
                    buf[w] = v if take else buf[w]
                    brow[w] = rid if take else brow[w]


@njit(inline="always")
def _argmax_col(buf, brow, lo2, nt2, d2, ow, W):
    """-> (max, flat index) of output column ``ow`` from ``_argmax_rows``'s buffers."""
    c0 = lo2[ow]
    best = buf[c0]
    br = brow[c0]
    bc = c0
    for k in range(1, nt2[ow]):
        cc = c0 + k * d2
        if _col_wins(buf[cc], brow[cc], best, br):
            best = buf[cc]
            br = brow[cc]
            bc = cc
    return best, br * W + bc


@Chunked
def sep_argmax_forward(ch, nch, x, out, idx, lo0, nt0, d0, lo1, nt1, d1, lo2, nt2, d2):
    """Channels-first (B, D, H, W) planes; out/idx (B, OD, OH, OW)."""
    B, D, H, W = x.shape
    OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    total = B * OD * OH
    nch = _chunks(total, nch)
    if ch >= nch:
        return
    buf = np.empty(W, x.dtype)
    brow = np.empty(W, np.int64)
    r0, r1, b, od, oh = _row_task(ch, nch, total, OD, OH)
    for r in range(r0, r1):
        if r > r0:
            b, od, oh = _next_row(b, od, oh, OD, OH)
        _argmax_rows(x, b, od, oh, buf, brow, lo0, nt0, d0, lo1, nt1, d1)
        orow = out[b, od, oh]
        irow = idx[b, od, oh]
        for ow in range(OW):
            orow[ow], irow[ow] = _argmax_col(buf, brow, lo2, nt2, d2, ow, W)


# ----------------------------------------------------------------------------- channels-first argmax
#
# The scalar argmax above walks each output's taps with a branchy compare and
# runs 4-10x slower than the maxima alone.  These rows run the same rule on
# short vectors (``_simd.argmax_rows``, ``_simd.argmax_wins``): the window's
# rows first (per column the value and the flat start of its row, int32 so
# both take the same lanes), then the taps of a row buffer padded as
# ``cf_row_args`` pads it, each lane's winner, row and column carried in
# registers through the taps, with ``_argmax_col``'s rule.  A padding cell
# holds the lowest value under a row start past every real one, so it loses
# every tie and never wins.  On (32, 64, 112, 112) k3 s2 p1 one thread's rows
# took 470-640 ns an output row through the scalar selects of the loops
# before them (their phase split, per-lane arrays and conversions did not
# vectorise), the whole forward 40-42 ms on two threads against 9.5-10.


_POS_PAD = np.int32(2 ** 30)


@njit(inline="always")
def _argmax_rows_loop(x, o0, rs, R, qs, Q, W, bv, br, pl, rid0):
    """``_simd.argmax_rows`` for rows of under 4 cells (under 8 with Q > 1)."""
    for q in range(Q):
        for r in range(R):
            off = q * qs + r * rs
            rid = np.int32(rid0 + off)
            for w in range(W):
                v = x[_u(o0 + off + w)]
                if (q == 0 and r == 0) or (v > bv[_u(pl + w)]) or (v != v):
                    bv[_u(pl + w)] = v
                    br[_u(pl + w)] = rid


@njit(inline="always")
def _argmax_row(x, b, od, oh, D, H, W, bv, br, pl, lo0, nt0, d0, lo1, nt1, d1, out, idx, oo, OW, s, K, d2):
    """Output row (b, od, oh): values into ``out[oo:oo + OW]``, flat indices in
    the plane into ``idx[oo:oo + OW]``; ``bv``/``br`` the padded row buffers."""
    p0 = b * D * H * W
    o0 = p0 + (lo0[od] * H + lo1[oh]) * W
    rs, qs, R, Q = d1 * W, d0 * H * W, nt1[oh], nt0[od]
    if W >= 8 or (W >= 4 and Q == 1):
        _simd.argmax_rows(x, o0, rs, R, qs, Q, W, bv, br, pl, o0 - p0)
    else:
        _argmax_rows_loop(x, o0, rs, R, qs, Q, W, bv, br, pl, o0 - p0)
    if (s == 1 or s == 2) and OW >= 4:
        _simd.argmax_wins(bv, br, 0, out, idx, oo, OW, s, K, d2, -pl)
        return
    for o in range(OW):
        c = o * s
        best, rb, kb = bv[_u(c)], br[_u(c)], 0
        for k in range(1, K):
            if _col_wins(bv[_u(c + k * d2)], br[_u(c + k * d2)], best, rb):
                best, rb, kb = bv[_u(c + k * d2)], br[_u(c + k * d2)], k
        out[_u(oo + o)] = best
        idx[_u(oo + o)] = np.int64(rb) + (c + kb * d2 - pl)


@Chunked
def cf_argmax_forward(ch, nch, x, out, idx, D, H, W, OD, OH, OW, lo0, nt0, d0, lo1, nt1, d1, pl, Lb, s, K, d2, lowest,
                      ahead, an):
    """Channels-first max with flat indices; x, out, idx flat as ``cf_max_forward``'s,
    W windows uniform (``cf_row_args``'s ``pl``, ``Lb``, stride and kernel),
    ``D*H*W`` and ``Lb`` below ``2**30``; ``ahead``, ``an``: ``cf_ahead``'s
    ((32, 64, 112, 112) k3 s2 p1 on two threads, kernel alone, medians of nine
    paired rounds: 10.0 ms without, 8.9 with)."""
    total = (out.size // (OD * OH * OW)) * OD * OH
    nch = _chunks(total, nch)
    if ch >= nch:
        return
    bv = np.full(Lb, lowest, x.dtype)
    br = np.full(Lb, _POS_PAD, np.int32)
    r0, r1, b, od, oh = _row_task(ch, nch, total, OD, OH)
    for r in range(r0, r1):
        if r > r0:
            b, od, oh = _next_row(b, od, oh, OD, OH)
        _argmax_row(x, b, od, oh, D, H, W, bv, br, pl, lo0, nt0, d0, lo1, nt1, d1, out, idx, r * OW, OW, s, K, d2)
        _ask_ahead(x, ((b * D + lo0[od] + (nt0[od] - 1) * d0) * H + lo1[oh]) * W, ahead, an)


@Chunked
def cf_argmax_backward(ch, nch, x, g, gx, D, H, W, OD, OH, OW, lo0, nt0, d0, lo1, nt1, d1, pl, Lb, s, K, d2, lowest):
    """Gradient of channels-first max without saved indices (x, g, gx flat;
    geometry as ``cf_argmax_forward``'s): each plane's argmax found as that
    kernel finds it and its gradient added straight away, in output order as
    ``scatter_max_backward`` adds it (the same bits), so neither the maxima
    nor the indices go through memory."""
    S = D * H * W
    P = OD * OH * OW
    B = gx.size // S
    nch = _chunks(B, nch)
    if ch >= nch:
        return
    o1, o2, o3, o4, o5 = (np.full(Lb, lowest, x.dtype), np.full(Lb, _POS_PAD, np.int32), np.empty(OW, x.dtype),
                          np.empty(OW, np.int64), np.empty(S, gx.dtype))
    bv, br, mv, mi, gp = _unowned(o1), _unowned(o2), _unowned(o3), _unowned(o4), _unowned(o5)
    for b in range(ch * B // nch, (ch + 1) * B // nch):
        _fill(gp, 0)
        for od in range(OD):
            for oh in range(OH):
                _argmax_row(x, b, od, oh, D, H, W, bv, br, pl, lo0, nt0, d0, lo1, nt1, d1, mv, mi, 0, OW, s, K, d2)
                go = b * P + (od * OH + oh) * OW
                for o in range(OW):
                    gp[_u(mi[_u(o)])] += g[_u(go + o)]
        _simd.stream(gp, 0, gx, b * S, S)
    _keep((o1, o2, o3, o4, o5))


@Chunked
def cl_argmax_forward(ch, nch, x, out, idx, lo0, nt0, d0, lo1, nt1, d1, lo2, nt2, d2):
    """Channels-last: taps in row-major order, the rule applied per channel (vectorised over C)."""
    B, D, H, W, C = x.shape
    OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    total = B * OD * OH
    n = total
    for r in range(ch * n // nch, (ch + 1) * n // nch):
        b, od, oh = _row_of(r, OD, OH)
        for ow in range(OW):
            o = out[b, od, oh, ow]
            ix = idx[b, od, oh, ow]
            _copy(o, x[b, lo0[od], lo1[oh], lo2[ow]])
            _fill(ix, (lo0[od] * H + lo1[oh]) * W + lo2[ow])
            for i in range(nt0[od]):
                z = lo0[od] + i * d0
                for j in range(nt1[oh]):
                    y = lo1[oh] + j * d1
                    for k in range(nt2[ow]):
                        xx = lo2[ow] + k * d2
                        v = x[b, z, y, xx]
                        pos = (z * H + y) * W + xx
                        for c in range(C):
                            take = (v[c] > o[c]) or (v[c] != v[c])
                            o[c] = v[c] if take else o[c]
                            ix[c] = pos if take else ix[c]


# ----------------------------------------------------------------------------- float16 input
#
# Numba has no CPU float16 type, and NumPy's float16 -> float32 cast runs on one
# thread at ~1.5 GB/s here (8x256x56x56: ~17 ms, five times the pooling), so
# kernels widen float16 bits themselves.  A half's exponent and mantissa shifted
# into a float32's low bits read as a float32 2**112 times too small, normals
# and subnormals alike; one exact multiply rescales it.  Inf and NaN (exponent
# all ones) take the float32 all-ones exponent instead, payload kept.

_HALF_SCALE = np.float32(2.0 ** 112)
_HALF_NEG_INF = np.uint16(0xFC00)


@_jit
def f16_to_f32(h, out):
    """``out[i] = float32(half with bits h[i])``; h uint16, both flat."""
    n = h.size
    o32 = out.view(np.uint32)
    nch = max(min(n >> 13, 256), 1)
    for ch in prange(nch):
        ch = np.int64(ch)
        a = ch * n // nch
        b = (ch + 1) * n // nch
        for i in range(a, b):
            o32[_u(i)] = (np.uint32(h[_u(i)]) & np.uint32(0x7FFF)) << np.uint32(13)
        for i in range(a, b):
            out[_u(i)] = out[_u(i)] * _HALF_SCALE
        for i in range(a, b):
            v = np.uint32(h[_u(i)])
            em = v & np.uint32(0x7FFF)
            bits = (em << np.uint32(13)) | np.uint32(0x7F800000) if em >= np.uint32(0x7C00) else o32[_u(i)]
            o32[_u(i)] = bits | ((v & np.uint32(0x8000)) << np.uint32(16))


# ----------------------------------------------------------------------------- serial twins
#
# Waking the thread pool costs tens of microseconds (and milliseconds on a
# busy machine), more than a tiny input's whole computation, so small calls run
# in the calling thread: a chunked kernel's body as one chunk, the other
# kernels as a serial compilation of the same code.

SERIAL_BELOW = int(os.environ.get("FASTPOOL_SERIAL_BELOW", 1 << 15))
_DIRECT_BELOW = 1 << 15


def _serial_twin(kernel):
    f = kernel.py_func
    g = types.FunctionType(f.__code__, f.__globals__, f.__name__ + "_serial", f.__defaults__, f.__closure__)
    g.__qualname__ = f.__qualname__ + "_serial"
    g.__doc__ = f.__doc__
    return cached_jit(nogil=True)(g)


_SERIAL = {}


def pick(kernel, a, b):
    """The kernel to run for arrays ``a`` and ``b`` (input and output, in either
    order); noting its call while a call's route is being learnt (``_memo``)."""
    k = _pick(kernel, a, b)
    calls = _memo.recording()
    return k if calls is None else _memo.Recorded(k, calls)


def _pick(kernel, a, b):
    if a.size + b.size >= SERIAL_BELOW:
        return kernel
    if isinstance(kernel, Chunked):
        # small inputs: the cheapest call; large ones (SERIAL_BELOW raised
        # after a fork) without the reference counting
        return kernel.serial if a.size + b.size < _DIRECT_BELOW else kernel.one_chunk
    twin = _SERIAL.get(kernel)
    if twin is None:
        twin = _SERIAL[kernel] = _serial_twin(kernel)
    return twin
