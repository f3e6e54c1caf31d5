"""Input checking, the canonical 5-D view, and the calls into the kernels.

Everything a user passes is validated here, in Python, before any compiled code
runs, so Numba typing errors never reach a caller.  Inputs are never written:
kernels receive read-only views, and outputs are allocated by NumPy.
"""

from __future__ import annotations

import functools
import glob
import math
import numbers
from dataclasses import dataclass

import numpy as np

from . import _cpu
from . import _geometry as geo
from . import _simd
from . import _threading
from ._spec import CHANNELS_FIRST
from .errors import PoolingError, PoolingTypeError

FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
INTS = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int32), np.dtype(np.int64))


def public(op: str, x_arg: int = 0):
    """Prefix errors with the call and the input's shape (the einops habit)."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                guard = _threading.guard
                if guard is None:
                    return fn(*args, **kwargs)
                with guard():
                    return fn(*args, **kwargs)
            except PoolingError as e:
                x = args[x_arg] if len(args) > x_arg else kwargs.get("x")
                shape = getattr(x, "shape", None)
                if shape is None and isinstance(x, (list, tuple)):
                    try:
                        shape = np.shape(x)
                    except ValueError:  # ragged: no shape to report
                        shape = None
                where = f"{op}(input of shape {tuple(shape)})" if shape is not None else op
                raise type(e)(f"{where}: {e}") from None

        return inner

    return wrap


def as_array(x, name: str = "x") -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "__array__") or isinstance(x, (list, tuple)):
        try:
            return np.asarray(x)
        except Exception as e:  # ragged lists and the like
            raise PoolingTypeError(f"{name} must be convertible to a numpy array: {e}") from None
    raise PoolingTypeError(f"{name} must be a numpy array, got {type(x).__name__}")


def check_shape(shape, ranks=None, name: str = "input_shape") -> tuple:
    """A shape argument: a sequence of ints >= 0, with a length in ``ranks`` when given."""
    try:
        items = None if isinstance(shape, (str, bytes)) else tuple(shape)
    except TypeError:
        items = None
    if items is None or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in items):
        raise PoolingTypeError(f"{name} must be a sequence of ints, got {shape!r}")
    items = tuple(int(v) for v in items)
    if any(v < 0 for v in items):
        raise PoolingError(f"{name} sizes must be >= 0, got {items}")
    if ranks is not None and len(items) not in ranks:
        want = " or ".join(str(r) for r in sorted(ranks))
        raise PoolingError(f"{name} must have {want} axes, got {len(items)}: {items}")
    return items


_FLOAT_SET, _ANY_SET = frozenset(FLOATS), frozenset(FLOATS + INTS)


def check_dtype(x: np.ndarray, allow_int: bool, name: str = "x") -> None:
    dt = x.dtype.newbyteorder("=") if x.dtype.byteorder not in "=|" else x.dtype
    if dt not in (_ANY_SET if allow_int else _FLOAT_SET):
        ok = FLOATS + (INTS if allow_int else ())
        allowed = ", ".join(str(d) for d in ok)
        raise PoolingTypeError(f"{name} dtype must be one of {allowed}; got {x.dtype}")


@dataclass
class Canon:
    """A user array seen as ``(B, D, H, W, C)``; knows how to map shapes back."""

    x5: np.ndarray
    shape: tuple       # the user's shape
    lead: tuple        # user dims before the spatial ones
    trail: tuple       # user dims after the spatial ones
    spatial: tuple
    layout: str
    dtype: np.dtype    # the user's dtype (native byte order)

    def user_shape(self, out_spatial) -> tuple:
        return self.lead + tuple(out_spatial) + self.trail

    def canon_shape(self, out_spatial) -> tuple:
        shape = (self.x5.shape[0],) + three(out_spatial) + (self.x5.shape[4],)
        if math.prod(shape) >= (1 << 63) // 8:   # NumPy would raise a bare ValueError
            raise PoolingError(
                f"the output would have shape {self.user_shape(out_spatial)}, more elements "
                f"than an array can hold"
            )
        return shape


def three(sizes) -> tuple:
    sizes = tuple(sizes)
    return (1,) * (3 - len(sizes)) + sizes


def check_rank(shape, nd: int, name: str = "x") -> None:
    if len(shape) not in (nd + 1, nd + 2) or nd > 3:
        raise PoolingError(
            f"{name} must be {nd + 2}-D (batched) or {nd + 1}-D (unbatched) for {nd}-D pooling, "
            f"got {len(shape)}-D with shape {tuple(shape)}"
        )


def canonical(x, nd: int, layout: str, allow_int: bool, name: str = "x") -> Canon:
    x = as_array(x, name)
    check_dtype(x, allow_int, name)
    if nd is None:  # global pooling: every axis after (N, C) / before C is spatial
        if x.ndim < 3:
            raise PoolingError(f"{name} must be (N, C, *spatial) with at least one spatial axis, got {x.ndim}-D")
        nd = x.ndim - 2
    check_rank(x.shape, nd, name)
    dt = x.dtype.newbyteorder("=") if x.dtype.byteorder not in "=|" else x.dtype
    batched = x.ndim == nd + 2
    if layout == CHANNELS_FIRST:
        lead, spatial, trail = x.shape[: x.ndim - nd], x.shape[x.ndim - nd:], ()
        b = math.prod(lead)
        c = 1
    else:
        lead, spatial, trail = x.shape[: x.ndim - nd - 1], x.shape[x.ndim - nd - 1: -1], x.shape[-1:]
        b = math.prod(lead) if batched else 1
        c = x.shape[-1]
    # native byte order and C-contiguity; copies only when the input needs it
    arr = np.ascontiguousarray(x, dtype=dt)
    x5 = read_only(arr.reshape((b,) + three(spatial) + (c,)))
    return Canon(x5, tuple(x.shape), tuple(lead), tuple(trail), tuple(spatial), layout, dt)


def read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view.  Every kernel input is one: Numba types read-only
    arrays apart, so this keeps one compiled signature per dtype, and it
    guarantees the kernels never write to what the caller passed."""
    v = a.view()
    v.flags.writeable = False
    return v


