"""Plain-NumPy pooling: the baseline fastpool is timed against.

These are the best short NumPy forms for the common cases: a strided window
view (``sliding_window_view``) reduced along the window axes, and a
reshape-based form when the window tiles the input exactly.  They take
channels-first ``(N, C, *spatial)`` input and symmetric padding only.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _padded(x, nd, padding, fill):
    if not padding:
        return x
    pad = [(0, 0)] * (x.ndim - nd) + [(padding, padding)] * nd
    return np.pad(x, pad, constant_values=fill)


def _windows(x, nd, k, s):
    axes = tuple(range(x.ndim - nd, x.ndim))
    v = sliding_window_view(x, (k,) * nd, axis=axes)
    sl = (Ellipsis,) + (slice(None, None, s),) * nd + (slice(None),) * nd
    return v[(slice(None),) * (x.ndim - nd) + sl[1:]]


def max_pool(x, nd, k, s=None, padding=0):
    s = s or k
    spatial = x.shape[x.ndim - nd:]
    if padding == 0 and k == s and all(n % k == 0 for n in spatial):
        shp = x.shape[: x.ndim - nd] + sum(((n // k, k) for n in spatial), ())
        return x.reshape(shp).max(axis=tuple(range(x.ndim - nd + 1, x.ndim + nd, 2)))
    xp = _padded(x, nd, padding, -np.inf)
    return _windows(xp, nd, k, s).max(axis=tuple(range(-nd, 0)))


def avg_pool(x, nd, k, s=None, padding=0):
    """Average with padding counted in the divisor (PyTorch's default)."""
    s = s or k
    spatial = x.shape[x.ndim - nd:]
    if padding == 0 and k == s and all(n % k == 0 for n in spatial):
        shp = x.shape[: x.ndim - nd] + sum(((n // k, k) for n in spatial), ())
        return x.reshape(shp).mean(axis=tuple(range(x.ndim - nd + 1, x.ndim + nd, 2)))
    xp = _padded(x, nd, padding, 0)
    return _windows(xp, nd, k, s).mean(axis=tuple(range(-nd, 0)))


def global_avg_pool(x, nd):
    return x.mean(axis=tuple(range(x.ndim - nd, x.ndim)), keepdims=True)


# ----------------------------------------------------------------------------- separable forms
#
# Faster plain-NumPy forms, used as the benchmark's NumPy peer.  The window is
# split per axis and each axis reduced by k whole-array ufunc calls on strided
# slices (np.maximum / np.add with out=), so every pass is a vectorised sweep.
# Measured on (8, 256, 56, 56) float32, 2 cores: max k3 s2 p1 32 ms against
# 527 ms for the sliding_window_view form above; max k2 s2 16 ms against 242 ms
# for the reshape form; average k8 s8 22 ms against 44 ms.  They take
# ``layout="channels_last"`` too (the channel axis then stays innermost).


def _spatial_axes(ndim, nd, layout):
    if layout == "channels_first":
        return tuple(range(ndim - nd, ndim))
    if layout == "channels_last":
        return tuple(range(ndim - nd - 1, ndim - 1))
    raise ValueError(f"layout must be 'channels_first' or 'channels_last', got {layout!r}")


def _pad_axes(x, axes, padding, fill):
    if not padding:
        return x
    pad = [(0, 0)] * x.ndim
    for ax in axes:
        pad[ax] = (padding, padding)
    return np.pad(x, pad, constant_values=fill)


def _taps(ndim, ax, start, count, step):
    """Index selecting ``count`` cells ``start, start + step, ...`` along ``ax``."""
    idx = [slice(None)] * ndim
    idx[ax] = slice(start, start + step * (count - 1) + 1, step)
    return tuple(idx)


def _separable(x, axes, k, s, ufunc):
    for ax in axes:
        o = (x.shape[ax] - k) // s + 1
        if k == 1:
            x = x[_taps(x.ndim, ax, 0, o, s)].copy()
            continue
        acc = ufunc(x[_taps(x.ndim, ax, 0, o, s)], x[_taps(x.ndim, ax, 1, o, s)])
        for j in range(2, k):
            ufunc(acc, x[_taps(x.ndim, ax, j, o, s)], out=acc)
        x = acc
    return x


def max_pool_separable(x, nd, k, s=None, padding=0, layout="channels_first"):
    """Max pooling, symmetric ``padding`` (NaN propagates, as np.maximum does)."""
    s = s or k
    axes = _spatial_axes(x.ndim, nd, layout)
    return _separable(_pad_axes(x, axes, padding, -np.inf), axes, k, s, np.maximum)


def avg_pool_separable(x, nd, k, s=None, padding=0, layout="channels_first"):
    """Average pooling with padding counted in the divisor (PyTorch's default)."""
    s = s or k
    axes = _spatial_axes(x.ndim, nd, layout)
    out = _separable(_pad_axes(x, axes, padding, 0), axes, k, s, np.add)
    out *= out.dtype.type(1.0 / k**nd)
    return out


def max_pool_backward_bincount(grad_output, indices, x_shape, nd):
    """Gradient of max pooling from PyTorch-style per-plane flat ``indices``
    (channels_first): one ``np.bincount`` over plane-offset indices, which sums
    the gradients of outputs sharing an argmax."""
    planes = int(np.prod(x_shape[: len(x_shape) - nd]))
    plane = int(np.prod(x_shape[len(x_shape) - nd:]))
    flat = indices.reshape(planes, -1) + (np.arange(planes, dtype=np.int64) * plane)[:, None]
    gx = np.bincount(flat.ravel(), weights=grad_output.ravel(), minlength=planes * plane)
    return gx.astype(grad_output.dtype, copy=False).reshape(x_shape)


def avg_pool_backward_separable(grad_output, x_shape, nd, k, s=None, padding=0,
                                layout="channels_first"):
    """Gradient of :func:`avg_pool_separable`: the transposed sweeps, each output's
    gradient added back onto the k cells of its window along one axis at a time."""
    s = s or k
    axes = _spatial_axes(len(x_shape), nd, layout)
    g = grad_output * grad_output.dtype.type(1.0 / k**nd)
    for ax in reversed(axes):
        shape = list(g.shape)
        shape[ax] = x_shape[ax] + 2 * padding
        acc = np.zeros(shape, g.dtype)
        o = g.shape[ax]
        for j in range(k):
            acc[_taps(acc.ndim, ax, j, o, s)] += g
        g = acc
    if padding:
        idx = [slice(None)] * g.ndim
        for ax in axes:
            idx[ax] = slice(padding, padding + x_shape[ax])
        g = g[tuple(idx)]
    return np.ascontiguousarray(g)
