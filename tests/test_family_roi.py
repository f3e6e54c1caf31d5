"""RoI pool and RoI align against onnxruntime, the NumPy reference and finite differences.

onnxruntime's ``MaxRoiPool`` and ``RoiAlign`` (average mode, opset 16+:
``half_pixel`` = torchvision's ``aligned=True``, ``output_half_pixel`` =
``aligned=False``) are independent implementations of torchvision's
algorithms; the reference (tests/reference_family.py) transcribes
torchvision's CPU kernels loop by loop.  Boxes are drawn inside, across and
outside the map, malformed (x2 < x1) ones included.
"""

from __future__ import annotations

import numba
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import fastpool as fp
import reference_family as rf
from fastpool import PoolingError, PoolingTypeError

RNG = np.random.default_rng(99)


def boxes(K, N, H, W, dtype=np.float32, rng=RNG):
    xy = rng.uniform(-3, max(H, W) + 2, (K, 2))
    wh = rng.uniform(-2, max(H, W) * 0.8, (K, 2))
    b = rng.integers(0, N, (K, 1))
    return np.concatenate([b, xy, xy + wh], axis=1).astype(dtype)


def _session(node, inputs):
    g = helper.make_graph([node], "roi", [helper.make_tensor_value_info(n, t, None) for n, t in inputs],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    # opset 21: onnxruntime 1.31 has no opset-22 RoiAlign / MaxRoiPool kernel
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


def ort_roi_align(x, rois, ph, pw, scale, sampling_ratio, aligned):
    node = helper.make_node(
        "RoiAlign", ["X", "rois", "batch"], ["Y"], mode="avg", output_height=ph, output_width=pw,
        sampling_ratio=max(sampling_ratio, 0), spatial_scale=scale,
        coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel")
    s = _session(node, [("X", TensorProto.FLOAT), ("rois", TensorProto.FLOAT), ("batch", TensorProto.INT64)])
    return s.run(None, {"X": x, "rois": np.ascontiguousarray(rois[:, 1:]),
                        "batch": rois[:, 0].astype(np.int64)})[0]


def ort_max_roi_pool(x, rois, ph, pw, scale):
    node = helper.make_node("MaxRoiPool", ["X", "rois"], ["Y"], pooled_shape=[ph, pw], spatial_scale=scale)
    s = _session(node, [("X", TensorProto.FLOAT), ("rois", TensorProto.FLOAT)])
    return s.run(None, {"X": x, "rois": rois})[0]


fd_check = rf.fd_check


ALIGN_CASES = [(aligned, sr, scale, (ph, pw))
               for aligned in (False, True) for sr in (-1, 2) for scale, (ph, pw) in ((1.0, (3, 4)), (0.5, (2, 2)))]


@pytest.mark.parametrize("aligned, sampling_ratio, scale, out", ALIGN_CASES)
def test_roi_align_equals_onnxruntime_and_reference(aligned, sampling_ratio, scale, out):
    x = RNG.standard_normal((2, 3, 10, 12)).astype(np.float32)
    b = boxes(24, 2, 10 / scale, 12 / scale)
    got = fp.roi_align(x, b, out, scale, sampling_ratio, aligned)
    want = ort_roi_align(x, b, *out, scale, sampling_ratio, aligned)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # the reference in float32 (torchvision's arithmetic) on a few boxes; float64 tight
    np.testing.assert_allclose(got[:6], rf.roi_align(x, b[:6], *out, scale, sampling_ratio, aligned),
                               rtol=1e-6, atol=1e-6)
    x64, b64 = x.astype(np.float64), b.astype(np.float64)
    np.testing.assert_allclose(fp.roi_align(x64, b64[:6], out, scale, sampling_ratio, aligned),
                               rf.roi_align(x64, b64[:6], *out, scale, sampling_ratio, aligned),
                               rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.25])
def test_roi_pool_equals_onnxruntime_and_reference(scale):
    x = RNG.standard_normal((2, 3, 10, 12)).astype(np.float32)
    b = boxes(30, 2, 10 / scale, 12 / scale)
    got, arg = fp.roi_pool(x, b, (3, 4), scale, return_indices=True)
    np.testing.assert_array_equal(got, ort_max_roi_pool(x, b, 3, 4, scale))
    rout, rarg = rf.roi_pool(x, b, 3, 4, scale)
    np.testing.assert_array_equal(got, rout)
    np.testing.assert_array_equal(arg, rarg)


def test_roi_pool_rounds_halves_away_from_zero():
    # corners at k + 0.5: C's round goes up (away from zero), NumPy's round would go to even
    x = np.arange(2 * 8 * 8, dtype=np.float32).reshape(1, 2, 8, 8)
    b = np.array([[0, 0.5, 0.5, 2.5, 2.5], [0, 1.5, 2.5, 4.5, 5.5], [0, -0.5, -0.5, 0.5, 0.5],
                  [0, 2.5, 1.5, 3.5, 6.5]], np.float32)
    got = fp.roi_pool(x, b, 2)
    np.testing.assert_array_equal(got, ort_max_roi_pool(x, b, 2, 2, 1.0))
    np.testing.assert_array_equal(got, rf.roi_pool(x, b, 2, 2, 1.0)[0])
    # first box covers rows/cols 1..3 (round(0.5) = 1, round(2.5) = 3): its last bin holds x[3, 3]
    assert got[0, 0, 1, 1] == x[0, 0, 3, 3]


@pytest.mark.parametrize("aligned, sampling_ratio", [(False, -1), (True, 2), (True, -1)])
def test_roi_align_backward_finite_differences_and_reference(aligned, sampling_ratio):
    x = RNG.standard_normal((2, 2, 6, 7))
    b = boxes(5, 2, 6, 7, np.float64)
    kw = dict(output_size=(2, 3), spatial_scale=1.0, sampling_ratio=sampling_ratio, aligned=aligned)
    out = fp.roi_align(x, b, **kw)
    g = RNG.standard_normal(out.shape)
    gx = fp.roi_align_backward(g, x, b, **kw)
    fd_check(gx, lambda v: fp.roi_align(v, b, **kw), x, g, atol=1e-8)
    np.testing.assert_allclose(gx, rf.roi_align_backward(g, x.shape, b, 2, 3, 1.0, sampling_ratio, aligned),
                               rtol=1e-12, atol=1e-14)


def test_roi_pool_backward_finite_differences_and_reference():
    x = RNG.permutation(2 * 2 * 6 * 7).reshape(2, 2, 6, 7) / 10.0   # distinct: no ties
    b = boxes(6, 2, 6, 7, np.float64)
    out, arg = fp.roi_pool(x, b, 2, return_indices=True)
    g = RNG.standard_normal(out.shape)
    gx = fp.roi_pool_backward(g, x, b, 2)
    fd_check(gx, lambda v: fp.roi_pool(v, b, 2), x, g, atol=1e-8)
    np.testing.assert_allclose(gx, rf.roi_pool_backward(g, x.shape, b, arg), rtol=1e-14)
    np.testing.assert_array_equal(fp.roi_pool_backward(g, x, b, 2, indices=arg), gx)


def test_box_forms_layouts_dtypes_and_empty():
    x = RNG.standard_normal((3, 2, 6, 7)).astype(np.float32)
    per_image = [boxes(2, 1, 6, 7)[:, 1:], np.zeros((0, 4), np.float32), boxes(3, 1, 6, 7)[:, 1:]]
    k5 = np.concatenate([np.concatenate([np.full((len(a), 1), i, np.float32), a], 1)
                         for i, a in enumerate(per_image)])
    for fn in (fp.roi_align, fp.roi_pool):
        want = fn(x, k5, 2)
        np.testing.assert_array_equal(fn(x, per_image, 2), want)
        np.testing.assert_array_equal(fn(x, [a.tolist() for a in per_image[:1]], 2), want[:2])
        xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        np.testing.assert_array_equal(fn(xl, k5, 2, layout="NHWC").transpose(0, 3, 1, 2), want)
        half = fn(x.astype(np.float16), k5, 2)
        assert half.dtype == np.float16
        np.testing.assert_array_equal(half, fn(x.astype(np.float16).astype(np.float32), k5, 2).astype(np.float16))
        empty = fn(x, np.zeros((0, 5)), (2, 3))
        assert empty.shape == (0, 2, 2, 3)
    g = RNG.standard_normal((len(k5), 2, 2, 2))
    x, xl = x.astype(np.float64), xl.astype(np.float64)
    gl = fp.roi_align_backward(np.ascontiguousarray(g.transpose(0, 2, 3, 1)), xl, k5, 2, layout="NHWC")
    np.testing.assert_array_equal(gl.transpose(0, 3, 1, 2), fp.roi_align_backward(g, x, k5, 2))
    assert (fp.roi_align_backward(np.zeros((0, 2, 2, 2)), x, np.zeros((0, 5)), 2) == 0).all()


@pytest.mark.parametrize("serial_below", [0, 1 << 40], ids=["parallel", "serial"])
def test_results_do_not_depend_on_thread_count_or_kernel_form(serial_below, monkeypatch):
    import fastpool._cpu as cpu
    x = RNG.standard_normal((2, 4, 9, 11))
    b = boxes(20, 2, 9, 11, np.float64)
    g = RNG.standard_normal((20, 4, 3, 3))
    xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    gl = np.ascontiguousarray(g.transpose(0, 2, 3, 1))

    def run():
        return (fp.roi_align(x, b, 3), fp.roi_pool(x, b, 3), fp.roi_align_backward(g, x, b, 3),
                fp.roi_pool_backward(g, x, b, 3), fp.roi_align_backward(gl, xl, b, 3, layout="NHWC"))

    want = run()
    monkeypatch.setattr(cpu, "SERIAL_BELOW", serial_below)
    before = numba.get_num_threads()
    try:
        for n in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(n)
            for a, c in zip(run(), want):
                np.testing.assert_array_equal(a, c)
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("call, exc, words", [
    (lambda x: fp.roi_align(x, np.array([[2, 0, 0, 3, 3]]), 2), PoolingError, ["batch indices", "[0, 2)", "2"]),
    (lambda x: fp.roi_align(x, np.array([[0.5, 0, 0, 3, 3]]), 2), PoolingError, ["batch indices", "integers", "0.5"]),
    (lambda x: fp.roi_pool(x, np.array([[0, 0, np.inf, 3, 3]]), 2), PoolingError, ["coordinates", "finite", "inf"]),
    (lambda x: fp.roi_pool(x, np.array([[0, 0, 3, 3]]), 2), PoolingError, ["boxes", "(K, 5)", "(1, 4)"]),
    (lambda x: fp.roi_pool(x, np.array([[0, 0, 0, 3, 3]]), 2, spatial_scale=0), PoolingError,
     ["spatial_scale", "> 0"]),
    (lambda x: fp.roi_align(x, np.array([[0, 0, 0, 3, 3]]), 0), PoolingError, ["output_size", ">= 1"]),
    (lambda x: fp.roi_align(x, np.array([[0, 0, 0, 3, 3]]), 2, sampling_ratio=1.5), PoolingTypeError,
     ["sampling_ratio"]),
    (lambda x: fp.roi_align(x.astype(np.int32), np.array([[0, 0, 0, 3, 3]]), 2), PoolingTypeError, ["dtype"]),
    (lambda x: fp.roi_align(x[0], np.array([[0, 0, 0, 3, 3]]), 2), PoolingError, ["4-D"]),
    (lambda x: fp.roi_pool_backward(np.ones((1, 3, 3, 3)), x, np.array([[0, 0, 0, 3, 3]]), 2), PoolingError,
     ["grad_output", "(1, 3, 2, 2)"]),
])
def test_errors(call, exc, words):
    x = np.ones((2, 3, 5, 5))
    with pytest.raises(exc) as e:
        call(x)
    assert "roi_" in str(e.value)
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize("fn, bw", [(fp.roi_align, fp.roi_align_backward), (fp.roi_pool, fp.roi_pool_backward)])
def test_channels_first_direct_and_transposed_routes_agree(fn, bw):
    # few boxes run the channels-first kernels directly; many boxes go through the
    # channels-last kernels on a transposed copy; box 0 must come out the same either way
    x = RNG.standard_normal((2, 4, 30, 30))
    many = boxes(200, 2, 30, 30, np.float64)
    one = many[:1]
    np.testing.assert_array_equal(fn(x, one, 3), fn(x, many, 3)[:1])
    g = np.zeros((200, 4, 3, 3))
    g[0] = RNG.standard_normal((4, 3, 3))
    np.testing.assert_array_equal(bw(g[:1], x, one, 3), bw(g, x, many, 3))
