"""Numba CPU kernels for the rest of the pooling family.

Max unpooling, fractional max pooling, stochastic pooling and RoI pool / RoI
align.  (Mixed and spatial pyramid pooling are combinations of the max,
average and adaptive kernels in ``_cpu`` and need none of their own.)

Windowed kernels use ``_cpu``'s canonical ``(B, D, H, W, C)`` view and its
per-axis tables; RoI kernels see the feature map as ``(N, P, H, W, Q)`` with
``(P, Q) = (C, 1)`` for channels-first and ``(1, C)`` for channels-last, so one
kernel serves both layouts.  Backward kernels either gather, or own one input
plane per task and add into it serially in a fixed order, so results never
depend on the thread count.
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit, prange

_CACHE = os.environ.get("FASTPOOL_NUMBA_CACHE", "1") != "0"

_jit = njit(parallel=True, cache=_CACHE, nogil=True, fastmath=False)


# ----------------------------------------------------------------------------- max unpooling


@_jit
def unpool_forward(x, idx, out):
    """``out[b, idx[b, s, c], c] = x[b, s, c]`` over (B, S, C) views; ``out`` is zeroed.

    Each task owns a plane (and channel block) and writes in input order, so
    when two inputs name the same cell the later one wins (PyTorch's CPU rule).
    """
    B, S, C = x.shape
    cb = 16 if C > 16 else C
    nblk = (C + cb - 1) // cb
    for t in prange(B * nblk):
        t = np.int64(t)
        b = t // nblk
        c0 = (t - b * nblk) * cb
        c1 = min(C, c0 + cb)
        for s in range(S):
            for c in range(c0, c1):
                out[b, idx[b, s, c], c] = x[b, s, c]


@_jit
def unpool_backward(g, idx, gx):
    """Gather: ``gx[b, s, c] = g[b, idx[b, s, c], c]`` (PyTorch's gradient of unpooling)."""
    B, S, C = gx.shape
    for f in prange(B * S):
        f = np.int64(f)
        b = f // S
        s = f - b * S
        for c in range(C):
            gx[b, s, c] = g[b, idx[b, s, c], c]


# ----------------------------------------------------------------------------- fractional max


@_jit
def frac_max_forward(x, out, idx, lo0, lo1, lo2, k0, k1, k2):
    """Max over ``k0 x k1 x k2`` windows starting at per-plane offsets ``lo*[b, c, o]``."""
    B, D, H, W, C = x.shape
    OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    for f in prange(B * OD * OH):
        f = np.int64(f)
        b = f // (OD * OH)
        r = f - b * (OD * OH)
        od = r // OH
        oh = r - od * OH
        for ow in range(OW):
            for c in range(C):
                z0 = lo0[b, c, od]
                y0 = lo1[b, c, oh]
                x0 = lo2[b, c, ow]
                best = x[b, z0, y0, x0, c]
                besti = (z0 * H + y0) * W + x0
                for z in range(z0, z0 + k0):
                    for y in range(y0, y0 + k1):
                        for xx in range(x0, x0 + k2):
                            v = x[b, z, y, xx, c]
                            # PyTorch's fractional rule: '>' or NaN, so NaN propagates
                            if (v > best) or (v != v):
                                best = v
                                besti = (z * H + y) * W + xx
                out[b, od, oh, ow, c] = best
                idx[b, od, oh, ow, c] = besti


# ----------------------------------------------------------------------------- stochastic


@_jit
def stoch_train_forward(x, u, out, idx, lo0, nt0, d0, lo1, nt1, d1, lo2, nt2, d2):
    """Sample one tap per window with probability value / window sum.

    ``u[b, od, oh, ow, c]`` in [0, 1) is the window's uniform draw (made by the
    caller's Generator, so results do not depend on threads): the pick is the
    first tap whose running sum exceeds ``u * sum``, so zero-valued taps are
    never picked.  An all-zero window picks tap ``floor(u * taps)`` (uniform).
    """
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
            n0, n1, n2 = nt0[od], nt1[oh], nt2[ow]
            for c in range(C):
                s = 0.0
                for i in range(n0):
                    for j in range(n1):
                        for k in range(n2):
                            s += x[b, z0 + i * d0, y0 + j * d1, x0 + k * d2, c]
                uu = u[b, od, oh, ow, c]
                pz, py, px = z0, y0, x0
                if s > 0.0:
                    target = uu * s
                    cum = 0.0
                    found = False
                    for i in range(n0):
                        if found:
                            break
                        for j in range(n1):
                            if found:
                                break
                            for k in range(n2):
                                v = x[b, z0 + i * d0, y0 + j * d1, x0 + k * d2, c]
                                if v > 0:
                                    cum += v
                                    # rounding can leave target == s: the last positive tap then
                                    pz, py, px = z0 + i * d0, y0 + j * d1, x0 + k * d2
                                    if cum > target:
                                        found = True
                                        break
                else:
                    t = np.int64(uu * (n0 * n1 * n2))
                    i = t // (n1 * n2)
                    j = (t - i * n1 * n2) // n2
                    k = t - (i * n1 + j) * n2
                    pz, py, px = z0 + i * d0, y0 + j * d1, x0 + k * d2
                out[b, od, oh, ow, c] = x[b, pz, py, px, c]
                idx[b, od, oh, ow, c] = (pz * H + py) * W + px


@_jit
def stoch_infer_forward(x, out, ssum, lo0, nt0, d0, lo1, nt1, d1, lo2, nt2, d2):
    """``out = sum a^2 / sum a`` (0 for an all-zero window), ``ssum = sum a``; float64."""
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
                s1 = 0.0
                s2 = 0.0
                for i in range(nt0[od]):
                    for j in range(nt1[oh]):
                        for k in range(nt2[ow]):
                            v = np.float64(x[b, z0 + i * d0, y0 + j * d1, x0 + k * d2, c])
                            s1 += v
                            s2 += v * v
                out[b, od, oh, ow, c] = s2 / s1 if s1 > 0.0 else 0.0
                ssum[b, od, oh, ow, c] = s1


@_jit
def stoch_infer_backward(g, x, out, ssum, gx, p0, c0, p1, c1, p2, c2):
    """Gather: d(sum a^2 / sum a)/da_j = (2 a_j - out) / sum a; 0 for all-zero windows."""
    B, D, H, W, C = gx.shape
    for f in prange(B * D * H):
        f = np.int64(f)
        b = f // (D * H)
        r = f - b * (D * H)
        z = r // H
        y = r - z * H
        for xx in range(W):
            for c in range(C):
                a = 2.0 * np.float64(x[b, z, y, xx, c])
                acc = 0.0
                for e0 in range(p0[z], p0[z + 1]):
                    od = c0[e0]
                    for e1 in range(p1[y], p1[y + 1]):
                        oh = c1[e1]
                        for e2 in range(p2[xx], p2[xx + 1]):
                            ow = c2[e2]
                            s = ssum[b, od, oh, ow, c]
                            if s > 0.0:
                                acc += np.float64(g[b, od, oh, ow, c]) * (a - out[b, od, oh, ow, c]) / s
                gx[b, z, y, xx, c] = acc


# ----------------------------------------------------------------------------- RoI pool


@_jit
def roi_pool_forward(x, out, arg, batch, hs, he, ws, we, neg, zero):
    """torchvision's roi_pool: max over integer bins ``[hs, he) x [ws, we)``.

    A non-empty bin starts from ``neg`` (-FLT_MAX) and keeps strictly larger
    values (NaN is skipped, as in torchvision and onnxruntime); an empty bin
    gives ``zero`` and argmax -1.  ``arg`` is the flat ``h * W + w`` position.
    """
    N, P, H, W, Q = x.shape
    K, PH, PW = out.shape[0], out.shape[2], out.shape[3]
    for f in prange(K * PH):
        f = np.int64(f)
        k = f // PH
        ph = f - k * PH
        n = batch[k]
        h0, h1 = hs[k, ph], he[k, ph]
        for pw in range(PW):
            w0, w1 = ws[k, pw], we[k, pw]
            empty = (h1 <= h0) or (w1 <= w0)
            for p in range(P):
                for q in range(Q):
                    best = zero if empty else neg
                    besti = -1
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            v = x[n, p, h, w, q]
                            if v > best:
                                best = v
                                besti = h * W + w
                    out[k, p, ph, pw, q] = best
                    arg[k, p, ph, pw, q] = besti


@_jit
def roi_pool_backward(g, arg, gx, ptr, order):
    """Each task owns one input plane (n, p, q) and adds its RoIs' gradients in
    RoI order, then bin order (torchvision's order)."""
    N, P, H, W, Q = gx.shape
    PH, PW = g.shape[2], g.shape[3]
    for t in prange(N * P * Q):
        t = np.int64(t)
        n = t // (P * Q)
        r = t - n * (P * Q)
        p = r // Q
        q = r - p * Q
        for h in range(H):
            for w in range(W):
                gx[n, p, h, w, q] = 0
        for e in range(ptr[n], ptr[n + 1]):
            k = order[e]
            for ph in range(PH):
                for pw in range(PW):
                    a = arg[k, p, ph, pw, q]
                    if a >= 0:
                        h = a // W
                        gx[n, p, h, a - h * W, q] += g[k, p, ph, pw, q]


# ----------------------------------------------------------------------------- RoI align
#
# Bilinear sampling is separable: a sample at (y, x) weighs the four cells
# (ylo|yhi, xlo|xhi) by (hy|ly) * (hx|lx).  The caller precomputes, per RoI,
# one row per (bin, sample) along each axis (torchvision's arithmetic, in the
# input's precision); ``lo == -1`` marks a sample outside [-1, size], which
# contributes nothing.  Rows of RoI k start at ``yoff[k]`` (``gh[k]`` samples
# per bin) and ``xoff[k]``.


@_jit
def roi_align_forward(x, out, batch, yoff, gh, xoff, gw, count,
                      ylo, yhi, ly, hy, xlo, xhi, lx, hx):
    N, P, H, W, Q = x.shape
    K, PH, PW = out.shape[0], out.shape[2], out.shape[3]
    for f in prange(K * PH):
        f = np.int64(f)
        k = f // PH
        ph = f - k * PH
        n = batch[k]
        for pw in range(PW):
            for p in range(P):
                for q in range(Q):
                    out[k, p, ph, pw, q] = 0
            for iy in range(gh[k]):
                ty = yoff[k] + ph * gh[k] + iy
                y_lo, y_hi = ylo[ty], yhi[ty]
                if y_lo < 0:
                    continue
                for ix in range(gw[k]):
                    tx = xoff[k] + pw * gw[k] + ix
                    x_lo, x_hi = xlo[tx], xhi[tx]
                    if x_lo < 0:
                        continue
                    w1 = hy[ty] * hx[tx]
                    w2 = hy[ty] * lx[tx]
                    w3 = ly[ty] * hx[tx]
                    w4 = ly[ty] * lx[tx]
                    for p in range(P):
                        for q in range(Q):
                            # accumulated in the input's precision, in torchvision's order
                            out[k, p, ph, pw, q] += (w1 * x[n, p, y_lo, x_lo, q] + w2 * x[n, p, y_lo, x_hi, q]
                                                     + w3 * x[n, p, y_hi, x_lo, q] + w4 * x[n, p, y_hi, x_hi, q])
            for p in range(P):
                for q in range(Q):
                    out[k, p, ph, pw, q] /= count[k]


@_jit
def roi_align_backward(g, gx, ptr, order, yoff, gh, xoff, gw, count,
                       ylo, yhi, ly, hy, xlo, xhi, lx, hx):
    """One task per input plane (n, p, q): RoIs in order, then bins, then samples."""
    N, P, H, W, Q = gx.shape
    PH, PW = g.shape[2], g.shape[3]
    for t in prange(N * P * Q):
        t = np.int64(t)
        n = t // (P * Q)
        r = t - n * (P * Q)
        p = r // Q
        q = r - p * Q
        for h in range(H):
            for w in range(W):
                gx[n, p, h, w, q] = 0
        for e in range(ptr[n], ptr[n + 1]):
            k = order[e]
            cnt = count[k]
            for ph in range(PH):
                for pw in range(PW):
                    gv = g[k, p, ph, pw, q]
                    for iy in range(gh[k]):
                        ty = yoff[k] + ph * gh[k] + iy
                        y_lo, y_hi = ylo[ty], yhi[ty]
                        if y_lo < 0:
                            continue
                        for ix in range(gw[k]):
                            tx = xoff[k] + pw * gw[k] + ix
                            x_lo, x_hi = xlo[tx], xhi[tx]
                            if x_lo < 0:
                                continue
                            gx[n, p, y_lo, x_lo, q] += gv * (hy[ty] * hx[tx]) / cnt
                            gx[n, p, y_lo, x_hi, q] += gv * (hy[ty] * lx[tx]) / cnt
                            gx[n, p, y_hi, x_lo, q] += gv * (ly[ty] * hx[tx]) / cnt
                            gx[n, p, y_hi, x_hi, q] += gv * (ly[ty] * lx[tx]) / cnt
