"""Numba CPU kernels.

Every kernel works on a canonical 5-D view ``(B, D, H, W, C)``: channels-first
input is ``(N*C, D, H, W, 1)``, channels-last is ``(N, D, H, W, C)``, and 1-D and
2-D inputs have singleton ``D``/``H``.  Geometry arrives as per-axis tables
(see ``_geometry``), so one kernel per reducer serves fixed, padded, dilated,
ceil-mode, adaptive and global pooling.

Forward kernels run in parallel over ``(B, od, oh)``; backward kernels gather
over input cells (each input cell sums the outputs that read it, in ascending
output order), so results are bit-identical for any thread count and the
summation order is PyTorch's scatter order.  Sums accumulate in float64 and are
rounded once.
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit, prange

_CACHE = os.environ.get("FASTPOOL_NUMBA_CACHE", "1") != "0"

_jit = njit(parallel=True, cache=_CACHE, nogil=True, fastmath=False)


# ----------------------------------------------------------------------------- forward


@_jit
def max_forward(x, out, idx, want_idx, lo0, nt0, d0, lo1, nt1, d1, lo2, nt2, d2):
    B, D, H, W, C = x.shape
    OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    for f in prange(B * OD * OH):
        f = np.int64(f)
        b = f // (OD * OH)
        r = f - b * (OD * OH)
        od = r // OH
        oh = r - od * OH
        z0 = lo0[od]
        y0 = lo1[oh]
        for ow in range(OW):
            x0 = lo2[ow]
            for c in range(C):
                # the first tap seeds the running max, so integers need no -inf
                best = x[b, z0, y0, x0, c]
                besti = (z0 * H + y0) * W + x0
                for i in range(nt0[od]):
                    z = z0 + i * d0
                    for j in range(nt1[oh]):
                        y = y0 + j * d1
                        for k in range(nt2[ow]):
                            xx = x0 + k * d2
                            v = x[b, z, y, xx, c]
                            # PyTorch's rule: strict '>' keeps the first maximum,
                            # and a NaN always wins, so NaN propagates
                            if (v > best) or (v != v):
                                best = v
                                besti = (z * H + y) * W + xx
                out[b, od, oh, ow, c] = best
                if want_idx:
                    idx[b, od, oh, ow, c] = besti


@_jit
def avg_forward(x, out, div, lo0, nt0, d0, lo1, nt1, d1, lo2, nt2, d2):
    B, D, H, W, C = x.shape
    OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    for f in prange(B * OD * OH):
        f = np.int64(f)
        b = f // (OD * OH)
        r = f - b * (OD * OH)
        od = r // OH
        oh = r - od * OH
        z0 = lo0[od]
        y0 = lo1[oh]
        for ow in range(OW):
            x0 = lo2[ow]
            dv = div[od, oh, ow]
            for c in range(C):
                acc = 0.0
                for i in range(nt0[od]):
                    z = z0 + i * d0
                    for j in range(nt1[oh]):
                        y = y0 + j * d1
                        for k in range(nt2[ow]):
                            acc += x[b, z, y, x0 + k * d2, c]
                out[b, od, oh, ow, c] = acc / dv


@njit(inline="always")
def _lp_term(v, p, signed):
    if p == 1.0:
        return v if signed else abs(v)
    if p == 2.0:
        return v * v
    return v ** p if signed else abs(v) ** p


@_jit
def lp_forward(x, out, p, mode, div, area, lo0, nt0, d0, lo1, nt1, d1, lo2, nt2, d2):
    """mode 0: (sum |x|^p)^(1/p) (ONNX); 1: PyTorch's lp_pool; 2: power mean."""
    B, D, H, W, C = x.shape
    OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    signed = mode == 1
    inv = 1.0 / p
    for f in prange(B * OD * OH):
        f = np.int64(f)
        b = f // (OD * OH)
        r = f - b * (OD * OH)
        od = r // OH
        oh = r - od * OH
        z0 = lo0[od]
        y0 = lo1[oh]
        for ow in range(OW):
            x0 = lo2[ow]
            for c in range(C):
                acc = 0.0
                for i in range(nt0[od]):
                    z = z0 + i * d0
                    for j in range(nt1[oh]):
                        y = y0 + j * d1
                        for k in range(nt2[ow]):
                            acc += _lp_term(np.float64(x[b, z, y, x0 + k * d2, c]), p, signed)
                if mode == 1:
                    # PyTorch: avg_pool(x^p) * kernel area, then ^(1/p)
                    acc = (acc / div[od, oh, ow]) * area
                elif mode == 2:
                    acc = acc / div[od, oh, ow]
                out[b, od, oh, ow, c] = acc ** inv


# ----------------------------------------------------------------------------- backward


@_jit
def max_backward(g, idx, gx, p0, c0, p1, c1, p2, c2):
    B, D, H, W, C = gx.shape
    for f in prange(B * D * H):
        f = np.int64(f)
        b = f // (D * H)
        r = f - b * (D * H)
        z = r // H
        y = r - z * H
        for xx in range(W):
            pos = (z * H + y) * W + xx
            for c in range(C):
                acc = 0.0
                for a in range(p0[z], p0[z + 1]):
                    od = c0[a]
                    for e in range(p1[y], p1[y + 1]):
                        oh = c1[e]
                        for q in range(p2[xx], p2[xx + 1]):
                            ow = c2[q]
                            if idx[b, od, oh, ow, c] == pos:
                                acc += g[b, od, oh, ow, c]
                gx[b, z, y, xx, c] = acc