def compute_dtype(dt: np.dtype) -> np.dtype:
    """float16 is computed in float32 (NumPy/Numba have no CPU float16 arithmetic)."""
    return np.dtype(np.float32) if dt == np.float16 else dt


def kernel_input(cn: Canon) -> np.ndarray:
    if cn.x5.dtype == np.float16:
        v = np.empty(cn.x5.shape, np.float32)
        if v.size:
            h = cn.x5.reshape(-1).view(np.uint16)
            _cpu.pick(_cpu.f16_to_f32, h, v)(h, v.reshape(-1))
        return read_only(v)
    return cn.x5


@geo.per_plan
def tables(axes) -> tuple:
    """Flatten three axis tables into the kernels' argument order."""
    args = []
    for t in geo.padded3(axes):
        args += [t.lo, t.taps, np.int64(t.step)]
    return tuple(args)


@geo.per_plan
def interior_args(axes) -> tuple:
    """The W axis's interior run, for the separable kernels."""
    return tuple(np.int64(v) for v in geo.interior(geo.padded3(axes)[2]))


@geo.per_plan
def cf_row_args(axes, quads=False, tiles=False) -> tuple:
    """W-axis geometry for the channels-first row kernels: ``uniform`` (windows
    ``o*stride`` in a buffer holding the row at ``pl``; 2 when the rows also take
    the short-vector loop: stride 1 or 2, 4+ cells in and out, 8+ in for 3-D
    windows; with ``quads``, 3 where ``quad_rows`` holds; with ``tiles``, 4
    where ``tile_rows`` holds), ``pl``, the buffer length, stride and kernel."""
    if quads and quad_rows(axes):
        return (np.int64(3),) + cf_row_args(axes)[1:]
    if tiles and tile_rows(axes):
        return (np.int64(4),) + cf_row_args(axes)[1:]
    t0, _, t = geo.padded3(axes)
    if not t.stride:
        return (np.int64(0), np.int64(0), np.int64(t.n), np.int64(1), np.int64(t.taps.max()))
    pl, k, s = t.pads[0], t.kernel, t.stride
    end = (t.out - 1) * s + (k - 1) * t.step + 1
    vector = s in (1, 2) and t.n >= (4 if int(t0.taps.max()) == 1 else 8) and t.out >= 4
    # slack: the stride-2 passes read up to two cells past the last window
    return (np.int64(2 if vector else 1), np.int64(pl), np.int64(max(pl + t.n, end) + 2),
            np.int64(s), np.int64(k))


