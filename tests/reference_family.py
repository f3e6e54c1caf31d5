"""Slow, obviously-correct NumPy references for the rest of the pooling family.

Written from the operators' published definitions (PyTorch's ``max_unpool`` and
``fractional_max_pool``, torchvision's ``roi_pool`` / ``roi_align`` CPU
algorithms, Zeiler & Fergus's stochastic pooling, Yu et al.'s mixed pooling,
He et al.'s spatial pyramid pooling), not from fastpool's code: plain Python
loops over planes, outputs and taps, padding materialised, backward passes as
scatter loops.  Arrays are channels-first; the last ``nd`` axes are spatial.
Scalar arithmetic runs in the precision the published algorithm uses (the
input's dtype ``T``), through NumPy scalars of that dtype.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from reference import avg_pool, max_pool  # the core reference, same directory


def _planes(x, nd):
    lead = x.shape[: x.ndim - nd]
    return lead, list(itertools.product(*(range(n) for n in lead)))


# ----------------------------------------------------------------------------- max unpool


def max_unpool(x, idx, out_spatial):
    """Write each input value at its index in a zero plane; later inputs overwrite."""
    nd = len(out_spatial)
    lead, planes = _planes(x, nd)
    out = np.zeros(lead + tuple(out_spatial), x.dtype)
    for p in planes:
        flat = out[p].reshape(-1)
        for v, i in zip(x[p].reshape(-1), idx[p].reshape(-1)):
            flat[i] = v
        out[p] = flat.reshape(out_spatial)
    return out


def max_unpool_backward(g, idx, nd):
    lead, planes = _planes(idx, nd)
    gx = np.zeros(idx.shape, g.dtype)
    for p in planes:
        gflat = g[p].reshape(-1)
        gx[p] = gflat[idx[p].reshape(-1)].reshape(idx.shape[len(lead):])
    return gx


# ----------------------------------------------------------------------------- fractional


def fractional_starts(u, n, out, k):
    """PyTorch's generate_intervals for one plane and axis, in u's precision."""
    T = type(u)
    seq = []
    if out > 1:
        alpha = T(n - k) / T(out - 1)
        for i in range(out - 1):
            seq.append(int((T(i) + u) * alpha) - int(u * alpha))
    seq.append(n - k)
    return seq


def fractional_max_pool(x, kernel, out_size, samples):
    """samples: (N, C, nd) like PyTorch's _random_samples; x: (N, C, *spatial)."""
    nd = len(kernel)
    cols = (1, 0) if nd == 2 else (0, 1, 2)   # in 2-D, sample 0 drives width
    N, C = x.shape[:2]
    sp = x.shape[2:]
    out = np.empty((N, C) + tuple(out_size), x.dtype)
    idx = np.empty((N, C) + tuple(out_size), np.int64)
    for n in range(N):
        for c in range(C):
            starts = [fractional_starts(samples[n, c, cols[a]], sp[a], out_size[a], kernel[a])
                      for a in range(nd)]
            for opos in itertools.product(*(range(o) for o in out_size)):
                best, besti = -np.inf, None
                first = tuple(starts[a][opos[a]] for a in range(nd))
                besti = int(np.ravel_multi_index(first, sp))
                for tap in itertools.product(*(range(k) for k in kernel)):
                    cell = tuple(first[a] + tap[a] for a in range(nd))
                    v = x[(n, c) + cell]
                    if v > best or np.isnan(v):
                        best, besti = v, int(np.ravel_multi_index(cell, sp))
                out[(n, c) + opos] = best
                idx[(n, c) + opos] = besti
    return out, idx


# ----------------------------------------------------------------------------- stochastic


