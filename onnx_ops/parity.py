"""Run an exported model in onnxruntime next to fastpool and compare.

NaN: fastpool's max propagates NaN (PyTorch, NumPy), onnxruntime's MaxPool
ignores it, so parity is only meaningful on NaN-free data; a NaN on one side
only counts as a mismatch.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from .errors import OnnxOpsError

# Defaults per output dtype.  float32: onnxruntime's native kernels accumulate in float32
# where fastpool accumulates in float64, e.g. a 56x56 global average differs by ~3e-6.
# float16: results are rounded once from float32 on both sides; 1 ulp is <= 9.8e-4 relative.
TOLERANCES = {
    "float16": (1e-3, 1e-3),
    "float32": (1e-5, 1e-5),
    "float64": (1e-12, 1e-12),
}


def default_tolerance(dtype) -> tuple:
    dt = np.dtype(dtype)
    if dt.kind in "iub":
        return 0.0, 0.0
    return TOLERANCES.get(dt.name, (1e-5, 1e-5))


@dataclass
class Comparison:
    """One output compared: fastpool's ``expected`` against onnxruntime's ``actual``."""

    name: str
    expected_shape: tuple
    actual_shape: tuple
    dtype: str
    max_abs: float = 0.0
    max_rel: float = 0.0
    worst_index: tuple | None = None
    expected_value: object = None
    actual_value: object = None
    rtol: float = 0.0
    atol: float = 0.0
    ok: bool = True
    note: str = ""


def compare(name, expected, actual, rtol=None, atol=None) -> Comparison:
    """Compare arrays elementwise (|a - e| <= atol + rtol * |e|, NaN only equals NaN)."""
    e = np.asarray(expected)
    a = np.asarray(actual)
    drt, dat = default_tolerance(e.dtype)
    rtol = drt if rtol is None else float(rtol)
    atol = dat if atol is None else float(atol)
    c = Comparison(name, tuple(e.shape), tuple(a.shape), str(e.dtype), rtol=rtol, atol=atol)
    if e.shape != a.shape:
        c.ok, c.note = False, "shape mismatch"
        c.max_abs = c.max_rel = float("inf")
        return c
    if e.dtype != a.dtype:
        c.ok, c.note = False, f"dtype mismatch: onnxruntime gives {a.dtype}"
    if e.size == 0:
        return c
    ef = e.astype(np.float64)
    af = a.astype(np.float64)
    en, an = np.isnan(ef), np.isnan(af)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(af - ef)
        diff = np.where(en & an, 0.0, diff)
        diff = np.where(en ^ an, np.inf, diff)
        # infinities of the same sign are equal
        diff = np.where(np.isinf(ef) & (ef == af), 0.0, diff)
        rel = diff / np.maximum(np.abs(np.where(en, 0.0, ef)), np.finfo(np.float64).tiny)
        rel = np.where(diff == 0, 0.0, rel)
        rel = np.where(np.isinf(ef) & (diff > 0), np.inf, rel)
        tol = np.where(np.isinf(ef), 0.0, atol + rtol * np.abs(np.where(en, 0.0, ef)))
        # the worst element uses most of its tolerance (an exact comparison: any difference)
        ratio = np.where(tol > 0, diff / np.where(tol > 0, tol, 1.0), np.where(diff > 0, np.inf, 0.0))
    c.max_abs = float(diff.max())
    c.max_rel = float(rel.max())
    worst = np.unravel_index(int(np.argmax(ratio)), e.shape)
    c.worst_index = tuple(int(i) for i in worst)
    c.expected_value = e[worst].item()
    c.actual_value = a[worst].item()
    bad = diff > tol
    if bool(bad.any()):
        c.ok = False
        c.note = (c.note + "; " if c.note else "") + f"{int(bad.sum())} of {e.size} elements differ"
        if (en ^ an).any():
            c.note += " (NaN on one side: onnxruntime's max ignores NaN)"
    return c


def _fmt(v, digits=3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        return f"{v:.{digits}g}"
    return str(v)


def _shape(s) -> str:
    return "(" + ", ".join(str(d) for d in s) + ")"


def table(rows, headers) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    out = [line.rstrip(), "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(out)


def comparison_cells(c: Comparison) -> list:
    worst = "-"
    if c.worst_index is not None:
        worst = (f"{_shape(c.worst_index)}: {_fmt(c.expected_value, 9)} vs "
                 f"{_fmt(c.actual_value, 9)}")
    return [c.name, _shape(c.expected_shape), _shape(c.actual_shape), c.dtype,
            _fmt(c.max_abs), _fmt(c.max_rel), worst, "ok" if c.ok else "MISMATCH"]


COMPARISON_HEADERS = ["output", "fastpool shape", "onnxruntime shape", "dtype", "max abs err",
                      "max rel err", "worst element (fastpool vs onnxruntime)", "result"]


@dataclass
class ParityReport:
    """fastpool against onnxruntime on one input; ``str(report)`` is a readable table."""

    model: str
    input_shape: tuple
    dtype: str
    opset: int
    comparisons: list = field(default_factory=list)
    lowering: str = ""
    onnxruntime_version: str = ""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.comparisons)

    @property
    def max_abs(self) -> float:
        return max((c.max_abs for c in self.comparisons), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((c.max_rel for c in self.comparisons), default=0.0)

    def __str__(self) -> str:
        head = (f"parity of {self.model}\n"
                f"input {_shape(self.input_shape)} {self.dtype}, ONNX opset {self.opset}, "
                f"onnxruntime {self.onnxruntime_version}")
        body = table([comparison_cells(c) for c in self.comparisons], COMPARISON_HEADERS)
        tol = "; ".join(sorted({f"{c.name}: rtol={c.rtol:g} atol={c.atol:g}" for c in self.comparisons}))
        notes = [c.note for c in self.comparisons if c.note]
        verdict = "PASS" if self.ok else "FAIL"
        lines = [head, body, f"tolerance {tol}", *notes, f"parity: {verdict}"]
        return "\n".join(lines)


def ort_session(model):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    data = model if isinstance(model, (bytes, bytearray)) else model.SerializeToString()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def _as_tuple(out) -> tuple:
    return tuple(out) if isinstance(out, tuple) else (out,)


def _onnx():
    import onnx
    return onnx


def check_parity(model, x, *extra, rtol=None, atol=None, opset=None, onnx_model=None,
                 native_only=False, output_size=None) -> ParityReport:
    """Export ``model`` for ``x`` (unless ``onnx_model`` is given), run it in onnxruntime
    and ``model(x)`` in fastpool, and compare every output.

    Layers with a second forward input take it after ``x``: ``check_parity(unpool, x,
    indices, output_size=...)``, ``check_parity(roi_align, x, boxes)``.
    Tolerances default per dtype (float32: rtol=atol=1e-5; float16: 1e-3;
    float64: 1e-12; integers and indices: exact); an explicit ``rtol``/``atol``
    applies to floating outputs, indices are always compared exactly.  Use
    NaN-free ``x``: onnxruntime's max pooling ignores NaN, fastpool propagates it.
    """
    import onnxruntime as ort

    from . import _lower
    from .export import _batch_axis_ok, _second_input, export, flatten

    x = np.asarray(x)
    extra = tuple(np.asarray(e) for e in extra)
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if tol is not None and (not isinstance(tol, numbers.Real) or isinstance(tol, bool)
                                or not tol >= 0):
            raise OnnxOpsError(f"{name} must be a number >= 0 or None, got {tol!r}")
    if onnx_model is not None and not isinstance(onnx_model, _onnx().ModelProto):
        raise OnnxOpsError(f"onnx_model must be an onnx.ModelProto or None, got {type(onnx_model).__name__}")
    layers = flatten(model)
    two = _second_input(layers)
    if len(extra) != (two is not None):
        what = (f"{two!r} takes a second input ({_lower.SECOND_INPUT[two.kind]}): "
                f"check_parity(model, x, {_lower.SECOND_INPUT[two.kind]})") if two is not None \
            else "the model takes one input"
        raise OnnxOpsError(f"{what}; got {1 + len(extra)} input array(s)")
    if onnx_model is None:
        kw = dict(output_size=output_size) if output_size is not None else {}
        onnx_model = export(model, x.shape, dtype=x.dtype,
                            opset=_lower.DEFAULT_OPSET if opset is None else opset,
                            native_only=native_only,
                            dynamic_batch=_batch_axis_ok(layers, tuple(x.shape)) is None, **kw)
    used_opset = next((o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx")), 0)
    sess = ort_session(onnx_model)
    in_names = [i.name for i in sess.get_inputs()]
    if len(in_names) != 1 + len(extra):
        raise OnnxOpsError(f"the ONNX model takes inputs {in_names}, got {1 + len(extra)} array(s)")
    got = sess.run(None, dict(zip(in_names, (x,) + extra)))
    names = [o.name for o in sess.get_outputs()]
    fwd = dict(output_size=output_size) if output_size is not None else {}
    want = _as_tuple(model(x, *extra, **fwd))
    lowering = next((p.value for p in onnx_model.metadata_props if p.key == "fastpool.lowering"), "")
    report = ParityReport(repr(model), tuple(x.shape), str(x.dtype), int(used_opset),
                          lowering=lowering, onnxruntime_version=ort.__version__)
    if len(want) != len(got):
        raise OnnxOpsError(f"the model has {len(got)} outputs, fastpool gives {len(want)}")
    for name, w, g in zip(names, want, got):
        exact = np.asarray(w).dtype.kind in "iub"
        report.comparisons.append(compare(name, w, g, None if exact else rtol, None if exact else atol))
    return report


def assert_parity(model, x, *extra, rtol=None, atol=None, **kwargs) -> ParityReport:
    """:func:`check_parity`, raising ``AssertionError`` with the report's table on a mismatch."""
    report = check_parity(model, x, *extra, rtol=rtol, atol=atol, **kwargs)
    if not report.ok:
        raise AssertionError("fastpool and onnxruntime differ\n" + str(report))
    return report