@geo.per_plan
def cf_short_args(axes) -> tuple | None:
    """W-axis geometry for the short rows (``_cpu.cf_short_*_forward``), or None
    where they do not apply: stride 1 or 2, 1-3 adjacent taps, and the padded
    row's windows within one vector (``_simd.SHORT_LANES`` cells); not where
    ``quad_rows`` holds: the 2x2 rows measured 1.1-1.5x faster ((64, 512, 14,
    14) k2 s2, same process).  ``(pl, s, K)``: W's left padding, stride and taps."""
    if quad_rows(axes):
        return None
    t = geo.padded3(axes)[2]
    K, s, pl = t.kernel, t.stride, t.pads[0]
    if s not in (1, 2) or not 1 <= K <= 3 or (K > 1 and t.step != 1):
        return None
    if s * (t.out - 1) + K > _simd.SHORT_LANES or pl >= _simd.SHORT_LANES:
        return None
    return np.int64(pl), np.int64(s), np.int64(K)


def cf_short_taken(axes) -> tuple | None:
    """``cf_short_args`` on CPUs with AVX-512 (``_simd.has_avx512``), else
    None.  Without it LLVM builds each 16-lane mask in vector registers and
    stores through ``vmaskmovps``: on an AVX2 AMD EPYC (Zen 4, AVX-512 hidden
    by its VM), (64, 512, 14, 14) k3 s2 p1 max took 6.9 ms that way against
    3.7 ms through the row kernels, and the k3 s1 p1 average 11.7 against 6.1
    ms through the flat planes (two threads, same process); plain loads and
    stores in place of the masked ones brought the max only to 3.6 ms."""
    return cf_short_args(axes) if _simd.has_avx512() else None


# Short rows take the flat planes (``_cpu.cf_flat_*_forward``) up to this many
# cells: (8, 256, 28, 28) k3 s1 average 2.5 -> 2.2 ms on two threads; at 56
# cells the row kernels are faster (2.0 vs 2.3-2.6 ms, any group size).  A
# group is at most FLAT_CELLS cells of whole rows.
FLAT_MAX_W = 32
# Max windows of 3 taps and stride 2 on W take them for rows of this many
# cells (2 * OW, 5-7 outputs: the row kernels' window pass runs those 4 lanes
# at a time, two overlapping blocks a row): (64, 512, 14, 14) k3 s2 p1 max
# 0.76-0.98x the row kernels' time, (1, 2) strides 0.5x; 16-cell rows
# 0.94-1.17x, 32 1.16x (two threads, AVX2 AMD EPYC; where AVX-512 is, the short
# rows take these first).  At most 16: ``_simd.max_row_runs`` takes rows of 9-16.
FLAT_S2_W = (10, 14)
FLAT_CELLS = 1024
# a flat multiplier table (non-uniform divisors) past this many cells is no
# longer small beside the planes
FLAT_MUL_CELLS = 1 << 14