def _padded_windows(x, nd, kernel, stride, padding):
    """Yield (output position, window array over the zero-padded plane, cell coordinates)."""
    pads = [(0, 0)] * (x.ndim - nd) + [(p, p) for p in padding]
    xp = np.pad(x, pads)
    sp = xp.shape[x.ndim - nd:]
    outs = [(sp[a] - kernel[a]) // stride[a] + 1 for a in range(nd)]
    for opos in itertools.product(*(range(o) for o in outs)):
        sl = tuple(slice(opos[a] * stride[a], opos[a] * stride[a] + kernel[a]) for a in range(nd))
        yield opos, xp[(Ellipsis,) + sl], outs


def stochastic_inference(x, nd, kernel, stride, padding):
    """sum a^2 / sum a per window (zero padding adds nothing), 0 for all-zero windows."""
    x = np.asarray(x, np.float64)
    out = None
    for opos, win, outs in _padded_windows(x, nd, kernel, stride, padding):
        if out is None:
            out = np.zeros(x.shape[: x.ndim - nd] + tuple(outs))
        axes = tuple(range(win.ndim - nd, win.ndim))
        s1 = win.sum(axis=axes)
        s2 = (win * win).sum(axis=axes)
        out[(Ellipsis,) + opos] = np.where(s1 > 0, s2 / np.where(s1 > 0, s1, 1), 0.0)
    return out


def window_probabilities(values):
    """Probability of drawing each cell of a window of non-negative values."""
    v = np.asarray(values, np.float64).ravel()
    s = v.sum()
    return np.full(v.size, 1.0 / v.size) if s == 0 else v / s


# ----------------------------------------------------------------------------- mixed, SPP


def mixed_pool(x, nd, kernel, stride, padding, alpha):
    """alpha * max + (1 - alpha) * avg (count_include_pad); alpha scalar or per channel."""
    mx = max_pool(x, nd, kernel, stride, padding)[0].astype(np.float64)
    av = avg_pool(x, nd, kernel, stride, padding)
    a = np.asarray(alpha, np.float64)
    if a.ndim:
        a = a.reshape((-1,) + (1,) * nd)
    return a * mx + (1 - a) * av


def spatial_pyramid_pool(x, levels, mode):
    """x (N, C, H, W) -> (N, C * sum(l*l)); bins floor(i*n/l) .. ceil((i+1)*n/l)."""
    N, C, H, W = x.shape
    feats = []
    for lvl in levels:
        out = np.empty((N, C, lvl, lvl), np.float64)
        for i in range(lvl):
            h0, h1 = (i * H) // lvl, -((-(i + 1) * H) // lvl)
            for j in range(lvl):
                w0, w1 = (j * W) // lvl, -((-(j + 1) * W) // lvl)
                win = x[:, :, h0:h1, w0:w1].astype(np.float64)
                out[:, :, i, j] = win.max(axis=(2, 3)) if mode == "max" else win.mean(axis=(2, 3))
        feats.append(out.reshape(N, -1))
    return np.concatenate(feats, axis=1)


# ----------------------------------------------------------------------------- RoI pool


def c_round(v):
    """C's round(): halves away from zero."""
    return int(math.copysign(math.floor(abs(float(v)) + 0.5), float(v)))


def roi_pool(x, rois, ph, pw, scale):
    """torchvision's CPU roi_pool: (values, argmax); rois (K, 5) [b, x1, y1, x2, y2] in x's dtype."""
    T = x.dtype.type
    N, C, H, W = x.shape
    K = len(rois)
    out = np.zeros((K, C, ph, pw), x.dtype)
    arg = np.full((K, C, ph, pw), -1, np.int64)
    for k in range(K):
        b = int(rois[k, 0])
        sw, sh, ew, eh = (c_round(T(rois[k, i]) * T(scale)) for i in (1, 2, 3, 4))
        rw, rh = max(ew - sw + 1, 1), max(eh - sh + 1, 1)
        bh, bw = T(rh) / T(ph), T(rw) / T(pw)
        for i in range(ph):
            h0 = min(max(int(math.floor(T(i) * bh)) + sh, 0), H)
            h1 = min(max(int(math.ceil(T(i + 1) * bh)) + sh, 0), H)
            for j in range(pw):
                w0 = min(max(int(math.floor(T(j) * bw)) + sw, 0), W)
                w1 = min(max(int(math.ceil(T(j + 1) * bw)) + sw, 0), W)
                empty = h1 <= h0 or w1 <= w0
                for c in range(C):
                    best = T(0) if empty else T(-np.finfo(np.float32).max)
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            if x[b, c, h, w] > best:
                                best, arg[k, c, i, j] = x[b, c, h, w], h * W + w
                    out[k, c, i, j] = best
    return out, arg


def roi_pool_backward(g, x_shape, rois, arg):
    gx = np.zeros(x_shape, np.float64)
    W = x_shape[3]
    for k in range(len(rois)):
        b = int(rois[k, 0])
        for c, i, j in itertools.product(*(range(n) for n in arg.shape[1:])):
            a = arg[k, c, i, j]
            if a >= 0:
                gx[b, c, a // W, a % W] += g[k, c, i, j]
    return gx


# ----------------------------------------------------------------------------- RoI align


def _bilinear(H, W, y, x):
    """torchvision's bilinear_interpolate weights: [((h, w), weight), ...] or [] outside."""
    T = type(y)
    if y < -1.0 or y > H or x < -1.0 or x > W:
        return []
    y = max(y, T(0))
    x = max(x, T(0))
    y0, x0 = int(y), int(x)
    if y0 >= H - 1:
        y0 = y1 = H - 1
        y = T(y0)
    else:
        y1 = y0 + 1
    if x0 >= W - 1:
        x0 = x1 = W - 1
        x = T(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - T(y0), x - T(x0)
    hy, hx = T(1) - ly, T(1) - lx
    return [((y0, x0), hy * hx), ((y0, x1), hy * lx), ((y1, x0), ly * hx), ((y1, x1), ly * lx)]


def _roi_align_samples(x_shape, roi, ph, pw, scale, sampling_ratio, aligned, T):
    """Per bin: (list of samples, each a list of ((h, w), weight)), and the sample count."""
    H, W = x_shape[2], x_shape[3]
    off = T(0.5) if aligned else T(0)
    sw, sh, ew, eh = (T(roi[i]) * T(scale) - off for i in (1, 2, 3, 4))
    rw, rh = ew - sw, eh - sh
    if not aligned:
        rw, rh = max(rw, T(1)), max(rh, T(1))
    bh, bw = rh / T(ph), rw / T(pw)
    gh = sampling_ratio if sampling_ratio > 0 else int(math.ceil(bh))
    gw = sampling_ratio if sampling_ratio > 0 else int(math.ceil(bw))
    count = T(max(gh * gw, 1))
    bins = {}
    for i, j in itertools.product(range(ph), range(pw)):
        samples = []
        for iy in range(max(gh, 0)):
            y = sh + T(i) * bh + T(iy + 0.5) * bh / T(gh)
            for ix in range(max(gw, 0)):
                xx = sw + T(j) * bw + T(ix + 0.5) * bw / T(gw)
                samples.append(_bilinear(H, W, y, xx))
        bins[i, j] = samples
    return bins, count


def roi_align(x, rois, ph, pw, scale, sampling_ratio, aligned):
    T = x.dtype.type
    K, C = len(rois), x.shape[1]
    out = np.zeros((K, C, ph, pw), x.dtype)
    for k in range(K):
        b = int(rois[k, 0])
        bins, count = _roi_align_samples(x.shape, rois[k], ph, pw, scale, sampling_ratio, aligned, T)
        for (i, j), samples in bins.items():
            for c in range(C):
                acc = T(0)
                for s in samples:
                    if s:   # w1*v1 + w2*v2 + w3*v3 + w4*v4, left to right, in T
                        v = [w * x[b, c, h, ww] for (h, ww), w in s]
                        acc += v[0] + v[1] + v[2] + v[3]
                out[k, c, i, j] = acc / count
    return out


def roi_align_backward(g, x_shape, rois, ph, pw, scale, sampling_ratio, aligned, dtype=np.float64):
    T = np.dtype(dtype).type
    gx = np.zeros(x_shape, np.float64)
    for k in range(len(rois)):
        b = int(rois[k, 0])
        bins, count = _roi_align_samples(x_shape, rois[k], ph, pw, scale, sampling_ratio, aligned, T)
        for (i, j), samples in bins.items():
            for s in samples:
                for (h, w), wt in s:
                    gx[b, :, h, w] += g[k, :, i, j] * float(wt) / float(count)
    return gx


# ---------------------------------------------------------------- helpers shared by the family tests


def cl(x, nd):
    return np.ascontiguousarray(np.moveaxis(x, -(nd + 1), -1))


def cf(x, nd):
    return np.moveaxis(x, -1, -(nd + 1))


def fd_check(gx, fun, x, g, eps=1e-6, atol=1e-8, rtol=0.0, max_points=48):
    """Compare an analytic gradient with central differences of sum(g * fun(x)).

    Large inputs are checked on a fixed subset: up to half the points where the
    analytic gradient is non-zero, the rest anywhere (so both the routed and the
    zero entries are tested)."""
    pick = np.random.default_rng(0)
    flat = np.arange(x.size)
    if x.size > max_points:
        nz = flat[np.asarray(gx).ravel() != 0]
        a = pick.choice(nz, min(len(nz), max_points // 2), replace=False)
        b = pick.choice(np.setdiff1d(flat, a), max_points - len(a), replace=False)
        flat = np.concatenate([a, b])
    for f in flat:
        i = np.unravel_index(f, x.shape)
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        fd = (np.sum(g * fun(xp)) - np.sum(g * fun(xm))) / (2 * eps)
        np.testing.assert_allclose(gx[i], fd, atol=atol, rtol=rtol, err_msg=f"at {i}")