# ============================================================================ any ONNX model


def random_array(shape, dtype, rng) -> np.ndarray:
    """NaN-free test data: standard normal floats, integers spread over a small range."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.standard_normal(shape).astype(dt)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(max(info.min, -100), min(info.max, 100), size=shape, endpoint=True).astype(dt)
    if dt.kind == "b":
        return rng.integers(0, 2, size=shape).astype(dt)
    raise OnnxOpsError(f"cannot make random input of dtype {dt}")


def unpool_indices(shape, kernel, stride, pad_begin, out_spatial, rng) -> np.ndarray:
    """Valid per-plane unpooling indices for pooled values of channels-first ``shape``:
    each points at a random cell of its window (clamped to the unpooled plane), as
    max pooling's indices do."""
    nd = len(out_spatial)
    sp = tuple(shape[len(shape) - nd:])
    coords = []
    for a in range(nd):
        i = np.arange(sp[a]).reshape((-1,) + (1,) * (nd - 1 - a))
        r = rng.integers(0, kernel[a], size=tuple(shape))
        coords.append(np.clip(i * stride[a] - pad_begin[a] + r, 0, max(out_spatial[a] - 1, 0)))
    return np.ravel_multi_index(tuple(coords), tuple(out_spatial)).astype(np.int64)


def random_boxes(k, n_images, height, width, spatial_scale, dtype, rng, batch_column=True) -> np.ndarray:
    """``k`` random boxes ``[batch, x1, y1, x2, y2]`` (or without the batch column) in
    input-image coordinates: mostly inside a ``height x width`` map after scaling by
    ``spatial_scale``, some across its border."""
    x = rng.uniform(-1.0, width + 1.0, (k, 2))
    y = rng.uniform(-1.0, height + 1.0, (k, 2))
    corners = np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], axis=1) / spatial_scale
    if batch_column:
        corners = np.concatenate([rng.integers(0, n_images, (k, 1)), corners], axis=1)
    return corners.astype(dtype)