@geo.per_plan
def cf_flat_args(axes, strided=False) -> tuple | None:
    """Geometry for the flat planes, or None where they do not apply: W
    windows of stride 1, dilation 1, one per cell (padded to the input's
    length), rows of 4 to ``FLAT_MAX_W`` cells (8 with windows on D), and
    windows of stride 1 on H; with ``strided`` (max), also windows of 3 taps
    and stride 2 on W, two cells an output (``FLAT_S2_W``), any stride on H.
    ``(segs, col, pL, K, G, Lb, s)``: runs of output rows reading the same
    number of input rows, ``(first row, rows, input rows each, input rows from
    one output row's first to the next's)``;
    the output column of each output of a group; W's left padding and taps;
    output rows a group, buffer cells, and W's stride."""
    t0, t1, t2 = geo.padded3(axes)
    s2 = strided and t2.stride == 2 and t2.kernel == 3 and t2.n == 2 * t2.out and FLAT_S2_W[0] <= t2.n <= FLAT_S2_W[1]
    if not (t2.step == 1 and ((t2.stride == 1 and t2.out == t2.n) or s2) and (t1.stride == 1 or s2)):
        return None
    W = t2.n
    if not (4 if int(t0.taps.max()) == 1 else 8) <= W <= FLAT_MAX_W:
        return None
    segs = []
    for oh in range(t1.out):
        step = int(t1.lo[oh] - t1.lo[oh - 1]) if oh else 0
        if segs and segs[-1][2] == t1.taps[oh] and step >= 1 and (segs[-1][1] == 1 or segs[-1][3] == step):
            segs[-1][1] += 1
            segs[-1][3] = step
        else:
            segs.append([oh, 1, int(t1.taps[oh]), 1])
    G = max(1, min(t1.out, FLAT_CELLS // W))
    pl, k = t2.pads[0], t2.kernel
    col = np.tile(np.arange(t2.out, dtype=np.int32), G)
    # slack: a stride-2 block's wide loads read a cell past its last tap
    return (np.array(segs, np.int64), col, np.int64(pl), np.int64(k), np.int64(G), np.int64(pl + G * W + k + 1),
            np.int64(t2.stride))


@geo.per_plan
def flat_multipliers(axes, mode: str, override=None):
    """``1 / divisor`` per output, ``(OD, OH*OW)``, or ``(1, OH*OW)`` when every
    output depth has the same; None past ``FLAT_MUL_CELLS`` cells."""
    m = 1.0 / _divisor(axes, mode, override)
    m = m.reshape(m.shape[0], -1)
    if (m == m[:1]).all():
        m = m[:1]
    if m.size > FLAT_MUL_CELLS:
        return None
    m = np.ascontiguousarray(m)
    m.flags.writeable = False
    return m


def _last_cache_bytes(default=32 << 20) -> int:
    """The largest CPU cache's size (Linux sysfs), else ``default``."""
    best = 0
    for d in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*"):
        try:
            with open(d + "/size") as f:
                text = f.read().strip()
        except OSError:
            continue
        unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
        digits = text.rstrip("KMGkmg")
        if digits.isdigit():
            best = max(best, int(digits) * unit)
    return best or default


# The channels-first max rows, the 2x2 quads (max and average), the short rows,
# the flat planes and the global planes ask for their input ahead
# (``_cpu._ask_ahead``) on inputs from three quarters of the last cache on, whose
# rows of input and output mostly come from memory.  Measured on a 32 MB-cache AMD Zen 5, two threads,
# on/off: k2 s2 and k3 s2 max and k2 s2 averages on 25.7-103 MB inputs with
# 28-224 cell rows 0.33-0.91 (max k2 s2 (32, 64, 112, 112) 6.95 -> 4.04 ms);
# short rows and flat planes of (64, 512, 14, 14) and (256, 512, 14, 14), k3
# s2 p1 0.31-0.43, k3 s1 p1 0.54-0.68 (max k3 s2 p1 (64, 512, 14, 14) 2.17 ->
# 0.93 ms); inputs of 6.4-12.8 MB 1.04-1.21, where the prefetch instructions
# cost more than the hardware prefetchers leave to gain, as did 2x2 quads of
# 14-cell rows (1.04-1.30; rows under AHEAD_ROW_BYTES).  The averages' long row
# passes (k3 s1) gained nothing or lost (1.34 on 224-cell rows) there; the Xeon
# below gains on rows up to 512 bytes, which ask (``_cpu._AVG_ASK_ROW_BYTES``).
# An earlier Zen machine measured stride-1 and k3 s2 max on 25.7 MB 1.05-1.15x
# slower with it (then from 1.5 times the cache on).  Channels-last: the 3x3
# max rows 0.72-0.84 on (8, 56, 56, 256) and (64, 14, 14, 512) k3 s2 p1 (1.0
# on (32, 112, 112, 64)), and the 2x2 quads, which ask a pixel at a time,
# 0.58-0.83; the channels-last average rows gained nothing and do not ask.
# The averages' deep rows (windows on D, ``_cpu._cf_avg_deep``) ask for the
# next output depth's new plane instead: 0.95x on (8, 32, 8, 56, 56) k3 s1 p1.
# The tile rows (windows end to end on W, ``_cpu._cf_avg_tiles``) ask as the
# max rows do: adaptive 56 -> 7 on (32, 256, 56, 56) 0.87x (the Xeon below).
#
# The cache size comes from sysfs, which in a VM names the whole socket's last
# cache, shared with the host's other tenants: 260 MB on a 2-vCPU Xeon VM,
# where reads ran at 48-55 GB/s (two threads) up to 32 MB, 39-44 at 48-64 MB
# and 19-20 (memory) from 96 MB.  So the threshold stops at AHEAD_CAP: there,
# on (32, 64, 112, 112) (103 MB), k3 s2 p1 max, k2 s2 max and k2 s2 average
# took 0.74, 0.85 and 0.70x the time asking, max with indices 0.83 (medians
# of five alternations, two threads), while on the 25.7 MB inputs, still in
# that cache, asking ran 1.09-1.25x slower on three of eight channels-first
# cases and 1.09-1.40x on six of eight channels-last ones.
AHEAD_CAP = 48 << 20
AHEAD_FROM = min(_last_cache_bytes() * 3 // 4, AHEAD_CAP)
AHEAD_ROW_BYTES = 100
AHEAD_BYTES = 16 << 10
# The channels-last max rows (``_cpu.cl_max_forward``) ask only below this:
# on (32, 112, 112, 64) k3 s2 p1 asking was even on the Zen machine and 1.42x
# slower on that Xeon.
CL_ROWS_AHEAD_BELOW = 64 << 20


def cf_ahead(axes, x: np.ndarray) -> tuple:
    """``(ahead, n)`` for the channels-first kernels that ask ahead (see
    above): after a row pass they ask for the ``n`` cells ``ahead`` cells on,
    about the rows one output row newly reads, ``AHEAD_BYTES`` ahead (the flat
    planes ask for their group's rows).  The kernels compute between their
    reads, and the hardware prefetchers, which follow the reads, fall behind.
    ``(0, 0)`` (none) below ``AHEAD_FROM``, and for 2x2 quads of rows shorter
    than ``AHEAD_ROW_BYTES``."""
    if x.nbytes < AHEAD_FROM:
        return np.int64(0), np.int64(0)
    return _cf_ahead(axes, x.itemsize)


def cl_ahead(axes, x: np.ndarray, rows=False) -> tuple:
    """``cf_ahead`` for the channels-last kernels, whose rows are ``W*C``
    cells of ``x`` (5-D, canonical); ``rows``: for the max rows, which ask
    only below ``CL_ROWS_AHEAD_BELOW``."""
    if x.nbytes < AHEAD_FROM or (rows and x.nbytes >= CL_ROWS_AHEAD_BELOW):
        return np.int64(0), np.int64(0)
    _, t1, _ = geo.padded3(axes)
    n = -(-t1.n // t1.out) * x.shape[3] * x.shape[4]
    return np.int64(max(AHEAD_BYTES // x.itemsize, n)), np.int64(n)


def stream_ahead(x: np.ndarray):
    """How far ahead (cells, 0: not at all) a kernel that reads ``x`` once
    front to back asks for it (``_cpu._ask_ahead``): ``AHEAD_BYTES`` from
    ``AHEAD_FROM`` on, as ``cf_ahead``."""
    return np.int64(0 if x.nbytes < AHEAD_FROM else AHEAD_BYTES // x.itemsize)


@geo.per_plan
def _cf_ahead(axes, itemsize: int) -> tuple:
    _, t1, t2 = geo.padded3(axes)
    if quad_rows(axes) and t2.n * itemsize < AHEAD_ROW_BYTES:
        return np.int64(0), np.int64(0)
    n = -(-t1.n // t1.out) * t2.n
    return np.int64(max(AHEAD_BYTES // itemsize, n)), np.int64(n)


@geo.per_plan
def quad_rows(axes) -> bool:
    """Whether every window is a whole 2x2 block at stride 2 on H and W with none
    on D: ``cf_max_forward`` and ``cf_sum_forward`` (plain averages) then read
    both rows and both taps straight from the input (``uniform`` 3), with no
    row buffer."""
    t0, t1, t2 = geo.padded3(axes)
    return (len(axes) >= 2 and bool(np.all(t0.taps == 1)) and t2.out >= 4
            and all(t.stride == 2 and t.kernel == 2 and t.step == 1 and t.pads[0] == 0 and bool(np.all(t.taps == 2))
                    for t in (t1, t2)))


def tile_rows(axes) -> bool:
    """Whether the W windows lie end to end, whole, 4+ of them, each a multiple
    of 4 cells (adaptive averages that divide their input evenly, k = s
    averages): ``cf_sum_forward`` then adds them four at a time
    (``_simd.sum_tiles``, ``uniform`` 4)."""
    t = geo.padded3(axes)[2]
    K = t.kernel
    return (t.stride == K and K >= 4 and K % 4 == 0 and t.step == 1 and t.pads[0] == 0 and t.out >= 4
            and t.out * K <= t.n and bool(np.all(t.taps == K)))


def flat4(a5: np.ndarray) -> np.ndarray:
    """``(B, D, H, W, C) -> (B, D, H, W*C)``: rows as contiguous W*C runs."""
    b, d, h, w, c = a5.shape
    return a5.reshape(b, d, h, w * c)


@geo.per_plan
def covers(axes) -> tuple:
    args = []
    for t in geo.padded3(axes):
        ptr, outs = t.cover
        args += [ptr, outs]
    return tuple(args)


def divisor(axes, mode: str, override=None) -> np.ndarray:
    """Per-output divisor ``(OD, OH, OW)``: 'pad' counts padding taps, 'valid' does not."""
    return _divisor(axes, mode, override).copy()


@geo.per_plan
def divisor_rows(axes, mode: str, override=None) -> tuple:
    """``(rows, at)``: the distinct rows of ``1 / divisor(axes, mode, override)``,
    ``(U, OW)``, and per ``(od, oh)`` the index of its row, ``(OD, OH)``.  The sum
    kernels read one row of multipliers per output row; a whole ``(OD, OH, OW)``
    float64 table is twice a float32 plane's bytes, and read beside a stream of
    planes it falls out of L2 and comes back from L3 every plane ((8, 256, 56,
    56) k3 s1 averages on one thread: 4.6 -> 3.5 ms).  The windows of a plan
    have few distinct rows (edge and interior ones), often one."""
    d = _divisor(axes, mode, override)
    rows, at = np.unique(1.0 / d.reshape(-1, d.shape[2]), axis=0, return_inverse=True)
    rows, at = np.ascontiguousarray(rows), at.reshape(d.shape[:2]).astype(np.int64)
    rows.flags.writeable = False
    at.flags.writeable = False
    return rows, at


@geo.per_plan
def exact_divisor_rows(axes, windows: int, mode: str, override=None):
    """``divisor_rows``' rows as float32 ``(U, 2 * OW)``, each row's reciprocals
    then its divisors, for the passes that divide float32 sums with fused
    multiply-adds (``_simd._exact_scaled``, the same bits as the float64
    product); None where a divisor is not a whole number from 1 to
    ``_simd.EXACT_DIVISORS`` (a ``divisor_override``), for rows of fewer than
    ``windows`` windows (the W passes' 16 lanes; the short rows take any) and on
    CPUs without FMA."""
    rows, _ = divisor_rows(axes, mode, override)
    if not _simd.has_fma() or rows.shape[1] < windows:
        return None
    d = np.rint(1.0 / rows)
    if not (np.all((d >= 1) & (d <= _simd.EXACT_DIVISORS)) and np.array_equal(1.0 / d, rows)):
        return None
    pairs = np.ascontiguousarray(np.concatenate([rows.astype(np.float32), d.astype(np.float32)], axis=1))
    pairs.flags.writeable = False
    return pairs


@geo.per_plan
def _divisor(axes, mode: str, override=None) -> np.ndarray:
    t0, t1, t2 = geo.padded3(axes)
    if override is not None:
        return np.full((t0.out, t1.out, t2.out), float(override))
    pick = (lambda t: t.count) if mode == "pad" else (lambda t: t.taps)
    return np.einsum("i,j,k->ijk", *(pick(t).astype(np.float64) for t in (t0, t1, t2)))


def check_grad(grad_output, expected_shape: tuple, op: str) -> np.ndarray:
    g = as_array(grad_output, "grad_output")
    if g.dtype not in FLOATS and g.dtype.newbyteorder("=") not in FLOATS:
        raise PoolingTypeError(f"grad_output must be a floating array, got dtype {g.dtype}")
    if tuple(g.shape) != tuple(expected_shape):
        raise PoolingError(
            f"grad_output must have the forward output's shape {tuple(expected_shape)}, got {tuple(g.shape)}"
        )
    return g


def canon_grad(g: np.ndarray, cn: Canon, out_spatial, dtype) -> np.ndarray:
    return read_only(np.ascontiguousarray(g, dtype=dtype).reshape(cn.canon_shape(out_spatial)))


def check_indices(indices, expected_shape: tuple) -> np.ndarray:
    """Type and shape of a forward's ``indices``; their range is checked by the
    scatter that reads them (``pooling.scatter_indices``), not in a pass of its own."""
    idx = as_array(indices, "indices")
    if idx.dtype.kind not in "iu":
        raise PoolingTypeError(f"indices must be an integer array, got dtype {idx.dtype}")
    if tuple(idx.shape) != tuple(expected_shape):
        raise PoolingError(
            f"indices must have the forward output's shape {tuple(expected_shape)}, got {tuple(idx.shape)}"
        )
    return idx


def float_backward_input(cn: Canon) -> None:
    if cn.dtype.kind not in "f":
        raise PoolingTypeError(
            f"backward needs a floating x (gradients of integer inputs are undefined), got {cn.dtype}"
        )
