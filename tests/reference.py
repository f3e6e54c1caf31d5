"""A slow, obviously-correct NumPy reference for the pooling operators.

Written from the operators' definitions (PyTorch and ONNX documentation), not
from fastpool's code: it has its own output-length rule, enumerates every
window tap explicitly, and computes backward passes as SCATTER loops (each
output adds its gradient into the cells of its window), whereas fastpool's
kernels gather.  Python loops run over output positions and window taps; only
the leading (batch, channel) axes are vectorised.

Arrays are channels-first with any number of leading axes: ``(..., *spatial)``
where the last ``nd`` axes are spatial (so batched ``(N, C, *sp)`` and
unbatched ``(C, *sp)`` input both work).  Tests transpose channels-last data
before and after calling these functions.

Results: max pooling keeps the input dtype; everything else is float64.  Where
a configuration is impossible (the window does not fit in the padded input, or
a window holds no input cell), :class:`RefError` is raised.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


class RefError(ValueError):
    """The reference rejects the arguments: some window would read no input cell."""


# ----------------------------------------------------------------------------- geometry


def _per_axis(value, nd):
    if isinstance(value, (int, np.integer)):
        return (int(value),) * nd
    value = tuple(int(v) for v in value)
    assert len(value) == nd, (value, nd)
    return value


def same_upper_pads(n, k, s, d):
    """SAME_UPPER: ceil(n/s) outputs; when the total padding is odd the extra cell is at the end."""
    out = math.ceil(n / s)
    span = d * (k - 1) + 1
    total = max(0, (out - 1) * s + span - n)
    begin = total // 2
    return begin, total - begin


def pad_pairs(padding, nd, sizes, kernel, stride, dilation):
    """Padding in any accepted spelling -> one (begin, end) pair per spatial axis."""
    if isinstance(padding, str):
        if padding.lower() == "valid":
            return ((0, 0),) * nd
        assert padding.lower() == "same", padding
        return tuple(same_upper_pads(n, k, s, d) for n, k, s, d in zip(sizes, kernel, stride, dilation))
    if isinstance(padding, (int, np.integer)):
        return ((int(padding), int(padding)),) * nd
    pairs = []
    for p in padding:
        if isinstance(p, (int, np.integer)):
            pairs.append((int(p), int(p)))
        else:
            b, e = p
            pairs.append((int(b), int(e)))
    assert len(pairs) == nd
    return tuple(pairs)


def out_len(n, k, s, d, pb, pe, ceil_mode):
    """Number of windows along one axis.

    span = d*(k-1)+1; out = floor((n+pb+pe-span)/s)+1, or with ceil_mode
    ceil(...)+1, minus one when that last window would start at or beyond the
    end of input + begin padding, i.e. entirely in the end padding.
    """
    span = d * (k - 1) + 1
    room = n + pb + pe - span
    if room < 0:
        raise RefError(f"window span {span} exceeds padded length {n + pb + pe}")
    if ceil_mode:
        out = math.ceil(room / s) + 1
        if (out - 1) * s >= n + pb:
            out -= 1
    else:
        out = math.floor(room / s) + 1
    return out


def window_axis(n, k, s, d, pb, pe, ceil_mode):
    """Per output: (input cells read, number of taps inside input + explicit padding)."""
    rows = []
    for o in range(out_len(n, k, s, d, pb, pe, ceil_mode)):
        taps = [o * s - pb + t * d for t in range(k)]
        inside = [c for c in taps if 0 <= c < n]
        padded = len([c for c in taps if -pb <= c < n + pe])
        if not inside:
            raise RefError(f"output {o} of an axis of length {n} reads only padding")
        rows.append((inside, padded))
    return rows


def adaptive_axis(n, o):
    """PyTorch's bins: cells floor(i*n/o) .. ceil((i+1)*n/o) - 1."""
    if n < 1 or o < 1:
        raise RefError("adaptive pooling needs non-empty input and output axes")
    rows = []
    for i in range(o):
        lo = (i * n) // o
        hi = -((-(i + 1) * n) // o)
        cells = list(range(lo, hi))
        rows.append((cells, len(cells)))
    return rows


def window_axes(sizes, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    nd = len(sizes)
    k = _per_axis(kernel_size, nd)
    s = k if stride is None else _per_axis(stride, nd)
    d = _per_axis(dilation, nd)
    pads = pad_pairs(padding, nd, sizes, k, s, d)
    return [window_axis(n, k[a], s[a], d[a], pads[a][0], pads[a][1], ceil_mode)
            for a, n in enumerate(sizes)]


def adaptive_axes(sizes, output_size):
    nd = len(sizes)
    if output_size is None or isinstance(output_size, (int, np.integer)):
        output_size = (output_size,) * nd
    return [adaptive_axis(n, n if o is None else int(o)) for n, o in zip(sizes, output_size)]


def output_sizes(axes):
    return tuple(len(a) for a in axes)


def _windows(axes):
    """Yield (output position, window cells in row-major tap order, padded tap count)."""
    for opos in itertools.product(*(range(len(a)) for a in axes)):
        rows = [axes[a][o] for a, o in enumerate(opos)]
        cells = list(itertools.product(*(r[0] for r in rows)))
        padded = math.prod(r[1] for r in rows)
        yield opos, cells, padded


def _split(x, nd):
    x = np.asarray(x)
    assert x.ndim >= nd
    return x.shape[: x.ndim - nd], x.shape[x.ndim - nd:]


# ----------------------------------------------------------------------------- reducers


def _max(x, axes):
    lead, sp = _split(x, len(axes))
    osz = output_sizes(axes)
    out = np.empty(lead + osz, x.dtype)
    idx = np.empty(lead + osz, np.int64)
    isfloat = x.dtype.kind == "f"
    lowest = -np.inf if isfloat else np.iinfo(x.dtype).min
    for opos, cells, _ in _windows(axes):
        # PyTorch's loop: best = -inf, index = first tap; a tap wins if it is
        # strictly greater or NaN (so ties keep the first, the last NaN wins)
        best = np.full(lead, lowest, x.dtype)
        besti = np.full(lead, np.ravel_multi_index(cells[0], sp), np.int64)
        for c in cells:
            v = x[(Ellipsis,) + c]
            take = v > best
            if isfloat:
                take = take | np.isnan(v)
            best = np.where(take, v, best)
            besti = np.where(take, np.ravel_multi_index(c, sp), besti)
        out[(Ellipsis,) + opos] = best
        idx[(Ellipsis,) + opos] = besti
    return out, idx


def _avg(x, axes, divisor):
    """divisor(cells, padded_count) -> the number a window's sum is divided by."""
    lead, _ = _split(x, len(axes))
    xf = np.asarray(x, np.float64)
    out = np.empty(lead + output_sizes(axes), np.float64)
    for opos, cells, padded in _windows(axes):
        total = np.zeros(lead, np.float64)
        for c in cells:
            total = total + xf[(Ellipsis,) + c]
        out[(Ellipsis,) + opos] = total / divisor(cells, padded)
    return out


LP_MODES = ("onnx", "torch", "mean")


def _lp(x, axes, p, mode, area):
    assert mode in LP_MODES
    lead, _ = _split(x, len(axes))
    xf = np.asarray(x, np.float64)
    p = float(p)
    out = np.empty(lead + output_sizes(axes), np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        for opos, cells, padded in _windows(axes):
            total = np.zeros(lead, np.float64)
            for c in cells:
                v = xf[(Ellipsis,) + c]
                # torch raises the signed value to p (NaN for negative v, fractional p)
                total = total + (np.power(v, p) if mode == "torch" else np.power(np.abs(v), p))
            if mode == "torch":
                # avg_pool(x^p) with torch's count_include_pad divisor, times the kernel area
                total = total / padded * area
            elif mode == "mean":
                total = total / len(cells)
            out[(Ellipsis,) + opos] = np.power(total, 1.0 / p)
    return out


# ----------------------------------------------------------------------------- backward (scatter)


def _max_backward(g, x, axes):
    lead, sp = _split(x, len(axes))
    _, idx = _max(x, axes)
    rows = int(np.prod(lead, dtype=np.int64))
    gx = np.zeros((rows, int(np.prod(sp, dtype=np.int64))), np.float64)
    g2 = np.asarray(g, np.float64).reshape(rows, -1)
    i2 = idx.reshape(rows, -1)
    r = np.arange(rows)
    for j in range(g2.shape[1]):  # outputs in ascending order, like a scatter loop
        gx[r, i2[:, j]] += g2[:, j]
    return gx.reshape(x.shape)


def _avg_backward(g, x, axes, divisor):
    gx = np.zeros(np.shape(x), np.float64)
    gf = np.asarray(g, np.float64)
    for opos, cells, padded in _windows(axes):
        share = gf[(Ellipsis,) + opos] / divisor(cells, padded)
        for c in cells:
            gx[(Ellipsis,) + c] += share
    return gx


def _lp_backward(g, x, axes, p, mode, area):
    """d out / d v for out = F(S)^(1/p), S = sum of v-terms; 0 where the pooled sum is 0."""
    assert mode in LP_MODES
    lead, _ = _split(x, len(axes))
    xf = np.asarray(x, np.float64)
    gf = np.asarray(g, np.float64)
    gx = np.zeros(xf.shape, np.float64)
    p = float(p)
    with np.errstate(invalid="ignore", divide="ignore"):
        for opos, cells, padded in _windows(axes):
            vals = [xf[(Ellipsis,) + c] for c in cells]
            if mode == "torch":
                scale = area / padded
                inner = sum(np.power(v, p) for v in vals) * scale      # A
                # out = A^(1/p); dA/dv = scale * p v^(p-1)
                outer = np.power(inner, 1.0 / p - 1.0) / p * scale * p
                terms = [np.power(v, p - 1.0) for v in vals]
            else:
                scale = 1.0 / len(cells) if mode == "mean" else 1.0
                inner = sum(np.power(np.abs(v), p) for v in vals) * scale
                outer = np.power(inner, 1.0 / p - 1.0) / p * scale * p
                # d|v|^p/dv = p |v|^(p-1) sign(v); 0 at v = 0
                terms = [np.where(v == 0, 0.0, np.power(np.abs(v), p - 1.0) * np.sign(v))
                         for v in vals]
            go = np.where(inner == 0, 0.0, gf[(Ellipsis,) + opos] * outer)
            for c, t in zip(cells, terms):
                gx[(Ellipsis,) + c] += go * t
    return gx


# ----------------------------------------------------------------------------- public functions


def _div_fn(count_include_pad, divisor_override):
    if divisor_override is not None:
        return lambda cells, padded: float(divisor_override)
    if count_include_pad:
        return lambda cells, padded: float(padded)
    return lambda cells, padded: float(len(cells))


def _valid_div(cells, padded):
    return float(len(cells))


def max_pool(x, nd, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(values, PyTorch per-plane flat indices)."""
    x = np.asarray(x)
    axes = window_axes(_split(x, nd)[1], kernel_size, stride, padding, dilation, ceil_mode)
    return _max(x, axes)


def max_pool_backward(g, x, nd, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    x = np.asarray(x)
    axes = window_axes(_split(x, nd)[1], kernel_size, stride, padding, dilation, ceil_mode)
    return _max_backward(g, x, axes)


def avg_pool(x, nd, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
             count_include_pad=True, divisor_override=None):
    x = np.asarray(x)
    axes = window_axes(_split(x, nd)[1], kernel_size, stride, padding, dilation, ceil_mode)
    return _avg(x, axes, _div_fn(count_include_pad, divisor_override))


def avg_pool_backward(g, x, nd, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                      count_include_pad=True, divisor_override=None):
    x = np.asarray(x)
    axes = window_axes(_split(x, nd)[1], kernel_size, stride, padding, dilation, ceil_mode)
    return _avg_backward(g, x, axes, _div_fn(count_include_pad, divisor_override))


def lp_pool(x, nd, p, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
            mode="onnx"):
    """mode "onnx": (sum |v|^p)^(1/p) over the input taps; "torch": (avg_pool(v^p) *
    kernel area)^(1/p) with count_include_pad; "mean": (mean |v|^p)^(1/p)."""
    x = np.asarray(x)
    axes = window_axes(_split(x, nd)[1], kernel_size, stride, padding, dilation, ceil_mode)
    return _lp(x, axes, p, mode, float(math.prod(_per_axis(kernel_size, nd))))


def lp_pool_backward(g, x, nd, p, kernel_size, stride=None, padding=0, dilation=1,
                     ceil_mode=False, mode="onnx"):
    x = np.asarray(x)
    axes = window_axes(_split(x, nd)[1], kernel_size, stride, padding, dilation, ceil_mode)
    return _lp_backward(g, x, axes, p, mode, float(math.prod(_per_axis(kernel_size, nd))))


def adaptive_avg_pool(x, nd, output_size):
    x = np.asarray(x)
    return _avg(x, adaptive_axes(_split(x, nd)[1], output_size), _valid_div)


def adaptive_avg_pool_backward(g, x, nd, output_size):
    x = np.asarray(x)
    return _avg_backward(g, x, adaptive_axes(_split(x, nd)[1], output_size), _valid_div)


def adaptive_max_pool(x, nd, output_size):
    x = np.asarray(x)
    return _max(x, adaptive_axes(_split(x, nd)[1], output_size))


def adaptive_max_pool_backward(g, x, nd, output_size):
    x = np.asarray(x)
    return _max_backward(g, x, adaptive_axes(_split(x, nd)[1], output_size))


def _global_axes(x):
    x = np.asarray(x)
    assert x.ndim >= 3, "global pooling takes (N, C, *spatial)"
    return x, x.ndim - 2, adaptive_axes(x.shape[2:], 1)


def _squeeze(out, keepdims):
    return out if keepdims else out.reshape(out.shape[:2])


def _unsqueeze(g, x, keepdims):
    g = np.asarray(g)
    return g if keepdims else g.reshape(g.shape[:2] + (1,) * (x.ndim - 2))


def global_avg_pool(x, keepdims=True):
    x, _, axes = _global_axes(x)
    return _squeeze(_avg(x, axes, _valid_div), keepdims)


def global_avg_pool_backward(g, x, keepdims=True):
    x, _, axes = _global_axes(x)
    return _avg_backward(_unsqueeze(g, x, keepdims), x, axes, _valid_div)


def global_max_pool(x, keepdims=True):
    x, _, axes = _global_axes(x)
    out, idx = _max(x, axes)
    return _squeeze(out, keepdims), _squeeze(idx, keepdims)


def global_max_pool_backward(g, x, keepdims=True):
    x, _, axes = _global_axes(x)
    return _max_backward(_unsqueeze(g, x, keepdims), x, axes)


def global_lp_pool(x, p=2.0, keepdims=True):
    x, _, axes = _global_axes(x)
    return _squeeze(_lp(x, axes, p, "onnx", 1.0), keepdims)


def global_lp_pool_backward(g, x, p=2.0, keepdims=True):
    x, _, axes = _global_axes(x)
    return _lp_backward(_unsqueeze(g, x, keepdims), x, axes, p, "onnx", 1.0)


# ----------------------------------------------------------------------------- layouts


def to_channels_last(x, nd):
    """(..., C, *spatial) -> (..., *spatial, C)."""
    return np.moveaxis(np.asarray(x), -(nd + 1), -1)


def to_channels_first(x, nd):
    """(..., *spatial, C) -> (..., C, *spatial)."""
    return np.moveaxis(np.asarray(x), -1, -(nd + 1))