def example_second_input(layer, x, rng, output_size=None):
    """A valid second forward input for ``layer`` on ``x``: unpooling indices (each in its
    window, fastpool's per-plane convention, x's layout) or ``(K, 5)`` RoI boxes;
    None for one-input layers."""
    from fastpool._spec import int_tuple

    x = np.asarray(x)
    kind = getattr(layer, "kind", None)
    cl = getattr(layer, "layout", "channels_first") == "channels_last"
    if kind in ("roi_pool", "roi_align"):
        n, h, w = (x.shape[0], x.shape[1], x.shape[2]) if cl else (x.shape[0], x.shape[2], x.shape[3])
        k = 2 * n + 3
        return random_boxes(k, n, h, w, float(layer.kwargs["spatial_scale"]), x.dtype, rng)
    if kind != "max_unpool":
        return None
    nd = layer.nd
    kw = layer.kwargs
    ks = int_tuple("kernel_size", kw["kernel_size"], nd, 1)
    st = ks if kw["stride"] is None else int_tuple("stride", kw["stride"], nd, 1)
    pd = int_tuple("padding", kw["padding"], nd, 0)
    out = layer.output_shape(x.shape, output_size)
    cf_shape = x.shape if not cl else x.shape[:-nd - 1] + x.shape[-1:] + x.shape[-nd - 1:-1]
    osp = out[len(out) - nd:] if not cl else out[len(out) - nd - 1:-1]
    idx = unpool_indices(cf_shape, ks, st, pd, osp, rng)
    return np.moveaxis(idx, -nd - 1, -1) if cl else idx


