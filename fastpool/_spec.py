"""The one place user arguments are normalised.

Torch-style ints and tuples, per-axis ``(begin, end)`` padding, ``"same"`` and
``"valid"``, and every layout alias become one frozen, hashable spec.  The
kernels, the layers and the ONNX exporter all read these specs, so there is a
single definition of what an argument means.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from functools import lru_cache

from .errors import PoolingError, PoolingTypeError

CHANNELS_FIRST = "channels_first"
CHANNELS_LAST = "channels_last"

_LAYOUTS = {
    "channels_first": CHANNELS_FIRST,
    "channels_last": CHANNELS_LAST,
    "ncw": CHANNELS_FIRST,
    "nchw": CHANNELS_FIRST,
    "ncdhw": CHANNELS_FIRST,
    "nwc": CHANNELS_LAST,
    "nhwc": CHANNELS_LAST,
    "ndhwc": CHANNELS_LAST,
}


def normalize_layout(layout) -> str:
    if not isinstance(layout, str) or layout.lower() not in _LAYOUTS:
        raise PoolingError(
            f"layout must be one of 'channels_first', 'channels_last' or an alias "
            f"('NCW', 'NCHW', 'NCDHW', 'NWC', 'NHWC', 'NDHWC'), got {layout!r}"
        )
    return _LAYOUTS[layout.lower()]


def is_int(v) -> bool:
    # the exact-type test first: the ABC check alone costs ~0.5 us a call
    return type(v) is int or (isinstance(v, numbers.Integral) and not isinstance(v, bool))


# Sizes, strides and paddings past this would overflow the int64 window tables
# (no array has an axis anywhere near it).
MAX_SIZE = 1 << 62


def _not_huge(name: str, value, items) -> None:
    for v in items:
        if v > MAX_SIZE:
            raise PoolingError(f"{name} must be <= 2**62, got {value!r}")


def int_tuple(name: str, value, n: int, minimum: int) -> tuple:
    """An int or a length-``n`` sequence of ints, each ``>= minimum``."""
    if is_int(value):
        items = (int(value),) * n
    elif isinstance(value, (tuple, list)) and all(is_int(v) for v in value):
        if len(value) != n:
            raise PoolingError(
                f"{name} must be an int or a sequence of {n} ints (one per spatial axis), "
                f"got {tuple(value)!r} of length {len(value)}"
            )
        items = tuple(int(v) for v in value)
    else:
        raise PoolingTypeError(
            f"{name} must be an int or a sequence of {n} ints, got {value!r}"
        )
    for v in items:
        if v < minimum:
            raise PoolingError(f"{name} must be >= {minimum}, got {value!r}")
    _not_huge(name, value, items)
    return items


def normalize_padding(padding, n: int):
    """Return ``"same"`` or a tuple of ``n`` ``(begin, end)`` pairs."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return ((0, 0),) * n
        if mode == "same":
            return "same"
        raise PoolingError(
            f"padding must be an int, a tuple, (begin, end) pairs, 'same' or 'valid', got {padding!r}"
        )
    if is_int(padding):
        pairs = ((int(padding), int(padding)),) * n
    elif isinstance(padding, (tuple, list)):
        if len(padding) != n:
            raise PoolingError(
                f"padding must have one entry per spatial axis ({n}), got {padding!r}"
            )
        pairs = []
        for p in padding:
            if is_int(p):
                pairs.append((int(p), int(p)))
            elif isinstance(p, (tuple, list)) and len(p) == 2 and all(is_int(v) for v in p):
                pairs.append((int(p[0]), int(p[1])))
            else:
                raise PoolingTypeError(
                    f"padding entries must be ints or (begin, end) pairs of ints, got {padding!r}"
                )
        pairs = tuple(pairs)
    else:
        raise PoolingTypeError(
            f"padding must be an int, a tuple, (begin, end) pairs, 'same' or 'valid', got {padding!r}"
        )
    for b, e in pairs:
        if b < 0 or e < 0:
            raise PoolingError(f"padding must be >= 0, got {padding!r}")
        _not_huge("padding", padding, (b, e))
    return pairs


@dataclass(frozen=True)
class WindowSpec:
    """A sliding window over ``nd`` spatial axes."""

    nd: int
    window: tuple
    stride: tuple
    dilation: tuple
    padding: object  # tuple of (begin, end) pairs, or "same"
    ceil_mode: bool
    layout: str


@dataclass(frozen=True)
class AdaptiveSpec:
    """Adaptive bins: ``output_size`` per axis (``None`` keeps the input size)."""

    nd: int
    output_size: tuple
    layout: str


def _plain(v) -> bool:
    """An int, a string, None, or tuples of them nested twice: arguments whose
    hash and equality say exactly what they mean (True == 1 does not count)."""
    t = type(v)
    if t is int or t is str or v is None:
        return True
    return t is tuple and all(type(e) is int or (type(e) is tuple and all(type(f) is int for f in e)) for e in v)


def window_spec(nd, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                layout=CHANNELS_FIRST) -> WindowSpec:
    args = (nd, kernel_size, stride, padding, dilation, ceil_mode, layout)
    if type(ceil_mode) is bool and all(_plain(a) for a in args[:5] + (layout,)):
        return _cached_window_spec(*args)  # a call that raises caches nothing
    return _window_spec(*args)


def _window_spec(nd, kernel_size, stride, padding, dilation, ceil_mode, layout) -> WindowSpec:
    window = int_tuple("kernel_size", kernel_size, nd, 1)
    strides = window if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) \
        else int_tuple("stride", stride, nd, 1)
    dil = int_tuple("dilation", dilation, nd, 1)
    pads = normalize_padding(padding, nd)
    if not isinstance(ceil_mode, (bool,)) and not (is_int(ceil_mode) and ceil_mode in (0, 1)):
        raise PoolingTypeError(f"ceil_mode must be a bool, got {ceil_mode!r}")
    return WindowSpec(nd, window, strides, dil, pads, bool(ceil_mode), normalize_layout(layout))


_cached_window_spec = lru_cache(maxsize=512)(_window_spec)


def adaptive_spec(nd, output_size, layout=CHANNELS_FIRST) -> AdaptiveSpec:
    if output_size is None or is_int(output_size):
        sizes = (output_size,) * nd
    elif isinstance(output_size, (tuple, list)) and len(output_size) == nd:
        sizes = tuple(output_size)
    else:
        raise PoolingError(
            f"output_size must be an int or a sequence of {nd} ints or None, got {output_size!r}"
        )
    for s in sizes:
        if s is not None and (not is_int(s)):
            raise PoolingTypeError(f"output_size entries must be ints or None, got {output_size!r}")
        if s is not None and s < 1:
            raise PoolingError(f"output_size must be >= 1, got {output_size!r}")
        if s is not None:
            _not_huge("output_size", output_size, (s,))
    sizes = tuple(None if s is None else int(s) for s in sizes)
    return AdaptiveSpec(nd, sizes, normalize_layout(layout))


def norm_type_value(norm_type) -> float:
    if not isinstance(norm_type, numbers.Real) or isinstance(norm_type, bool):
        raise PoolingTypeError(f"norm_type must be a positive number, got {norm_type!r}")
    p = float(norm_type)
    if not (p > 0) or p != p or p == float("inf"):
        raise PoolingError(f"norm_type must be a finite number > 0, got {norm_type!r}")
    return p
