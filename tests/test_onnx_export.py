"""Export every layer kind to ONNX and check onnxruntime against fastpool.

The matrix: every layer kind x rank 1/2/3 x a spread of configurations
(symmetric, asymmetric, "same" and larger-than-kernel padding, ceil_mode,
dilation, count_include_pad, divisor_override, Lp variants, adaptive sizes that
do and do not divide, channels_last, float16/32/64 and integer input).  Each
model is exported for batch 2 with a symbolic batch axis and run at batch 3, and
must pass ``onnx.checker.check_model(full_check=True)``; onnxruntime's output
shapes and values must equal fastpool's.

Data is NaN-free: onnxruntime's max pooling ignores NaN (see the strict xfail).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from fastpool import PoolingError  # noqa: E402
from fastpool import layers as L  # noqa: E402

import onnx_ops  # noqa: E402
from onnx_ops import ExportError, export  # noqa: E402
from onnx_ops.parity import ort_session  # noqa: E402

SPATIAL = {1: (11,), 2: (9, 10), 3: (7, 6, 5)}
CHANNELS = {1: 3, 2: 3, 3: 2}
EXPORT_BATCH, RUN_BATCH = 2, 3


def _shape(nd, batch, layout="channels_first"):
    c = CHANNELS[nd]
    sp = SPATIAL[nd]
    return (batch, c) + sp if layout == "channels_first" else (batch,) + sp + (c,)


def _data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind in "iu":  # few distinct values: many ties, which exercise first-maximum order
        lo, hi = (-8, 8) if dt.kind == "i" else (0, 12)
        return rng.integers(lo, hi, size=shape, endpoint=True).astype(dt)
    return rng.standard_normal(shape).astype(dt)


def _run_and_compare(layer, shape, dtype="float32", opset=21, run_batch=RUN_BATCH, batched=True, **kw):
    """Export, validate, run at another batch size, compare; returns the model."""
    model = export(layer, shape, dtype=dtype, opset=opset, **kw)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version <= 10
    symbolic = kw.get("dynamic_batch", True) and batched
    run_shape = (run_batch,) + tuple(shape[1:]) if symbolic else tuple(shape)
    x = _data(run_shape, dtype)
    report = onnx_ops.check_parity(layer, x, onnx_model=model)
    assert report.ok, str(report)
    # the declared output shapes are fastpool's, with the symbolic batch axis
    want = layer.output_shape(run_shape)
    for out in model.graph.output:
        dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
        assert dims[1:] == list(want[1:])
        assert dims[0] == ("N" if symbolic else want[0])
    for c in report.comparisons:
        assert c.expected_shape == c.actual_shape == tuple(want)
    return model


def _ops(model):
    return [n.op_type for n in model.graph.node]


# ============================================================================ the matrix


def _window_configs(kind):
    """(id, kwargs) per configuration; kwargs use fastpool's argument names."""
    common = [
        ("k2", dict(kernel_size=2)),
        ("k3s2p1", dict(kernel_size=3, stride=2, padding=1)),
        ("k3s2p1_ceil", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
        ("k2s1_d2", dict(kernel_size=2, stride=1, dilation=2)),
        ("k3s2_asym", dict(kernel_size=3, stride=2, padding="asym")),
        ("k3s2_same_d2", dict(kernel_size=3, stride=2, padding="same", dilation=2)),
        ("k2_pad_ge_kernel_d3", dict(kernel_size=2, stride=2, padding="big", dilation=3)),
        # the last ceil window starts in the end padding on some axis: ONNX shape inference
        # before opset 22 disagrees with onnxruntime there
        ("k1s3_ceil", dict(kernel_size=1, stride=3, ceil_mode=True)),
        ("k2s3p1_ceil", dict(kernel_size=2, stride=3, padding=1, ceil_mode=True)),
    ]
    if kind == "max":
        return common + [
            ("k3s2p1_idx", dict(kernel_size=3, stride=2, padding=1, return_indices=True)),
            ("k2_big_idx", dict(kernel_size=2, stride=2, padding="big", dilation=3, return_indices=True)),
            ("k2s3p1_ceil_idx", dict(kernel_size=2, stride=3, padding=1, ceil_mode=True, return_indices=True)),
        ]
    if kind == "avg":
        return common + [
            ("k3s2p1_nopad", dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
            ("k3s2p1_ceil_nopad", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                       count_include_pad=False)),
            ("k2s3p1_ceil_nopad", dict(kernel_size=2, stride=3, padding=1, ceil_mode=True,
                                       count_include_pad=False)),
            ("k2_div3", dict(kernel_size=2, divisor_override=3)),
            ("k3s2p1_ceil_div5", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                      divisor_override=5)),
            ("k3s2_same_nopad", dict(kernel_size=3, stride=2, padding="same",
                                     count_include_pad=False)),
        ]
    return [(f"p2_{i}", dict(kw, norm_type=2)) for i, kw in common] + [
        ("p3_k3s2p1", dict(norm_type=3, kernel_size=3, stride=2, padding=1)),
        ("p1_k2", dict(norm_type=1, kernel_size=2)),
        ("p1.5_k3s2", dict(norm_type=1.5, kernel_size=3, stride=2)),
        ("torch_p2_k2", dict(norm_type=2, kernel_size=2, torch_compat=True)),
        ("torch_p3_ceil", dict(norm_type=3, kernel_size=3, stride=2, ceil_mode=True, torch_compat=True)),
        ("torch_p1_ceil", dict(norm_type=1, kernel_size=2, stride=3, ceil_mode=True, torch_compat=True)),
        ("mean_p2_k3s2p1", dict(norm_type=2, kernel_size=3, stride=2, padding=1, power_mean=True)),
        ("mean_p2.5_ceil", dict(norm_type=2.5, kernel_size=2, stride=3, padding=1, ceil_mode=True,
                                power_mean=True)),
    ]


