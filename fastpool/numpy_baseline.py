"""Plain-NumPy pooling: the baseline fastpool is timed against (demo and bench).

The best short NumPy forms found: the window split per axis, each axis reduced
by whole-array ufunc sweeps over strided slices.  A ``sliding_window_view``
reduction was measured 15x slower (max k3 s2 p1 on (8, 256, 56, 56): 527 ms
against 32 ms) and is not used.
"""

from __future__ import annotations

import numpy as np


def global_avg_pool(x, nd):
    return x.mean(axis=tuple(range(x.ndim - nd, x.ndim)), keepdims=True)


# ----------------------------------------------------------------------------- separable forms
#
# Faster plain-NumPy forms, used as the benchmark's NumPy peer.  The window is
# split per axis and each axis reduced by k whole-array ufunc calls on strided
# slices (np.maximum / np.add with out=), so every pass is a vectorised sweep.
# Measured on (8, 256, 56, 56) float32, 2 cores: max k3 s2 p1 32 ms against
# 527 ms for a sliding_window_view form; max k2 s2 16 ms against 242 ms
# for a reshape form; average k8 s8 22 ms against 44 ms.  They take
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
