"""The fastpool ONNX backend: per-opset semantics against onnxruntime and the NumPy
reference, the backend convention, and clear errors for hostile models.

ONNX's own conformance cases are in test_onnx_conformance.py; here the
attributes those cases leave out (older opsets, storage_order on 3-D, SAME_LOWER
with strides, asymmetric pads with count_include_pad, int8) are checked against
onnxruntime as an independent oracle, and LpPool's float ``p`` of opset 1
(which onnxruntime does not run) against tests/reference.py.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import helper  # noqa: E402

import reference as ref  # noqa: E402
from onnx_ops import backend  # noqa: E402
from onnx_ops.errors import BackendError, UnsupportedOpError  # noqa: E402
from onnx_ops.parity import ort_session  # noqa: E402


def node_model(op, attrs, shape, dtype=np.float32, opset=21, indices=False, ir_version=None):
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    outs = ["y", "i"] if indices else ["y"]
    node = helper.make_node(op, ["x"], outs, name="pool", **attrs)
    vo = [helper.make_tensor_value_info("y", elem, None)]
    if indices:
        vo.append(helper.make_tensor_value_info("i", onnx.TensorProto.INT64, None))
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, list(shape))], vo)
    ir = ir_version or (10 if opset >= 21 else 8 if opset >= 18 else 7)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)


def data(shape, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind in "iu":
        lo = -20 if np.dtype(dtype).kind == "i" else 0
        return rng.integers(lo, 20, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def assert_same_as_ort(model, x, rtol=1e-5, atol=1e-6):
    want = ort_session(model).run(None, {"x": x})
    got = backend.prepare(model).run([x])
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        if w.dtype.kind in "iu":
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


# ============================================================================ semantics vs onnxruntime

S2 = (2, 3, 9, 10)
_CASES = [
    # MaxPool: strides default to 1 (not to the kernel, as in PyTorch)
    ("MaxPool", dict(kernel_shape=[3, 3]), S2, 8, False),
    ("MaxPool", dict(kernel_shape=[3, 2], strides=[2, 3], pads=[1, 0, 0, 1]), S2, 12, True),
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], storage_order=1), S2, 10, True),
    ("MaxPool", dict(kernel_shape=[2, 2, 2], strides=[1, 2, 1], storage_order=1), (1, 2, 5, 4, 6), 21, True),
    ("MaxPool", dict(kernel_shape=[3], strides=[2], ceil_mode=1), (2, 3, 10), 10, True),
    ("MaxPool", dict(kernel_shape=[2, 2], dilations=[2, 1], strides=[1, 2], ceil_mode=1), S2, 22, True),
    ("MaxPool", dict(kernel_shape=[3, 2], strides=[2, 3], auto_pad="SAME_UPPER"), S2, 11, True),
    ("MaxPool", dict(kernel_shape=[3, 2], strides=[2, 3], auto_pad="SAME_LOWER"), S2, 11, True),
    ("MaxPool", dict(kernel_shape=[4, 3], strides=[2, 2], auto_pad="SAME_LOWER"), S2, 21, False),
    ("MaxPool", dict(kernel_shape=[3, 2], strides=[2, 3], auto_pad="VALID"), S2, 21, True),
    ("MaxPool", dict(kernel_shape=[3, 2], strides=[2, 3], auto_pad="VALID", ceil_mode=1), S2, 21, True),
    ("MaxPool", dict(kernel_shape=[3, 2], strides=[2, 3], auto_pad="SAME_UPPER", ceil_mode=1), S2, 21, True),
    ("AveragePool", dict(kernel_shape=[3, 2], strides=[2, 3], auto_pad="SAME_LOWER",
                         count_include_pad=1), S2, 21, False),
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), S2, 1, False),
    # AveragePool: count_include_pad defaults to 0
    ("AveragePool", dict(kernel_shape=[3, 3], pads=[1, 2, 0, 1]), S2, 7, False),
    ("AveragePool", dict(kernel_shape=[3, 3], pads=[1, 2, 0, 1], count_include_pad=1), S2, 11, False),
    ("AveragePool", dict(kernel_shape=[3, 2], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1,
                         count_include_pad=1), S2, 10, False),
    ("AveragePool", dict(kernel_shape=[2, 2], strides=[2, 3], dilations=[2, 2], ceil_mode=1), S2, 19, False),
    ("AveragePool", dict(kernel_shape=[3, 2], strides=[2, 3], auto_pad="SAME_LOWER"), S2, 18, False),
    ("AveragePool", dict(kernel_shape=[3, 2], strides=[2, 3], auto_pad="SAME_UPPER"), S2, 22, False),
    ("AveragePool", dict(kernel_shape=[2, 2, 2], strides=[2, 1, 2], pads=[0, 1, 1, 1, 0, 0]), (1, 2, 5, 4, 6), 21, False),
    # LpPool: integer p from opset 2; ceil_mode and dilations from 18
    ("LpPool", dict(kernel_shape=[3, 3], p=3, pads=[1, 0, 2, 1]), S2, 11, False),
    ("LpPool", dict(kernel_shape=[3, 2], strides=[2, 3], auto_pad="SAME_LOWER"), S2, 11, False),
    ("LpPool", dict(kernel_shape=[2, 2], dilations=[2, 1], strides=[2, 2], ceil_mode=1, p=1), S2, 18, False),
    ("LpPool", dict(kernel_shape=[2, 2, 2], p=2), (1, 2, 5, 4, 6), 22, False),
    ("LpPool", dict(kernel_shape=[3], strides=[2]), (2, 3, 10), 2, False),
    # Global pooling, any rank
    ("GlobalAveragePool", {}, (2, 3, 7), 1, False),
    ("GlobalAveragePool", {}, (1, 2, 5, 4, 6), 22, False),
    ("GlobalMaxPool", {}, S2, 1, False),
    ("GlobalMaxPool", {}, (1, 2, 5, 4, 6), 22, False),
    ("GlobalLpPool", dict(p=3), S2, 2, False),
    ("GlobalLpPool", {}, (2, 3, 7), 21, False),
]


@pytest.mark.parametrize("op, attrs, shape, opset, indices", _CASES,
                         ids=[f"{c[0]}-{i}-opset{c[3]}" for i, c in enumerate(_CASES)])
def test_semantics_match_onnxruntime(op, attrs, shape, opset, indices):
    model = node_model(op, attrs, shape, opset=opset, indices=indices)
    assert_same_as_ort(model, data(shape))


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.float64, np.float16])
def test_max_pool_dtypes_match_onnxruntime(dtype):
    # integer data with ties: the first maximum wins in both
    attrs = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 0, 1])
    model = node_model("MaxPool", attrs, S2, dtype=dtype, opset=21, indices=True)
    assert_same_as_ort(model, data(S2, dtype), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("p", [2.5, 1.0, 3.0])
def test_lp_pool_opset_1_takes_a_float_p(p):
    # onnxruntime has no opset-1 LpPool kernel; the reference is the oracle
    model = node_model("LpPool", dict(kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], p=p),
                       S2, opset=1)
    x = data(S2)
    (y,) = backend.prepare(model).run([x])
    want = ref.lp_pool(x, 2, p, (3, 2), (2, 2), ((1, 1), (0, 1)))
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(BackendError, match=r"'p' must be INT at LpPool-2, got FLOAT"):
        backend.prepare(node_model("LpPool", dict(kernel_shape=[3, 2], p=p), S2, opset=2))


def test_average_pool_opset_1_excludes_padding():
    # AveragePool-1 has no count_include_pad (padding never counts); onnxruntime has no
    # opset-1 AveragePool kernel, so the reference is the oracle
    model = node_model("AveragePool", dict(kernel_shape=[3], pads=[1, 1]), (2, 3, 10), opset=1)
    x = data((2, 3, 10))
    (y,) = backend.prepare(model).run([x])
    want = ref.avg_pool(x, 1, 3, 1, 1, count_include_pad=False)
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-7)


def test_global_lp_pool_opset_1_float_p():
    model = node_model("GlobalLpPool", dict(p=1.5), S2, opset=1)
    x = data(S2)
    (y,) = backend.prepare(model).run([x])
    np.testing.assert_allclose(y, ref.global_lp_pool(x, 1.5), rtol=1e-5)


def test_same_lower_puts_the_odd_padding_cell_first():
    # n=4, k=2, s=1: one padding cell, at the beginning for SAME_LOWER, at the end for SAME_UPPER
    x = np.array([[[1.0, 2.0, 3.0, 4.0]]], np.float32)
    lower = backend.run_model(node_model("AveragePool", dict(kernel_shape=[2], auto_pad="SAME_LOWER"),
                                         x.shape), [x])[0]
    upper = backend.run_model(node_model("AveragePool", dict(kernel_shape=[2], auto_pad="SAME_UPPER"),
                                         x.shape), [x])[0]
    np.testing.assert_array_equal(lower[0, 0], [1.0, 1.5, 2.5, 3.5])
    np.testing.assert_array_equal(upper[0, 0], [1.5, 2.5, 3.5, 4.0])


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool", "LpPool"])
def test_same_padding_accounts_for_dilation(op):
    # spec: ceil(n / stride) outputs; the padding covers the dilated window span
    model = node_model(op, dict(kernel_shape=[3, 3], dilations=[2, 2], auto_pad="SAME_UPPER"),
                       (1, 1, 7, 7), opset=21)
    x = data((1, 1, 7, 7))
    (y,) = backend.prepare(model).run([x])
    assert y.shape == (1, 1, 7, 7)
    if op == "MaxPool":
        np.testing.assert_array_equal(y, ref.max_pool(x, 2, 3, 1, 2, dilation=2)[0])


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="onnxruntime ignores dilation when it computes SAME padding "
                          "(7x7 input, k=3, d=2: it returns 5x5, the spec 7x7)")
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool", "LpPool"])
def test_same_padding_with_dilation_matches_onnxruntime(op):
    model = node_model(op, dict(kernel_shape=[3, 3], dilations=[2, 2], auto_pad="SAME_UPPER"),
                       (1, 1, 7, 7), opset=21)
    assert_same_as_ort(model, data((1, 1, 7, 7)))


def test_max_pool_propagates_nan():
    x = data((1, 1, 4, 4))
    x[0, 0, 1, 1] = np.nan
    (y,) = backend.prepare(node_model("MaxPool", dict(kernel_shape=[2, 2], strides=[2, 2]),
                                      x.shape)).run([x])
    assert np.isnan(y[0, 0, 0, 0]) and not np.isnan(y[0, 0, 1, 1])


def test_multi_node_graph_matches_onnxruntime():
    nodes = [
        helper.make_node("MaxPool", ["x"], ["a", "ai"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["a"], ["b"], kernel_shape=[2, 2], ceil_mode=1, strides=[2, 2]),
        helper.make_node("GlobalLpPool", ["b"], ["c"], p=2),
    ]
    f = onnx.TensorProto.FLOAT
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", f, ["N", 3, 17, 15])],
                          [helper.make_tensor_value_info("c", f, None),
                           helper.make_tensor_value_info("ai", onnx.TensorProto.INT64, None)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    x = data((4, 3, 17, 15))
    want = ort_session(model).run(None, {"x": x})
    got = backend.prepare(model).run({"x": x})
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[1], want[1])


# ============================================================================ the convention


def test_backend_convention():
    model = node_model("MaxPool", dict(kernel_shape=[2, 2]), (1, 1, 4, 4))
    x = data((1, 1, 4, 4))
    assert issubclass(backend.FastpoolBackend, onnx.backend.base.Backend)
    rep = backend.prepare(model, "CPU")
    assert isinstance(rep, onnx.backend.base.BackendRep)
    out = rep.run([x])
    assert isinstance(out, list) and len(out) == 1
    np.testing.assert_array_equal(backend.run_model(model, [x])[0], out[0])
    np.testing.assert_array_equal(backend.prepare(model.SerializeToString()).run(x)[0], out[0])
    node = model.graph.node[0]
    np.testing.assert_array_equal(backend.run_node(node, [x])[0], out[0])
    np.testing.assert_array_equal(backend.run_node(node, [x], opset_version=12)[0], out[0])
    assert backend.supports_device("CPU") and not backend.supports_device("CUDA")
    assert backend.is_compatible(model)
    bad = node_model("Relu", {}, (1, 1, 4, 4))
    assert not backend.is_compatible(bad)
    with pytest.raises(BackendError, match="CPU"):
        backend.prepare(model, "CUDA")


def test_prepare_from_file(tmp_path):
    model = node_model("GlobalMaxPool", {}, (1, 2, 3, 3))
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    x = data((1, 2, 3, 3))
    np.testing.assert_array_equal(backend.prepare(str(path)).run([x])[0], x.max(axis=(2, 3), keepdims=True))


# ============================================================================ hostile models


def _err(op, attrs, shape=S2, opset=21, indices=False, dtype=np.float32):
    return node_model(op, attrs, shape, opset=opset, indices=indices, dtype=dtype)


def _empty_kernel():
    model = _err("MaxPool", {})
    model.graph.node[0].attribute.append(
        helper.make_attribute("kernel_shape", [], attr_type=onnx.AttributeProto.INTS))
    return model


@pytest.mark.parametrize("model, match", [
    (_err("MaxPool", {}), r"node 'pool' \(MaxPool\): required attribute 'kernel_shape' is missing"),
    (_err("MaxPool", dict(kernel_shape=[2, 2], pads=[1, -1, 0, 0])), r"pads must be >= 0, got \[1, -1, 0, 0\]"),
    (_err("MaxPool", dict(kernel_shape=[2, 2], pads=[1, 1])), r"pads must have 4 values.*got \[1, 1\]"),
    (_err("AveragePool", dict(kernel_shape=[2, 2], strides=[1, 1, 1])), r"strides must have 2 values"),
    (_err("LpPool", dict(kernel_shape=[2, 2], dilations=[1])), r"dilations must have 2 values"),
    (_err("MaxPool", dict(kernel_shape=[2, 0])), r"kernel_shape must be >= 1"),
    (_err("MaxPool", dict(kernel_shape=[2, 2], strides=[0, 1])), r"strides must be >= 1"),
    (_empty_kernel(), r"kernel_shape must not be empty"),
    (_err("MaxPool", dict(kernel_shape=[2, 2], auto_pad="SAME")), r"auto_pad must be one of NOTSET, SAME_UPPER, SAME_LOWER, VALID, got 'SAME'"),
    (_err("MaxPool", dict(kernel_shape=[2, 2], auto_pad="SAME_UPPER", pads=[1, 1, 1, 1])), r"pads cannot be used together with auto_pad=SAME_UPPER"),
    (_err("MaxPool", dict(kernel_shape=[2, 2], storage_order=2)), r"storage_order must be 0 or 1, got 2"),
    (_err("AveragePool", dict(kernel_shape=[2, 2], ceil_mode=3)), r"ceil_mode must be 0 or 1, got 3"),
    (_err("LpPool", dict(kernel_shape=[2, 2], p=0)), r"p must be a finite number > 0, got 0"),
    (_err("MaxPool", dict(kernel_shape=[2, 2], bogus=1)), r"unknown attribute 'bogus' for MaxPool"),
    (_err("AveragePool", dict(kernel_shape=[2, 2], dilations=[2, 2]), opset=18), r"unknown attribute 'dilations' for AveragePool at opset version 11"),
    (_err("MaxPool", dict(kernel_shape=[2, 2]), opset=7, indices=True), r"has 1 output \(Y\) at opset version 1"),
    (_err("MaxPool", dict(kernel_shape="2")), r"attribute 'kernel_shape' must be INTS"),
    (_err("AveragePool", dict(kernel_shape=[2, 2]), indices=True), r"has 1 output"),
])
def test_hostile_models_are_refused_at_prepare(model, match):
    with pytest.raises(BackendError, match=match):
        backend.prepare(model)


@pytest.mark.parametrize("model, x, match", [
    (_err("MaxPool", dict(kernel_shape=[2, 2]), shape=(4, 4)), data((4, 4)),
     r"input must be \(N, C, \*spatial\), got shape \(4, 4\)"),
    (_err("MaxPool", dict(kernel_shape=[2, 2]), shape=(1, 1, 4, 4, 4)), data((1, 1, 4, 4, 4)),
     r"kernel_shape=\[2, 2\] has 2 axes but the input of shape \(1, 1, 4, 4, 4\) has 3 spatial axes"),
    (_err("GlobalMaxPool", {}, shape=(1, 1, 2, 2, 2, 2)), data((1, 1, 2, 2, 2, 2)),
     r"fastpool pools 1 to 3 spatial axes"),
    (_err("AveragePool", dict(kernel_shape=[2, 2]), dtype=np.int8), data(S2, np.int8),
     r"input dtype int8 is not allowed for AveragePool"),
    (_err("MaxPool", dict(kernel_shape=[20, 2])), data(S2),
     r"node 'pool' \(MaxPool\) on input of shape \(2, 3, 9, 10\):.*kernel_size must fit"),
])
def test_hostile_inputs_are_refused_at_run(model, x, match):
    with pytest.raises(BackendError, match=match):
        backend.prepare(model).run([x])


def test_input_checks():
    rep = backend.prepare(node_model("MaxPool", dict(kernel_shape=[2, 2]), (1, 1, 4, 4)))
    with pytest.raises(BackendError, match=r"takes 1 input\(s\) \['x'\], got 2"):
        rep.run([data((1, 1, 4, 4)), data((1, 1, 4, 4))])
    with pytest.raises(BackendError, match=r"input 'x' is declared float32, got float64"):
        rep.run([data((1, 1, 4, 4), np.float64)])
    with pytest.raises(BackendError, match=r"missing inputs \['x'\]"):
        rep.run({"y": data((1, 1, 4, 4))})


@pytest.mark.parametrize("op, attrs, match", [
    ("MaxUnpool", dict(kernel_shape=[2, 2]), r"takes 2 to 3 inputs \(X, I, output_shape\), got \['x'\]"),
    ("MaxRoiPool", dict(pooled_shape=[2, 2]), r"takes 2 inputs \(X, rois\), got \['x'\]"),
    ("RoiAlign", {}, r"takes 3 inputs \(X, rois, batch_indices\), got \['x'\]"),
])
def test_unpool_and_roi_ops_name_their_inputs(op, attrs, match):
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    with pytest.raises(BackendError, match=match):
        backend.run_node(node, [data((1, 1, 4, 4))])


def test_other_ops_are_named():
    with pytest.raises(UnsupportedOpError, match=r"node 'pool' \(Relu\): the fastpool backend does not run Relu"):
        backend.prepare(_err("Relu", {}))
    node = helper.make_node("MaxPool", ["x"], ["y"], domain="com.example", kernel_shape=[2, 2])
    with pytest.raises(UnsupportedOpError, match=r"domain 'com.example'"):
        backend.run_node(node, [data(S2)])


def test_graph_structure_errors():
    model = node_model("MaxPool", dict(kernel_shape=[2, 2]), (1, 1, 4, 4))
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(BackendError, match=r"imports no default-domain"):
        backend.prepare(model)
    model = node_model("MaxPool", dict(kernel_shape=[2, 2]), (1, 1, 4, 4))
    model.graph.node[0].input[0] = "nowhere"
    with pytest.raises(BackendError, match=r"reads 'nowhere', which no earlier node or graph input produces"):
        backend.prepare(model)
    with pytest.raises(BackendError, match=r"onnx.ModelProto, bytes or a file path, got int"):
        backend.prepare(3)