def _padding(value, nd):
    if value == "asym":
        return tuple((a % 2, (a + 1) % 3) for a in range(nd))
    if value == "big":  # padding >= kernel_size: onnxruntime refuses it as an attribute
        return tuple((2, 1 + a % 2) for a in range(nd))
    return value


_CLASSES = {
    "max": (L.MaxPool1d, L.MaxPool2d, L.MaxPool3d),
    "avg": (L.AvgPool1d, L.AvgPool2d, L.AvgPool3d),
    "lp": (L.LPPool1d, L.LPPool2d, L.LPPool3d),
}


def _window_cases():
    cases = []
    for kind, classes in _CLASSES.items():
        for nd, (cid, kw) in itertools.product((1, 2, 3), _window_configs(kind)):
            kw = dict(kw)
            if "padding" in kw:
                kw["padding"] = _padding(kw["padding"], nd)
            cases.append(pytest.param(classes[nd - 1], nd, kw, id=f"{kind}{nd}d-{cid}"))
    return cases


def _build(cls, kw, layout="channels_first"):
    kw = dict(kw, layout=layout)
    if cls in _CLASSES["lp"]:
        p = kw.pop("norm_type")
        k = kw.pop("kernel_size")
        return cls(p, k, **kw)
    k = kw.pop("kernel_size")
    return cls(k, **kw)


@pytest.mark.parametrize("cls, nd, kw", _window_cases())
def test_window_layers(cls, nd, kw):
    layer = _build(cls, kw)
    _run_and_compare(layer, _shape(nd, EXPORT_BATCH))


def _adaptive_cases():
    sizes = {
        1: [("div", 1), ("div", (11,)), ("nodiv", 4), ("nodiv", 3), ("up", 13)],
        2: [("div", (3, 5)), ("div", (1, 2)), ("nodiv", (4, 3)), ("nodiv", (2, None)), ("up", (11, 4))],
        3: [("div", (7, 3, 5)), ("nodiv", (3, 4, 2)), ("nodiv", (None, 5, 3)), ("up", (8, 2, 6))],
    }
    cases = []
    for nd, entries in sizes.items():
        for tag, out in entries:
            for kind, cls in (("avg", (L.AdaptiveAvgPool1d, L.AdaptiveAvgPool2d, L.AdaptiveAvgPool3d)),
                              ("max", (L.AdaptiveMaxPool1d, L.AdaptiveMaxPool2d, L.AdaptiveMaxPool3d))):
                cases.append(pytest.param(cls[nd - 1], nd, out, False, id=f"{kind}{nd}d-{tag}-{out}"))
                if kind == "max":
                    cases.append(pytest.param(cls[nd - 1], nd, out, True, id=f"{kind}{nd}d-{tag}-{out}-idx"))
    return cases


