"""An ONNX backend that runs pooling graphs with fastpool.

Follows the ONNX backend convention (as ``onnxruntime.backend`` does)::

    from onnx_ops import backend
    rep = backend.prepare(model)          # validates every node up front
    y, = rep.run([x])                     # list of arrays, graph output order

Operators: ``MaxPool`` (``Indices`` output, ``storage_order``), ``AveragePool``,
``LpPool``, ``GlobalAveragePool``, ``GlobalMaxPool``, ``GlobalLpPool``,
``MaxUnpool``, ``MaxRoiPool`` and ``RoiAlign``, at every opset where ONNX defines
them, with that opset's attributes and defaults (``count_include_pad`` defaults
to 0; LpPool's ``p`` is a float at opset 1 and an int from opset 2;
``dilations``/``ceil_mode`` from opset 10 for MaxPool, 19/10 for AveragePool, 18
for LpPool; RoiAlign-10 has no ``coordinate_transformation_mode`` and behaves as
``output_half_pixel``, while from opset 16 the default is ``half_pixel``).  Any
other operator raises :class:`UnsupportedOpError` naming it.

Semantics notes:

* ``auto_pad``: ``SAME_UPPER`` puts the odd padding cell at the end, ``SAME_LOWER``
  at the beginning, both giving ``ceil(n / stride)`` outputs and accounting for
  dilation (onnxruntime ignores dilation there: a known divergence); ``VALID``
  is no padding.  ``ceil_mode`` applies with every ``auto_pad``, as in ONNX shape
  inference and onnxruntime (with SAME padding it cannot change the count; with
  VALID it can, although the operator docs' VALID formula ignores it).
* ``ceil_mode`` output lengths use the rule of ONNX opset >= 19 (onnx PR #5741)
  for every opset: a last window starting in the end padding is dropped.
  onnxruntime computes the same lengths.
* Max pooling propagates NaN (onnxruntime's ignores it).
* ``Indices`` are flat over ``(N, C, *spatial)`` of the unpadded input;
  ``storage_order=1`` makes the spatial part column-major.
* ``MaxUnpool``: ``I`` holds flat indices into the whole output ``(N, C, *spatial)``;
  each must point into its own ``(n, c)`` plane (fastpool unpools plane by plane;
  MaxPool's ``Indices`` always do), else a :class:`BackendError` names it.  Without
  ``output_shape`` the size is ``(n - 1) * stride + kernel - pad_begin - pad_end``;
  with it, any size that holds the indices (onnxruntime refuses sizes below that
  default; the ONNX reference implementation, and the conformance case built from
  it, write into the default-size tensor and then pad, onnx#2398).  When two
  inputs name the same cell the later one wins (onnxruntime, PyTorch).
* ``RoiAlign`` ``mode="avg"`` is fastpool's ``roi_align``; ``mode="max"`` is ONNX's
  own definition (onnx#4764): per bin, the maximum over samples of the largest of
  the four *weighted* corner values ``w_i * x_i`` (not of the interpolated value),
  a sample outside the map counting as 0, no division; computed in NumPy in the
  input's precision (float16 in float32), in onnxruntime's operation order.
* ``MaxRoiPool`` is fastpool's ``roi_pool`` (corners rounded half away from zero,
  empty bins 0).
"""

from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import AttributeProto, helper, numpy_helper
from onnx.backend.base import Backend, BackendRep, Device, DeviceType

import fastpool as fp
from fastpool.errors import PoolingError

from .errors import BackendError, UnsupportedOpError

POOL_OPS = ("MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool",
            "MaxUnpool", "MaxRoiPool", "RoiAlign")
# op -> why it is recognised but not run (none left; kept for callers that report them)
PENDING_OPS: dict = {}
# (required, optional) inputs per op
_N_INPUTS = {"MaxUnpool": (2, 1), "MaxRoiPool": (2, 0), "RoiAlign": (3, 0)}
ROI_ALIGN_MODES = ("avg", "max")
COORDINATE_MODES = ("half_pixel", "output_half_pixel")
AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
DEFAULT_OPSET = 21

