"""fastpool layers -> ONNX nodes.

Every opset rule and every onnxruntime (ORT) limitation the exporter works
around lives in this module.  A layer is lowered to a native pooling node where
ONNX has exactly fastpool's semantics *and* ORT 1.31 runs it, and otherwise to
an exact decomposition built from the same window tables fastpool's kernels use
(:func:`fastpool._geometry.plan`), so the exported graph reads the same input
cells as fastpool by construction.

Facts this module relies on (measured with onnx 1.23.2 / onnxruntime 1.31.1):

* ORT's MaxPool/AveragePool/LpPool output lengths equal fastpool's for every
  ``ceil_mode`` case (the "last window must start inside the input or the left
  padding" rule); ONNX *shape inference* before the opset-22 versions of these
  ops does not apply that rule, so ``ceil_mode=1`` is only emitted where the
  two agree.  Elsewhere floor mode gets the end padding that yields exactly
  fastpool's window count (exact for max and Lp, and for average unless that
  padding grows and counts), or the layer is decomposed.
* ORT rejects ``pads >= kernel_shape``; such padding becomes an explicit
  ``Pad`` (max: -inf, Lp: 0) or a decomposition (average).
* ORT has no float64 AveragePool/LpPool/Global*Pool kernels, no opset-22
  GlobalLpPool kernel, and AveragePool has ``dilations`` only from opset 19.
* ``auto_pad`` is never emitted: ORT ignores dilation when computing SAME
  padding.  "same" padding is resolved by fastpool's geometry into explicit pads.
* MaxPool's ``Indices`` are flat over (N, C, *spatial); ``Mod`` by the plane size
  gives fastpool's per-plane offsets (and, after an explicit Pad, Div/Mod/Sub map
  padded offsets back to the unpadded plane).
* ORT before 1.32 fuses MatMul followed by Mul/Div by a one-element constant
  into FusedMatMul with a float32 ``alpha``, even in float64 graphs, so divisors
  are folded into the window matrices instead.

The rest of the pooling family (fastpool.layers_family):

* ``max_unpool``: ``MaxUnpool`` with ``output_shape`` always given (without it
  the size is ambiguous for odd inputs) and fastpool's per-plane indices offset
  by ``(n*C + c) * plane`` to ONNX's flat ones, at run time so the batch axis
  stays symbolic.  ORT's MaxUnpool runs float32/float16 only and refuses an
  ``output_shape`` below the default size (PyTorch and fastpool allow down to
  default - stride + 1); there ``ScatterElements`` into zero planes is exact
  (ORT applies the updates in order, so the later duplicate wins, as in fastpool).
* ``fractional_max_pool`` (fixed samples only, so a fixed batch): constant
  window starts from fastpool's own sequence; per-window Slice + ReduceMax +
  Concat when every plane shares one sample, else a GatherElements per window
  tap and ``Max`` (ORT's Max propagates NaN, as fastpool does).
* ``stochastic_pool``: the inference form only, ``AveragePool(x*x) /
  AveragePool(x)`` (the divisor cancels), 0 where the window sum is 0.
* ``mixed_pool``: MaxPool and AveragePool (count_include_pad=1) combined in
  float64 with a scalar or ``(1, C, 1, ...)`` alpha constant.
* ``spatial_pyramid_pool``: the adaptive lowering per level, Flatten, Concat.
* ``roi_align``: ``RoiAlign`` mode avg (max mode is the max of weighted corners,
  onnx#4764), ``half_pixel`` for ``aligned=True``, ``output_half_pixel`` else;
  ``roi_pool``: ``MaxRoiPool`` (float32 only in ORT).  ORT 1.31 has no
  opset-22 kernel for either.

Decompositions compute in float64 (sums of 0/1 window matrices applied per
axis with MatMul, per-bin Slice + ReduceMax/ArgMax), then round once to the
output dtype exactly as fastpool does (float16 goes float64 -> float32 ->
float16, mirroring fastpool's float32 compute dtype).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from onnx import helper, numpy_helper

from fastpool import _geometry as geo
from fastpool._spec import CHANNELS_LAST, window_spec

from .errors import ExportError

MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 18, 22, 21
# IR 10 is the IR of opsets 21/22 (onnx 1.16/1.17); onnxruntime 1.31 loads up to IR 13,
# while onnx 1.23's helper default (IR 14) does not load.
IR_VERSION = 10

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
I64 = np.dtype(np.int64)
FLOATS = (F16, F32, F64)
# dtypes export accepts; max pooling keeps integer dtypes, average/Lp of integers give float64
DTYPES = FLOATS + tuple(np.dtype(t) for t in (np.int8, np.uint8, np.int32))
MAX_KINDS = ("max_pool", "adaptive_max_pool", "global_max_pool")
ROI_KINDS = ("roi_pool", "roi_align")
# kinds whose layer takes a second input in forward, and that input's graph name
SECOND_INPUT = {"max_unpool": "indices", "roi_pool": "boxes", "roi_align": "boxes"}
# kinds without ``layer.nd`` that still have a fixed spatial rank
_FIXED_ND = {"spatial_pyramid_pool": 2, "roi_pool": 2, "roi_align": 2}


@dataclass(frozen=True)
class Value:
    """A graph value with the shape it has for the export-time input shape."""

    name: str
    shape: tuple
    dtype: np.dtype

    @property
    def rank(self) -> int:
        return len(self.shape)


class Builder:
    """Accumulates nodes and constants; a few peepholes keep layer seams clean."""

    def __init__(self, opset: int, native_only: bool = False):
        self.opset = opset
        self.native_only = native_only
        self.nodes: list = []
        self.initializers: list = []
        self.notes: list = []
        self._consts: dict = {}
        self._names: set = set()
        self._producer: dict = {}
        self._values: dict = {}
        self.prefix = ""
        self.layer_label = ""
        # forward arguments of the exported layer that are not constructor arguments
        # (MaxUnpool's output_size)
        self.output_size = None

    # ------------------------------------------------------------------ bookkeeping

    def begin_layer(self, index: int, layer) -> None:
        self.prefix = f"l{index}_{type(layer).__name__}/"
        self.layer_label = f"layer {index} ({layer!r})"

    def fresh(self, hint: str) -> str:
        base = f"{self.prefix}{hint}"
        name, i = base, 0
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    def note(self, how: str, detail: str) -> None:
        self.notes.append(f"{self.layer_label}: {how}: {detail}")

    def decompose(self, reason: str) -> None:
        """Record that a layer needs a decomposition; refused under ``native_only``."""
        if self.native_only:
            raise ExportError(
                f"{self.layer_label} has no native ONNX form at opset {self.opset} that "
                f"onnxruntime runs: {reason}; export with native_only=False to get an exact "
                f"decomposition"
            )
        self.note("decomposed", reason)

    def const(self, array, hint: str = "const") -> str:
        arr = np.asarray(array)
        if not arr.flags.c_contiguous:   # (np.ascontiguousarray would turn a scalar into shape (1,))
            arr = arr.copy(order="C")
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        hit = self._consts.get(key)
        if hit is None:
            hit = self.fresh(hint)
            self._names.add(hit)
            self.initializers.append(numpy_helper.from_array(arr, hit))
            self._consts[key] = hit
        return hit

    def ints(self, values) -> str:
        return self.const(np.asarray(list(values), np.int64), "ints")

    def scalar(self, value, dtype) -> str:
        return self.const(np.asarray(value, dtype), "scalar")

    def op(self, op_type: str, inputs, outs, **attrs) -> list:
        """Add a node; ``outs`` lists (shape, dtype) per output; returns Values."""
        in_names = [i.name if isinstance(i, Value) else i for i in inputs]
        values = [Value(self.fresh(op_type.lower()), tuple(s), np.dtype(d)) for s, d in outs]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        node = helper.make_node(op_type, in_names, [v.name for v in values],
                                name=self.fresh(op_type), **attrs)
        self.nodes.append(node)
        for v in values:
            self._producer[v.name] = node
            self._values[v.name] = v
        return values

    def op1(self, op_type: str, inputs, shape, dtype, **attrs) -> Value:
        return self.op(op_type, inputs, [(shape, dtype)], **attrs)[0]

    def _made_by(self, v: Value, op_type: str):
        node = self._producer.get(v.name)
        return node if node is not None and node.op_type == op_type else None

    # ------------------------------------------------------------------ shaped helpers

    def transpose(self, v: Value, perm) -> Value:
        perm = tuple(perm)
        if perm == tuple(range(v.rank)):
            return v
        prev = self._made_by(v, "Transpose")
        if prev is not None:
            p0 = tuple(helper.get_attribute_value(prev.attribute[0]))
            if all(p0[perm[i]] == i for i in range(len(perm))):
                return self.source(prev)
        return self.op1("Transpose", [v], tuple(v.shape[p] for p in perm), v.dtype, perm=list(perm))

    def add_input(self, v: Value) -> Value:
        self._values[v.name] = v
        self._names.add(v.name)
        return v

    def source(self, node) -> Value:
        """The Value feeding ``node`` (peepholes that cancel a node pair return it)."""
        return self._values[node.input[0]]

    def unsqueeze(self, v: Value, axis: int) -> Value:
        prev = self._made_by(v, "Squeeze")
        if prev is not None and prev.input[1] == self.ints([axis]):
            return self.source(prev)
        shape = v.shape[:axis] + (1,) + v.shape[axis:]
        return self.op1("Unsqueeze", [v, self.ints([axis])], shape, v.dtype)

    def squeeze(self, v: Value, axes) -> Value:
        axes = sorted(axes)
        prev = self._made_by(v, "Unsqueeze")
        if prev is not None and prev.input[1] == self.ints(axes):
            return self.source(prev)
        shape = tuple(s for i, s in enumerate(v.shape) if i not in axes)
        return self.op1("Squeeze", [v, self.ints(axes)], shape, v.dtype)

    def cast(self, v: Value, dtype) -> Value:
        dtype = np.dtype(dtype)
        if v.dtype == dtype:
            return v
        prev = self._made_by(v, "Cast")
        if prev is not None:
            src = self.source(prev)
            # a widening round trip (float16 -> float32 -> float16, int8 -> float32 -> int8)
            # is the identity; a narrowing one rounds and must stay
            if src.dtype == dtype and _widens(src.dtype, v.dtype):
                return src
        return self.op1("Cast", [v], v.shape, dtype, to=helper.np_dtype_to_tensor_dtype(dtype))

    def slice(self, v: Value, axis: int, start: int, stop: int) -> Value:
        if start == 0 and stop == v.shape[axis]:
            return v
        shape = v.shape[:axis] + (stop - start,) + v.shape[axis + 1:]
        return self.op1("Slice", [v, self.ints([start]), self.ints([stop]), self.ints([axis])],
                        shape, v.dtype)

    def concat(self, parts, axis: int) -> Value:
        if len(parts) == 1:
            return parts[0]
        shape = list(parts[0].shape)
        shape[axis] = sum(p.shape[axis] for p in parts)
        return self.op1("Concat", parts, tuple(shape), parts[0].dtype, axis=axis)

    def binary(self, op_type: str, a: Value, b, shape=None) -> Value:
        return self.op1(op_type, [a, b], a.shape if shape is None else shape, a.dtype)


def _widens(src: np.dtype, mid: np.dtype) -> bool:
    if src == mid:
        return True
    if mid.kind == "f" and src.kind == "f":
        return mid.itemsize > src.itemsize
    if mid.kind == "f" and src.kind in "iu":
        return src.itemsize <= 2 or (src.itemsize == 4 and mid == F64)
    return False


def new_builder(opset: int, native_only: bool = False) -> Builder:
    return Builder(opset, native_only)


# ============================================================================ checks


def check_opset(opset) -> int:
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise ExportError(f"opset must be an int in {MIN_OPSET}..{MAX_OPSET}, got {opset!r}")
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise ExportError(
            f"opset {opset} is not supported: onnx_ops exports opsets {MIN_OPSET}..{MAX_OPSET} "
            f"(default {DEFAULT_OPSET}; onnxruntime 1.31 lacks opset-22 kernels for some "
            f"pooling ops, and the exporter's ceil_mode and Reduce* rules are written for these)"
        )
    return int(opset)


def check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ExportError(f"dtype must be a NumPy dtype or its name, got {dtype!r}") from None
    if dt.byteorder not in "=|":
        dt = dt.newbyteorder("=")
    if dt not in DTYPES:
        raise ExportError(
            f"dtype {dt} cannot be exported: onnx_ops exports float16, float32, float64 "
            f"(and int8, uint8, int32 input)"
        )
    return dt


# ============================================================================ layers


def layer_nd(layer):
    """Spatial rank of a layer's input, None for global pooling (any rank)."""
    return layer.nd if layer.nd is not None else _FIXED_ND.get(layer.kind)


