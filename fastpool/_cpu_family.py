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

import numpy as np
from numba import njit, prange

from ._cpu import cached_jit, channel_block, channel_blocks

_jit = cached_jit(parallel=True, nogil=True, fastmath=False)


# ----------------------------------------------------------------------------- max unpooling


@_jit
def unpool_forward(x, idx, out):
    """``out[b, idx[b, s, c], c] = x[b, s, c]`` over (B, S, C) views; ``out`` is zeroed.

    Each task owns a plane (and channel block) and writes in input order, so
    when two inputs name the same cell the later one wins (PyTorch's CPU rule).
    """
    B, S, C = x.shape
    cb, nblk = channel_blocks(C)
    for t in prange(B * nblk):
        t = np.int64(t)
        b, c0, c1 = channel_block(t, nblk, cb, C)
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


@njit(inline="always")
def _u(i):
    # an unsigned index skips Numba's negative-index wraparound in inner loops
    return np.uint64(i)


@_jit
def roi_pool_forward(x, out, arg, batch, hs, he, ws, we, neg, zero):
    """torchvision's roi_pool: max over integer bins ``[hs, he) x [ws, we)``.

    A non-empty bin starts from ``neg`` (-FLT_MAX) and keeps strictly larger
    values (NaN is skipped, as in torchvision and onnxruntime); an empty bin
    gives ``zero`` and argmax -1.  ``arg`` is the flat ``h * W + w`` position.
    Work runs plane by plane (one (n, p) plane is a contiguous (H, W, Q)
    block); channels-last keeps the channels innermost.
    """
    N, P, H, W, Q = x.shape
    K, PH, PW = out.shape[0], out.shape[2], out.shape[3]
    x3 = x.reshape(N, P, H * W * Q)
    for f in prange(K * PH):
        f = np.int64(f)
        k = f // PH
        ph = f - k * PH
        n = batch[k]
        h0, h1 = hs[k, ph], he[k, ph]
        for p in range(P):
            xp = x3[n, p]
            for pw in range(PW):
                w0, w1 = ws[k, pw], we[k, pw]
                empty = (h1 <= h0) or (w1 <= w0)
                if Q == 1:
                    best = zero if empty else neg
                    besti = -1
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            v = xp[_u(h * W + w)]
                            if v > best:
                                best = v
                                besti = h * W + w
                    out[k, p, ph, pw, 0] = best
                    arg[k, p, ph, pw, 0] = besti
                    continue
                orow = out[k, p, ph, pw]
                arow = arg[k, p, ph, pw]
                for q in range(Q):
                    orow[q] = zero if empty else neg
                    arow[q] = -1
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        base = (h * W + w) * Q
                        for q in range(Q):
                            v = xp[_u(base + q)]
                            if v > orow[q]:
                                orow[q] = v
                                arow[q] = h * W + w


@_jit
def roi_pool_backward(g, arg, gx, ptr, order):
    """Each task owns the cells of one image and channel block, and adds its RoIs'
    gradients in RoI order, then bin order (torchvision's order per cell)."""
    N, P, H, W, Q = gx.shape
    PH, PW = g.shape[2], g.shape[3]
    qb = 64 if Q > 64 else Q   # channel block: long vector loops, still several tasks per image
    nq = (Q + qb - 1) // qb
    for t in prange(N * P * nq):
        t = np.int64(t)
        n = t // (P * nq)
        r = t - n * (P * nq)
        p = r // nq
        q0 = (r - p * nq) * qb
        q1 = min(Q, q0 + qb)
        gp = gx[n, p].reshape(H * W * Q)
        for i in range(H * W):
            for q in range(q0, q1):
                gp[_u(i * Q + q)] = 0
        for e in range(ptr[n], ptr[n + 1]):
            k = order[e]
            for ph in range(PH):
                for pw in range(PW):
                    arow = arg[k, p, ph, pw]
                    grow = g[k, p, ph, pw]
                    for q in range(q0, q1):
                        a = arow[q]
                        if a >= 0:
                            gp[_u(a * Q + q)] += grow[q]


# ----------------------------------------------------------------------------- RoI align
#
# Bilinear sampling is separable: a sample at (y, x) weighs the four cells
# (ylo|yhi, xlo|xhi) by (hy|ly) * (hx|lx).  The caller precomputes, per RoI,
# one row per (bin, sample) along each axis (torchvision's arithmetic, in the
# input's precision); ``lo == -1`` marks a sample outside [-1, size], which
# contributes nothing.  Rows of RoI k start at ``yoff[k]`` (``gh[k]`` samples
# per bin) and ``xoff[k]``.  Kernels combine them into torchvision's
# per-sample (position, weight) lists, shared by every channel.


