"""The rest of the pooling family through ONNX: export with onnxruntime parity, and the
fastpool backend's MaxUnpool / MaxRoiPool / RoiAlign against onnxruntime.

Export: every family layer (MaxUnpool, FractionalMaxPool, StochasticPool in
inference mode, MixedPool, SpatialPyramidPool, RoIAlign, RoIPool) is exported,
checked with ``onnx.checker.check_model(full_check=True)``, run in onnxruntime
and compared with the layer's own forward.  Where the batch axis is symbolic the
model is exported for one batch size and run at another; RoI models are run
with a box count other than the one they were built with.

Backend: random ONNX nodes run in onnxruntime and in ``onnx_ops.backend``; the
cases onnxruntime cannot run (RoiAlign at opset 22, boxes that overflow its
sample count) are compared with ONNX's reference implementation instead.
onnxruntime's divergences are strict xfails with the measured numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

import fastpool as fp  # noqa: E402
from fastpool import layers as L  # noqa: E402

import onnx_ops  # noqa: E402
from onnx_ops import ExportError, backend, cli, export  # noqa: E402
from onnx_ops.errors import BackendError  # noqa: E402
from onnx_ops.parity import (example_second_input, ort_session, random_boxes,  # noqa: E402
                             unpool_indices)

# RoiAlign in max mode makes onnxruntime log a warning about an old summation bug
ort.set_default_logger_severity(3)

EXPORT_BATCH, RUN_BATCH = 2, 3


def _rng(seed=0):
    return np.random.default_rng(seed)


def _to_last(shape, nd):
    return shape[:1] + shape[2:] + shape[1:2] if len(shape) == nd + 2 else shape[1:] + shape[:1]


def _exported(layer, shape, dtype, **kw):
    model = export(layer, shape, dtype=dtype, **kw)
    onnx.checker.check_model(model, full_check=True)
    return model


def _parity(layer, model, x, *extra, **kw):
    report = onnx_ops.check_parity(layer, x, *extra, onnx_model=model, **kw)
    assert report.ok, str(report)
    for c in report.comparisons:
        assert c.expected_shape == c.actual_shape
    return report


def _declared(model, name):
    vi = next(v for v in list(model.graph.input) + list(model.graph.output) if v.name == name)
    return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]


def _lowering(model):
    return next(p.value for p in model.metadata_props if p.key == "fastpool.lowering")


# ============================================================================ MaxUnpool


UNPOOL = [
    # nd, kernel, stride, padding, pooled-from spatial size (odd sizes need output_size)
    (1, 2, None, 0, (10,)),
    (1, 3, 2, 1, (11,)),
    (2, 2, None, 0, (8, 6)),
    (2, 3, 2, 1, (9, 10)),
    (3, 2, None, 0, (4, 6, 4)),
    (3, (3, 2, 2), (2, 2, 1), (1, 0, 1), (5, 4, 3)),
]


def _pooled(nd, k, s, p, sp, batch, dtype, layout, seed=0):
    """(pooled values, fastpool indices) from max pooling, in ``layout``."""
    x = _rng(seed).standard_normal((batch, 3) + sp).astype(dtype)
    y, i = getattr(fp, f"max_pool{nd}d")(x, k, s, p, return_indices=True)
    if layout == "channels_last":
        y, i = np.moveaxis(y, 1, -1), np.moveaxis(i, 1, -1)
    return np.ascontiguousarray(y), np.ascontiguousarray(i)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("nd, k, s, p, sp", UNPOOL)
def test_max_unpool_round_trip(nd, k, s, p, sp, layout):
    layer = getattr(L, f"MaxUnpool{nd}d")(k, s, p, layout=layout)
    y, i = _pooled(nd, k, s, p, sp, EXPORT_BATCH, np.float32, layout)
    model = _exported(layer, y.shape, "float32", output_size=sp)
    assert "native: MaxUnpool" in _lowering(model)
    assert [n.op_type for n in model.graph.node].count("MaxUnpool") == 1
    mu = next(n for n in model.graph.node if n.op_type == "MaxUnpool")
    assert len(mu.input) == 3 and mu.input[2]   # output_shape always given
    assert _declared(model, "indices")[0] == "N" and _declared(model, "output")[0] == "N"
    y3, i3 = _pooled(nd, k, s, p, sp, RUN_BATCH, np.float32, layout, seed=1)
    _parity(layer, model, y3, i3, output_size=sp)


# each integer dtype is one more kernel to compile: int32, as the family's own tests use
@pytest.mark.parametrize("dtype, op", [("float64", "ScatterElements"), ("float16", "MaxUnpool"),
                                       ("int32", "ScatterElements")])
def test_max_unpool_dtypes(dtype, op):
    layer = L.MaxUnpool2d(3, 2, 1)
    x = _rng(2).standard_normal((2, 3, 9, 10)) * 20
    y, i = fp.max_pool2d(x.astype(np.float64), 3, 2, 1, return_indices=True)
    y = y.astype(dtype)
    model = _exported(layer, y.shape, dtype, output_size=(9, 10))
    assert op in [n.op_type for n in model.graph.node]
    _parity(layer, model, y, i, output_size=(9, 10))


def test_max_unpool_default_size_unbatched_and_below_default():
    layer = L.MaxUnpool2d(2)
    y, i = _pooled(2, 2, None, 0, (8, 6), 1, np.float32, "channels_first")
    # unbatched (C, H, W): default size 8x6
    model = _exported(layer, y.shape[1:], "float32")
    assert _declared(model, "output") == [3, 8, 6]
    _parity(layer, model, y[0], i[0])
    # output_size below the default (allowed within one stride): onnxruntime's MaxUnpool refuses
    # it, the export scatters instead
    layer = L.MaxUnpool2d(3, 2)
    y = _rng(3).standard_normal((2, 3, 4, 4)).astype(np.float32)
    idx = unpool_indices(y.shape, (3, 3), (2, 2), (0, 0), (8, 8), _rng(4))   # default 9x9
    model = _exported(layer, y.shape, "float32", output_size=(8, 8))
    assert "below the default size (9, 9)" in _lowering(model)
    _parity(layer, model, y, idx, output_size=(8, 8))
    with pytest.raises(ExportError, match=r"no MaxUnpool layer"):
        export(L.MaxPool2d(2), (1, 1, 4, 4), output_size=(4, 4))


def test_onnxruntime_maxunpool_refuses_output_shape_below_default():
    """The fact behind the ScatterElements form above."""
    node = helper.make_node("MaxUnpool", ["X", "I", "S"], ["Y"], kernel_shape=[3, 3], strides=[2, 2])
    model = _node_model(node, [("X", TensorProto.FLOAT), ("I", TensorProto.INT64), ("S", TensorProto.INT64)])
    feeds = {"X": np.ones((1, 1, 4, 4), np.float32), "I": np.zeros((1, 1, 4, 4), np.int64),
             "S": np.array([1, 1, 8, 8], np.int64)}
    with pytest.raises(Exception, match="smaller than minimum required"):
        ort_session(model).run(None, feeds)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_max_unpool_duplicate_indices_later_input_wins(dtype):
    # fastpool (like PyTorch's CPU kernel) keeps the later input; onnxruntime's MaxUnpool and
    # ScatterElements apply their updates in input order too
    layer = L.MaxUnpool1d(2)
    y = np.array([[[1.0, 2.0, 3.0, 4.0]]], dtype)
    idx = np.array([[[1, 1, 0, 1]]])
    model = _exported(layer, y.shape, dtype)
    report = _parity(layer, model, y, idx)
    assert report.comparisons[0].max_abs == 0
    np.testing.assert_array_equal(layer(y, idx)[0, 0], [3.0, 4.0, 0, 0, 0, 0, 0, 0])


# ============================================================================ fractional max


def _frac_samples(n, c, nd, shared=False, seed=5):
    s = _rng(seed).random((n, c, nd))
    return np.broadcast_to(s[:1, :1], s.shape).copy() if shared else s


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("nd, kw, sp", [
    (2, dict(kernel_size=2, output_size=(5, 4)), (9, 10)),
    (2, dict(kernel_size=3, output_ratio=0.5, return_indices=True), (12, 10)),
    (3, dict(kernel_size=2, output_size=(3, 2, 3), return_indices=True), (6, 5, 7)),
])
def test_fractional_max_pool_fixed_samples(nd, kw, sp, shared, layout):
    shape = (EXPORT_BATCH, 3) + sp
    if layout == "channels_last":
        shape = _to_last(shape, nd)
    layer = getattr(L, f"FractionalMaxPool{nd}d")(samples=_frac_samples(EXPORT_BATCH, 3, nd, shared),
                                                  layout=layout, **kw)
    model = _exported(layer, shape, "float32", dynamic_batch=False)
    ops = {n.op_type for n in model.graph.node}
    if shared:   # one window sequence for every plane: per-window Slice + ReduceMax/ArgMax
        assert "Slice" in ops
    else:        # a sequence per plane: a GatherElements per window tap, then Max
        assert {"GatherElements", "Max"} <= ops and "Slice" not in ops
    _parity(layer, model, _rng(6).standard_normal(shape).astype(np.float32))


@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_fractional_max_pool_dtypes(dtype):
    layer = L.FractionalMaxPool2d(2, output_size=(4, 5), return_indices=True,
                                  samples=_frac_samples(2, 3, 2, seed=7))
    x = (_rng(8).standard_normal((2, 3, 8, 11)) * 30).astype(dtype)
    _parity(layer, _exported(layer, x.shape, dtype, dynamic_batch=False), x)


def test_fractional_max_pool_needs_fixed_samples_and_batch():
    with pytest.raises(ExportError, match=r"draws new windows at every call.*samples=layer.last_samples"):
        export(L.FractionalMaxPool2d(2, output_size=3), (1, 1, 6, 6), dynamic_batch=False)
    layer = L.FractionalMaxPool2d(2, output_size=3, samples=_frac_samples(1, 1, 2))
    with pytest.raises(ExportError, match=r"fixed samples.*fix the batch size.*dynamic_batch=False"):
        export(layer, (1, 1, 6, 6))
    with pytest.raises(ExportError, match=r"samples of shape \(1, 1, 2\) do not fit input planes \(2, 1\)"):
        export(layer, (2, 1, 6, 6), dynamic_batch=False)
    with pytest.raises(ExportError, match=r"no native ONNX form at opset 21.*fractional windows"):
        export(layer, (1, 1, 6, 6), dynamic_batch=False, native_only=True)
    # the samples a forward drew can be frozen for export
    drawn = L.FractionalMaxPool2d(2, output_size=3, rng=_rng(9))
    x = _rng(10).standard_normal((1, 2, 6, 6)).astype(np.float32)
    drawn(x)
    frozen = L.FractionalMaxPool2d(2, output_size=3, samples=drawn.last_samples)
    _parity(frozen, _exported(frozen, x.shape, "float32", dynamic_batch=False), x)


# ============================================================================ stochastic


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("nd, k, s, p, sp", [
    (1, 3, 2, 1, (11,)), (2, 2, None, 0, (8, 9)), (2, 3, 2, 1, (9, 10)), (3, 2, 1, 1, (4, 5, 3)),
])
def test_stochastic_pool_inference_form(nd, k, s, p, sp, layout):
    layer = getattr(L, f"StochasticPool{nd}d")(k, s, p, training=False, layout=layout)
    shape = (EXPORT_BATCH, 3) + sp
    run = (RUN_BATCH, 3) + sp
    if layout == "channels_last":
        shape, run = _to_last(shape, nd), _to_last(run, nd)
    x = np.abs(_rng(11).standard_normal(run)).astype(np.float32)
    x[..., :2] = 0.0   # all-zero windows give 0
    model = _exported(layer, shape, "float32")
    assert "AveragePool" in {n.op_type for n in model.graph.node}
    _parity(layer, model, x)


@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_stochastic_pool_dtypes(dtype):
    layer = L.StochasticPool2d(3, 2, 1, training=False)
    x = (np.abs(_rng(12).standard_normal((2, 3, 9, 8))) * 10).astype(dtype)
    model = _exported(layer, x.shape, dtype)
    report = _parity(layer, model, x)
    assert report.comparisons[0].dtype == ("float64" if dtype == "uint8" else dtype)


def test_stochastic_pool_training_mode_is_refused():
    layer = L.StochasticPool2d(2)
    with pytest.raises(ExportError, match=r"layer 0 \(StochasticPool2d.*training mode.*layer.eval\(\)"):
        export(layer, (1, 1, 4, 4))
    layer.eval()
    assert export(layer, (1, 1, 4, 4)) is not None
    with pytest.raises(ExportError, match=r"no native ONNX form.*float64 AveragePool"):
        export(layer, (1, 1, 4, 4), dtype="float64", native_only=True)


# ============================================================================ mixed


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("nd, k, s, p, alpha, sp", [
    (1, 3, 2, 1, 0.25, (11,)),
    (2, 2, None, 0, [0.1, 0.5, 0.9], (8, 9)),
    (2, 3, 2, 1, 0.7, (9, 10)),
    (3, 2, 1, 1, [0.0, 1.0, 0.3], (4, 5, 3)),
])
def test_mixed_pool(nd, k, s, p, alpha, sp, layout):
    alpha = np.asarray(alpha) if isinstance(alpha, list) else alpha
    layer = getattr(L, f"MixedPool{nd}d")(k, s, p, alpha=alpha, layout=layout)
    shape, run = (EXPORT_BATCH, 3) + sp, (RUN_BATCH, 3) + sp
    if layout == "channels_last":
        shape, run = _to_last(shape, nd), _to_last(run, nd)
    model = _exported(layer, shape, "float32")
    assert {"MaxPool", "AveragePool"} <= {n.op_type for n in model.graph.node}
    _parity(layer, model, _rng(13).standard_normal(run).astype(np.float32))


# uint8: the integer dtype whose max and average kernels the export tests compile anyway
@pytest.mark.parametrize("dtype, alpha", [("float64", 0.3), ("float64", [0.2, 0.6, 1.5]), ("float64", [0.4]),
                                          ("float16", 0.3), ("uint8", [0.2, 0.6, 1.5])])
def test_mixed_pool_dtypes(dtype, alpha):
    # float64: the average part is a MatMul decomposition; a scalar 1 - alpha is folded into
    # its matrices (onnxruntime would fuse a one-element Mul into a float32 alpha)
    alpha = np.asarray(alpha) if isinstance(alpha, list) else alpha
    c = 1 if np.ndim(alpha) and np.size(alpha) == 1 else 3
    layer = L.MixedPool2d(3, 2, 1, alpha=alpha)
    x = (np.abs(_rng(14).standard_normal((2, c, 9, 8))) * 20).astype(dtype)
    model = _exported(layer, x.shape, dtype)
    report = _parity(layer, model, x)
    assert report.comparisons[0].dtype == (dtype if dtype.startswith("float") else "float64")


# ============================================================================ spatial pyramid


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("levels, mode, sp", [
    ((1, 2, 4), "max", (9, 10)), ((1, 2, 4), "avg", (8, 8)), ((3, 1), "avg", (7, 11)), (2, "max", (5, 4)),
])
def test_spatial_pyramid_pool(levels, mode, sp, layout):
    layer = L.SpatialPyramidPool(levels, mode=mode, layout=layout)
    shape, run = (EXPORT_BATCH, 3) + sp, (RUN_BATCH, 3) + sp
    if layout == "channels_last":
        shape, run = _to_last(shape, 2), _to_last(run, 2)
    model = _exported(layer, shape, "float32")
    ops = [n.op_type for n in model.graph.node]
    assert "Concat" in ops or isinstance(levels, int)
    assert _declared(model, "output") == ["N", layer.output_shape(shape)[1]]
    _parity(layer, model, _rng(15).standard_normal(run).astype(np.float32))


@pytest.mark.parametrize("mode, dtype", [("max", "float64"), ("avg", "float64"), ("avg", "float16"),
                                         ("max", "int32")])
def test_spatial_pyramid_pool_dtypes_and_unbatched(mode, dtype):
    layer = L.SpatialPyramidPool((1, 2, 3), mode=mode)
    x = (_rng(16).standard_normal((2, 3, 7, 9)) * 20).astype(dtype)
    _parity(layer, _exported(layer, x.shape, dtype), x)
    model = _exported(layer, x.shape[1:], dtype)   # unbatched (C, H, W) -> (C * 14,)
    assert _declared(model, "output") == [3 * 14]
    _parity(layer, model, x[0])


# ============================================================================ RoI align / RoI pool


def _boxes(k, n, h, w, scale, dtype, seed):
    """Boxes inside, across and outside the map, some malformed (x2 < x1)."""
    b = random_boxes(k, n, h, w, scale, np.float64, _rng(seed))
    b[::4, [1, 3]] = b[::4, [3, 1]]
    b[1::5, 1:] += 3.0 / scale
    return b.astype(dtype)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("aligned, sampling_ratio, scale, out", [
    (False, -1, 1.0, (3, 4)), (False, 2, 0.5, (2, 2)), (True, 2, 1.0, (2, 3)), (True, 0, 0.25, (1, 2)),
])
def test_roi_align(aligned, sampling_ratio, scale, out, layout):
    layer = L.RoIAlign(out, scale, sampling_ratio, aligned, layout=layout)
    shape = (EXPORT_BATCH, 3, 10, 9)
    if layout == "channels_last":
        shape = _to_last(shape, 2)
    model = _exported(layer, shape, "float32")
    assert _declared(model, "boxes") == ["K", 5] and _declared(model, "output")[0] == "K"
    ra = next(n for n in model.graph.node if n.op_type == "RoiAlign")
    attrs = {a.name: helper.get_attribute_value(a) for a in ra.attribute}
    assert attrs["mode"] == b"avg"
    assert attrs["coordinate_transformation_mode"] == (b"half_pixel" if aligned else b"output_half_pixel")
    run = (RUN_BATCH,) + shape[1:]
    x = _rng(17).standard_normal(run).astype(np.float32)
    # sampling_ratio <= 0 with aligned=True: malformed boxes overflow onnxruntime (see the xfail)
    boxes = _boxes(9, RUN_BATCH, 10, 9, scale, np.float32, 18) if not (aligned and sampling_ratio <= 0) \
        else random_boxes(9, RUN_BATCH, 10, 9, scale, np.float32, _rng(18))
    _parity(layer, model, x, boxes)


@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_roi_align_dtypes_fixed_box_count_and_opsets(dtype):
    layer = L.RoIAlign((2, 2), 0.5, 2, False)
    x = _rng(19).standard_normal((2, 3, 8, 8)).astype(dtype)
    boxes = _boxes(5, 2, 8, 8, 0.5, dtype, 20)
    model = _exported(layer, x.shape, dtype, num_boxes=5)
    assert _declared(model, "boxes") == [5, 5] and _declared(model, "output") == [5, 3, 2, 2]
    _parity(layer, model, x, boxes)
    for opset in (18, 19, 20):
        _parity(layer, _exported(layer, x.shape, dtype, opset=opset), x, boxes)


def test_roi_pool():
    layer = L.RoIPool((2, 3), 0.5)
    model = _exported(layer, (2, 3, 9, 8), "float32")
    assert [n.op_type for n in model.graph.node] == ["MaxRoiPool"]
    x = _rng(21).standard_normal((3, 3, 9, 8)).astype(np.float32)
    boxes = _boxes(10, 3, 9, 8, 0.5, np.float32, 22)
    boxes[:3, 1:] = [[1.0, 3.0, 5.0, 7.0], [3.0, 1.0, 9.0, 11.0], [-1.0, -3.0, 1.0, 5.0]]   # halves at 0.5
    _parity(layer, model, x, boxes)
    for layout, dtype in (("channels_last", "float32"), ("channels_first", "float16")):
        layer = L.RoIPool(3, 1.0, layout=layout)
        xl = np.moveaxis(x, 1, -1).copy() if layout == "channels_last" else x.astype(dtype)
        bl = boxes.copy()
        bl[:, 1:] *= 0.5   # the same map cells at scale 1
        _parity(layer, _exported(layer, xl.shape, dtype), xl, bl.astype(dtype))


def test_roi_export_errors():
    with pytest.raises(ExportError, match=r"RoIPool.*float64 input cannot be exported: onnxruntime has no "
                                          r"float64 MaxRoiPool kernel and the bins depend on the box values"):
        export(L.RoIPool(2), (1, 1, 4, 4), dtype="float64")
    for layer in (L.RoIPool(2), L.RoIAlign(2)):
        with pytest.raises(ExportError, match=r"cannot be exported at opset 22: onnxruntime 1.31 has no "
                                              r"opset-22 (MaxRoiPool|RoiAlign) kernel"):
            export(layer, (1, 1, 4, 4), opset=22)
        with pytest.raises(ExportError, match=r"takes a second input \(boxes\) and can only be exported "
                                              r"on its own"):
            export(L.Sequential(layer, L.MaxPool2d(1)), (1, 1, 4, 4))
        with pytest.raises(ExportError, match=r"pools floating-point maps; dtype int8"):
            export(layer, (1, 1, 4, 4), dtype="int8")
        with pytest.raises(ExportError, match=r"expects 4-D \(N, C, H, W\) input"):
            export(layer, (1, 4, 4))
    with pytest.raises(ExportError, match=r"num_boxes fixes the RoI count"):
        export(L.MaxPool2d(2), (1, 1, 4, 4), num_boxes=3)
    with pytest.raises(ExportError, match=r"takes a second input \(indices\)"):
        export(L.Sequential(L.MaxPool2d(2), L.MaxUnpool2d(2)), (1, 1, 4, 4))
    with pytest.raises(onnx_ops.OnnxOpsError, match=r"takes a second input \(boxes\): "
                                                    r"check_parity\(model, x, boxes\)"):
        onnx_ops.check_parity(L.RoIAlign(2), np.zeros((1, 1, 4, 4), np.float32))


@pytest.mark.xfail(strict=True, raises=Exception, reason=(
    "onnxruntime 1.31 RoiAlign fails with 'SafeIntOnOverflow() Integer overflow' when "
    "coordinate_transformation_mode=half_pixel, sampling_ratio=0 and a malformed box gives a "
    "negative adaptive grid on one axis only (box [4, 1, 2, 5] on an 8x8 map, 1x1 output: "
    "ceil(-2) x ceil(4) samples); fastpool (torchvision's algorithm) and ONNX's reference "
    "implementation give 0"))
def test_onnxruntime_roi_align_overflows_on_a_malformed_box():
    layer = L.RoIAlign(1, 1.0, -1, True)
    x = _rng(23).standard_normal((1, 2, 8, 8)).astype(np.float32)
    boxes = np.array([[0, 4.0, 1.0, 2.0, 5.0]], np.float32)
    np.testing.assert_array_equal(layer(x, boxes), 0.0)
    _parity(layer, _exported(layer, x.shape, "float32"), x, boxes)


@pytest.mark.parametrize("opset", [18, 19, 22])
def test_family_at_other_opsets(opset):
    rng = _rng(31)
    x = rng.standard_normal((2, 3, 9, 10)).astype(np.float32)
    layers = [L.MaxUnpool2d(2), L.StochasticPool2d(3, 2, 1, training=False), L.MixedPool2d(3, 2, 1, alpha=0.4),
              L.FractionalMaxPool2d(2, output_size=(4, 5), samples=rng.random((2, 3, 2)), return_indices=True),
              L.SpatialPyramidPool((1, 2, 4)), L.SpatialPyramidPool((1, 3), mode="avg")]
    if opset < 22:
        layers += [L.RoIAlign(2, 0.5), L.RoIPool(2)]
    for layer in layers:
        xi = np.abs(x) if layer.kind == "stochastic_pool" else x[..., :5, :5] if layer.kind == "max_unpool" else x
        second = example_second_input(layer, xi, rng)
        model = _exported(layer, xi.shape, "float32", opset=opset,
                          dynamic_batch=layer.kind != "fractional_max_pool")
        _parity(layer, model, xi, *([] if second is None else [second]))


# ============================================================================ command line


@pytest.mark.parametrize("expr, shape", [
    ("MaxUnpool2d(3, stride=2, padding=1, layout='NHWC')", "2,4,5,3"),
    ("RoIAlign((2, 2), 0.5, aligned=True)", "2,3,8,8"),
    ("MixedPool1d(3, 2, alpha=0.25)", "2,3,11"),
])
def test_cli_export_check_and_check(tmp_path, capsys, expr, shape):
    path = str(tmp_path / "m.onnx")
    assert cli.main_export([expr, "--input-shape", shape, "-o", path, "--check"]) == 0
    assert "parity: PASS" in capsys.readouterr().out
    # random inputs: fastpool check rebuilds valid indices / boxes for models it exported
    assert cli.main_check([path, "--dim", "3"]) == 0
    out = capsys.readouterr().out
    assert "parity: PASS" in out and "MISMATCH" not in out


def test_example_second_input_is_valid():
    rng = _rng(24)
    layer = L.MaxUnpool3d(2, layout="NDHWC")
    x = rng.standard_normal((2, 3, 4, 5, 3)).astype(np.float32)
    idx = example_second_input(layer, x, rng)
    assert idx.shape == x.shape and idx.min() >= 0 and idx.max() < 6 * 8 * 10
    layer(x, idx)   # fastpool accepts them


# ============================================================================ backend vs onnxruntime


def _node_model(node, inputs, opset=21, out_type=TensorProto.FLOAT):
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, t, None) for n, t in inputs],
                          [helper.make_tensor_value_info("Y", out_type, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                             ir_version=10 if opset >= 21 else 8)


def _both(model, feeds):
    want = ort_session(model).run(None, feeds)[0]
    got = backend.prepare(model).run(feeds)[0]
    assert got.shape == want.shape and got.dtype == want.dtype
    return got, want


def _random_unpool_case(rng, with_shape):
    nd = int(rng.integers(1, 4))
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    k = [int(v) for v in rng.integers(1, 4, nd)]
    s = [int(v) for v in rng.integers(1, 4, nd)]
    pads = [int(rng.integers(0, kk)) for kk in k] + [int(rng.integers(0, kk)) for kk in k]   # asymmetric
    sp = [int(v) for v in rng.integers(1, 5, nd)]
    default = [(sp[a] - 1) * s[a] + k[a] - pads[a] - pads[nd + a] for a in range(nd)]
    if any(d < 1 for d in default):
        return None
    out = [d + int(rng.integers(0, 3)) for d in default] if with_shape else default
    x = rng.standard_normal((n, c) + tuple(sp)).astype(np.float32)
    local = unpool_indices(x.shape, k, s, pads[:nd], out, rng)
    plane = int(np.prod(out))
    ind = local + (np.arange(n * c) * plane).reshape((n, c) + (1,) * nd)
    node = helper.make_node("MaxUnpool", ["X", "I"] + (["S"] if with_shape else []), ["Y"],
                            kernel_shape=k, strides=s, pads=pads)
    feeds = {"X": x, "I": ind}
    inputs = [("X", TensorProto.FLOAT), ("I", TensorProto.INT64)]
    if with_shape:
        feeds["S"] = np.array([n, c] + out, np.int64)
        inputs.append(("S", TensorProto.INT64))
    return _node_model(node, inputs), feeds


@pytest.mark.parametrize("with_shape", [False, True])
def test_backend_max_unpool_matches_onnxruntime(with_shape):
    rng = _rng(25 + with_shape)
    done = 0
    while done < 40:
        case = _random_unpool_case(rng, with_shape)
        if case is None:
            continue
        got, want = _both(*case)
        np.testing.assert_array_equal(got, want)
        done += 1


def test_backend_max_unpool_round_trip_and_index_errors():
    x = _rng(27).standard_normal((2, 3, 7, 6)).astype(np.float32)
    nodes = [helper.make_node("MaxPool", ["X"], ["P", "I"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("MaxUnpool", ["P", "I", "S"], ["Y"], kernel_shape=[2, 2], strides=[2, 2])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, None),
                                       helper.make_tensor_value_info("S", TensorProto.INT64, None)],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    got, want = _both(model, {"X": x, "S": np.array(x.shape, np.int64)})   # odd size: output_shape
    np.testing.assert_array_equal(got, want)
    node = helper.make_node("MaxUnpool", ["X", "I"], ["Y"], kernel_shape=[2], strides=[2])
    rep = backend.prepare(_node_model(node, [("X", TensorProto.FLOAT), ("I", TensorProto.INT64)]))
    xs = np.ones((1, 2, 2), np.float32)
    with pytest.raises(BackendError, match=r"I\[0, 1, 0\] = 1 does not point into the output plane of "
                                           r"its own \(n, c\) = \(0, 1\) \(flat indices \[4, 8\)"):
        rep.run([xs, np.array([[[0, 3], [1, 5]]])])
    with pytest.raises(BackendError, match=r"I must have X's shape"):
        rep.run([xs, np.zeros((1, 2, 3), np.int64)])
    node = helper.make_node("MaxUnpool", ["X", "I", "S"], ["Y"], kernel_shape=[2], strides=[2])
    rep = backend.prepare(_node_model(node, [("X", TensorProto.FLOAT), ("I", TensorProto.INT64),
                                             ("S", TensorProto.INT64)]))
    with pytest.raises(BackendError, match=r"output_shape must be \[N, C, \*spatial\] with X's N and C"):
        rep.run([xs, np.zeros((1, 2, 2), np.int64), np.array([1, 3, 4])])
    # smaller than onnxruntime's minimum, but the indices fit: the spec's reading
    y = rep.run([xs, np.array([[[0, 2], [4, 3]]]), np.array([1, 2, 3])])[0]
    np.testing.assert_array_equal(y, [[[1, 0, 1], [1, 1, 0]]])


def _roi_align_model(attrs, opset=21, dtype=TensorProto.FLOAT):
    node = helper.make_node("RoiAlign", ["X", "R", "B"], ["Y"], **attrs)
    return _node_model(node, [("X", dtype), ("R", dtype), ("B", TensorProto.INT64)], opset, dtype)


def _random_roi_align_case(rng, mode, opset, dtype=np.float32):
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    h, w = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    k = int(rng.integers(1, 6))
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    scale = float(rng.choice([1.0, 0.5, 2.0]))
    b = _boxes(k, n, h, w, scale, dtype, int(rng.integers(1 << 30)))
    attrs = dict(mode=mode, output_height=int(rng.integers(1, 4)), output_width=int(rng.integers(1, 4)),
                 sampling_ratio=int(rng.integers(0, 3)), spatial_scale=scale)
    half = bool(rng.integers(0, 2)) and opset >= 16
    if opset >= 16:
        attrs["coordinate_transformation_mode"] = "half_pixel" if half else "output_half_pixel"
    if half and attrs["sampling_ratio"] == 0:
        # malformed boxes overflow onnxruntime here (strict xfail above); keep well-formed ones
        b = random_boxes(k, n, h, w, scale, dtype, rng)
    tp = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    feeds = {"X": x, "R": np.ascontiguousarray(b[:, 1:]), "B": b[:, 0].astype(np.int64)}
    return _roi_align_model(attrs, opset, tp), feeds


@pytest.mark.parametrize("mode, opset, dtype", [("avg", 21, np.float32), ("max", 21, np.float32),
                                                ("avg", 10, np.float32), ("max", 16, np.float64)])
def test_backend_roi_align_matches_onnxruntime(mode, opset, dtype):
    # opset 10 has no coordinate_transformation_mode: output_half_pixel (aligned=False)
    rng = _rng(28)
    for _ in range(40):
        got, want = _both(*_random_roi_align_case(rng, mode, opset, dtype))
        np.testing.assert_array_equal(got, want)


def test_backend_roi_align_where_onnxruntime_cannot_run():
    """Opset 22 (no onnxruntime kernel) and the overflowing malformed box: ONNX's reference
    implementation is the oracle."""
    from onnx.reference import ReferenceEvaluator

    rng = _rng(29)
    for mode in ("avg", "max"):
        model, feeds = _random_roi_align_case(rng, mode, 21)
        model.opset_import[0].version = 22
        got = backend.prepare(model).run(feeds)[0]
        np.testing.assert_allclose(got, ReferenceEvaluator(model).run(None, feeds)[0], rtol=1e-6, atol=1e-6)
    x = rng.standard_normal((1, 2, 8, 8)).astype(np.float32)
    model = _roi_align_model(dict(output_height=1, output_width=1, sampling_ratio=0,
                                  coordinate_transformation_mode="half_pixel"))
    feeds = {"X": x, "R": np.array([[4.0, 1.0, 2.0, 5.0]], np.float32), "B": np.zeros(1, np.int64)}
    got = backend.prepare(model).run(feeds)[0]
    np.testing.assert_array_equal(got, ReferenceEvaluator(model).run(None, feeds)[0])
    np.testing.assert_array_equal(got, 0.0)


def test_backend_roi_align_max_is_max_of_weighted_corners():
    # one bin, one sample at (0.25, 0.25) of a 2x2 map: the corners weigh 9/16, 3/16, 3/16, 1/16
    x = np.array([[[[1.0, 8.0], [8.0, 9.0]]]], np.float32)
    model = _roi_align_model(dict(mode="max", output_height=1, output_width=1, sampling_ratio=1,
                                  coordinate_transformation_mode="output_half_pixel"))
    feeds = {"X": x, "R": np.array([[-0.25, -0.25, 0.75, 0.75]], np.float32), "B": np.zeros(1, np.int64)}
    got, want = _both(model, feeds)
    np.testing.assert_array_equal(got, want)
    assert got.item() == pytest.approx(1.5)   # max(9/16 * 1, 3/16 * 8, 3/16 * 8, 1/16 * 9), not 4.125


def test_backend_max_roi_pool_matches_onnxruntime():
    rng = _rng(30)
    node = helper.make_node("MaxRoiPool", ["X", "R"], ["Y"], pooled_shape=[2, 3], spatial_scale=0.5)
    model = _node_model(node, [("X", TensorProto.FLOAT), ("R", TensorProto.FLOAT)])
    for _ in range(20):
        n, h, w = int(rng.integers(1, 3)), int(rng.integers(1, 10)), int(rng.integers(1, 10))
        x = rng.standard_normal((n, 2, h, w)).astype(np.float32)
        rois = _boxes(6, n, h, w, 0.5, np.float32, int(rng.integers(1 << 30)))
        rois[::3, 1:] = np.round(rois[::3, 1:] * 2) / 2   # corners at halves after scaling
        got, want = _both(model, {"X": x, "R": rois})
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("op, attrs, inputs, match", [
    ("RoiAlign", dict(mode="mean"), 3, r"mode must be 'avg' or 'max', got 'mean'"),
    ("RoiAlign", dict(sampling_ratio=-1), 3, r"sampling_ratio must be >= 0"),
    ("RoiAlign", dict(spatial_scale=0.0), 3, r"spatial_scale must be a finite number > 0"),
    ("RoiAlign", dict(coordinate_transformation_mode="asymmetric"), 3,
     r"coordinate_transformation_mode must be one of half_pixel, output_half_pixel"),
    ("MaxRoiPool", dict(pooled_shape=[2]), 2, r"pooled_shape must be 2 ints >= 1"),
])
def test_backend_roi_attribute_errors(op, attrs, inputs, match):
    if op == "MaxRoiPool":
        node = helper.make_node(op, ["X", "R"], ["Y"], **attrs)
        types = [("X", TensorProto.FLOAT), ("R", TensorProto.FLOAT)]
    else:
        node = helper.make_node(op, ["X", "R", "B"], ["Y"], **attrs)
        types = [("X", TensorProto.FLOAT), ("R", TensorProto.FLOAT), ("B", TensorProto.INT64)]
    with pytest.raises(BackendError, match=match):
        backend.prepare(_node_model(node, types))


def test_backend_roi_input_errors():
    rep = backend.prepare(_roi_align_model(dict(output_height=2, output_width=2)))
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(BackendError, match=r"rois must be \(num_rois, 4\)"):
        rep.run([x, np.zeros((2, 5), np.float32), np.zeros(2, np.int64)])
    with pytest.raises(BackendError, match=r"batch_indices must have shape \(num_rois,\) = \(2,\)"):
        rep.run([x, np.zeros((2, 4), np.float32), np.zeros(3, np.int64)])
    with pytest.raises(BackendError, match=r"batch indices must lie in \[0, 1\)"):
        rep.run([x, np.zeros((1, 4), np.float32), np.ones(1, np.int64)])
    node = helper.make_node("RoiAlign", ["X", "R", "B"], ["Y"])
    with pytest.raises(BackendError, match=r"input rois dtype int64 is not allowed for RoiAlign-16"):
        backend.run_node(node, [x, np.zeros((1, 4), np.int64), np.zeros(1, np.int64)])
    node = helper.make_node("MaxRoiPool", ["X", "R"], ["Y"], pooled_shape=[2, 2])
    rep = backend.prepare(_node_model(node, [("X", TensorProto.FLOAT), ("R", TensorProto.DOUBLE)]))
    with pytest.raises(BackendError, match=r"rois must have X's dtype float32"):
        rep.run([x, np.zeros((1, 5), np.float64)])
