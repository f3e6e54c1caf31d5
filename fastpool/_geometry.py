"""Window geometry: output sizes and per-axis window tables.

A pooling window is a product of per-axis windows, so every geometry (fixed,
padded, dilated, ceil-mode, adaptive, global) becomes, per spatial axis, a table
of rows ``(lo, taps, count)``: the first input cell the window reads, how many
cells it reads (``dilation`` apart), and the tap count that an average divides
by when padding counts.  Padding is clipped away here and never materialised.

For backward passes the same table is inverted (``cover``): for every input
cell, the outputs whose windows read it, in ascending order.  Gathering over
that list gives deterministic sums in PyTorch's accumulation order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, wraps

import numpy as np

from .errors import PoolingError
from ._spec import AdaptiveSpec, WindowSpec


@dataclass(frozen=True)
class AxisTable:
    n: int              # input length
    out: int            # output length
    lo: np.ndarray      # int64[out], first input cell read
    taps: np.ndarray    # int64[out], cells read (>= 1)
    step: int           # distance between taps (dilation)
    count: np.ndarray   # int64[out], taps inside input + explicit padding
    pads: tuple         # resolved (begin, end) padding
    # window o starts at o*stride - pads[0] and has `kernel` taps before
    # clipping; 0 when the windows are uneven (adaptive bins that do not divide)
    stride: int = 0
    kernel: int = 0

    @property
    def cover(self):
        return _cover(self)


_SINGLETON = None


def singleton() -> AxisTable:
    global _SINGLETON
    if _SINGLETON is None:
        one = np.ones(1, np.int64)
        _SINGLETON = AxisTable(1, 1, np.zeros(1, np.int64), one, 1, one, (0, 0), 1, 1)
    return _SINGLETON


def same_padding(n: int, k: int, s: int, d: int) -> tuple:
    """SAME_UPPER padding: ``ceil(n / s)`` outputs, the odd cell at the end."""
    span = d * (k - 1) + 1
    out = -(-n // s)
    total = max((out - 1) * s + span - n, 0)
    return (total // 2, total - total // 2)


def output_length(n: int, k: int, s: int, d: int, pb: int, pe: int, ceil_mode: bool) -> int:
    """PyTorch's and ONNX's (opset >= 19) rule; raises if the window does not fit."""
    span = d * (k - 1) + 1
    room = n + pb + pe - span
    if room < 0:
        return -1
    if ceil_mode:
        out = -(-room // s) + 1
        # the last window must start inside the input or the left padding
        if (out - 1) * s >= n + pb:
            out -= 1
    else:
        out = room // s + 1
    return out


def window_axis(axis: int, n: int, k: int, s: int, d: int, pb: int, pe: int,
                ceil_mode: bool) -> AxisTable:
    out = output_length(n, k, s, d, pb, pe, ceil_mode)
    if out < 1:
        span = d * (k - 1) + 1
        raise PoolingError(
            f"kernel_size must fit in the padded input: on spatial axis {axis} the window "
            f"spans {span} cells (kernel_size={k}, dilation={d}) but the padded input has "
            f"{n + pb + pe} (size {n}, padding ({pb}, {pe}))"
        )
    if out > n * k:
        # each input cell is read by at most k windows, so some window holds none;
        # caught before tables of `out` rows are built (huge paddings)
        raise PoolingError(
            f"every window must hold an input cell: on spatial axis {axis} the padding gives "
            f"{out} windows but {n} cells can fill at most {n * k} (kernel_size={k}, stride={s}, "
            f"dilation={d}, padding ({pb}, {pe}))"
        )
    start = np.arange(out, dtype=np.int64) * s - pb
    # valid taps t satisfy 0 <= start + t*d <= n-1, 0 <= t < k
    t0 = np.maximum(0, -(start // d))          # ceil(-start / d) for start < 0
    t0 = np.where(start >= 0, 0, t0)
    t1 = np.minimum(k, np.floor_divide(n - 1 - start, d) + 1)
    taps = t1 - t0
    if (taps <= 0).any():
        o = int(np.flatnonzero(taps <= 0)[0])
        raise PoolingError(
            f"every window must hold an input cell: on spatial axis {axis} output {o} reads "
            f"only padding (size {n}, kernel_size={k}, stride={s}, dilation={d}, "
            f"padding ({pb}, {pe}))"
        )
    lo = start + t0 * d
    # taps inside [-pb, n + pe): the ceil-mode overhang past the end padding never counts
    count = np.minimum(k, np.floor_divide(n + pe - 1 - start, d) + 1)
    return AxisTable(n, out, lo, taps, d, count, (pb, pe), s, k)


def adaptive_axis(n: int, out: int) -> AxisTable:
    i = np.arange(out, dtype=np.int64)
    lo = (i * n) // out
    hi = -((-(i + 1) * n) // out)
    taps = hi - lo
    even = n // out if n % out == 0 else 0
    return AxisTable(n, out, lo, taps, 1, taps, (0, 0), even, even)


def per_plan(fn):
    """Memoise ``fn(axes, *extra)``, a pure function of a plan and hashable
    extras (kernel arguments, routing tests).  Plans come from the lru-cached
    builders here, so a plan is one object: entries are keyed by its identity
    and hold it, so the id cannot be reused while the entry lives.  Recomputed
    per call these cost 10-20 us of Python, more than the kernel of a small
    input.  Values are shared: tuples, or arrays nobody writes."""
    cache: dict = {}

    @wraps(fn)
    def cached(axes, *extra):
        key = (id(axes),) + extra
        hit = cache.get(key)
        if hit is not None:
            return hit[1]
        val = fn(axes, *extra)
        if len(cache) >= 1024:  # fractional pooling draws a new plan per call
            cache.clear()
        cache[key] = (axes, val)
        return val

    return cached


@lru_cache(maxsize=256)
def _window_plan(spec: WindowSpec, spatial: tuple):
    _fits(_window_outs(spec, spatial))  # a raise caches nothing
    axes = []
    for a, n in enumerate(spatial):
        k, s, d = spec.window[a], spec.stride[a], spec.dilation[a]
        if spec.padding == "same":
            pb, pe = same_padding(n, k, s, d)
        else:
            pb, pe = spec.padding[a]
        axes.append(window_axis(a, n, k, s, d, pb, pe, spec.ceil_mode))
    return tuple(axes)


@lru_cache(maxsize=256)
def _adaptive_plan(spec: AdaptiveSpec, spatial: tuple):
    _fits(n if o is None else o for n, o in zip(spatial, spec.output_size))
    axes = []
    for a, n in enumerate(spatial):
        out = spec.output_size[a]
        if n < 1:
            raise PoolingError(f"adaptive pooling needs a non-empty spatial axis {a}, got size {n}")
        axes.append(adaptive_axis(n, n if out is None else out))
    return tuple(axes)


# Output cells per plane beyond which no float64 array (nor a divisor table) can exist.
MAX_PLANE_CELLS = (1 << 63) // 8


def _fits(outs) -> None:
    """Checked before any table is built (an adaptive axis of 2**31 bins alone is 16 GiB)."""
    cells = 1
    for o in outs:
        cells *= max(int(o), 0)
    if cells >= MAX_PLANE_CELLS:
        raise PoolingError(
            f"the output would have {' x '.join(str(o) for o in outs)} = {cells} cells per "
            f"plane, more than an array can hold"
        )


def _window_outs(spec: WindowSpec, spatial: tuple) -> list:
    outs = []
    for a, n in enumerate(spatial):
        k, s, d = spec.window[a], spec.stride[a], spec.dilation[a]
        pb, pe = same_padding(n, k, s, d) if spec.padding == "same" else spec.padding[a]
        outs.append(output_length(n, k, s, d, pb, pe, spec.ceil_mode))
    return outs


def plan(spec, spatial) -> tuple:
    """Per-axis tables for ``spatial`` (the input's spatial sizes)."""
    spatial = tuple(int(n) for n in spatial)
    if isinstance(spec, WindowSpec):
        return _window_plan(spec, spatial)
    if isinstance(spec, AdaptiveSpec):
        return _adaptive_plan(spec, spatial)
    if spec == "global":
        return _global_plan(spatial)
    raise TypeError(f"unknown geometry spec {spec!r}")


@lru_cache(maxsize=256)
def _global_plan(spatial: tuple):
    return tuple(adaptive_axis(n, 1) if n >= 1 else _empty_global(a) for a, n in enumerate(spatial))


def _empty_global(axis):
    raise PoolingError(f"global pooling needs a non-empty spatial axis {axis}, got size 0")


def padded3(axes: tuple) -> tuple:
    """Pad to three axes with singletons at the front (1-D and 2-D are 3-D)."""
    return (singleton(),) * (3 - len(axes)) + tuple(axes)


_COVER_CACHE: dict = {}


def _cover(t: AxisTable):
    """CSR inverse of a table: ``outs[ptr[i]:ptr[i+1]]`` read input cell ``i``."""
    key = (t.n, t.step, t.lo.tobytes(), t.taps.tobytes())
    hit = _COVER_CACHE.get(key)
    if hit is not None:
        return hit
    o = np.repeat(np.arange(t.out, dtype=np.int64), t.taps)
    first = np.cumsum(t.taps) - t.taps
    tap = np.arange(o.size, dtype=np.int64) - np.repeat(first, t.taps)
    pos = t.lo[o] + tap * t.step
    order = np.lexsort((o, pos))
    ptr = np.zeros(t.n + 1, np.int64)
    np.cumsum(np.bincount(pos, minlength=t.n), out=ptr[1:])
    res = (ptr, np.ascontiguousarray(o[order]))
    if len(_COVER_CACHE) > 512:
        _COVER_CACHE.clear()
    _COVER_CACHE[key] = res
    return res


def interior(t: AxisTable) -> tuple:
    """The run of full, evenly spaced windows: ``(first, stop, base, stride, taps)``.

    Outputs ``o`` in ``[first, stop)`` read ``base + o*stride + k*step`` for
    ``k < taps``; kernels run them as uniform strided loops and walk the table
    only for the others.  An empty run is ``(0, 0, 0, 1, taps)``.
    """
    K = int(t.taps.max())
    full = t.taps == K
    first = int(np.argmax(full))
    stop = first
    while stop < t.out and full[stop]:
        stop += 1
    stride = int(t.lo[first + 1] - t.lo[first]) if stop - first >= 2 else 1
    if stride < 1:
        return (0, 0, 0, 1, K)
    lo = t.lo[first:stop]
    expect = lo[0] + stride * np.arange(stop - first, dtype=np.int64)
    if not np.array_equal(lo, expect):
        return (0, 0, 0, 1, K)
    return (first, stop, int(lo[0]) - first * stride, stride, K)