@njit(inline="always")
def _row_samples(k, ph, PW, W, Q, yoff, gh, xoff, gw, ylo, yhi, ly, hy, xlo, xhi, lx, hx,
                 pos, wts, start):
    """Fill the valid samples of bin row ``ph`` of RoI ``k``, in (pw, iy, ix) order:
    ``pos[i, :]`` flat (h*W + w)*Q offsets of the four corners, ``wts[i, :]`` their weights;
    bin ``pw`` owns ``start[pw]:start[pw + 1]``."""
    i = 0
    for pw in range(PW):
        start[pw] = i
        for iy in range(gh[k]):
            ty = yoff[k] + ph * gh[k] + iy
            if ylo[ty] < 0:
                continue
            for ix in range(gw[k]):
                tx = xoff[k] + pw * gw[k] + ix
                if xlo[tx] < 0:
                    continue
                pos[i, 0] = (ylo[ty] * W + xlo[tx]) * Q
                pos[i, 1] = (ylo[ty] * W + xhi[tx]) * Q
                pos[i, 2] = (yhi[ty] * W + xlo[tx]) * Q
                pos[i, 3] = (yhi[ty] * W + xhi[tx]) * Q
                wts[i, 0] = hy[ty] * hx[tx]
                wts[i, 1] = hy[ty] * lx[tx]
                wts[i, 2] = ly[ty] * hx[tx]
                wts[i, 3] = ly[ty] * lx[tx]
                i += 1
    start[PW] = i


@_jit
def roi_align_forward(x, out, batch, yoff, gh, xoff, gw, count,
                      ylo, yhi, ly, hy, xlo, xhi, lx, hx):
    """Accumulates in the input's precision, sample by sample in torchvision's order."""
    N, P, H, W, Q = x.shape
    K, PH, PW = out.shape[0], out.shape[2], out.shape[3]
    x3 = x.reshape(N, P, H * W * Q)
    for f in prange(K * PH):
        f = np.int64(f)
        k = f // PH
        ph = f - k * PH
        n = batch[k]
        cnt = count[k]
        m = PW * gh[k] * gw[k]
        pos = np.empty((m, 4), np.int64)
        wts = np.empty((m, 4), hy.dtype)
        start = np.empty(PW + 1, np.int64)
        _row_samples(k, ph, PW, W, Q, yoff, gh, xoff, gw, ylo, yhi, ly, hy, xlo, xhi, lx, hx,
                     pos, wts, start)
        for p in range(P):
            xp = x3[n, p]
            for pw in range(PW):
                if Q == 1:
                    acc = cnt - cnt   # zero in the input's precision
                    for i in range(start[pw], start[pw + 1]):
                        ui = _u(i)
                        acc += (wts[ui, 0] * xp[_u(pos[ui, 0])] + wts[ui, 1] * xp[_u(pos[ui, 1])]
                                + wts[ui, 2] * xp[_u(pos[ui, 2])] + wts[ui, 3] * xp[_u(pos[ui, 3])])
                    out[k, p, ph, pw, 0] = acc / cnt
                    continue
                orow = out[k, p, ph, pw]
                for q in range(Q):
                    orow[q] = 0
                for i in range(start[pw], start[pw + 1]):
                    w1, w2, w3, w4 = wts[i, 0], wts[i, 1], wts[i, 2], wts[i, 3]
                    a1, a2, a3, a4 = pos[i, 0], pos[i, 1], pos[i, 2], pos[i, 3]
                    for q in range(Q):
                        orow[q] += (w1 * xp[_u(a1 + q)] + w2 * xp[_u(a2 + q)]
                                    + w3 * xp[_u(a3 + q)] + w4 * xp[_u(a4 + q)])
                for q in range(Q):
                    orow[q] /= cnt


@_jit
def roi_align_backward(g, gx, ptr, order, yoff, gh, xoff, gw, count,
                       ylo, yhi, ly, hy, xlo, xhi, lx, hx):
    """One task per image and channel block: RoIs in order, then bins, then samples,
    adding ``g * w / count`` to the four corners (torchvision's order per cell)."""
    N, P, H, W, Q = gx.shape
    PH, PW = g.shape[2], g.shape[3]
    qb = 64 if Q > 64 else Q   # channel block: long vector loops, still several tasks per image
    nq = (Q + qb - 1) // qb
    for t in prange(N * P * nq):
        t = np.int64(t)
        n = t // (P * nq)
        r = t - n * (P * nq)
        p = r // nq
        q0 = (r - p * nq) * qb
        q1 = min(Q, q0 + qb)
        gp = gx[n, p].reshape(H * W * Q)
        for i in range(H * W):
            for q in range(q0, q1):
                gp[_u(i * Q + q)] = 0
        for e in range(ptr[n], ptr[n + 1]):
            k = order[e]
            cnt = count[k]
            m = PW * gh[k] * gw[k]
            pos = np.empty((m, 4), np.int64)
            wts = np.empty((m, 4), hy.dtype)
            start = np.empty(PW + 1, np.int64)
            for ph in range(PH):
                _row_samples(k, ph, PW, W, Q, yoff, gh, xoff, gw, ylo, yhi, ly, hy, xlo, xhi,
                             lx, hx, pos, wts, start)
                for pw in range(PW):
                    grow = g[k, p, ph, pw]
                    for i in range(start[pw], start[pw + 1]):
                        for c in range(4):
                            a = pos[i, c]
                            w = wts[i, c]
                            for q in range(q0, q1):
                                gp[_u(a + q)] += grow[q] * w / cnt
