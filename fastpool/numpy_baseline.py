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