def lower_layer(b: Builder, layer, x: Value, *extra: Value) -> list:
    """Lower one fastpool layer applied to ``x`` (and, for MaxUnpool / RoI layers, its
    second input); returns its output Values."""
    kind = layer.kind
    if kind not in _LOWER:
        raise ExportError(f"{b.layer_label}: layers of kind '{kind}' cannot be exported "
                          f"(onnx_ops exports {', '.join(sorted(_LOWER))})")
    if len(extra) != (kind in SECOND_INPUT):
        raise ExportError(f"{b.layer_label}: expects {1 + (kind in SECOND_INPUT)} graph input(s), "
                          f"got {1 + len(extra)}")
    nd = layer_nd(layer)
    if kind in ROI_KINDS:
        if x.rank != 4:
            want = "(N, C, H, W)" if layer.layout != CHANNELS_LAST else "(N, H, W, C)"
            raise ExportError(f"{b.layer_label}: expects 4-D {want} input, got shape {x.shape}")
        batched = True
    elif nd is None:
        if x.rank < 3 or x.rank > 5:
            raise ExportError(
                f"{b.layer_label}: global pooling needs (N, C, *spatial) input with 1 to 3 "
                f"spatial axes, got shape {x.shape}"
            )
        nd, batched = x.rank - 2, True
    else:
        if x.rank not in (nd + 1, nd + 2):
            raise ExportError(
                f"{b.layer_label}: expects {nd + 2}-D (batched) or {nd + 1}-D (unbatched) "
                f"input, got shape {x.shape}"
            )
        batched = x.rank == nd + 2
    r = nd + 2
    cl = layer.layout == CHANNELS_LAST
    if x.dtype.kind in "iu" and kind in MAX_KINDS and x.dtype == np.int64:
        raise ExportError(f"{b.layer_label}: int64 max pooling cannot be exported exactly "
                          f"(onnxruntime's MaxPool has no int64 kernel and float64 cannot hold every int64)")

    to_first = (0, r - 1) + tuple(range(1, r - 1))
    v = x if batched else b.unsqueeze(x, 0)
    ex = list(extra)
    if kind == "max_unpool":  # the indices have x's shape and layout
        ex = [e if batched else b.unsqueeze(e, 0) for e in ex]
        if cl:
            ex = [b.transpose(e, to_first) for e in ex]
    if cl:
        v = b.transpose(v, to_first)
    keep_int = None
    int_max = kind in MAX_KINDS or (kind == "spatial_pyramid_pool" and layer.kwargs["mode"] == "max")
    if int_max and v.dtype == np.int32:
        # int32 -> float64 is exact; onnxruntime's MaxPool has no int32 kernel
        keep_int = v.dtype
        v = b.cast(v, F64)
        b.note("cast", "int32 max pooling computed in float64 (exact)")

    outs = _LOWER[kind](b, layer, v, *ex)
    if keep_int is not None:
        outs[0] = b.cast(outs[0], keep_int)

    results = []
    for o in outs:
        # a global layer with keepdims=False already gave (N, C), spatial pyramid pooling (N, F)
        if o.rank == r and cl:
            o = b.transpose(o, (0,) + tuple(range(2, r)) + (1,))
        if not batched:
            o = b.squeeze(o, [0])
        results.append(o)
    return results