@dataclass
class NodeCheck:
    node: str
    op: str
    input_shape: tuple
    comparisons: list = field(default_factory=list)
    status: str = ""      # set when the node was not compared
    failed: bool = False


@dataclass
class NodeCheckReport:
    """Every pooling node of a model, fastpool against onnxruntime on the same node inputs."""

    model: str
    opset: int
    inputs: str
    checks: list = field(default_factory=list)
    onnxruntime_version: str = ""

    @property
    def ok(self) -> bool:
        return not any(c.failed for c in self.checks)

    def __str__(self) -> str:
        head = (f"check of {self.model}: ONNX opset {self.opset}, onnxruntime "
                f"{self.onnxruntime_version}, inputs: {self.inputs}")
        if not self.checks:
            return head + "\nno pooling nodes in the graph; nothing to compare"
        rows = []
        for c in self.checks:
            if c.status:
                rows.append([c.node, c.op, _shape(c.input_shape), "-", "-", "-", "-", "-", "-", c.status])
            for cmp in c.comparisons:
                cells = comparison_cells(cmp)
                rows.append([c.node, c.op, _shape(c.input_shape)] + cells[:3] + cells[4:])
        headers = ["node", "op", "input shape", "output", "fastpool shape", "onnxruntime shape",
                   "max abs err", "max rel err", "worst element (fastpool vs onnxruntime)", "result"]
        notes = [f"{c.node}: {cmp.note}" for c in self.checks for cmp in c.comparisons if cmp.note]
        n_bad = sum(c.failed for c in self.checks)
        verdict = "PASS" if self.ok else f"FAIL ({n_bad} of {len(self.checks)} pooling nodes differ)"
        return "\n".join([head, table(rows, headers), *notes, f"parity: {verdict}"])