@_jit
def avg_backward(g, gx, div, p0, c0, p1, c1, p2, c2):
    B, D, H, W, C = gx.shape
    for f in prange(B * D * H):
        f = np.int64(f)
        b = f // (D * H)
        r = f - b * (D * H)
        z = r // H
        y = r - z * H
        for xx in range(W):
            for c in range(C):
                acc = 0.0
                for a in range(p0[z], p0[z + 1]):
                    od = c0[a]
                    for e in range(p1[y], p1[y + 1]):
                        oh = c1[e]
                        for q in range(p2[xx], p2[xx + 1]):
                            ow = c2[q]
                            acc += g[b, od, oh, ow, c] / div[od, oh, ow]
                gx[b, z, y, xx, c] = acc


@_jit
def lp_backward(g, x, out, gx, p, mode, div, area, p0, c0, p1, c1, p2, c2):
    """Gradient of ``lp_forward`` for the same ``mode``; 0 where a window's sum is 0."""
    B, D, H, W, C = gx.shape
    for f in prange(B * D * H):
        f = np.int64(f)
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
# tap-outer / output-inner; the clipped border outputs walk the table.  The
# row layout (W, C) covers channels-first (C == 1) and channels-last alike.
# Rows are handed out in chunks so each chunk allocates its buffers once.


@njit(inline="always")
def _maxnan(a, b):
    # PyTorch's update: a later value wins if larger or NaN, so NaN propagates
    return b if (b > a) or (b != b) else a


@njit(inline="always")
def _row_of(r, OD, OH):
    b = r // (OD * OH)
    q = r - b * (OD * OH)
    od = q // OH
    return b, od, q - od * OH


@njit(inline="always")
def _chunks(total):
    # several chunks per thread balances uneven rows; one chunk when tiny
    n = min(total, 64)
    return max(n, 1)