def out_dtype(kind: str, dtype: np.dtype) -> np.dtype:
    if dtype.kind == "f" or kind in MAX_KINDS:
        return dtype
    return F64


def _round_to(b: Builder, v64: Value, dtype: np.dtype) -> Value:
    """Round a float64 result the way fastpool does (float16 via its float32 compute dtype)."""
    if dtype == F16:
        return b.cast(b.cast(v64, F32), F16)
    return b.cast(v64, dtype)


def _native_dtype(v: Value) -> bool:
    """AveragePool / LpPool / GlobalAveragePool / GlobalLpPool run in float32 only."""
    return v.dtype in (F16, F32)


def _native_float32(b: Builder, v: Value, fn) -> Value:
    """Run ``fn`` on float32 (float16 is computed in float32 and rounded once, as fastpool does)."""
    if v.dtype == F32:
        return fn(v)
    return b.cast(fn(b.cast(v, F32)), v.dtype)


# ---------------------------------------------------------------------------- window geometry


def _onnx_ceil_length(opset: int, n, k, s, d, pb, pe) -> int:
    """The output length ONNX shape inference gives with ``ceil_mode=1``."""
    if opset >= 22:  # MaxPool/AveragePool/LpPool-22 apply the last-window rule (onnx PR #5741)
        return geo.output_length(n, k, s, d, pb, pe, True)
    span = d * (k - 1) + 1
    return -(-(n + pb + pe - span) // s) + 1


@dataclass
class NativeWindow:
    attrs: dict          # ONNX attributes (pads possibly extended by the ceil overhang)
    explicit_pad: bool   # pads must go into a Pad node (onnxruntime rejects pads >= kernel)


def _native_window(b: Builder, spec, axes, *, extend_ok: bool, pad_node_ok: bool):
    """Attributes under which an ONNX pool node reads fastpool's windows, or a reason why not.

    ``extend_ok``: extra end padding is harmless (max, Lp, average without counted padding).
    ``pad_node_ok``: padding may move into an explicit Pad node (max: -inf, Lp: 0).
    """
    nd = spec.nd
    k, s, d = spec.window, spec.stride, spec.dilation
    pb = [t.pads[0] for t in axes]
    pe = [t.pads[1] for t in axes]
    span = [d[a] * (k[a] - 1) + 1 for a in range(nd)]
    floor = [geo.output_length(t.n, k[a], s[a], d[a], pb[a], pe[a], False) for a, t in enumerate(axes)]
    # ceil_mode can add a window (out = floor + 1) or, when the end padding is at least a
    # window long, drop one that floor mode would keep (out = floor - 1: it starts in the
    # end padding); either way floor mode with end padding ``fit`` gives exactly ``out``
    changed = [t.out != floor[a] for a, t in enumerate(axes)]
    fit = [max((t.out - 1) * s[a] + span[a] - t.n - pb[a], 0) for a, t in enumerate(axes)]
    ceil = 0
    if any(changed):
        agrees = all(_onnx_ceil_length(b.opset, t.n, k[a], s[a], d[a], pb[a], pe[a]) == t.out
                     for a, t in enumerate(axes))
        if agrees and not any(pb[a] >= k[a] or pe[a] >= k[a] for a in range(nd)):
            ceil = 1
        else:
            new_pe = [fit[a] if changed[a] else pe[a] for a in range(nd)]
            if not extend_ok and any(new_pe[a] > pe[a] for a in range(nd)):
                return ("ceil_mode would need counted padding beyond the input and ONNX shape "
                        f"inference at opset {b.opset} disagrees with onnxruntime on this shape")
            pe = new_pe
    if any(pb[a] >= k[a] or pe[a] >= k[a] for a in range(nd)):
        if not pad_node_ok:
            return "padding >= kernel_size, which onnxruntime rejects"
        big = True
    else:
        big = False
    if not ceil:  # the window counts are fastpool's by construction
        assert all(geo.output_length(t.n, k[a], s[a], d[a], pb[a], pe[a], False) == t.out
                   for a, t in enumerate(axes))
    attrs = dict(kernel_shape=list(k), strides=list(s), pads=pb + pe)
    if any(v != 1 for v in d):
        attrs["dilations"] = list(d)
    if ceil:
        attrs["ceil_mode"] = 1
    return NativeWindow(attrs, big)


def _out_shape(v: Value, axes) -> tuple:
    return v.shape[:2] + tuple(t.out for t in axes)


def _spatial(v: Value) -> tuple:
    return tuple(v.shape[2:])


def _pad(b: Builder, v: Value, pads, value) -> Value:
    nd = v.rank - 2
    full = [0, 0] + list(pads[:nd]) + [0, 0] + list(pads[nd:])
    shape = v.shape[:2] + tuple(v.shape[2 + a] + pads[a] + pads[nd + a] for a in range(nd))
    return b.op1("Pad", [v, b.ints(full), b.scalar(value, v.dtype)], shape, v.dtype, mode="constant")


# ---------------------------------------------------------------------------- max


def _maxpool(b: Builder, v: Value, spec, axes, want_idx: bool) -> list:
    """Native MaxPool (+ Indices converted to fastpool's per-plane convention)."""
    nw = _native_window(b, spec, axes, extend_ok=True, pad_node_ok=True)
    assert isinstance(nw, NativeWindow)
    attrs = dict(nw.attrs)
    x = v
    nd = v.rank - 2
    pads = attrs["pads"]
    if nw.explicit_pad:
        if x.dtype.kind in "iu":
            # Pad with the dtype's minimum could win an index tie (uint8 0s); float32 holds
            # every int8/uint8 exactly and pads with -inf
            x = b.cast(x, F32)
        x = _pad(b, x, pads, -np.inf)
        attrs["pads"] = [0] * (2 * nd)
        b.note("native", "MaxPool after an explicit -inf Pad (onnxruntime rejects pads >= kernel)")
    else:
        b.note("native", "MaxPool")
    shape = _out_shape(v, axes)
    outs = [(shape, x.dtype)] + ([(shape, I64)] if want_idx else [])
    res = b.op("MaxPool", [x], outs, **attrs)
    val = b.cast(res[0], v.dtype)
    if not want_idx:
        return [val]
    padded = _spatial(x)
    idx = b.binary("Mod", res[1], b.scalar(int(np.prod(padded)), I64))
    if nw.explicit_pad:
        idx = _unpad_index(b, idx, padded, _spatial(v), pads[:nd])
    return [val, idx]


def _unpad_index(b: Builder, idx: Value, padded, spatial, begin) -> Value:
    """Flat offsets in the padded plane -> flat offsets in the unpadded plane."""
    nd = len(spatial)
    total = None
    for a in range(nd):
        pstride = int(np.prod(padded[a + 1:], dtype=np.int64))
        c = b.binary("Div", idx, b.scalar(pstride, I64)) if pstride > 1 else idx
        if a > 0:
            c = b.binary("Mod", c, b.scalar(int(padded[a]), I64))
        if begin[a]:
            c = b.binary("Sub", c, b.scalar(int(begin[a]), I64))
        stride = int(np.prod(spatial[a + 1:], dtype=np.int64))
        if stride > 1:
            c = b.binary("Mul", c, b.scalar(stride, I64))
        total = c if total is None else b.binary("Add", total, c)
    return total


def _lower_max(b: Builder, layer, v: Value) -> list:
    axes = geo.plan(layer.spec, _spatial(v))
    return _maxpool(b, v, layer.spec, axes, layer.returns_indices)


def _lower_adaptive_max(b: Builder, layer, v: Value) -> list:
    sp = _spatial(v)
    axes = geo.plan(layer.spec, sp)
    want = layer.returns_indices
    if all(t.out <= t.n and t.n % t.out == 0 for t in axes):
        k = tuple(t.n // t.out for t in axes)
        spec = window_spec(len(sp), k, k)
        return _maxpool(b, v, spec, geo.plan(spec, sp), want)
    b.decompose("adaptive bins of unequal size (output_size does not divide the input): "
                "per-bin Slice + " + ("ArgMax/GatherElements" if want else "ReduceMax") + " + Concat")
    return _adaptive_max_chain(b, v, axes, want)


def _adaptive_max_chain(b: Builder, v: Value, axes, want_idx: bool) -> list:
    """Max over each bin, one axis at a time, innermost first.

    Reducing W, then H, then D and carrying the winners' coordinates keeps
    fastpool's tie rule (first maximum in row-major window order): the row
    maximum found first along W is then compared across rows in order.
    """
    nd = v.rank - 2
    vals = v
    coords: dict = {}
    for a in reversed(range(nd)):
        t, ax = axes[a], 2 + a
        pv, pn = [], []
        pc = {c: [] for c in coords}
        for o in range(t.out):
            lo, hi = int(t.lo[o]), int(t.lo[o] + t.taps[o])
            sl = b.slice(vals, ax, lo, hi)
            one = sl.shape[:ax] + (1,) + sl.shape[ax + 1:]
            if want_idx:
                am = b.op1("ArgMax", [sl], one, I64, axis=ax, keepdims=1)
                pv.append(b.op1("GatherElements", [sl, am], one, sl.dtype, axis=ax))
                for c in coords:
                    pc[c].append(b.op1("GatherElements", [b.slice(coords[c], ax, lo, hi), am],
                                       one, I64, axis=ax))
                pn.append(b.binary("Add", am, b.scalar(lo, I64)) if lo else am)
            else:
                pv.append(b.op1("ReduceMax", [sl, b.ints([ax])], one, sl.dtype, keepdims=1)
                          if hi - lo > 1 else sl)
        vals = b.concat(pv, ax)
        coords = {c: b.concat(pc[c], ax) for c in coords}
        if want_idx:
            coords[a] = b.concat(pn, ax)
    if not want_idx:
        return [vals]
    sp = _spatial(v)
    total = None
    for a in range(nd):
        stride = int(np.prod(sp[a + 1:], dtype=np.int64))
        c = coords[a] if stride == 1 else b.binary("Mul", coords[a], b.scalar(stride, I64))
        total = c if total is None else b.binary("Add", total, c)
    return [vals, total]


def _lower_global_max(b: Builder, layer, v: Value) -> list:
    sp = _spatial(v)
    want = layer.returns_indices
    if not want and v.dtype in (F16, F32):
        b.note("native", "GlobalMaxPool")
        outs = [b.op1("GlobalMaxPool", [v], v.shape[:2] + (1,) * len(sp), v.dtype)]
    else:
        # GlobalMaxPool is float32-only in onnxruntime and has no Indices output;
        # a MaxPool over the whole plane has both
        spec = window_spec(len(sp), sp, sp)
        outs = _maxpool(b, v, spec, geo.plan(spec, sp), want)
    return _keepdims(b, layer, outs)


def _keepdims(b: Builder, layer, outs) -> list:
    if layer.kwargs.get("keepdims", True):
        return outs
    return [b.squeeze(o, list(range(2, o.rank))) for o in outs]


# ---------------------------------------------------------------------------- sums (decompositions)


def _window_matrix(t, weights=None) -> np.ndarray:
    """Matrix (out, n): row o holds output o's weight on the input cells it reads on this axis."""
    m = np.zeros((t.out, t.n), np.float64)
    for o in range(t.out):
        m[o, t.lo[o] + np.arange(t.taps[o]) * t.step] = 1.0 if weights is None else weights[o]
    return m


def _apply_axis(b: Builder, v: Value, a: int, m: np.ndarray) -> Value:
    """Contract spatial axis ``a`` of a (N, C, *spatial) value with ``m`` (out, n)."""
    r = v.rank
    ax = 2 + a
    out = v.shape[:ax] + (m.shape[0],) + v.shape[ax + 1:]
    if ax == r - 1:
        return b.op1("MatMul", [v, b.const(np.ascontiguousarray(m.T).astype(v.dtype), "window_t")],
                     out, v.dtype)
    mat = b.const(m.astype(v.dtype), "window")
    if ax == r - 2:
        return b.op1("MatMul", [mat, v], out, v.dtype)
    # 3-D, depth axis: fold (H, W) into one axis so the matrix multiplies depth
    rest = v.shape[ax + 1:]
    flat = b.op1("Reshape", [v, b.ints([0, 0, v.shape[ax], int(np.prod(rest))])],
                 v.shape[:ax] + (v.shape[ax], int(np.prod(rest))), v.dtype)
    mm = b.op1("MatMul", [mat, flat], flat.shape[:ax] + (m.shape[0],) + flat.shape[ax + 1:], v.dtype)
    return b.op1("Reshape", [mm, b.ints([0, 0, m.shape[0]] + list(rest))], out, v.dtype)


def _window_sum(b: Builder, v: Value, axes, weights=None, scale: float = 1.0) -> Value:
    """Weighted window sums as float64 MatMuls, one per axis, innermost axis first.

    A divisor is folded into the matrices (``weights[a]`` per output along axis
    ``a``, ``scale`` overall) rather than applied after them: onnxruntime before
    1.32 fuses a MatMul followed by a Mul/Div by a one-element constant into
    FusedMatMul with a *float32* alpha, even in float64 graphs (1/12 becomes
    0.0833333358; measured errors of 2e-8 in a float64 adaptive average).
    """
    nd = len(axes)
    weights = [None] * nd if weights is None else list(weights)
    if scale != 1.0:
        inner = weights[nd - 1]
        weights[nd - 1] = (np.ones(axes[nd - 1].out) if inner is None else np.asarray(inner)) * scale
    for a in reversed(range(nd)):
        m = _window_matrix(axes[a], weights[a])
        if m.shape[0] == m.shape[1] and np.array_equal(m, np.eye(m.shape[0])):
            continue
        v = _apply_axis(b, v, a, m)
    return v


def _inverse(counts) -> np.ndarray:
    return 1.0 / np.asarray(counts, np.float64)


# ---------------------------------------------------------------------------- average


def _lower_avg(b: Builder, layer, v: Value) -> list:
    spec = layer.spec
    axes = geo.plan(spec, _spatial(v))
    cip = bool(layer.kwargs["count_include_pad"])
    dov = layer.kwargs["divisor_override"]
    od = out_dtype(layer.kind, v.dtype)
    if dov is not None:
        reason = "divisor_override (ONNX AveragePool has no divisor attribute)"
    elif not _native_dtype(v):
        reason = f"onnxruntime has no {v.dtype} AveragePool kernel"
    elif b.opset < 19 and any(d != 1 for d in spec.dilation):
        reason = f"AveragePool has dilations only from opset 19 (exporting opset {b.opset})"
    else:
        nw = _native_window(b, spec, axes, extend_ok=not cip, pad_node_ok=False)
        reason = nw if isinstance(nw, str) else None
    if reason is None:
        attrs = dict(nw.attrs)
        if cip:
            attrs["count_include_pad"] = 1
        b.note("native", "AveragePool")
        return [_native_float32(b, v, lambda x: b.op1("AveragePool", [x], _out_shape(v, axes),
                                                        x.dtype, **attrs))]
    b.decompose(reason + "; averaging by window MatMuls in float64")
    x64 = b.cast(v, F64)
    if dov is not None:
        s = _window_sum(b, x64, axes, scale=1.0 / float(dov))
    else:
        s = _window_sum(b, x64, axes, [_inverse(t.count if cip else t.taps) for t in axes])
    return [_round_to(b, s, od)]


def _lower_adaptive_avg(b: Builder, layer, v: Value) -> list:
    sp = _spatial(v)
    axes = geo.plan(layer.spec, sp)
    od = out_dtype(layer.kind, v.dtype)
    divides = all(t.out <= t.n and t.n % t.out == 0 for t in axes)
    if divides and _native_dtype(v):
        k = [t.n // t.out for t in axes]
        b.note("native", "AveragePool (output_size divides the input)")
        return [_native_float32(b, v, lambda x: b.op1("AveragePool", [x], _out_shape(v, axes),
                                                        x.dtype, kernel_shape=k, strides=k))]
    b.decompose(("adaptive bins of unequal size" if not divides else
                 f"onnxruntime has no {v.dtype} AveragePool kernel")
                + "; averaging by window MatMuls in float64")
    s = _window_sum(b, b.cast(v, F64), axes, [_inverse(t.taps) for t in axes])
    return [_round_to(b, s, od)]


def _lower_global_avg(b: Builder, layer, v: Value) -> list:
    nd = v.rank - 2
    shape = v.shape[:2] + (1,) * nd
    od = out_dtype(layer.kind, v.dtype)
    if _native_dtype(v):
        b.note("native", "GlobalAveragePool")
        out = _native_float32(b, v, lambda x: b.op1("GlobalAveragePool", [x], shape, x.dtype))
    else:
        b.decompose(f"onnxruntime has no {v.dtype} GlobalAveragePool kernel; float64 ReduceMean")
        out = _round_to(b, b.op1("ReduceMean", [b.cast(v, F64), b.ints(range(2, v.rank))], shape,
                                 F64, keepdims=1), od)
    return _keepdims(b, layer, [out])


# ---------------------------------------------------------------------------- Lp


def _lp_terms(b: Builder, v64: Value, p: float, signed: bool) -> Value:
    t = v64 if signed else b.op1("Abs", [v64], v64.shape, F64)
    if p != 1.0:
        t = b.binary("Pow", t, b.scalar(p, F64))
    return t


def _lp_root(b: Builder, s: Value, p: float) -> Value:
    return s if p == 1.0 else b.binary("Pow", s, b.scalar(1.0 / p, F64))


def _lower_lp(b: Builder, layer, v: Value) -> list:
    spec = layer.spec
    axes = geo.plan(spec, _spatial(v))
    kw = layer.kwargs
    p = float(kw["norm_type"])
    od = out_dtype(layer.kind, v.dtype)
    if kw["torch_compat"]:
        reason = "torch_compat (PyTorch's signed x^p scaled by the kernel area is not ONNX LpPool)"
    elif kw["power_mean"]:
        reason = "power_mean ((mean |x|^p)^(1/p) is not ONNX LpPool)"
    elif not p.is_integer():
        reason = f"LpPool's p is an integer attribute, norm_type={kw['norm_type']!r}"
    elif not _native_dtype(v):
        reason = f"onnxruntime has no {v.dtype} LpPool kernel"
    else:
        nw = _native_window(b, spec, axes, extend_ok=True, pad_node_ok=True)
        reason = nw if isinstance(nw, str) else None
    if reason is None:
        attrs = dict(nw.attrs, p=int(p))
        nd = v.rank - 2

        def run(x):
            if nw.explicit_pad:
                x = _pad(b, x, attrs["pads"], 0.0)  # |0|^p adds nothing to the sum
                attrs["pads"] = [0] * (2 * nd)
            return b.op1("LpPool", [x], _out_shape(v, axes), x.dtype, **attrs)

        b.note("native", "LpPool" + (" after an explicit zero Pad" if nw.explicit_pad else ""))
        return [_native_float32(b, v, run)]
    b.decompose(reason + "; sums of |x|^p by window MatMuls in float64")
    signed = bool(kw["torch_compat"])
    if signed:
        # PyTorch: avg_pool(x^p) (padding counted, ceil overhang not) * kernel area
        weights = [spec.window[a] * _inverse(t.count) for a, t in enumerate(axes)]
    elif kw["power_mean"]:
        weights = [_inverse(t.taps) for t in axes]
    else:
        weights = None
    s = _window_sum(b, _lp_terms(b, b.cast(v, F64), p, signed), axes, weights)
    return [_round_to(b, _lp_root(b, s, p), od)]


def _lower_global_lp(b: Builder, layer, v: Value) -> list:
    nd = v.rank - 2
    shape = v.shape[:2] + (1,) * nd
    p = float(layer.kwargs["norm_type"])
    od = out_dtype(layer.kind, v.dtype)
    if not p.is_integer():
        reason = f"GlobalLpPool's p is an integer attribute, norm_type={layer.kwargs['norm_type']!r}"
    elif not _native_dtype(v):
        reason = f"onnxruntime has no {v.dtype} GlobalLpPool kernel"
    elif b.opset >= 22:
        reason = "onnxruntime 1.31 has no GlobalLpPool kernel for opset 22"
    else:
        reason = None
    if reason is None:
        b.note("native", "GlobalLpPool")
        out = _native_float32(b, v, lambda x: b.op1("GlobalLpPool", [x], shape, x.dtype, p=int(p)))
    else:
        b.decompose(reason + "; float64 ReduceSum of |x|^p, then the root")
        t = _lp_terms(b, b.cast(v, F64), p, False)
        s = b.op1("ReduceSum", [t, b.ints(range(2, v.rank))], shape, F64, keepdims=1)
        out = _round_to(b, _lp_root(b, s, p), od)
    return _keepdims(b, layer, [out])


# ---------------------------------------------------------------------------- the pooling family


def _family_ints(name, value, nd, low):
    from fastpool._spec import int_tuple

    return int_tuple(name, value, nd, low)


def _plane_base(b: Builder, v: Value, plane: int) -> Value:
    """``(n*C + c) * plane`` as an int64 (N, C, 1, ..., 1) value, for any batch size."""
    nd = v.rank - 2
    nc_shape = b.op1("Shape", [v], (2,), I64, start=0, end=2)
    nc = b.op1("ReduceProd", [nc_shape], (), I64, keepdims=0)
    planes = b.op1("Range", [b.scalar(0, I64), nc, b.scalar(1, I64)], (v.shape[0] * v.shape[1],), I64)
    if plane != 1:
        planes = b.binary("Mul", planes, b.scalar(plane, I64))
    return b.op1("Reshape", [planes, b.ints([-1, v.shape[1]] + [1] * nd)], v.shape[:2] + (1,) * nd, I64)


def _shape_with(b: Builder, v: Value, tail) -> Value:
    """``[N, C, *tail]`` as an int64 shape tensor, N and C read from ``v`` at run time."""
    nc = b.op1("Shape", [v], (2,), I64, start=0, end=2)
    return b.op1("Concat", [nc, b.ints(tail)], (2 + len(tail),), I64, axis=0)


def _lower_max_unpool(b: Builder, layer, v: Value, ind: Value) -> list:
    nd = v.rank - 2
    kw = layer.kwargs
    k = _family_ints("kernel_size", kw["kernel_size"], nd, 1)
    s = k if kw["stride"] is None else _family_ints("stride", kw["stride"], nd, 1)
    p = _family_ints("padding", kw["padding"], nd, 0)
    sp = _spatial(v)
    default = tuple((sp[a] - 1) * s[a] - 2 * p[a] + k[a] for a in range(nd))
    osp = default if b.output_size is None else tuple(b.output_size)
    out_shape = v.shape[:2] + osp
    plane = int(np.prod(osp, dtype=np.int64))
    if v.dtype not in (F16, F32):
        reason = f"onnxruntime's MaxUnpool runs float32/float16 only, not {v.dtype}"
    elif any(o < d for o, d in zip(osp, default)):
        reason = (f"output_size {osp} is below the default size {default}, which onnxruntime's "
                  f"MaxUnpool refuses")
    else:
        reason = None
    if reason is None:
        # ONNX's indices are flat over (N, C, *output); fastpool's per plane
        flat = b.binary("Add", ind, _plane_base(b, v, plane))
        shape_in = _shape_with(b, v, osp)
        b.note("native", "MaxUnpool with output_shape (indices offset to ONNX's flat N*C*spatial)")
        return [b.op1("MaxUnpool", [v, flat, shape_in], out_shape, v.dtype, kernel_shape=list(k),
                      strides=list(s), pads=list(p) * 2)]
    b.decompose(reason + "; ScatterElements into a zero plane per (n, c)")
    n_in = int(np.prod(sp, dtype=np.int64))
    xf = b.op1("Reshape", [v, b.ints([0, 0, -1])], v.shape[:2] + (n_in,), v.dtype)
    idf = b.op1("Reshape", [ind, b.ints([0, 0, -1])], v.shape[:2] + (n_in,), I64)
    zshape = _shape_with(b, v, (plane,))
    zeros = b.op1("Expand", [b.scalar(0, v.dtype), zshape], v.shape[:2] + (plane,), v.dtype)
    # reduction="none": onnxruntime applies the updates in order, so the later of two
    # inputs naming one cell wins, as in fastpool
    y = b.op1("ScatterElements", [zeros, idf, xf], zeros.shape, v.dtype, axis=2)
    return [b.op1("Reshape", [y, b.ints([0, 0] + list(osp))], out_shape, v.dtype)]


@dataclass
class _Bins:
    """One axis of fixed windows for :func:`_adaptive_max_chain`."""

    out: int
    lo: np.ndarray
    taps: np.ndarray


def _fractional_starts(layer, v: Value):
    """Window starts per axis, (N, C, out) int64, from the layer's fixed samples."""
    from fastpool import family as F

    nd = v.rank - 2
    kw = layer.kwargs
    if kw["samples"] is None:
        raise ExportError(
            f"{layer!r} draws new windows at every call; ONNX needs fixed ones: construct the "
            f"layer with samples=... (e.g. samples=layer.last_samples after a forward call)"
        )
    k = _family_ints("kernel_size", kw["kernel_size"], nd, 1)
    sp = _spatial(v)
    if kw["output_size"] is not None:
        osp = _family_ints("output_size", kw["output_size"], nd, 1)
    else:
        r = kw["output_ratio"]
        r = (r,) * nd if not isinstance(r, (tuple, list)) else tuple(r)
        osp = tuple(int(n * float(q)) for n, q in zip(sp, r))
    T = np.float32 if v.dtype in (F16, F32) else np.float64   # fastpool's precision for the starts
    smp = np.asarray(kw["samples"])
    if smp.shape != v.shape[:2] + (nd,):
        raise ExportError(f"{layer!r}: samples of shape {smp.shape} do not fit input planes "
                          f"{v.shape[:2]} (they fix the batch size)")
    smp = smp.astype(T)
    cols = (0,) if nd == 1 else ((1, 0) if nd == 2 else (0, 1, 2))   # [..., 0] drives W in 2-D
    return [F._intervals(smp[:, :, cols[a]], sp[a], osp[a], k[a], T) for a in range(nd)], k, osp


def _lower_fractional(b: Builder, layer, v: Value) -> list:
    los, k, osp = _fractional_starts(layer, v)
    nd = v.rank - 2
    want = layer.returns_indices
    shared = all((lo == lo[:1, :1]).all() for lo in los)
    if shared:
        b.decompose("fractional windows (one sample shared by every plane): per-window Slice + "
                    + ("ArgMax/GatherElements" if want else "ReduceMax") + " + Concat")
        axes = [_Bins(osp[a], los[a][0, 0], np.full(osp[a], k[a])) for a in range(nd)]
        return _adaptive_max_chain(b, v, axes, want)
    b.decompose("fractional windows (a sample per plane): GatherElements of each window tap "
                "from constant positions, then Max" + (" and ArgMax" if want else ""))
    sp = _spatial(v)
    n_in = int(np.prod(sp, dtype=np.int64))
    n_out = int(np.prod(osp, dtype=np.int64))
    flat_shape = v.shape[:2] + (n_out,)
    xf = b.op1("Reshape", [v, b.ints([0, 0, -1])], v.shape[:2] + (n_in,), v.dtype)
    strides = [int(np.prod(sp[a + 1:], dtype=np.int64)) for a in range(nd)]
    taps, positions = [], []
    for t in itertools.product(*(range(ka) for ka in k)):   # row-major window order
        pos = np.zeros(v.shape[:2] + tuple(osp), np.int64)
        for a in range(nd):
            shape = v.shape[:2] + tuple(osp[a] if i == a else 1 for i in range(nd))
            pos = pos + ((los[a] + t[a]) * strides[a]).reshape(shape)
        pos = pos.reshape(flat_shape)
        positions.append(pos)
        taps.append(b.op1("GatherElements", [xf, b.const(pos, "frac_taps")], flat_shape, v.dtype,
                          axis=2))
    out_shape = v.shape[:2] + tuple(osp)
    best = taps[0] if len(taps) == 1 else b.op1("Max", taps, flat_shape, v.dtype)
    val = b.op1("Reshape", [best, b.ints([0, 0] + list(osp))], out_shape, v.dtype)
    if not want:
        return [val]
    n_t = len(taps)
    stack_shape = v.shape[:2] + (n_t, n_out)
    stacked = b.concat([b.unsqueeze(t, 2) for t in taps], 2)
    am = b.op1("ArgMax", [stacked], v.shape[:2] + (1, n_out), I64, axis=2, keepdims=1)
    table = b.const(np.stack(positions, axis=2).reshape(stack_shape), "frac_positions")
    idx = b.op1("GatherElements", [table, am], am.shape, I64, axis=2)
    return [val, b.op1("Reshape", [idx, b.ints([0, 0] + list(osp))], out_shape, I64)]


def _lower_stochastic(b: Builder, layer, v: Value) -> list:
    if layer.kwargs["training"]:
        raise ExportError(
            f"{b.layer_label}: stochastic pooling in training mode draws cells from a NumPy "
            f"Generator, which ONNX cannot express; export the inference form "
            f"(sum a^2 / sum a per window) with layer.eval()"
        )
    spec = layer.spec
    axes = geo.plan(spec, _spatial(v))
    od = v.dtype if v.dtype.kind == "f" else F64
    shape = _out_shape(v, axes)
    nw = _native_window(b, spec, axes, extend_ok=True, pad_node_ok=False) if _native_dtype(v) else \
        f"onnxruntime has no {v.dtype} AveragePool kernel"
    if isinstance(nw, NativeWindow):
        # the window mean of a^2 over the window mean of a: the common divisor cancels
        attrs = dict(nw.attrs, count_include_pad=1)
        b.note("native", "inference form: AveragePool(x*x) / AveragePool(x), 0 where the window "
                         "sum is 0 (input must be non-negative)")

        def run(x):
            s1 = b.op1("AveragePool", [x], shape, x.dtype, **attrs)
            s2 = b.op1("AveragePool", [b.binary("Mul", x, x)], shape, x.dtype, **attrs)
            return _safe_ratio(b, s2, s1)

        return [_native_float32(b, v, run)]
    b.decompose(nw + "; inference form: window sums of x*x and x by MatMuls in float64")
    x64 = b.cast(v, F64)
    s1 = _window_sum(b, x64, axes)
    s2 = _window_sum(b, b.binary("Mul", x64, x64), axes)
    return [_round_to(b, _safe_ratio(b, s2, s1), od)]


def _safe_ratio(b: Builder, num: Value, den: Value) -> Value:
    """``num / den`` where ``den > 0``, else 0 (the unselected Div may be 0/0)."""
    pos = b.op1("Greater", [den, b.scalar(0, den.dtype)], den.shape, np.bool_)
    ratio = b.binary("Div", num, den)
    return b.op1("Where", [pos, ratio, b.scalar(0, den.dtype)], den.shape, den.dtype)


def _lower_mixed(b: Builder, layer, v: Value) -> list:
    from fastpool import layers as fpl

    nd = v.rank - 2
    spec = layer.spec
    axes = geo.plan(spec, _spatial(v))
    kw = layer.kwargs
    c = v.shape[1]
    alpha = np.asarray(kw["alpha"], np.float64)
    if alpha.ndim and alpha.size == 1:
        alpha = alpha.reshape(())
    if alpha.ndim:
        if alpha.shape != (c,):
            raise ExportError(f"{b.layer_label}: alpha has shape {alpha.shape}, the input {c} channels")
        alpha = alpha.reshape((1, c) + (1,) * nd)
    od = v.dtype if v.dtype.kind == "f" else F64
    b.note("mixed", "alpha * max + (1 - alpha) * avg in float64" +
           (" (alpha per channel, a (1, C, 1, ...) constant)" if alpha.ndim else ""))
    xm = b.cast(v, F64) if v.dtype == np.int32 else v   # onnxruntime's MaxPool has no int32
    mx = b.cast(_maxpool(b, xm, spec, axes, False)[0], F64)
    part_max = b.binary("Mul", mx, b.const(alpha, "alpha"))
    if _native_dtype(v):
        proxy = getattr(fpl, f"AvgPool{nd}d")(spec.window, spec.stride, [list(p) for p in spec.padding])
        av = b.cast(_lower_avg(b, proxy, v)[0], F64)
        part_avg = b.binary("Mul", av, b.const(1.0 - alpha, "one_minus_alpha"))
    else:
        b.decompose(f"onnxruntime has no {v.dtype} AveragePool kernel; the average part by window "
                    f"MatMuls in float64")
        weights = [_inverse(t.count) for t in axes]
        if alpha.ndim:
            part_avg = b.binary("Mul", _window_sum(b, b.cast(v, F64), axes, weights),
                                b.const(1.0 - alpha, "one_minus_alpha"))
        else:
            # 1 - alpha folded into the matrices: onnxruntime would fuse a MatMul and a
            # one-element Mul into a float32 alpha
            part_avg = _window_sum(b, b.cast(v, F64), axes, weights, scale=float(1.0 - alpha))
    # fastpool rounds the float64 sum to the output dtype once
    return [b.cast(b.binary("Add", part_max, part_avg), od)]


def _lower_spp(b: Builder, layer, v: Value) -> list:
    from fastpool import layers as fpl
    from fastpool.family import _levels

    mode = layer.kwargs["mode"]
    parts = []
    for lvl in _levels(layer.kwargs["levels"]):
        if mode == "max":
            y = _lower_adaptive_max(b, fpl.AdaptiveMaxPool2d(lvl), v)[0]
        else:
            y = _lower_adaptive_avg(b, fpl.AdaptiveAvgPool2d(lvl), v)[0]
        parts.append(b.op1("Flatten", [y], (y.shape[0], int(np.prod(y.shape[1:]))), y.dtype, axis=1))
    b.note("pyramid", f"{len(parts)} level(s) flattened channel-major and concatenated")
    return [b.concat(parts, 1)]


def _roi_opset(b: Builder, op: str) -> None:
    if b.opset >= 22:
        raise ExportError(f"{b.layer_label} cannot be exported at opset {b.opset}: onnxruntime "
                          f"1.31 has no opset-22 {op} kernel; export at opset 18..21")


def _roi_dtype(b: Builder, v: Value, boxes: Value, op: str, allowed) -> tuple:
    """Input and boxes in a dtype onnxruntime's ``op`` runs (float16 computed in float32,
    as fastpool does)."""
    if v.dtype == F16:
        return b.cast(v, F32), b.cast(boxes, F32)
    if v.dtype not in allowed:
        raise ExportError(f"{b.layer_label}: {v.dtype} input cannot be exported: onnxruntime has "
                          f"no {v.dtype} {op} kernel" + (
                              " and the bins depend on the box values, so no fixed decomposition "
                              "reproduces it" if v.dtype == F64 else ""))
    return v, boxes


def _lower_roi_align(b: Builder, layer, v: Value, boxes: Value) -> list:
    _roi_opset(b, "RoiAlign")
    kw = layer.kwargs
    ph, pw = _family_ints("output_size", kw["output_size"], 2, 1)
    x, bx = _roi_dtype(b, v, boxes, "RoiAlign", (F32, F64))
    k = bx.shape[0]
    rois = b.slice(bx, 1, 1, 5)
    batch = b.cast(b.squeeze(b.slice(bx, 1, 0, 1), [1]), I64)
    mode = "half_pixel" if kw["aligned"] else "output_half_pixel"
    b.note("native", f"RoiAlign (mode avg, coordinate_transformation_mode {mode}); the (K, 5) "
                     f"boxes split into rois and batch_indices")
    y = b.op1("RoiAlign", [x, rois, batch], (k, v.shape[1], ph, pw), x.dtype, mode="avg",
              output_height=ph, output_width=pw, sampling_ratio=max(int(kw["sampling_ratio"]), 0),
              spatial_scale=float(kw["spatial_scale"]), coordinate_transformation_mode=mode)
    return [b.cast(y, v.dtype)]


def _lower_roi_pool(b: Builder, layer, v: Value, boxes: Value) -> list:
    _roi_opset(b, "MaxRoiPool")
    kw = layer.kwargs
    ph, pw = _family_ints("output_size", kw["output_size"], 2, 1)
    x, bx = _roi_dtype(b, v, boxes, "MaxRoiPool", (F32,))
    b.note("native", "MaxRoiPool (boxes are its rois)")
    y = b.op1("MaxRoiPool", [x, bx], (bx.shape[0], v.shape[1], ph, pw), x.dtype,
              pooled_shape=[ph, pw], spatial_scale=float(kw["spatial_scale"]))
    return [b.cast(y, v.dtype)]


_LOWER = {
    "max_pool": _lower_max,
    "adaptive_max_pool": _lower_adaptive_max,
    "global_max_pool": _lower_global_max,
    "avg_pool": _lower_avg,
    "adaptive_avg_pool": _lower_adaptive_avg,
    "global_avg_pool": _lower_global_avg,
    "lp_pool": _lower_lp,
    "global_lp_pool": _lower_global_lp,
    "max_unpool": _lower_max_unpool,
    "fractional_max_pool": _lower_fractional,
    "stochastic_pool": _lower_stochastic,
    "mixed_pool": _lower_mixed,
    "spatial_pyramid_pool": _lower_spp,
    "roi_pool": _lower_roi_pool,
    "roi_align": _lower_roi_align,
}


def supported_kinds() -> tuple:
    return tuple(_LOWER)