def check_model_nodes(model, inputs=None, *, rtol=None, atol=None, seed=0, dim=1,
                      label=None) -> NodeCheckReport:
    """Run every pooling node of ``model`` in fastpool and onnxruntime and compare.

    The whole graph runs once in onnxruntime with the pooling nodes' inputs and
    outputs exposed; each pooling node then runs in fastpool (through
    :mod:`onnx_ops.backend`) on the very input onnxruntime gave it.  ``inputs``
    maps graph input names (or ``arr_0``, ``arr_1``, ... in graph order) to
    arrays; missing means random NaN-free data with symbolic dimensions set to
    ``dim``, except that graph inputs feeding MaxUnpool's indices/output_shape or
    RoI boxes/batch indices (directly, or in a two-input model ``onnx_ops.export``
    wrote) are drawn valid for the node's input.  ``label`` names the model in the
    report (default: the graph's name).
    """
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from .backend import PENDING_OPS, POOL_OPS, PoolNode
    from .errors import BackendError

    if not isinstance(model, onnx.ModelProto):
        raise OnnxOpsError(f"check_model_nodes takes an onnx.ModelProto, got {type(model).__name__}")
    g = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise OnnxOpsError("the model imports no default-domain opset")
    inits = {t.name: t for t in g.initializer}
    graph_inputs = [vi for vi in g.input if vi.name not in inits]
    feeds, how = _feeds(graph_inputs, inputs, seed, dim, model)
    report = NodeCheckReport(label or g.name or "model", int(opset), how,
                             onnxruntime_version=ort.__version__)
    pool_nodes = [n for n in g.node if n.domain in ("", "ai.onnx") and (n.op_type in POOL_OPS or n.op_type in PENDING_OPS)]
    if not pool_nodes:
        return report

    have = set(feeds) | set(inits)
    exposed = []
    for n in pool_nodes:
        for name in list(n.input) + list(n.output):
            if name and name not in have and name not in exposed:
                exposed.append(name)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known_outputs = {o.name for o in probe.graph.output}
    for name in exposed:
        if name not in known_outputs:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    try:
        sess = ort_session(probe)
        values = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    except Exception as e:
        raise OnnxOpsError(f"onnxruntime cannot run the model: {e}") from None
    values.update(feeds)
    values.update({k: numpy_helper.to_array(t) for k, t in inits.items()})

    for i, n in enumerate(pool_nodes):
        label = n.name or f"#{i} {n.op_type}"
        x = values.get(n.input[0]) if n.input else None
        check = NodeCheck(label, n.op_type, tuple(x.shape) if x is not None else ())
        report.checks.append(check)
        if n.op_type in PENDING_OPS:
            check.status = f"not compared: {PENDING_OPS[n.op_type]}"
            continue
        try:
            got = PoolNode(n, int(opset))([values[name] for name in n.input if name])
        except (BackendError, NotImplementedError) as e:
            check.status, check.failed = f"fastpool refuses the node: {e}", True
            continue
        for name, mine in zip([o for o in n.output if o], got):
            exact = mine.dtype.kind in "iub"
            c = compare(name, mine, values[name], None if exact else rtol, None if exact else atol)
            check.comparisons.append(c)
            check.failed |= not c.ok
    return report


def _feeds(graph_inputs, inputs, seed, dim, model=None):
    from onnx import helper

    rng = np.random.default_rng(seed)
    roles = _second_input_roles(model) if model is not None and inputs is None else {}
    feeds = {}
    if inputs is not None:
        inputs = dict(inputs)
        names = [vi.name for vi in graph_inputs]
        positional = [f"arr_{i}" for i in range(len(names))]
        if not any(n in inputs for n in names) and all(p in inputs for p in positional):
            inputs = dict(zip(names, (inputs[p] for p in positional)))
        missing = [n for n in names if n not in inputs]
        if missing:
            raise OnnxOpsError(f"the inputs file lacks graph inputs {missing} (it has {sorted(inputs)})")
        extra = sorted(set(inputs) - set(names))
        if extra:
            raise OnnxOpsError(f"the inputs file has arrays {extra} that are not graph inputs {names}")
    for vi in graph_inputs:
        tt = vi.type.tensor_type
        dt = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        if inputs is not None:
            arr = np.asarray(inputs[vi.name])
            if arr.dtype != dt:
                raise OnnxOpsError(f"input '{vi.name}' is declared {dt}, the file holds {arr.dtype}")
            feeds[vi.name] = arr
        else:
            shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else dim
                          for d in tt.shape.dim)
            feeds[vi.name] = random_array(shape, dt, rng)
    # output_shape before the indices that must fit it
    for name, (role, node) in sorted(roles.items(), key=lambda kv: kv[1][0] != "unpool_shape"):
        if name in feeds:  # a graph input that must hold valid indices or boxes
            valid = _valid_random(role, node, feeds, model, dim, feeds[name], rng)
            if valid is not None:
                feeds[name] = valid
    if inputs is None and model is not None:
        _exported_second_input(model, feeds, rng)
    how = "given" if inputs is not None else f"random (seed {seed}, symbolic dims = {dim})"
    return feeds, how