@_jit
def sep_max_forward(x, out, C, lo0, nt0, d0, lo1, nt1, d1, lo2, nt2, d2,
                    ia, ib, ibase, istep, K):
    B, D, H, WC = x.shape
    OD, OH, OWC = out.shape[1], out.shape[2], out.shape[3]
    OW = OWC // C
    total = B * OD * OH
    nch = _chunks(total)
    for ch in prange(nch):
        ch = np.int64(ch)
        buf = np.empty(WC, x.dtype)
        for r in range(ch * total // nch, (ch + 1) * total // nch):
            b, od, oh = _row_of(r, OD, OH)
            first = True
            for i in range(nt0[od]):
                z = lo0[od] + i * d0
                for j in range(nt1[oh]):
                    y = lo1[oh] + j * d1
                    row = x[b, z, y]
                    if first:
                        buf[:] = row
                        first = False
                    else:
                        for w in range(WC):
                            buf[w] = _maxnan(buf[w], row[w])
            orow = out[b, od, oh]
            if C == 1:
                for ow in range(ia, ib):
                    orow[ow] = buf[ibase + ow * istep]
                for k in range(1, K):
                    off = ibase + k * d2
                    for ow in range(ia, ib):
                        orow[ow] = _maxnan(orow[ow], buf[off + ow * istep])
            else:
                for ow in range(ia, ib):
                    s0 = (ibase + ow * istep) * C
                    for c in range(C):
                        orow[ow * C + c] = buf[s0 + c]
                    for k in range(1, K):
                        s1 = s0 + k * d2 * C
                        for c in range(C):
                            orow[ow * C + c] = _maxnan(orow[ow * C + c], buf[s1 + c])
            for ow in range(OW):
                if ow >= ia and ow < ib:
                    continue
                for c in range(C):
                    m = buf[lo2[ow] * C + c]
                    for k in range(1, nt2[ow]):
                        m = _maxnan(m, buf[(lo2[ow] + k * d2) * C + c])
                    orow[ow * C + c] = m


@_jit
def sep_sum_forward(x, out, C, pmode, p, fmode, div, area,
                    lo0, nt0, d0, lo1, nt1, d1, lo2, nt2, d2, ia, ib, ibase, istep, K):
    """Window sums in float64 of x (pmode 0), |x|^p (1) or x^p (2), then finalised:
    fmode 0: sum / div (average); 1: sum^(1/p) (ONNX Lp); 2: (sum/div*area)^(1/p)
    (PyTorch's lp_pool); 3: (sum/div)^(1/p) (power mean)."""
    B, D, H, WC = x.shape
    OD, OH, OWC = out.shape[1], out.shape[2], out.shape[3]
    OW = OWC // C
    total = B * OD * OH
    nch = _chunks(total)
    inv = 1.0 / p
    for ch in prange(nch):
        ch = np.int64(ch)
        buf = np.empty(WC, np.float64)
        acc = np.empty(OWC, np.float64)
        for r in range(ch * total // nch, (ch + 1) * total // nch):
            b, od, oh = _row_of(r, OD, OH)
            buf[:] = 0.0
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
            if C == 1:
                for ow in range(ia, ib):
                    acc[ow] = buf[ibase + ow * istep]
                for k in range(1, K):
                    off = ibase + k * d2
                    for ow in range(ia, ib):
                        acc[ow] += buf[off + ow * istep]
            else:
                for ow in range(ia, ib):
                    s0 = (ibase + ow * istep) * C
                    for c in range(C):
                        acc[ow * C + c] = buf[s0 + c]
                    for k in range(1, K):
                        s1 = s0 + k * d2 * C
                        for c in range(C):
                            acc[ow * C + c] += buf[s1 + c]
            for ow in range(OW):
                if ow >= ia and ow < ib:
                    continue
                for c in range(C):
                    s = 0.0
                    for k in range(nt2[ow]):
                        s += buf[(lo2[ow] + k * d2) * C + c]
                    acc[ow * C + c] = s
            orow = out[b, od, oh]
            drow = div[od, oh]
            if fmode == 0:
                for ow in range(OW):
                    for c in range(C):
                        orow[ow * C + c] = acc[ow * C + c] / drow[ow]
            elif fmode == 1:
                for q in range(OWC):
                    orow[q] = acc[q] ** inv
            elif fmode == 2:
                for ow in range(OW):
                    for c in range(C):
                        orow[ow * C + c] = ((acc[ow * C + c] / drow[ow]) * area) ** inv
            else:
                for ow in range(OW):
                    for c in range(C):
                        orow[ow * C + c] = (acc[ow * C + c] / drow[ow]) ** inv


@_jit
def scatter_max_backward(g, idx, gx):
    """Per-task serial scatter in output order (PyTorch's order): deterministic.

    ``g``/``idx`` are (B, O, C) and ``gx`` is (B, S, C); tasks are (b, channel block).
    """
    B, O, C = g.shape
    S = gx.shape[1]
    cb = 16 if C > 16 else C
    nblk = (C + cb - 1) // cb
    for t in prange(B * nblk):
        t = np.int64(t)
        b = t // nblk
        c0 = (t - b * nblk) * cb
        c1 = min(C, c0 + cb)
        for s in range(S):
            for c in range(c0, c1):
                gx[b, s, c] = 0.0
        for o in range(O):
            for c in range(c0, c1):
                gx[b, idx[b, o, c], c] += g[b, o, c]


@_jit
def sep_avg_backward(g, gx, C, div, p0, c0, p1, c1, p2, c2):
    """Adjoint of the separable average: per input row, gather the covering
    output rows (divided) into a buffer, then the covering columns."""
    B, D, H, WC = gx.shape
    OD, OH, OWC = g.shape[1], g.shape[2], g.shape[3]
    OW = OWC // C
    W = WC // C
    total = B * D * H
    nch = _chunks(total)
    for ch in prange(nch):
        ch = np.int64(ch)
        buf = np.empty(OWC, np.float64)
        for r in range(ch * total // nch, (ch + 1) * total // nch):
            b, z, y = _row_of(r, D, H)
            buf[:] = 0.0
            for a in range(p0[z], p0[z + 1]):
                od = c0[a]
                for e in range(p1[y], p1[y + 1]):
                    oh = c1[e]
                    grow = g[b, od, oh]
                    drow = div[od, oh]
                    for ow in range(OW):
                        dv = drow[ow]
                        for c in range(C):
                            buf[ow * C + c] += grow[ow * C + c] / dv
            xrow = gx[b, z, y]
            for xx in range(W):
                for c in range(C):
                    s = 0.0
                    for q in range(p2[xx], p2[xx + 1]):
                        s += buf[c2[q] * C + c]
                    xrow[xx * C + c] = s


# ----------------------------------------------------------------------------- global, channels-first
#
# Each plane is one contiguous run; eight independent accumulators give the
# loop instruction-level parallelism without reassociating a single running
# sum or max across lanes (results stay independent of the thread count).


@_jit
def global_max_cf(x, out):
    B, S = x.shape
    S8 = S - S % 8
    for b in prange(B):
        b = np.int64(b)
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


@_jit
def global_sum_cf(x, out, pmode, p, fmode, divisor):
    """fmode 0: sum / divisor; 1: sum^(1/p)."""
    B, S = x.shape
    S8 = S - S % 8
    inv = 1.0 / p
    for b in prange(B):
        b = np.int64(b)
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
        if pmode == 0:
            for i in range(0, S8, 8):
                s0 += x[b, i]
                s1 += x[b, i + 1]
                s2 += x[b, i + 2]
                s3 += x[b, i + 3]
                s4 += x[b, i + 4]
                s5 += x[b, i + 5]
                s6 += x[b, i + 6]
                s7 += x[b, i + 7]
            for i in range(S8, S):
                s0 += x[b, i]
        else:
            for i in range(S):
                s0 += _lp_term(np.float64(x[b, i]), p, False)
        s = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
        out[b] = s / divisor if fmode == 0 else s ** inv