_TYPE_STR = {
    np.dtype(np.float16): "tensor(float16)", np.dtype(np.float32): "tensor(float)",
    np.dtype(np.float64): "tensor(double)", np.dtype(np.int8): "tensor(int8)",
    np.dtype(np.uint8): "tensor(uint8)", np.dtype(np.int16): "tensor(int16)",
    np.dtype(np.uint16): "tensor(uint16)", np.dtype(np.int32): "tensor(int32)",
    np.dtype(np.int64): "tensor(int64)", np.dtype(np.bool_): "tensor(bool)",
}
_FASTPOOL_DTYPES = tuple(np.dtype(t) for t in (np.float16, np.float32, np.float64, np.int8, np.uint8))


def _describe(node) -> str:
    name = f"'{node.name}' " if node.name else ""
    return f"node {name}({node.op_type})"


def _type_name(t: int) -> str:
    return AttributeProto.AttributeType.Name(t)


# ============================================================================ one node


class PoolNode:
    """One validated pooling node; calling it with input arrays returns output arrays."""

    def __init__(self, node, opset: int):
        self.node = node
        self.op = node.op_type
        self.where = _describe(node)
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOpError(
                f"{self.where} is in domain '{node.domain}'; the fastpool backend runs only "
                f"default-domain pooling ops ({', '.join(POOL_OPS)})"
            )
        if self.op in PENDING_OPS:
            raise UnsupportedOpError(f"{self.where}: {self.op} is not implemented yet: "
                                     f"{PENDING_OPS[self.op]}")
        if self.op not in POOL_OPS:
            raise UnsupportedOpError(
                f"{self.where}: the fastpool backend does not run {self.op}; it runs "
                f"{', '.join(POOL_OPS)}"
            )
        try:
            self.schema = onnx.defs.get_schema(self.op, opset, "")
        except onnx.defs.SchemaError:
            raise BackendError(f"{self.where}: {self.op} does not exist at opset {opset}") from None
        self.version = self.schema.since_version
        self.attrs = self._attributes()
        self._check_io()
        self._check_static()

    # ------------------------------------------------------------------ validation

    def _attributes(self) -> dict:
        known = self.schema.attributes
        attrs = {}
        for a in self.node.attribute:
            if a.name not in known:
                raise BackendError(
                    f"{self.where}: unknown attribute '{a.name}' for {self.op} at opset version "
                    f"{self.version} (known: {', '.join(sorted(known)) or 'none'})"
                )
            want = known[a.name].type
            if a.type != want:
                raise BackendError(
                    f"{self.where}: attribute '{a.name}' must be {_type_name(want)} at "
                    f"{self.op}-{self.version}, got {_type_name(a.type)}"
                )
            v = helper.get_attribute_value(a)
            attrs[a.name] = v.decode() if isinstance(v, bytes) else v
        for name, spec in known.items():
            if name in attrs:
                continue
            if spec.required:
                raise BackendError(f"{self.where}: required attribute '{name}' is missing")
            if spec.default_value.name:
                v = helper.get_attribute_value(spec.default_value)
                attrs[name] = v.decode() if isinstance(v, bytes) else v
        return attrs

    def _check_io(self) -> None:
        need, optional = _N_INPUTS.get(self.op, (1, 0))
        ins = list(self.node.input)
        while ins and not ins[-1]:  # trailing empty names are omitted optional inputs
            ins.pop()
        if len(ins) < need or len(ins) > need + optional or not all(ins[:need]):
            names = [i.name for i in self.schema.inputs]
            want = f"{need}" if not optional else f"{need} to {need + optional}"
            raise BackendError(f"{self.where} takes {want} input{'s' if need + optional > 1 else ''} "
                               f"({', '.join(names)}), got {list(self.node.input)}")
        self.n_inputs = len(ins)
        outs = list(self.node.output)
        max_out = len(self.schema.outputs)
        if not outs or not outs[0] or len(outs) > max_out:
            raise BackendError(
                f"{self.where} has {max_out} output{'s' if max_out > 1 else ''} "
                f"(Y{', Indices' if max_out > 1 else ''}) at opset version {self.version}, "
                f"got {outs}"
            )
        self.want_indices = len(outs) == 2 and bool(outs[1])

    def _check_static(self) -> None:
        a = self.attrs
        if "auto_pad" in a and a["auto_pad"] not in AUTO_PADS:
            raise BackendError(f"{self.where}: auto_pad must be one of {', '.join(AUTO_PADS)}, "
                               f"got '{a['auto_pad']}'")
        for flag in ("ceil_mode", "count_include_pad", "storage_order"):
            if flag in a and a[flag] not in (0, 1):
                raise BackendError(f"{self.where}: {flag} must be 0 or 1, got {a[flag]}")
        if "p" in a:
            p = a["p"]
            if not np.isfinite(p) or p <= 0:
                raise BackendError(f"{self.where}: p must be a finite number > 0, got {p}")
        if "spatial_scale" in a:
            sc = a["spatial_scale"]
            if not np.isfinite(sc) or sc <= 0:
                raise BackendError(f"{self.where}: spatial_scale must be a finite number > 0 "
                                   f"(fastpool's rule), got {sc}")
        if self.op == "MaxRoiPool":
            ps = list(a["pooled_shape"])
            if len(ps) != 2 or any(v < 1 for v in ps):
                raise BackendError(f"{self.where}: pooled_shape must be 2 ints >= 1, got {ps}")
        if self.op == "RoiAlign":
            if a["mode"] not in ROI_ALIGN_MODES:
                raise BackendError(f"{self.where}: mode must be 'avg' or 'max', got '{a['mode']}'")
            for name in ("output_height", "output_width"):
                if a[name] < 1:
                    raise BackendError(f"{self.where}: {name} must be >= 1, got {a[name]}")
            if a["sampling_ratio"] < 0:
                raise BackendError(f"{self.where}: sampling_ratio must be >= 0 (0: adaptive), "
                                   f"got {a['sampling_ratio']}")
            # RoiAlign-10 has no such attribute and samples as output_half_pixel does
            a.setdefault("coordinate_transformation_mode", "output_half_pixel")
            if a["coordinate_transformation_mode"] not in COORDINATE_MODES:
                raise BackendError(f"{self.where}: coordinate_transformation_mode must be one of "
                                   f"{', '.join(COORDINATE_MODES)}, got "
                                   f"'{a['coordinate_transformation_mode']}'")
        if "kernel_shape" in a:
            k = list(a["kernel_shape"])
            nd = len(k)
            if nd == 0:
                raise BackendError(f"{self.where}: kernel_shape must not be empty")
            self._ints("kernel_shape", k, nd, 1)
            for name, length, low in (("strides", nd, 1), ("dilations", nd, 1), ("pads", 2 * nd, 0)):
                if name in a:
                    self._ints(name, list(a[name]), length, low)
            if a.get("auto_pad", "NOTSET") != "NOTSET" and any(a.get("pads", ())):
                raise BackendError(f"{self.where}: pads cannot be used together with "
                                   f"auto_pad={a['auto_pad']}")

    def _ints(self, name, values, length, low) -> None:
        if len(values) != length:
            raise BackendError(
                f"{self.where}: {name} must have {length} values "
                f"({'2 per' if name == 'pads' else 'one per'} spatial axis of "
                f"kernel_shape={list(self.attrs['kernel_shape'])}), got {values}"
            )
        bad = [v for v in values if v < low]
        if bad:
            raise BackendError(f"{self.where}: {name} must be >= {low}, got {values}")

    def _check_typed(self, i: int, arr) -> None:
        """Input ``i`` against its type constraint at this opset."""
        formal = self.schema.inputs[i]
        if not isinstance(arr, np.ndarray):
            raise BackendError(f"{self.where}: input {formal.name} must be a numpy array, "
                               f"got {type(arr).__name__}")
        allowed = next(c.allowed_type_strs for c in self.schema.type_constraints
                       if c.type_param_str == formal.type_str) \
            if formal.type_str.startswith("T") else [formal.type_str]
        dt = arr.dtype.newbyteorder("=") if arr.dtype.byteorder not in "=|" else arr.dtype
        if _TYPE_STR.get(dt) not in allowed:
            what = "input" if i == 0 else f"input {formal.name}"
            raise BackendError(f"{self.where}: {what} dtype {arr.dtype} is not allowed "
                               f"for {self.op}-{self.version} ({', '.join(allowed)})")

    def _check_input(self, x: np.ndarray) -> None:
        self._check_typed(0, x)
        if x.dtype not in _FASTPOOL_DTYPES:
            raise BackendError(f"{self.where}: fastpool does not run {x.dtype} input")
        if self.op in ("MaxRoiPool", "RoiAlign"):
            if x.ndim != 4:
                raise BackendError(f"{self.where}: input must be (N, C, H, W), got shape {x.shape}")
            return
        if x.ndim < 3:
            raise BackendError(f"{self.where}: input must be (N, C, *spatial), got shape {x.shape}")
        if x.ndim > 5:
            raise BackendError(f"{self.where}: fastpool pools 1 to 3 spatial axes, got input of "
                               f"shape {x.shape} ({x.ndim - 2} spatial axes)")
        k = self.attrs.get("kernel_shape")
        if k is not None and len(k) != x.ndim - 2:
            raise BackendError(f"{self.where}: kernel_shape={list(k)} has {len(k)} axes but the "
                               f"input of shape {x.shape} has {x.ndim - 2} spatial axes")

    # ------------------------------------------------------------------ execution

    def padding(self, spatial) -> tuple:
        """Per-axis (begin, end) pads for the input's spatial sizes."""
        a = self.attrs
        k = list(a["kernel_shape"])
        nd = len(k)
        s = list(a.get("strides") or [1] * nd)
        d = list(a.get("dilations") or [1] * nd)
        mode = a.get("auto_pad", "NOTSET")
        if mode == "NOTSET":
            p = list(a.get("pads") or [0] * (2 * nd))
            return tuple((p[i], p[nd + i]) for i in range(nd))
        if mode == "VALID":
            return ((0, 0),) * nd
        pairs = []
        for i, n in enumerate(spatial):
            out = -(-n // s[i])
            total = max((out - 1) * s[i] + d[i] * (k[i] - 1) + 1 - n, 0)
            small, big = total // 2, total - total // 2
            pairs.append((small, big) if mode == "SAME_UPPER" else (big, small))
        return tuple(pairs)

    def __call__(self, inputs) -> list:
        inputs = list(inputs)
        if len(inputs) != self.n_inputs:
            raise BackendError(f"{self.where} takes {self.n_inputs} input array(s), got {len(inputs)}")
        x = inputs[0]
        self._check_input(x)
        for i in range(1, len(inputs)):
            self._check_typed(i, inputs[i])
        try:
            if self.op == "MaxUnpool":
                return [self._max_unpool(x, inputs[1], inputs[2] if len(inputs) > 2 else None)]
            if self.op == "MaxRoiPool":
                return [self._max_roi_pool(x, inputs[1])]
            if self.op == "RoiAlign":
                return [self._roi_align(x, inputs[1], inputs[2])]
            return self._run(x)
        except PoolingError as e:
            raise BackendError(f"{self.where} on input of shape {x.shape}: {e}") from None

    def _run(self, x: np.ndarray) -> list:
        a = self.attrs
        op = self.op
        nd = x.ndim - 2
        if op == "GlobalAveragePool":
            return [fp.global_avg_pool(x)]
        if op == "GlobalMaxPool":
            return [fp.global_max_pool(x)]
        if op == "GlobalLpPool":
            return [fp.global_lp_pool(x, float(a["p"])).astype(x.dtype, copy=False)]
        k = tuple(a["kernel_shape"])
        s = tuple(a.get("strides") or (1,) * nd)
        d = tuple(a.get("dilations") or (1,) * nd)
        pads = self.padding(x.shape[2:])
        ceil = bool(a.get("ceil_mode", 0))
        if op == "MaxPool":
            fn = getattr(fp, f"max_pool{nd}d")
            if not self.want_indices:
                return [fn(x, k, s, pads, d, ceil)]
            y, idx = fn(x, k, s, pads, d, ceil, return_indices=True)
            return [y, self._onnx_indices(idx, x.shape)]
        if op == "AveragePool":
            fn = getattr(fp, f"avg_pool{nd}d")
            return [fn(x, k, s, pads, ceil, bool(a.get("count_include_pad", 0)), dilation=d)]
        fn = getattr(fp, f"lp_pool{nd}d")  # LpPool: ONNX's (sum |x|^p)^(1/p) is fastpool's default
        return [fn(x, float(a["p"]), k, s, ceil, padding=pads, dilation=d)]

    # ------------------------------------------------------------------ unpool and RoI

    def _max_unpool(self, x: np.ndarray, ind: np.ndarray, output_shape) -> np.ndarray:
        a = self.attrs
        nd = x.ndim - 2
        k = list(a["kernel_shape"])
        s = list(a.get("strides") or [1] * nd)
        p = list(a.get("pads") or [0] * (2 * nd))
        if ind.shape != x.shape:
            raise BackendError(f"{self.where}: I must have X's shape {x.shape}, got {ind.shape}")
        default = tuple((x.shape[2 + i] - 1) * s[i] + k[i] - p[i] - p[nd + i] for i in range(nd))
        if output_shape is None:
            osp = default
            if any(o < 0 for o in osp):
                raise BackendError(f"{self.where}: the default output size {osp} (from kernel_shape, "
                                   f"strides and pads) is negative")
        else:
            shape = tuple(int(v) for v in np.asarray(output_shape).reshape(-1))
            if len(shape) != x.ndim or shape[:2] != x.shape[:2] or any(v < 0 for v in shape):
                raise BackendError(f"{self.where}: output_shape must be [N, C, *spatial] with X's N "
                                   f"and C {x.shape[:2]} and sizes >= 0, got {list(shape)}")
            osp = shape[2:]
        plane = int(np.prod(osp, dtype=np.int64))
        n, c = x.shape[:2]
        base = (np.arange(n * c, dtype=np.int64) * plane).reshape((n, c) + (1,) * nd)
        local = ind.astype(np.int64, copy=False) - base
        bad = (local < 0) | (local >= plane)
        if bad.any():
            pos = tuple(int(v) for v in np.argwhere(bad)[0])
            raise BackendError(
                f"{self.where}: I{list(pos)} = {int(ind[pos])} does not point into the output plane "
                f"of its own (n, c) = {pos[:2]} (flat indices [{int(base[pos[:2]].ravel()[0])}, "
                f"{int(base[pos[:2]].ravel()[0]) + plane}) of the output {(n, c) + tuple(osp)}); "
                f"fastpool unpools plane by plane"
            )
        # fastpool's kernel/stride/padding only size the output: pick a geometry whose
        # default size is exactly ONNX's (which may come from asymmetric pads or output_shape)
        geo_k, geo_p = zip(*(_unpool_geometry(x.shape[2 + i], osp[i]) for i in range(nd)))
        fn = getattr(fp, f"max_unpool{nd}d")
        return fn(x, local, geo_k, 1, geo_p)

    def _same_type(self, x: np.ndarray, rois: np.ndarray) -> None:
        if rois.dtype != x.dtype:
            raise BackendError(f"{self.where}: rois must have X's dtype {x.dtype} (one type "
                               f"parameter), got {rois.dtype}")

    def _max_roi_pool(self, x: np.ndarray, rois: np.ndarray) -> np.ndarray:
        self._same_type(x, rois)
        if rois.ndim != 2 or rois.shape[1] != 5:
            raise BackendError(f"{self.where}: rois must be (num_rois, 5) rows "
                               f"[batch, x1, y1, x2, y2], got shape {rois.shape}")
        a = self.attrs
        return fp.roi_pool(x, rois, tuple(a["pooled_shape"]), float(a["spatial_scale"]))

    def _roi_align(self, x: np.ndarray, rois: np.ndarray, batch: np.ndarray) -> np.ndarray:
        self._same_type(x, rois)
        if rois.ndim != 2 or rois.shape[1] != 4:
            raise BackendError(f"{self.where}: rois must be (num_rois, 4) rows [x1, y1, x2, y2], "
                               f"got shape {rois.shape}")
        if batch.shape != (rois.shape[0],):
            raise BackendError(f"{self.where}: batch_indices must have shape (num_rois,) = "
                               f"({rois.shape[0]},), got {batch.shape}")
        a = self.attrs
        out = (int(a["output_height"]), int(a["output_width"]))
        half_pixel = a["coordinate_transformation_mode"] == "half_pixel"
        if a["mode"] == "max":
            return roi_align_max(x, rois, batch, out, float(a["spatial_scale"]),
                                 int(a["sampling_ratio"]), half_pixel, self.where)
        boxes = np.concatenate([batch.astype(np.float64)[:, None], rois.astype(np.float64)], axis=1)
        return fp.roi_align(x, boxes, out, float(a["spatial_scale"]), int(a["sampling_ratio"]),
                            half_pixel)

    def _onnx_indices(self, idx: np.ndarray, shape) -> np.ndarray:
        """fastpool's per-plane row-major offsets -> ONNX's flat (N, C, *spatial) indices."""
        spatial = shape[2:]
        plane = int(np.prod(spatial, dtype=np.int64))
        if self.attrs.get("storage_order", 0) == 1:
            idx = np.ravel_multi_index(np.unravel_index(idx, spatial), spatial, order="F")
        n, c = shape[:2]
        base = (np.arange(n * c, dtype=np.int64) * plane).reshape((n, c) + (1,) * len(spatial))
        return (idx + base).astype(np.int64, copy=False)


def _unpool_geometry(n: int, out: int) -> tuple:
    """(kernel_size, padding) with stride 1 whose unpooled size ``(n - 1) - 2p + k`` is ``out``."""
    if out >= n:
        return out - n + 1, 0
    k = 1 + (n - out) % 2
    return k, (n - 1 + k - out) // 2


def _std_max(a, b):
    """C++'s std::max(a, b): ``a`` unless ``a < b`` (differs from np.maximum for NaN)."""
    return np.where(a < b, b, a)


def _roi_axis_samples(start, bin_, grid, n_bins, size, T):
    """Per bin and sample along one axis: (valid, low, high, l weight, h weight)."""
    b = np.arange(n_bins).astype(T)[:, None]
    i = np.arange(grid).astype(T)[None, :]
    v = (start + b * bin_) + ((i + T(0.5)) * bin_) / T(grid)
    valid = (v >= -1.0) & (v <= size)
    v = np.where(v <= 0, T(0), v).astype(T)
    lo = np.clip(v, -2.0 ** 40, 2.0 ** 40).astype(np.int64)
    top = lo >= size - 1
    lo = np.where(top, size - 1, lo)
    hi = np.where(top, size - 1, lo + 1)
    v = np.where(top, lo.astype(T), v).astype(T)
    lw = (v - lo.astype(T)).astype(T)
    hw = (T(1) - lw).astype(T)
    return valid, lo, hi, lw, hw


# weighted corner samples one RoI of mode="max" may hold at once (float64: 1 GiB)
_MAX_MAX_SAMPLES = 1 << 27


def roi_align_max(x, rois, batch, output_size, spatial_scale, sampling_ratio, half_pixel,
                  where="RoiAlign"):
    """ONNX ``RoiAlign`` with ``mode="max"`` (onnx#4764), as onnxruntime and the ONNX
    reference compute it: per bin, the maximum over its samples of
    ``max(w1 * x1, w2 * x2, w3 * x3, w4 * x4)`` (the four bilinear corners, weighted);
    a sample outside ``[-1, size]`` gives 0; a bin without samples gives 0."""
    x = np.asarray(x)
    T = np.float32 if x.dtype in (np.float16, np.float32) else np.float64
    N, C, H, W = x.shape
    ph, pw = output_size
    K = rois.shape[0]
    if K and (batch.min() < 0 or batch.max() >= N):
        bad = int(batch.min() if batch.min() < 0 else batch.max())
        raise BackendError(f"{where}: batch_indices must lie in [0, {N}), got {bad}")
    r = rois.astype(T)
    if not np.isfinite(r).all():
        raise BackendError(f"{where}: rois must be finite")
    xt = x.astype(T, copy=False)
    out = np.zeros((K, C, ph, pw), T)
    off = T(0.5) if half_pixel else T(0)
    scale = T(spatial_scale)
    for k in range(K):
        sw, sh, ew, eh = (r[k, j] * scale - off for j in range(4))
        rw, rh = ew - sw, eh - sh
        if not half_pixel:  # malformed RoIs forced to 1x1
            rw, rh = max(rw, T(1)), max(rh, T(1))
        bh, bw = T(rh / T(ph)), T(rw / T(pw))
        if not (np.isfinite(bh) and np.isfinite(bw)):
            raise BackendError(f"{where}: RoI {k} scaled by spatial_scale={spatial_scale} is not "
                               f"finite in {np.dtype(T).name}")
        gh = sampling_ratio if sampling_ratio > 0 else int(np.ceil(bh))
        gw = sampling_ratio if sampling_ratio > 0 else int(np.ceil(bw))
        if gh <= 0 or gw <= 0:
            continue  # no samples: the bin stays 0
        if float(C) * ph * gh * pw * gw > _MAX_MAX_SAMPLES:   # the sample arrays below
            raise BackendError(f"{where}: RoI {k} would take {gh} x {gw} samples per bin for "
                               f"{C} channels and {ph} x {pw} bins: more than {_MAX_MAX_SAMPLES} "
                               f"samples; use a smaller sampling_ratio, spatial_scale or RoI")
        vy, ylo, yhi, ly, hy = _roi_axis_samples(sh, bh, gh, ph, H, T)   # (ph, gh)
        vx, xlo, xhi, lx, hx = _roi_axis_samples(sw, bw, gw, pw, W, T)   # (pw, gw)
        ok = vy[:, :, None, None] & vx[None, None, :, :]                 # (ph, gh, pw, gw)
        img = xt[int(batch[k])]                                          # (C, H, W)
        best = None
        for wy, yy, wx, xx in ((hy, ylo, hx, xlo), (hy, ylo, lx, xhi), (ly, yhi, hx, xlo),
                               (ly, yhi, lx, xhi)):
            w = (wy[:, :, None, None] * wx[None, None, :, :]).astype(T)
            w = np.where(ok, w, T(0))
            yi = np.where(ok, yy[:, :, None, None], 0)
            xi = np.where(ok, xx[None, None, :, :], 0)
            val = (w * img[:, yi, xi]).astype(T)                         # (C, ph, gh, pw, gw)
            best = val if best is None else _std_max(best, val)
        # running std::max over the samples in (iy, ix) order
        flat = best.transpose(0, 1, 3, 2, 4).reshape(C, ph, pw, gh * gw)
        acc = flat[..., 0]
        for j in range(1, gh * gw):
            acc = _std_max(acc, flat[..., j])
        out[k] = acc
    return out.astype(x.dtype, copy=False)


# ============================================================================ graphs


def _load(model) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    try:
        if isinstance(model, (bytes, bytearray)):
            return onnx.load_model_from_string(bytes(model))
        if isinstance(model, (str, os.PathLike)):
            return onnx.load(os.fspath(model))
    except OSError as e:
        raise BackendError(f"cannot read the model file: {e}") from None
    except Exception as e:  # protobuf's DecodeError and kin: truncated or not an ONNX model
        what = f"{os.fspath(model)!r}" if isinstance(model, (str, os.PathLike)) else \
            f"the {len(model)} bytes given"
        raise BackendError(f"{what} is not a readable ONNX model ({type(e).__name__}: {e})") from None
    raise BackendError(f"prepare takes an onnx.ModelProto, bytes or a file path, got {type(model).__name__}")


def _default_opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    raise BackendError("the model imports no default-domain ('' / 'ai.onnx') opset")


def _declared(vi):
    """(numpy dtype or None, rank or None) of a graph input's declared type."""
    tt = vi.type.tensor_type
    dt = helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type else None
    rank = len(tt.shape.dim) if tt.HasField("shape") else None
    return dt, rank


class FastpoolRep(BackendRep):
    """A prepared model: every node validated; ``run(inputs)`` executes it with fastpool."""

    def __init__(self, model: onnx.ModelProto):
        g = model.graph
        self.model = model
        self.opset = _default_opset(model)
        self.constants = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.inputs = [vi for vi in g.input if vi.name not in self.constants]
        self.outputs = [o.name for o in g.output]
        self.steps = [(PoolNode(n, self.opset), list(n.input), list(n.output)) for n in g.node]
        known = set(self.constants) | {vi.name for vi in self.inputs}
        for node, ins, outs in self.steps:
            for i in ins:
                if i and i not in known:
                    raise BackendError(f"{node.where} reads '{i}', which no earlier node or graph "
                                       f"input produces (nodes must be in topological order)")
            known.update(o for o in outs if o)
        for o in self.outputs:
            if o not in known:
                raise BackendError(f"graph output '{o}' is produced by no node or input")

    def run(self, inputs, **kwargs) -> list:
        if kwargs:
            raise TypeError(f"run() takes no options, got {sorted(kwargs)}")
        feeds = self._feeds(inputs)
        env = dict(self.constants)
        env.update(feeds)
        for node, ins, outs in self.steps:
            results = node([env[i] for i in ins if i])
            for name, value in zip(outs, results):
                if name:
                    env[name] = value
        return [env[o] for o in self.outputs]

    def _feeds(self, inputs) -> dict:
        if isinstance(inputs, dict):
            missing = [vi.name for vi in self.inputs if vi.name not in inputs]
            if missing:
                raise BackendError(f"missing inputs {missing}")
            arrays = [inputs[vi.name] for vi in self.inputs]
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            arrays = list(inputs)
            if len(arrays) != len(self.inputs):
                raise BackendError(f"the model takes {len(self.inputs)} input(s) "
                                   f"{[vi.name for vi in self.inputs]}, got {len(arrays)}")
        feeds = {}
        for vi, arr in zip(self.inputs, arrays):
            arr = np.asarray(arr)
            dt, rank = _declared(vi)
            if dt is not None and arr.dtype != dt:
                raise BackendError(f"input '{vi.name}' is declared {dt}, got {arr.dtype}")
            if rank is not None and arr.ndim != rank:
                raise BackendError(f"input '{vi.name}' is declared {rank}-D, got shape {arr.shape}")
            feeds[vi.name] = arr
        return feeds


class FastpoolBackend(Backend):
    """``onnx.backend.base.Backend`` running pooling graphs with fastpool on the CPU."""

    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs) -> FastpoolRep:
        if kwargs:
            raise TypeError(f"prepare() takes no backend options, got {sorted(kwargs)}")
        if not cls.supports_device(device):
            raise BackendError(f"the fastpool backend runs on the CPU, got device {device!r}")
        return FastpoolRep(_load(model))

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs) -> list:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device: str = "CPU", outputs_info=None, **kwargs) -> list:
        opset = kwargs.pop("opset_version", DEFAULT_OPSET)
        if kwargs:
            raise TypeError(f"run_node() takes no options besides opset_version, got {sorted(kwargs)}")
        if not cls.supports_device(device):
            raise BackendError(f"the fastpool backend runs on the CPU, got device {device!r}")
        arrays = [np.asarray(i) for i in inputs]
        return PoolNode(node, int(opset))(arrays)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        try:
            return Device(device).type == DeviceType.CPU
        except (AttributeError, ValueError):
            return False

    @classmethod
    def is_compatible(cls, model, device: str = "CPU", **kwargs) -> bool:
        try:
            m = _load(model)
            opset = _default_opset(m)
            for n in m.graph.node:
                PoolNode(n, opset)
        except (BackendError, NotImplementedError):
            return False
        return cls.supports_device(device)


prepare = FastpoolBackend.prepare
run_model = FastpoolBackend.run_model
run_node = FastpoolBackend.run_node
supports_device = FastpoolBackend.supports_device
is_compatible = FastpoolBackend.is_compatible

__all__ = ["FastpoolBackend", "FastpoolRep", "PoolNode", "prepare", "run_model", "run_node",
           "supports_device", "is_compatible", "POOL_OPS", "PENDING_OPS"]