def _exported_second_input(model, feeds, rng) -> None:
    """Valid indices / boxes for a two-input model written by ``onnx_ops.export``: its
    layer is rebuilt from the model's ``fastpool.model`` metadata (literal arguments
    only; anything else leaves the random data as it is)."""
    from .cli import CliError, parse_layer
    from .export import BOXES_NAME, INDICES_NAME, INPUT_NAME, OUTPUT_NAME

    if model.producer_name != "fastpool.onnx_ops" or INPUT_NAME not in feeds:
        return
    name = next((n for n in (INDICES_NAME, BOXES_NAME) if n in feeds), None)
    text = next((p.value for p in model.metadata_props if p.key == "fastpool.model"), "")
    if name is None or not text:
        return
    try:
        layer = parse_layer(text)
    except (CliError, ValueError):
        return
    if getattr(layer, "kind", None) not in ("max_unpool", "roi_pool", "roi_align"):
        return
    out_size = None
    if layer.kind == "max_unpool":
        out = next((o for o in model.graph.output if o.name == OUTPUT_NAME), None)
        if out is None:
            return
        dims = [d.dim_value for d in out.type.tensor_type.shape.dim]
        nd = layer.nd
        sp = dims[len(dims) - nd:] if layer.layout != "channels_last" else dims[len(dims) - nd - 1:-1]
        if not all(sp):
            return
        out_size = tuple(sp)
    try:
        arr = example_second_input(layer, feeds[INPUT_NAME], rng, out_size)
    except Exception:   # a geometry the layer refuses: keep the random data
        return
    if arr is not None and (name != BOXES_NAME or arr.dtype == feeds[name].dtype):
        feeds[name] = arr.astype(feeds[name].dtype, copy=False)


def _second_input_roles(model) -> dict:
    """Graph value name -> (role, node) for the inputs of MaxUnpool / MaxRoiPool / RoiAlign
    that random data would make invalid (indices, output_shape, boxes, batch indices)."""
    roles = {}
    for n in model.graph.node:
        if n.domain not in ("", "ai.onnx"):
            continue
        ins = list(n.input)
        if n.op_type == "MaxUnpool":
            names = ["unpool_indices", "unpool_shape"]
        elif n.op_type == "MaxRoiPool":
            names = ["rois5"]
        elif n.op_type == "RoiAlign":
            names = ["rois4", "roi_batch"]
        else:
            continue
        for role, name in zip(names, ins[1:]):
            if name:
                roles.setdefault(name, (role, n))
    return roles


def _static_shape(name, feeds, model, dim):
    """The shape of graph value ``name``: from the feeds, else ONNX shape inference
    (symbolic dimensions set to ``dim``), else None."""
    if name in feeds:
        return tuple(feeds[name].shape)
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        return None
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        if vi.name == name and vi.type.tensor_type.HasField("shape"):
            return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else dim
                         for d in vi.type.tensor_type.shape.dim)
    return None


def _valid_random(role, node, feeds, model, dim, current, rng):
    from onnx import helper

    x_shape = _static_shape(node.input[0], feeds, model, dim)
    if x_shape is None or len(x_shape) < 3:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if role in ("rois5", "rois4", "roi_batch"):
        if len(x_shape) != 4:
            return None
        n, _, h, w = x_shape
        k = current.shape[0] if current.ndim else dim
        if role == "roi_batch":
            return rng.integers(0, n, size=current.shape).astype(current.dtype)
        scale = float(attrs.get("spatial_scale", 1.0))
        return random_boxes(k, n, h, w, scale, current.dtype, rng, batch_column=role == "rois5")
    nd = len(x_shape) - 2
    k = list(attrs.get("kernel_shape", [1] * nd))
    s = list(attrs.get("strides") or [1] * nd)
    p = list(attrs.get("pads") or [0] * (2 * nd))
    default = [(x_shape[2 + a] - 1) * s[a] + k[a] - p[a] - p[nd + a] for a in range(nd)]
    if role == "unpool_shape":
        return np.asarray(list(x_shape[:2]) + default, dtype=current.dtype)
    out = default
    shape_name = node.input[2] if len(node.input) > 2 else ""
    if shape_name and shape_name in feeds and feeds[shape_name].size == nd + 2:
        out = [int(v) for v in feeds[shape_name].reshape(-1)[2:]]
    elif shape_name and any(t.name == shape_name for t in model.graph.initializer):
        from onnx import numpy_helper

        t = next(t for t in model.graph.initializer if t.name == shape_name)
        out = [int(v) for v in numpy_helper.to_array(t).reshape(-1)[2:]]
    if any(o < 1 for o in out):
        return None
    local = unpool_indices(x_shape, k, s, p[:nd], out, rng)
    plane = int(np.prod(out, dtype=np.int64))
    base = (np.arange(x_shape[0] * x_shape[1], dtype=np.int64) * plane).reshape(x_shape[:2] + (1,) * nd)
    return (local + base).astype(current.dtype)