@pytest.mark.parametrize("cls, nd, output_size, idx", _adaptive_cases())
def test_adaptive_layers(cls, nd, output_size, idx):
    layer = cls(output_size, return_indices=True) if idx else cls(output_size)
    model = _run_and_compare(layer, _shape(nd, EXPORT_BATCH))
    sizes = [o or n for o, n in zip(np.broadcast_to(np.array(output_size, dtype=object), (nd,)),
                                    SPATIAL[nd])]
    divides = all(n % o == 0 and o <= n for o, n in zip(sizes, SPATIAL[nd]))
    native = "MaxPool" if cls.kind == "adaptive_max_pool" else "AveragePool"
    assert (native in _ops(model)) == divides


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("layer", [
    L.GlobalAvgPool(), L.GlobalAvgPool(keepdims=False),
    L.GlobalMaxPool(), L.GlobalMaxPool(keepdims=False), L.GlobalMaxPool(return_indices=True),
    L.GlobalMaxPool(keepdims=False, return_indices=True),
    L.GlobalLpPool(), L.GlobalLpPool(3, keepdims=False), L.GlobalLpPool(1.5),
], ids=repr)
def test_global_layers(layer, nd):
    _run_and_compare(layer, _shape(nd, EXPORT_BATCH))


# ---------------------------------------------------------------------------- layouts and dtypes

