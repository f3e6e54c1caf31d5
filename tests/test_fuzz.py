"""Fuzzing every public function, its backward pass, and the layers.

Three properties, each driven by hypothesis (budgets from the profiles in
conftest.py; ``FASTPOOL_HYPOTHESIS_PROFILE=long`` for the exploratory run):

* Memory forms.  Every operator, given its inputs in a random memory form
  (Fortran order, negative strides, every-other-element views, transposed
  views, read-only, big-endian, zero-stride broadcasts, lists) and with empty
  batch or channel axes, returns exactly what it returns for the same values
  as a contiguous native-order array, leaves every input unchanged, and agrees
  with the NumPy references (tests/reference.py, tests/reference_family.py),
  with the output dtype and shape the docs give.
* One error type.  A valid call with one argument replaced by a hostile value
  (wrong type, huge, negative, NaN, ragged, wrong shape, out-of-range index,
  unsupported dtype...) either works or raises ``fastpool.PoolingError``;
  nothing else escapes (no Numba typing error, IndexError, OverflowError...),
  and no input is modified.
* Layers: hostile constructor arguments and inputs behave the same way.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import event, given, note
from hypothesis import strategies as st

import fastpool as fp
import reference as ref
import reference_family as reff
from fastpool import PoolingError
from fastpool import layers as L

FLOATS = ("float64", "float32", "float16")
INTS = ("int8", "uint8", "int32", "int64")
FORMS = ("contiguous", "fortran", "reversed", "strided", "transposed", "readonly", "bigendian",
         "broadcast", "list")

# ============================================================================ memory forms


def as_form(x: np.ndarray, form: str):
    """The values of ``x`` in another memory form ("broadcast" repeats the first row)."""
    x = np.asarray(x)
    if form == "contiguous" or x.ndim == 0:
        return np.ascontiguousarray(x)
    if form == "fortran":
        return np.asfortranarray(x)
    if form == "reversed":  # negative strides on every axis
        flip = (slice(None, None, -1),) * x.ndim
        return np.ascontiguousarray(x[flip])[flip]
    if form == "strided":   # every other element of a bigger buffer
        big = np.zeros(x.shape[:-1] + (2 * x.shape[-1] + 1,), x.dtype)
        big[..., 1::2] = x
        return big[..., 1::2]
    if form == "transposed":  # a view whose axes run in reverse memory order
        perm = tuple(range(x.ndim))[::-1]
        return np.ascontiguousarray(x.transpose(perm)).transpose(perm)
    if form == "readonly":
        y = x.copy()
        y.flags.writeable = False
        return y
    if form == "bigendian":
        return x.astype(x.dtype.newbyteorder(">"))
    if form == "broadcast":  # zero stride along axis 0
        return np.broadcast_to(x[:1], x.shape) if x.shape[0] > 0 else x
    if form == "list":
        return x.tolist() if x.size else x
    raise AssertionError(form)


def native(a) -> np.ndarray:
    """The contiguous native-order array a form stands for."""
    a = np.asarray(a)
    dt = a.dtype.newbyteorder("=") if a.dtype.byteorder not in "=|" else a.dtype
    return np.ascontiguousarray(a, dtype=dt)


def snapshot(a):
    return None if isinstance(a, list) else (np.array(a, copy=True), a.flags.writeable)


def assert_unchanged(a, snap):
    if snap is None:
        return
    before, writeable = snap
    assert a.flags.writeable == writeable
    assert a.dtype == before.dtype and a.shape == before.shape
    assert np.asarray(a).tobytes() == before.tobytes(), "an input array was modified"


def tolerance(dtype):
    dt = np.dtype(dtype)
    return {np.dtype(np.float64): (1e-9, 1e-12), np.dtype(np.float32): (3e-5, 3e-6),
            np.dtype(np.float16): (4e-3, 4e-3)}.get(dt, (0, 0))


def assert_close(actual, expected, dtype, what):
    rtol, atol = tolerance(dtype)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    if rtol == 0:
        np.testing.assert_array_equal(actual, expected, err_msg=what)
    else:
        np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64),
                                   rtol=rtol, atol=atol, err_msg=what)


def assert_same(a, b, what):
    """Bit-for-bit equal results (same dtype, shape, values, NaN positions)."""
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for i, (u, v) in enumerate(zip(a, b)):
            assert_same(u, v, f"{what}[{i}]")
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, (what, a.dtype, b.dtype, a.shape, b.shape)
    assert a.tobytes() == b.tobytes(), f"{what}: result depends on the input's memory form"


def make_data(rng, shape, dtype, kind="randn"):
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        lo, hi = (0, 9) if kind == "positive" else (max(info.min, -9), min(info.max, 9))
        return rng.integers(lo, hi, size=shape, endpoint=True).astype(dt)
    x = rng.standard_normal(shape)
    if kind == "positive":
        x = np.abs(x)
    elif kind == "special" and x.size:
        for v in (np.nan, np.inf, -np.inf):
            x.reshape(-1)[rng.integers(0, x.size)] = v
    elif kind == "ties":
        x = np.round(x)
    return x.astype(dt)


def run_forms(call, arrays: dict, forms: dict):
    """Run ``call(**arrays in their forms)`` and ``call(**native arrays)``: the same
    result, inputs unchanged.  Returns the result, or the PoolingError raised by both."""
    formed = {k: as_form(v, forms.get(k, "contiguous")) for k, v in arrays.items()}
    plain = {k: native(v) for k, v in formed.items()}
    snaps = {k: snapshot(v) for k, v in formed.items()}
    try:
        want = call(**plain)
    except PoolingError as e:
        with pytest.raises(PoolingError):
            call(**formed)
        return e
    got = call(**formed)
    for k, v in formed.items():
        assert_unchanged(v, snaps[k])
    assert_same(got, want, "form vs contiguous")
    return want


memory_forms = st.sampled_from(FORMS)


@st.composite
def window_geometry(draw, nd):
    sizes = tuple(draw(st.integers(1, 6 if nd < 3 else 4)) for _ in range(nd))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = draw(st.none() | st.tuples(*[st.integers(1, 3)] * nd))
    dilation = draw(st.sampled_from([1, 2]))
    padding = draw(st.sampled_from([0, 1, "same", "valid"]) |
                   st.tuples(*[st.tuples(st.integers(0, 2), st.integers(0, 2))] * nd))
    ceil_mode = draw(st.booleans())
    return sizes, kernel, stride, padding, dilation, ceil_mode


@st.composite
def lead_axes(draw, batched_only=False):
    batched = batched_only or draw(st.booleans())
    n = draw(st.sampled_from([1, 2, 2, 2, 0]))
    c = draw(st.sampled_from([1, 2, 3, 3, 0]))
    return (n, c) if batched else (c,)


def cl(a, nd, last):
    return ref.to_channels_last(a, nd) if last else a


def cf(a, nd, last):
    return ref.to_channels_first(a, nd) if last else a


# ============================================================================ core operators


CORE_OPS = ("max", "avg", "lp", "adaptive_avg", "adaptive_max", "global_avg", "global_max", "global_lp")


@given(st.data())
def test_core_ops_any_memory_form(data):
    """Forward and backward of the core operators: memory forms, reference, dtype rules."""
    op = data.draw(st.sampled_from(CORE_OPS), "op")
    is_global = op.startswith("global")
    nd = data.draw(st.integers(1, 3), "nd")
    dtype = data.draw(st.sampled_from(FLOATS + (INTS if op in ("max", "avg", "lp", "adaptive_avg",
                                                               "adaptive_max", "global_max") else ())),
                      "dtype")
    last = data.draw(st.booleans(), "channels_last")
    layout = data.draw(st.sampled_from(["channels_last", "NHWC", "nwc"] if last else
                                       ["channels_first", "NCHW", "ncdhw"]), "layout")
    lead = data.draw(lead_axes(batched_only=is_global), "lead")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), "seed"))
    kind = data.draw(st.sampled_from(["randn", "ties", "special"] if dtype in FLOATS else ["randn"]))
    kw, ref_fwd, ref_bwd, fn_name = {}, None, None, None
    if op in ("max", "avg", "lp"):
        sizes, k, s, p, d, c = data.draw(window_geometry(nd), "geometry")
        geo = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=c)
        rgeo = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=c)
        fn_name = f"{op}_pool{nd}d"
        if op == "max":
            want_idx = data.draw(st.booleans(), "return_indices")
            kw = dict(geo, return_indices=want_idx)
            ref_fwd = lambda xr: ref.max_pool(xr, nd, **rgeo)  # noqa: E731
            ref_bwd = lambda g, xr: ref.max_pool_backward(g, xr, nd, **rgeo)  # noqa: E731
        elif op == "avg":
            cip = data.draw(st.booleans(), "count_include_pad")
            dov = data.draw(st.none() | st.integers(1, 5), "divisor_override")
            kw = dict(geo, count_include_pad=cip, divisor_override=dov)
            ref_fwd = lambda xr: ref.avg_pool(xr, nd, **rgeo, count_include_pad=cip, divisor_override=dov)  # noqa: E731
            ref_bwd = lambda g, xr: ref.avg_pool_backward(g, xr, nd, **rgeo, count_include_pad=cip,  # noqa: E731
                                                          divisor_override=dov)
        else:
            pnorm = data.draw(st.sampled_from([1.0, 2.0, 3.0, 1.5]), "p")
            mode = data.draw(st.sampled_from(["onnx", "torch", "mean"]), "lp mode")
            kw = dict(norm_type=pnorm, kernel_size=k, stride=s, ceil_mode=c, padding=p, dilation=d,
                      torch_compat=mode == "torch", power_mean=mode == "mean")
            ref_fwd = lambda xr: ref.lp_pool(xr, nd, pnorm, **rgeo, mode=mode)  # noqa: E731
            ref_bwd = lambda g, xr: ref.lp_pool_backward(g, xr, nd, pnorm, **rgeo, mode=mode)  # noqa: E731
    elif op.startswith("adaptive"):
        sizes = tuple(data.draw(st.integers(1, 6 if nd < 3 else 4)) for _ in range(nd))
        osz = data.draw(st.integers(1, 5) | st.tuples(*[st.none() | st.integers(1, 7)] * nd), "output_size")
        fn_name = f"{op}_pool{nd}d"
        if op == "adaptive_max":
            want_idx = data.draw(st.booleans(), "return_indices")
            kw = dict(output_size=osz, return_indices=want_idx)
            ref_fwd = lambda xr: ref.adaptive_max_pool(xr, nd, osz)  # noqa: E731
            ref_bwd = lambda g, xr: ref.adaptive_max_pool_backward(g, xr, nd, osz)  # noqa: E731
        else:
            kw = dict(output_size=osz)
            ref_fwd = lambda xr: ref.adaptive_avg_pool(xr, nd, osz)  # noqa: E731
            ref_bwd = lambda g, xr: ref.adaptive_avg_pool_backward(g, xr, nd, osz)  # noqa: E731
    else:
        sizes = tuple(data.draw(st.integers(1, 6 if nd < 3 else 4)) for _ in range(nd))
        keep = data.draw(st.booleans(), "keepdims")
        fn_name = f"{op}_pool"
        if op == "global_max":
            want_idx = data.draw(st.booleans(), "return_indices")
            kw = dict(keepdims=keep, return_indices=want_idx)
            ref_fwd = lambda xr: ref.global_max_pool(xr, keep)  # noqa: E731
            ref_bwd = lambda g, xr: ref.global_max_pool_backward(g, xr, keep)  # noqa: E731
        elif op == "global_avg":
            kw = dict(keepdims=keep)
            ref_fwd = lambda xr: ref.global_avg_pool(xr, keep)  # noqa: E731
            ref_bwd = lambda g, xr: ref.global_avg_pool_backward(g, xr, keep)  # noqa: E731
        else:
            pnorm = data.draw(st.sampled_from([1.0, 2.0, 3.0]), "p")
            kw = dict(norm_type=pnorm, keepdims=keep)
            ref_fwd = lambda xr: ref.global_lp_pool(xr, pnorm, keep)  # noqa: E731
            ref_bwd = lambda g, xr: ref.global_lp_pool_backward(g, xr, pnorm, keep)  # noqa: E731
    fn = getattr(fp, fn_name)
    bwd = getattr(fp, fn_name + "_backward")
    x_cf = make_data(rng, lead + sizes, dtype, kind)
    x = np.ascontiguousarray(cl(x_cf, nd, last))
    xform = data.draw(memory_forms, "x form")
    note(f"{fn_name}({x.shape} {dtype}, {kw}, layout={layout}, x as {xform})")
    res = run_forms(lambda x: fn(x, **kw, layout=layout), dict(x=x), dict(x=xform))
    xr = cf(native(as_form(x, xform)), nd, last)   # channels-first values the call saw
    dtype = str(xr.dtype)   # a list form of float16 or int8 data arrives as float64 / int64
    try:
        exp = ref_fwd(xr)
    except ref.RefError:
        event("reference rejects")
        assert isinstance(res, PoolingError), "the reference rejects these arguments, fastpool did not"
        return
    assert not isinstance(res, PoolingError), f"fastpool rejected arguments the reference accepts: {res}"
    event(f"{op}: computed")
    keep_dtype = op in ("max", "adaptive_max", "global_max")
    out_dtype = np.dtype(dtype) if keep_dtype or dtype in FLOATS else np.dtype(np.float64)
    values = res[0] if isinstance(res, tuple) else res
    exp_values = exp[0] if isinstance(exp, tuple) else exp
    assert values.dtype == out_dtype
    squeezed = is_global and not keep   # (N, C) in either layout
    if not squeezed:
        exp_values = cl(exp_values, nd, last)
    assert_close(values, exp_values, out_dtype, f"{fn_name} forward")
    if isinstance(res, tuple):
        assert res[1].dtype == np.int64
        np.testing.assert_array_equal(res[1], exp[1] if squeezed else cl(exp[1], nd, last))
    # ---------------------------------------------------------------- backward
    if dtype not in FLOATS:
        with pytest.raises(fp.PoolingTypeError, match="floating"):
            bwd(np.zeros(values.shape), x, **kw, layout=layout)
        return
    g = make_data(rng, values.shape, dtype)
    gform = data.draw(memory_forms, "grad form")
    extra = {}
    if isinstance(res, tuple) and data.draw(st.booleans(), "pass indices"):
        extra["indices"] = res[1]
    gx = run_forms(lambda g, x: bwd(g, x, **kw, layout=layout, **extra), dict(g=g, x=x),
                   dict(g=gform, x=xform))
    assert not isinstance(gx, PoolingError), gx
    assert gx.dtype == np.dtype(dtype) and gx.shape == x.shape
    gref = native(as_form(g, gform))
    if not squeezed:
        gref = cf(gref, nd, last)
    if kind == "special" and op in ("lp", "global_lp"):
        return   # d/dx of an Lp norm holding an infinity is not defined; forms agree (above)
    if xr.size == 0:
        return   # nothing to compare (and the reference's scatter loops need a plane)
    exp_gx = cl(ref_bwd(gref, xr), nd, last)
    if op in ("lp", "global_lp") and dtype == "float16":
        rtol = 2e-2
        np.testing.assert_allclose(gx.astype(np.float64), exp_gx, rtol=rtol, atol=rtol)
    else:
        assert_close(gx, exp_gx, dtype, f"{fn_name} backward")


# ============================================================================ the family


FAMILY_OPS = ("max_unpool", "fractional", "stochastic_train", "stochastic_infer", "mixed", "spp",
              "roi_pool", "roi_align")


def _boxes(rng, n_images, H, W, k):
    b = rng.integers(0, max(n_images, 1), size=k).astype(np.float64)
    x1 = rng.uniform(-1, W, size=k)
    y1 = rng.uniform(-1, H, size=k)
    x2 = x1 + rng.uniform(0, W, size=k)
    y2 = y1 + rng.uniform(0, H, size=k)
    return np.stack([b, x1, y1, x2, y2], axis=1)


@given(st.data())
def test_family_any_memory_form(data):
    op = data.draw(st.sampled_from(FAMILY_OPS), "op")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), "seed"))
    dtype = data.draw(st.sampled_from(FLOATS), "dtype")
    last = data.draw(st.booleans(), "channels_last")
    layout = "channels_last" if last else "channels_first"
    xform = data.draw(memory_forms, "x form")
    gform = data.draw(memory_forms, "grad form")
    note(f"{op} {dtype} {layout} x as {xform}, grad as {gform}")
    if op in ("roi_pool", "roi_align"):
        N, C = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3))
        H, W = data.draw(st.integers(1, 7)), data.draw(st.integers(1, 7))
        K = data.draw(st.integers(0, 4), "boxes")
        ph, pw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
        scale = data.draw(st.sampled_from([1.0, 0.5, 2.0]))
        x_cf = make_data(rng, (N, C, H, W), dtype)
        boxes = _boxes(rng, N, H, W, K)
        x = np.ascontiguousarray(cl(x_cf, 2, last))
        bform = data.draw(memory_forms, "boxes form")
        T = np.float32 if dtype == "float16" else np.dtype(dtype).type   # fastpool's arithmetic
        if op == "roi_pool":
            kw = dict(output_size=(ph, pw), spatial_scale=scale, layout=layout)
            res = run_forms(lambda x, boxes: fp.roi_pool(x, boxes, **kw, return_indices=True),
                            dict(x=x, boxes=boxes), dict(x=xform, boxes=bform))
            boxes = native(as_form(boxes, bform)).reshape(-1, 5)
            xr = cf(native(as_form(x, xform)), 2, last)
            exp, arg = reff.roi_pool(xr.astype(T), boxes.astype(T), ph, pw, scale)
            assert_close(res[0], cl(exp, 2, last), dtype, "roi_pool")
            np.testing.assert_array_equal(res[1], cl(arg, 2, last))
            g = make_data(rng, res[0].shape, dtype)
            gx = run_forms(lambda g, x: fp.roi_pool_backward(g, x, boxes, **kw), dict(g=g, x=x),
                           dict(g=gform, x=xform))
            exp_gx = reff.roi_pool_backward(cf(native(as_form(g, gform)), 2, last), xr.shape, boxes, arg)
            assert_close(gx, cl(exp_gx, 2, last), dtype, "roi_pool backward")
        else:
            sr = data.draw(st.sampled_from([-1, 1, 2]), "sampling_ratio")
            al = data.draw(st.booleans(), "aligned")
            kw = dict(output_size=(ph, pw), spatial_scale=scale, sampling_ratio=sr, aligned=al, layout=layout)
            res = run_forms(lambda x, boxes: fp.roi_align(x, boxes, **kw), dict(x=x, boxes=boxes),
                            dict(x=xform, boxes=bform))
            boxes = native(as_form(boxes, bform)).reshape(-1, 5)
            xr = cf(native(as_form(x, xform)), 2, last)
            exp = reff.roi_align(xr.astype(T), boxes.astype(T), ph, pw, scale, sr, al)
            assert_close(res, cl(exp, 2, last), dtype, "roi_align")
            g = make_data(rng, res.shape, dtype)
            gx = run_forms(lambda g, x: fp.roi_align_backward(g, x, boxes, **kw), dict(g=g, x=x),
                           dict(g=gform, x=xform))
            exp_gx = reff.roi_align_backward(cf(native(as_form(g, gform)), 2, last), xr.shape, boxes,
                                             ph, pw, scale, sr, al, dtype=T)
            assert_close(gx, cl(exp_gx, 2, last), dtype, "roi_align backward")
        return
    nd = 2 if op == "spp" else data.draw(st.integers(2 if op == "fractional" else 1, 3), "nd")
    lead = data.draw(lead_axes(batched_only=op in ("spp",)), "lead")
    sizes = tuple(data.draw(st.integers(2, 6 if nd < 3 else 4)) for _ in range(nd))
    kind = "positive" if op.startswith("stochastic") else "randn"
    x_cf = make_data(rng, lead + sizes, dtype, kind)
    x = np.ascontiguousarray(cl(x_cf, nd, last))

    def xr_of(form):
        return cf(native(as_form(x, form)), nd, last)

    if op == "max_unpool":
        k = data.draw(st.integers(1, 2), "kernel")
        y, idx = getattr(fp, f"max_pool{nd}d")(x, k, layout=layout, return_indices=True)
        # back to the input's size (the default, (n // k) * k, is smaller for odd sizes and
        # then cannot hold every index: a PoolingError, as in PyTorch)
        osp = sizes
        iform = data.draw(memory_forms, "indices form")
        fn = getattr(fp, f"max_unpool{nd}d")
        res = run_forms(lambda y, idx: fn(y, idx, k, output_size=osp, layout=layout), dict(y=y, idx=idx),
                        dict(y=xform, idx=iform))
        yr = cf(native(as_form(y, xform)), nd, last)
        exp = reff.max_unpool(yr, cf(native(as_form(idx, iform)), nd, last), osp)
        assert_close(res, cl(exp, nd, last), dtype, "max_unpool")
        g = make_data(rng, res.shape, dtype)
        gy = run_forms(lambda g, y: getattr(fp, f"max_unpool{nd}d_backward")(g, y, idx, k, output_size=osp,
                                                                            layout=layout),
                       dict(g=g, y=y), dict(g=gform, y=xform))
        exp_g = reff.max_unpool_backward(cf(native(as_form(g, gform)), nd, last), cf(idx, nd, last), nd)
        assert_close(gy, cl(exp_g, nd, last), dtype, "max_unpool backward")
        return
    if op == "fractional":
        k = data.draw(st.integers(1, 2), "kernel")
        osz = tuple(data.draw(st.integers(1, n - k + 1)) for n in sizes)
        nb = lead[0] if len(lead) == 2 else 1
        C = lead[-1]
        samples = rng.random((nb, C, nd))
        fn = getattr(fp, f"fractional_max_pool{nd}d")
        kw = dict(output_size=osz, samples=samples, layout=layout)
        res = run_forms(lambda x: fn(x, k, **kw, return_indices=True), dict(x=x), dict(x=xform))
        xr = xr_of(xform)
        xr4 = xr if len(lead) == 2 else xr[None]
        T = np.float32 if dtype in ("float16", "float32") else np.float64
        exp, eidx = reff.fractional_max_pool(xr4, (k,) * nd, osz, samples.astype(T))
        if len(lead) == 1:
            exp, eidx = exp[0], eidx[0]
        assert_close(res[0], cl(exp, nd, last), dtype, "fractional_max_pool")
        np.testing.assert_array_equal(res[1], cl(eidx, nd, last))
        g = make_data(rng, res[0].shape, dtype)
        gx = run_forms(lambda g, x: getattr(fp, f"fractional_max_pool{nd}d_backward")(g, x, k, **kw),
                       dict(g=g, x=x), dict(g=gform, x=xform))
        # scatter of the gradient at the reference's argmax, independently of fastpool
        gcf = cf(native(as_form(g, gform)), nd, last)
        exp_gx = np.zeros(xr.shape)
        planes = exp_gx.reshape(-1, int(np.prod(sizes)))
        gi = eidx.reshape(planes.shape[0], int(np.prod(osz)))
        gv = gcf.astype(np.float64).reshape(gi.shape)
        for r in range(planes.shape[0]):
            np.add.at(planes[r], gi[r], gv[r])
        assert_close(gx, cl(exp_gx, nd, last), dtype, "fractional backward")
        return
    k = data.draw(st.integers(1, 2), "kernel")
    s = data.draw(st.integers(1, 2), "stride")
    pad = data.draw(st.integers(0, k // 2), "padding")
    if op == "stochastic_infer":
        fn = getattr(fp, f"stochastic_pool{nd}d")
        res = run_forms(lambda x: fn(x, k, s, pad, training=False, layout=layout), dict(x=x), dict(x=xform))
        exp = reff.stochastic_inference(xr_of(xform), nd, (k,) * nd, (s,) * nd, (pad,) * nd)
        assert_close(res, cl(exp, nd, last), dtype, "stochastic inference")
        g = make_data(rng, res.shape, dtype)
        run_forms(lambda g, x: getattr(fp, f"stochastic_pool{nd}d_backward")(g, x, k, s, pad, training=False,
                                                                            layout=layout),
                  dict(g=g, x=x), dict(g=gform, x=xform))
        return
    if op == "stochastic_train":
        seed = int(rng.integers(0, 2**31))
        fn = getattr(fp, f"stochastic_pool{nd}d")
        out, idx = run_forms(lambda x: fn(x, k, s, pad, rng=np.random.default_rng(seed), return_indices=True,
                                          layout=layout), dict(x=x), dict(x=xform))
        # every output is the value of the cell it names
        xr = xr_of(xform)
        planes = xr.reshape(-1, int(np.prod(sizes)))
        ocf, icf = cf(out, nd, last), cf(idx, nd, last)
        icf = icf.reshape(planes.shape[0], int(np.prod(icf.shape[icf.ndim - nd:])))
        picked = np.take_along_axis(planes, icf, axis=1)
        np.testing.assert_array_equal(ocf.reshape(picked.shape), picked)
        g = make_data(rng, out.shape, dtype)
        gx = run_forms(lambda g, x: getattr(fp, f"stochastic_pool{nd}d_backward")(g, x, k, s, pad, indices=idx,
                                                                                 layout=layout),
                       dict(g=g, x=x), dict(g=gform, x=xform))
        exp_gx = np.zeros(planes.shape)
        gv = cf(native(as_form(g, gform)), nd, last).astype(np.float64).reshape(icf.shape)
        for r in range(planes.shape[0]):
            np.add.at(exp_gx[r], icf[r], gv[r])
        assert_close(gx, cl(exp_gx.reshape(xr.shape), nd, last), dtype, "stochastic backward")
        return
    if op == "mixed":
        C = lead[-1]
        alpha = data.draw(st.sampled_from(["scalar", "per_channel"]), "alpha")
        a = 0.3 if alpha == "scalar" else rng.uniform(-0.5, 1.5, size=C)
        fn = getattr(fp, f"mixed_pool{nd}d")
        res = run_forms(lambda x: fn(x, k, s, pad, alpha=a, layout=layout), dict(x=x), dict(x=xform))
        exp = reff.mixed_pool(xr_of(xform), nd, k, s, pad, a)
        assert_close(res, cl(exp, nd, last), dtype, "mixed_pool")
        g = make_data(rng, res.shape, dtype)
        gx, ga = run_forms(lambda g, x: getattr(fp, f"mixed_pool{nd}d_backward")(g, x, k, s, pad, alpha=a,
                                                                                layout=layout),
                           dict(g=g, x=x), dict(g=gform, x=xform))
        xr = xr_of(xform)
        if xr.size == 0:
            return   # the reference's scatter loops need a plane
        gcf = cf(native(as_form(g, gform)), nd, last).astype(np.float64)
        aa = np.asarray(a, np.float64).reshape((-1,) + (1,) * nd) if alpha != "scalar" else a
        exp_gx = (ref.max_pool_backward(gcf * aa, xr, nd, k, s, pad)
                  + ref.avg_pool_backward(gcf * (1 - aa), xr, nd, k, s, pad))
        assert_close(gx, cl(exp_gx, nd, last), dtype, "mixed backward x")
        diff = gcf * (ref.max_pool(xr, nd, k, s, pad)[0].astype(np.float64) - ref.avg_pool(xr, nd, k, s, pad))
        exp_ga = diff.sum() if alpha == "scalar" else diff.sum(axis=tuple(i for i in range(diff.ndim)
                                                                         if i != diff.ndim - nd - 1))
        np.testing.assert_allclose(np.asarray(ga, np.float64), exp_ga, rtol=2e-2 if dtype == "float16" else 1e-4,
                                   atol=5e-2 if dtype == "float16" else 1e-4)
        return
    # spatial pyramid
    levels = tuple(data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=3), "levels"))
    mode = data.draw(st.sampled_from(["max", "avg"]), "mode")
    res = run_forms(lambda x: fp.spatial_pyramid_pool(x, levels, mode=mode, layout=layout), dict(x=x),
                    dict(x=xform))
    xr = xr_of(xform)
    C = lead[-1]
    assert res.shape == lead[:-1] + (C * sum(v * v for v in levels),)
    if xr.size:   # the reference's flattening needs a plane
        assert_close(res, reff.spatial_pyramid_pool(xr, levels, mode), dtype, "spatial_pyramid_pool")
    g = make_data(rng, res.shape, dtype)
    run_forms(lambda g, x: fp.spatial_pyramid_pool_backward(g, x, levels, mode=mode, layout=layout),
              dict(g=g, x=x), dict(g=gform, x=xform))


# ============================================================================ hostile arguments


class _Index:
    def __index__(self):
        return 2


class _BadArray:
    def __array__(self, *a, **k):
        raise RuntimeError("refuses to become an array")


class _BadSequence:
    def __len__(self):
        raise RuntimeError("no length")

    def __iter__(self):
        raise RuntimeError("no iteration")


HOSTILE = [
    0, -1, 2, 2**62 + 1, 2**63, 2**70, -(2**63), 1.5, float("nan"), float("inf"), -float("inf"), True, None,
    "2", "same", "x", b"x", (), [], (2,), (2, 2, 2, 2), ((1, 1),), ((1, 2, 3), (1, 2)), (-1, 2), (2, -1),
    np.int64(2), np.float64(2.0), np.array(2), np.array([2, 2]), np.array([[1, 1], [1, 1]]), np.array([]),
    _Index(), _BadArray(), _BadSequence(), {"a": 1}, {2}, object(), (None, 2), [2.0, 2], 1e300, complex(1, 1),
    np.array([np.nan]), np.zeros((2, 3, 3, 3)), np.zeros((2, 3, 3, 3), np.int64),
    np.full((2, 3, 3, 3), -5, np.int64), np.full((2, 3, 3, 3), 2**40, np.int64), np.zeros((2, 3, 3, 3), ">f4"),
    np.zeros((2, 3, 3, 3), "V8"), np.zeros((2, 3, 3, 3), object), np.zeros((2, 3, 3, 3), np.complex64),
    np.zeros((2, 3, 3, 3), bool), np.zeros((2, 3, 3, 3), "datetime64[s]"), np.array(["a"]), np.zeros(0),
    np.zeros((0, 5)), np.zeros((3, 5)), np.zeros((2, 3, 0, 3)), np.zeros((1, 1, 1, 1, 1, 1)),
    np.array([[0, 0, 0, 2, 2]], float), np.array([[5, 0, 0, 2, 2]], float), np.array([[0.5, 0, 0, 2, 2]]),
    np.array([[0, np.nan, 0, 2, 2]]), np.array([[0, 1e30, 0, 1e31, 2]]), np.array([[-1, 0, 0, 2, 2]]),
    np.array([[0, -1e300, -1e300, 1e300, 1e300]]), [np.zeros((1, 4))], [np.zeros((1, 3))],
    np.random.default_rng(0), np.random.RandomState(0), np.ma.masked_array(np.zeros((2, 3, 6, 6))),
    np.full((2, 3, 2), 0.5), np.full((2, 3, 2), 1.0), np.full((2, 3, 2), -0.1), np.full((2, 3, 2), np.nan),
    np.full((2, 3, 2, 2), 99, np.int64), np.full((2, 3, 2, 2), -2, np.int64), [[1, [2]]], "channels_last",
    "NHWC", "avg", "max",
]


@functools.lru_cache(maxsize=None)
def base_calls():
    rng = np.random.default_rng(0)
    xs = {1: rng.random((2, 3, 6)), 2: rng.random((2, 3, 6, 6)), 3: rng.random((2, 3, 4, 4, 4))}
    c = {}
    for nd, x in xs.items():
        y, idx = getattr(fp, f"max_pool{nd}d")(x, 2, return_indices=True)
        ya, ia = getattr(fp, f"adaptive_max_pool{nd}d")(x, 2, return_indices=True)
        c[f"max_pool{nd}d"] = dict(x=x, kernel_size=2, stride=None, padding=0, dilation=1, ceil_mode=False,
                                   return_indices=False, layout="channels_first")
        c[f"max_pool{nd}d_backward"] = dict(grad_output=y, **c[f"max_pool{nd}d"], indices=idx)
        c[f"avg_pool{nd}d"] = dict(x=x, kernel_size=2, stride=None, padding=0, ceil_mode=False,
                                   count_include_pad=True, divisor_override=None, dilation=1,
                                   layout="channels_first")
        c[f"avg_pool{nd}d_backward"] = dict(grad_output=y, **c[f"avg_pool{nd}d"], indices=None)
        c[f"lp_pool{nd}d"] = dict(x=x, norm_type=2.0, kernel_size=2, stride=None, ceil_mode=False, padding=0,
                                  dilation=1, torch_compat=False, power_mean=False, layout="channels_first")
        c[f"lp_pool{nd}d_backward"] = dict(grad_output=y, **c[f"lp_pool{nd}d"], indices=None)
        c[f"adaptive_avg_pool{nd}d"] = dict(x=x, output_size=2, layout="channels_first")
        c[f"adaptive_avg_pool{nd}d_backward"] = dict(grad_output=ya, **c[f"adaptive_avg_pool{nd}d"], indices=None)
        c[f"adaptive_max_pool{nd}d"] = dict(x=x, output_size=2, return_indices=False, layout="channels_first")
        c[f"adaptive_max_pool{nd}d_backward"] = dict(grad_output=ya, **c[f"adaptive_max_pool{nd}d"], indices=ia)
        c[f"max_unpool{nd}d"] = dict(x=y, indices=idx, kernel_size=2, stride=None, padding=0, output_size=None,
                                     layout="channels_first")
        c[f"max_unpool{nd}d_backward"] = dict(grad_output=np.ones_like(x), **c[f"max_unpool{nd}d"])
        ys, isd = getattr(fp, f"stochastic_pool{nd}d")(x, 2, return_indices=True, rng=np.random.default_rng(0))
        c[f"stochastic_pool{nd}d"] = dict(x=x, kernel_size=2, stride=None, padding=0, training=True,
                                          rng=np.random.default_rng(0), return_indices=False,
                                          layout="channels_first")
        c[f"stochastic_pool{nd}d_backward"] = dict(grad_output=ys, **c[f"stochastic_pool{nd}d"], indices=isd)
        c[f"mixed_pool{nd}d"] = dict(x=x, kernel_size=2, stride=None, padding=0, alpha=0.5,
                                     layout="channels_first")
        c[f"mixed_pool{nd}d_backward"] = dict(grad_output=y, **c[f"mixed_pool{nd}d"], indices=None)
        if nd >= 2:
            smp = np.full((2, 3, nd), 0.3)
            c[f"fractional_max_pool{nd}d"] = dict(x=x, kernel_size=2, output_size=2, output_ratio=None,
                                                  return_indices=False, samples=smp, rng=None,
                                                  layout="channels_first")
            yf, fi = getattr(fp, f"fractional_max_pool{nd}d")(x, 2, output_size=2, return_indices=True, samples=smp)
            c[f"fractional_max_pool{nd}d_backward"] = dict(grad_output=yf, **c[f"fractional_max_pool{nd}d"],
                                                           indices=fi)
    x = xs[2]
    for k in ("global_avg_pool", "global_max_pool", "global_lp_pool"):
        c[k] = dict(x=x, keepdims=True, layout="channels_first")
        c[k + "_backward"] = dict(grad_output=np.ones((2, 3, 1, 1)), x=x, keepdims=True,
                                  layout="channels_first", indices=None)
    c["global_lp_pool"]["norm_type"] = c["global_lp_pool_backward"]["norm_type"] = 2.0
    c["global_max_pool"]["return_indices"] = False
    c["spatial_pyramid_pool"] = dict(x=x, levels=(1, 2), mode="max", layout="channels_first")
    c["spatial_pyramid_pool_backward"] = dict(grad_output=np.ones((2, 15)), **c["spatial_pyramid_pool"],
                                              indices=None)
    boxes = np.array([[0, 0, 0, 3, 3], [1, 1, 1, 5, 4]], float)
    yr, ir = fp.roi_pool(x, boxes, 2, return_indices=True)
    c["roi_pool"] = dict(x=x, boxes=boxes, output_size=2, spatial_scale=1.0, return_indices=False,
                         layout="channels_first")
    c["roi_pool_backward"] = dict(grad_output=yr, **c["roi_pool"], indices=ir)
    c["roi_align"] = dict(x=x, boxes=boxes, output_size=2, spatial_scale=1.0, sampling_ratio=-1, aligned=False,
                          layout="channels_first")
    c["roi_align_backward"] = dict(grad_output=yr, **c["roi_align"], indices=None)
    return c


# every public function, so a new one cannot slip past this test
_FUNCS = sorted(n for n in fp.__all__ if callable(getattr(fp, n)) and n[0].islower()
                and n not in ("set_num_threads", "get_num_threads", "threading_layer"))


def test_every_public_function_has_a_base_call():
    assert sorted(base_calls()) == _FUNCS


def _check_call(fn, kwargs):
    snaps = {k: snapshot(v) for k, v in kwargs.items() if isinstance(v, np.ndarray)}
    try:
        out = fn(**kwargs)
    except PoolingError as e:
        assert str(e), "empty error message"
        event("PoolingError")
    else:
        event("accepted")
        for o in out if isinstance(out, tuple) else (out,):
            assert isinstance(o, (np.ndarray, np.generic))
    for k, snap in snaps.items():
        assert_unchanged(kwargs[k], snap)


@given(st.sampled_from(_FUNCS), st.data())
def test_hostile_argument_gives_pooling_error_or_a_result(name, data):
    kwargs = dict(base_calls()[name])
    arg = data.draw(st.sampled_from(sorted(kwargs)), "argument")
    kwargs[arg] = data.draw(st.sampled_from(HOSTILE), "value")
    if data.draw(st.booleans(), "second argument"):
        arg2 = data.draw(st.sampled_from(sorted(kwargs)), "argument 2")
        kwargs[arg2] = data.draw(st.sampled_from(HOSTILE), "value 2")
    note(f"{name}({ {k: (type(v).__name__, getattr(v, 'shape', v)) for k, v in kwargs.items()} })")
    _check_call(getattr(fp, name), kwargs)


# ============================================================================ layers


LAYER_ARGS = {
    "MaxPool2d": dict(kernel_size=2), "AvgPool1d": dict(kernel_size=2), "LPPool3d": dict(norm_type=2, kernel_size=2),
    "AdaptiveAvgPool2d": dict(output_size=2), "AdaptiveMaxPool3d": dict(output_size=2), "GlobalAvgPool": {},
    "GlobalMaxPool": {}, "GlobalLpPool": {},
}
LAYER_X = {"MaxPool2d": (2, 3, 6, 6), "AvgPool1d": (2, 3, 6), "LPPool3d": (1, 2, 4, 4, 4),
           "AdaptiveAvgPool2d": (2, 3, 5, 5), "AdaptiveMaxPool3d": (1, 2, 3, 3, 3), "GlobalAvgPool": (2, 3, 4, 4),
           "GlobalMaxPool": (2, 3, 4), "GlobalLpPool": (1, 2, 3, 3, 3)}


@given(st.sampled_from(sorted(LAYER_ARGS)), st.data())
def test_layers_hostile_arguments_and_inputs(name, data):
    cls = getattr(L, name)
    kwargs = dict(LAYER_ARGS[name])
    where = data.draw(st.sampled_from(["constructor", "input", "grad"]), "what is hostile")
    if where == "constructor" and kwargs:
        kwargs[data.draw(st.sampled_from(sorted(kwargs)))] = data.draw(st.sampled_from(HOSTILE))
    try:
        layer = cls(**kwargs)
    except PoolingError:
        return
    x = np.random.default_rng(0).random(LAYER_X[name])
    if where == "input":
        x = data.draw(st.sampled_from(HOSTILE))
    snap = snapshot(x) if isinstance(x, np.ndarray) else None
    try:
        y = layer(x)
    except PoolingError:
        return
    finally:
        if snap is not None:
            assert_unchanged(x, snap)
    g = np.ones(np.shape(y)) if where != "grad" else data.draw(st.sampled_from(HOSTILE))
    try:
        gx = layer.backward(g)
    except PoolingError:
        return
    assert np.shape(gx) == np.shape(x)


def _all_layers():
    return [L.MaxPool2d(2), L.AvgPool1d(2), L.LPPool3d(2, 2), L.AdaptiveAvgPool2d(3), L.AdaptiveMaxPool1d(2),
            L.GlobalAvgPool(), L.GlobalMaxPool(keepdims=False), L.GlobalLpPool(),
            L.Sequential(L.MaxPool2d(2), L.AvgPool2d(2)), L.MaxUnpool2d(2), L.FractionalMaxPool2d(2, output_size=2),
            L.StochasticPool2d(2), L.MixedPool2d(2), L.SpatialPyramidPool(), L.RoIPool(2), L.RoIAlign(2)]


SHAPES = ["abc", None, 3, 2.5, (), (1,), (0, 0), (1, 2, 3), (1, 2, 8, 8), (1, 2, 8, 8, 8), (-1, 2, 4, 4),
          (1, 2, 4.5, 4), (2**63, 2, 4, 4), [1, 2, 8, 8], (1, 2, 4, 4, 4, 4, 4), np.array([1, 2, 8, 8]), {"a": 1},
          (1, 1, 1), (True, 2, 8, 8), (1, 2, 0, 8)]


@given(st.integers(0, len(_all_layers()) - 1), st.sampled_from(SHAPES))
def test_layer_output_shape_of_hostile_shapes(i, shape):
    layer = _all_layers()[i]
    try:
        out = layer.output_shape(shape)
    except PoolingError:
        event("PoolingError")
        return
    assert isinstance(out, tuple)
