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