_SPREAD = [
    (L.MaxPool2d, dict(kernel_size=3, stride=2, padding=1, return_indices=True)),
    (L.MaxPool3d, dict(kernel_size=2, stride=2, padding="big", dilation=3)),
    (L.AvgPool1d, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    (L.AvgPool2d, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (L.AvgPool3d, dict(kernel_size=2, divisor_override=3)),
    (L.LPPool2d, dict(norm_type=2, kernel_size=3, stride=2, padding=1)),
    (L.LPPool1d, dict(norm_type=3, kernel_size=2, torch_compat=True)),
    (L.LPPool3d, dict(norm_type=2.5, kernel_size=2, power_mean=True)),
]


@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("cls, kw", _SPREAD, ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(_SPREAD)])
def test_layouts_and_dtypes(cls, kw, dtype, layout):
    nd = cls.nd
    kw = dict(kw)
    if "padding" in kw:
        kw["padding"] = _padding(kw["padding"], nd)
    layer = _build(cls, kw, layout)
    model = _run_and_compare(layer, _shape(nd, EXPORT_BATCH, layout), dtype=dtype)
    # channels_last: one Transpose in, one back per output
    want = 1 + len(model.graph.output) if layout == "channels_last" else 0
    assert _ops(model).count("Transpose") == want


@pytest.mark.parametrize("dtype", ["float16", "float64"])
@pytest.mark.parametrize("layer, nd", [
    (L.AdaptiveAvgPool2d((4, 3)), 2), (L.AdaptiveMaxPool3d((3, 4, 2), return_indices=True), 3),
    (L.AdaptiveAvgPool1d(11), 1), (L.GlobalAvgPool(layout="NHWC"), 2),
    (L.GlobalMaxPool(return_indices=True, layout="NDHWC"), 3), (L.GlobalLpPool(2, keepdims=False), 1),
], ids=repr)
def test_adaptive_and_global_dtypes(layer, nd, dtype):
    layout = layer.layout
    _run_and_compare(layer, _shape(nd, EXPORT_BATCH, layout), dtype=dtype)


_INT_MAX = [
    (L.MaxPool2d(3, stride=2, padding=1, return_indices=True), 2),
    (L.MaxPool1d(2, padding=((2, 1),), dilation=3, return_indices=True), 1),
    (L.AdaptiveMaxPool2d((4, 3), return_indices=True), 2),
    (L.GlobalMaxPool(return_indices=True), 3),
]
# each integer dtype is a new kernel signature to compile: average pooling takes one
_INT_CASES = [pytest.param(layer, nd, dt, id=f"{layer!r}-{dt}")
              for dt in ("int8", "uint8", "int32") for layer, nd in _INT_MAX] + [
    pytest.param(L.AvgPool2d(3, stride=2, padding=1), 2, "uint8", id="AvgPool2d-uint8"),
    pytest.param(L.GlobalAvgPool(), 2, "uint8", id="GlobalAvgPool-uint8"),
]


@pytest.mark.parametrize("layer, nd, dtype", _INT_CASES)
def test_integer_input(layer, nd, dtype):
    # max pooling keeps the dtype; average pooling of integers gives float64 (fastpool's rule)
    model = _run_and_compare(layer, _shape(nd, EXPORT_BATCH), dtype=dtype)
    out = model.graph.output[0].type.tensor_type.elem_type
    want = dtype if layer.kind.endswith("max_pool") else "float64"
    assert onnx.helper.tensor_dtype_to_np_dtype(out) == np.dtype(want)


@pytest.mark.parametrize("layer, shape", [
    (L.MaxPool2d(3, stride=2, padding=1, return_indices=True), (3, 9, 10)),
    (L.AvgPool1d(3, stride=2, padding=1, layout="NWC"), (11, 3)),
    (L.AdaptiveMaxPool3d((3, 4, 2), return_indices=True, layout="NDHWC"), (7, 6, 5, 2)),
    (L.LPPool2d(2, 2, ceil_mode=True), (3, 9, 9)),
], ids=repr)
def test_unbatched_input(layer, shape):
    # unbatched input keeps its exact shape: dynamic_batch only applies to batched input
    model = _run_and_compare(layer, shape, batched=False)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert tuple(dims) == shape


def test_sequential_chains_layers_and_cancels_layout_transposes():
    net = L.Sequential(
        L.MaxPool2d(3, stride=2, padding=1, layout="NHWC"),
        L.AvgPool2d(2, ceil_mode=True, layout="NHWC"),
        L.AdaptiveAvgPool2d(3, layout="NHWC"),
        L.GlobalMaxPool(keepdims=False, layout="NHWC"),
    )
    model = _run_and_compare(net, (2, 17, 15, 4))
    assert _ops(model).count("Transpose") == 1  # in once; (N, C) needs no way back


def test_sequential_with_indices_and_nesting():
    net = L.Sequential(L.Sequential(L.AvgPool2d(2)), L.AdaptiveMaxPool2d((3, 2), return_indices=True))
    model = _run_and_compare(net, (2, 3, 12, 10))
    assert [o.name for o in model.graph.output] == ["output", "indices"]


def test_demo_pipeline_parity():
    # the pipeline the `fastpool demo` command exports
    net = L.Sequential(L.MaxPool2d(3, stride=2, padding=1), L.AvgPool2d(2), L.AdaptiveAvgPool2d(5),
                       L.GlobalMaxPool(keepdims=False))
    x = _data((2, 8, 56, 56), "float32")
    report = onnx_ops.assert_parity(net, x)
    assert "parity: PASS" in str(report)


def test_static_batch():
    layer = L.MaxPool2d(2)
    model = _run_and_compare(layer, (2, 3, 8, 8), dynamic_batch=False)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        ort_session(model).run(None, {"input": _data((3, 3, 8, 8), "float32")})


# ============================================================================ native vs decomposed


@pytest.mark.parametrize("layer, shape, ops", [
    (L.MaxPool2d(3, stride=2, padding=1), (1, 3, 8, 8), ["MaxPool"]),
    (L.MaxPool2d(3, stride=2, padding=1, return_indices=True), (1, 3, 8, 8), ["MaxPool", "Mod"]),
    (L.MaxPool1d(2, padding=((2, 0),), dilation=3), (1, 3, 8), ["Pad", "MaxPool"]),
    (L.AvgPool2d(3, stride=2, padding=1, ceil_mode=True), (1, 3, 8, 8), ["AveragePool"]),
    (L.LPPool2d(2, 3, stride=2), (1, 3, 8, 8), ["LpPool"]),
    (L.AdaptiveAvgPool2d(4), (1, 3, 8, 8), ["AveragePool"]),
    (L.AdaptiveMaxPool2d(4), (1, 3, 8, 8), ["MaxPool"]),
    (L.GlobalAvgPool(), (1, 3, 8, 8), ["GlobalAveragePool"]),
    (L.GlobalMaxPool(), (1, 3, 8, 8), ["GlobalMaxPool"]),
    (L.GlobalLpPool(3), (1, 3, 8, 8), ["GlobalLpPool"]),
    (L.AvgPool2d(3, stride=2, padding=1), (1, 3, 8, 8), ["AveragePool"]),
], ids=repr)
def test_native_ops_where_onnx_has_the_semantics(layer, shape, ops):
    model = export(layer, shape)
    assert _ops(model) == ops
    onnx_ops.assert_parity(layer, _data(shape, "float32"), onnx_model=model)
    meta = {p.key: p.value for p in model.metadata_props}
    assert "native" in meta["fastpool.lowering"] and "decomposed" not in meta["fastpool.lowering"]


@pytest.mark.parametrize("layer, dtype, reason", [
    (L.AvgPool2d(2, divisor_override=3), "float32", "divisor_override"),
    (L.AvgPool2d(2), "float64", "float64 AveragePool"),
    (L.AvgPool2d(2, padding=((2, 0), (0, 0)), dilation=3), "float32", "padding >= kernel"),
    (L.LPPool2d(1.5, 2), "float32", "integer attribute"),
    (L.LPPool2d(2, 2, torch_compat=True), "float32", "torch_compat"),
    (L.LPPool2d(2, 2, power_mean=True), "float32", "power_mean"),
    (L.AdaptiveAvgPool2d(3), "float32", "unequal size"),
    (L.AdaptiveMaxPool2d(3), "float32", "unequal size"),
    (L.GlobalAvgPool(), "float64", "float64 GlobalAveragePool"),
    (L.GlobalLpPool(2.5), "float32", "integer attribute"),
], ids=repr)
def test_decompositions_are_recorded_and_refused_under_native_only(layer, dtype, reason):
    shape = (1, 3, 8, 8)
    model = export(layer, shape, dtype=dtype)
    meta = {p.key: p.value for p in model.metadata_props}
    assert "decomposed" in meta["fastpool.lowering"] and reason in meta["fastpool.lowering"]
    onnx_ops.assert_parity(layer, _data(shape, dtype), onnx_model=model)
    with pytest.raises(ExportError, match=reason) as info:
        export(layer, shape, dtype=dtype, native_only=True)
    assert type(layer).__name__ in str(info.value) and "opset 21" in str(info.value)


def test_float64_average_is_computed_in_float64():
    # a Cast round trip through float32 would lose ~1e-8; the decomposition keeps float64
    layer = L.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
    x = _data((2, 3, 9, 10), "float64") + 1e3
    model = export(layer, x.shape, dtype="float64")
    assert "Cast" not in _ops(model) and "AveragePool" not in _ops(model)
    report = onnx_ops.check_parity(layer, x, onnx_model=model)
    assert report.ok and report.max_abs < 1e-12, str(report)


def _random_window_cases(n=60, seed=20261122):
    """Random window geometries (seeded): the ceil-mode and padding corners the hand-written
    matrix can miss, across opsets 18..22.  Configurations fastpool rejects are redrawn."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < n:
        nd = int(rng.integers(1, 3))
        kind = ["max", "avg", "lp"][len(cases) % 3]
        k = tuple(int(v) for v in rng.integers(1, 5, nd))
        s = tuple(int(v) for v in rng.integers(1, 4, nd))
        d = tuple(int(v) for v in rng.integers(1, 3, nd))
        pads = tuple((int(rng.integers(0, k[a] + 1)), int(rng.integers(0, k[a] + 1))) for a in range(nd))
        kw = dict(kernel_size=k, stride=s, padding=pads, dilation=d, ceil_mode=bool(rng.integers(0, 2)))
        if kind == "avg":
            kw["count_include_pad"] = bool(rng.integers(0, 2))
        if kind == "lp":
            kw["norm_type"] = int(rng.integers(1, 4))
        layer = _build(_CLASSES[kind][nd - 1], kw)
        shape = (2, 2) + tuple(int(v) for v in rng.integers(3, 12, nd))
        try:
            layer.output_shape(shape)  # plans the windows: raises where one reads only padding
        except PoolingError:
            continue
        opset = int(rng.integers(18, 23))
        cases.append(pytest.param(layer, shape, opset, id=f"{len(cases)}-{kind}{nd}d-opset{opset}"))
    return cases


@pytest.mark.parametrize("layer, shape, opset", _random_window_cases())
def test_random_window_geometries(layer, shape, opset):
    _run_and_compare(layer, shape, opset=opset)


# ============================================================================ opsets


_OPSET_LAYERS = [
    L.MaxPool2d(3, stride=2, padding=1, ceil_mode=True, return_indices=True),
    L.MaxPool1d(1, stride=3, ceil_mode=True),
    L.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    L.AvgPool2d(2, stride=3, padding=1, ceil_mode=True),
    L.AvgPool2d(2, stride=1, dilation=2),
    L.LPPool2d(2, 2, stride=3, padding=1, ceil_mode=True),
    L.LPPool2d(3, 2, dilation=2),
    L.AdaptiveAvgPool2d(3), L.AdaptiveMaxPool2d((3, 2)),
    L.GlobalAvgPool(), L.GlobalMaxPool(), L.GlobalLpPool(2),
]


@pytest.mark.parametrize("opset", [18, 19, 20, 21, 22])
@pytest.mark.parametrize("layer", _OPSET_LAYERS, ids=repr)
def test_every_opset_from_18_to_22(layer, opset):
    shape = (2, 3, 11) if layer.nd == 1 else (2, 3, 10, 11)
    model = _run_and_compare(layer, shape, opset=opset)
    assert [o.version for o in model.opset_import] == [opset]


def test_average_dilation_needs_opset_19():
    layer = L.AvgPool2d(2, stride=1, dilation=2)
    assert "AveragePool" in _ops(export(layer, (1, 2, 8, 8), opset=19))
    model = export(layer, (1, 2, 8, 8), opset=18)
    assert "AveragePool" not in _ops(model)
    onnx_ops.assert_parity(layer, _data((2, 2, 8, 8), "float32"), onnx_model=model)
    with pytest.raises(ExportError, match=r"AvgPool2d.*opset 18.*dilations only from opset 19"):
        export(layer, (1, 2, 8, 8), opset=18, native_only=True)


def test_global_lp_pool_at_opset_22():
    # onnxruntime 1.31 has no opset-22 GlobalLpPool kernel
    layer = L.GlobalLpPool(2)
    assert "GlobalLpPool" in _ops(export(layer, (1, 2, 4, 4), opset=21))
    assert "GlobalLpPool" not in _ops(export(layer, (1, 2, 4, 4), opset=22))
    with pytest.raises(ExportError, match=r"GlobalLpPool.*opset 22"):
        export(layer, (1, 2, 4, 4), opset=22, native_only=True)


def test_ceil_mode_attribute_only_where_onnx_shape_inference_agrees():
    # H: 7 -> 4 needs ceil_mode; W: 5 -> 2 with k=1, s=3, where ceil_mode's extra window would
    # start in the end padding and is dropped (fastpool, onnxruntime).  ONNX shape inference
    # before MaxPool-22 keeps it (3), so at opset 21 the exporter writes floor mode with the
    # H overhang as end padding; from opset 22 ceil_mode=1 is exact and inferred right.
    layer = L.MaxPool2d((2, 1), stride=(2, 3), ceil_mode=True)
    shape = (1, 1, 7, 5)
    m21, m22 = export(layer, shape, opset=21), export(layer, shape, opset=22)
    a21, a22 = ({a.name: onnx.helper.get_attribute_value(a) for a in m.graph.node[0].attribute}
                for m in (m21, m22))
    assert a21.get("ceil_mode", 0) == 0 and a21["pads"] == [0, 0, 1, 0]
    assert a22["ceil_mode"] == 1 and a22["pads"] == [0, 0, 0, 0]
    for m in (m21, m22):
        inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
        dims = [d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim[2:]]
        assert dims == [4, 2] == list(layer.output_shape(shape)[2:])
        onnx_ops.assert_parity(layer, _data(shape, "float32"), onnx_model=m)


@pytest.mark.xfail(strict=True, reason="ONNX shape inference before MaxPool-22 ignores the "
                                       "'last window starts in the padding' rule that onnxruntime "
                                       "and fastpool apply (onnx PR #5741)")
def test_onnx_shape_inference_ceil_mode_before_opset_22():
    node = onnx.helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[1], strides=[3], ceil_mode=1)
    g = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", 1, [1, 1, 5])],
                               [onnx.helper.make_tensor_value_info("y", 1, None)])
    m = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 21)], ir_version=10)
    inferred = onnx.shape_inference.infer_shapes(m).graph.output[0].type.tensor_type.shape.dim[2]
    y = ort_session(m).run(None, {"x": np.zeros((1, 1, 5), np.float32)})[0]
    assert inferred.dim_value == y.shape[2]


# ============================================================================ peer divergences


@pytest.mark.xfail(strict=True, reason="onnxruntime's MaxPool ignores NaN; fastpool propagates it "
                                       "(PyTorch, NumPy), so parity needs NaN-free data")
def test_nan_propagation_matches_onnxruntime():
    layer = L.MaxPool2d(2)
    x = _data((1, 1, 4, 4), "float32")
    x[0, 0, 0, 0] = np.nan
    onnx_ops.assert_parity(layer, x)


def _matmul_then_scale(dtype):
    f = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    w = onnx.numpy_helper.from_array(np.ones((4, 3), dtype), "w")
    d = onnx.numpy_helper.from_array(np.array(12.0, dtype), "d")
    nodes = [onnx.helper.make_node("MatMul", ["x", "w"], ["s"]),
             onnx.helper.make_node("Div", ["s", "d"], ["y"])]
    g = onnx.helper.make_graph(nodes, "g", [onnx.helper.make_tensor_value_info("x", f, [2, 4])],
                               [onnx.helper.make_tensor_value_info("y", f, None)], initializer=[w, d])
    return onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 21)], ir_version=10)


def _run_with(model, x, level):
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


_ORT_VERSION = tuple(int(p) for p in ort.__version__.split(".")[:2] if p.isdigit())


@pytest.mark.xfail(_ORT_VERSION < (1, 32), strict=True,
                   reason="onnxruntime before 1.32 fuses MatMul + Div by a one-element constant "
                          "into FusedMatMul with a float32 alpha, even for float64 (1/12 -> "
                          "0.0833333358; 1.32 keeps the float64 scale); the exporter folds "
                          "divisors into its window matrices instead")
def test_onnxruntime_keeps_float64_scale_after_matmul():
    x = np.random.default_rng(0).standard_normal((2, 4))
    want = x.sum(axis=1, keepdims=True) / 12.0 * np.ones((1, 3))
    model = _matmul_then_scale(np.float64)
    unoptimized = _run_with(model, x, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    np.testing.assert_allclose(unoptimized, want, rtol=1e-15)  # the graph itself is exact
    np.testing.assert_allclose(_run_with(model, x, ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
                               want, rtol=1e-12)


# ============================================================================ errors


@pytest.mark.parametrize("kwargs, match", [
    (dict(opset=17), r"opset 17 is not supported.*18\.\.22"),
    (dict(opset=23), r"opset 23 is not supported"),
    (dict(opset="21"), r"opset must be an int"),
    (dict(dtype="bfloat16"), r"dtype"),
    (dict(dtype="int64"), r"dtype int64 cannot be exported"),
    (dict(dtype="complex64"), r"dtype complex64 cannot be exported"),
    (dict(dynamic_batch="yes"), r"dynamic_batch must be a bool"),
])
def test_export_argument_errors(kwargs, match):
    with pytest.raises(ExportError, match=match):
        export(L.MaxPool2d(2), (1, 1, 4, 4), **kwargs)


@pytest.mark.parametrize("model, shape, match", [
    ("not a layer", (1, 1, 4, 4), r"fastpool layer or fastpool.layers.Sequential, got str"),
    (L.MaxPool2d(2), (1, 1, 0, 4), r"input_shape must be a sequence of positive ints"),
    (L.MaxPool2d(2), "1,1,4,4", r"input_shape must be a sequence of positive ints"),
    (L.MaxPool2d(2), (1, 1, 1, 2, 4, 4), r"MaxPool2d.*must be 4-D \(batched\) or 3-D"),
    (L.MaxPool2d(5), (1, 1, 4, 4), r"MaxPool2d.*kernel_size must fit"),
    (L.Sequential(), (1, 1, 4, 4), r"at least one layer"),
])
def test_export_model_errors(model, shape, match):
    with pytest.raises(ExportError, match=match) as info:
        export(model, shape)
    assert isinstance(info.value, PoolingError)


def test_int64_max_pooling_is_refused():
    with pytest.raises(ExportError, match=r"int64"):
        export(L.MaxPool2d(2), (1, 1, 4, 4), dtype=np.int64)


def test_dynamic_batch_refused_when_a_layer_reads_axis_0_as_spatial():
    net = L.Sequential(L.GlobalAvgPool(keepdims=False), L.MaxPool1d(2, layout="NWC"))
    with pytest.raises(ExportError, match=r"layer 1 .*MaxPool1d.*axis 0.*dynamic_batch=False"):
        export(net, (4, 3, 5, 5))
    _run_and_compare(net, (4, 3, 5, 5), dynamic_batch=False)
