"""Layer objects and Sequential: the same numbers as the functional API.

Each layer is checked against an explicit call of its function (written out
with the same arguments, not through the layer's own dispatch), and a
Sequential pipeline against chained functional calls and against PyTorch's
``nn.Sequential`` with autograd.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp
from fastpool import PoolingError, layers as L

RNG = np.random.default_rng(7)
SIZES = {1: (9,), 2: (7, 8), 3: (5, 6, 4)}


def data(nd, n=2, c=3, layout="channels_first"):
    shape = (n, c) + SIZES[nd]
    v = RNG.permutation(int(np.prod(shape))).reshape(shape).astype(np.float64)
    v = (v - v.size / 2) / 8
    return np.moveaxis(v, 1, -1).copy() if layout == "channels_last" else v


# (layer class, constructor/function args, kwargs, function name)
def _table():
    rows = []
    for nd in (1, 2, 3):
        rows += [
            (f"MaxPool{nd}d", (3,), dict(stride=2, padding=1), f"max_pool{nd}d"),
            (f"MaxPool{nd}d", (2,), dict(stride=1, dilation=2, ceil_mode=True), f"max_pool{nd}d"),
            (f"AvgPool{nd}d", (3,), dict(stride=2, padding=1, count_include_pad=False), f"avg_pool{nd}d"),
            (f"AvgPool{nd}d", (2,), dict(stride=1, divisor_override=3), f"avg_pool{nd}d"),
            (f"LPPool{nd}d", (2.0, 2), dict(stride=1), f"lp_pool{nd}d"),
            (f"LPPool{nd}d", (3, 3), dict(stride=2, ceil_mode=True, torch_compat=True), f"lp_pool{nd}d"),
            (f"AdaptiveAvgPool{nd}d", (3,), {}, f"adaptive_avg_pool{nd}d"),
            (f"AdaptiveMaxPool{nd}d", (2,), {}, f"adaptive_max_pool{nd}d"),
        ]
    rows += [
        ("GlobalAvgPool", (), {}, "global_avg_pool"),
        ("GlobalAvgPool", (), dict(keepdims=False), "global_avg_pool"),
        ("GlobalMaxPool", (), {}, "global_max_pool"),
        ("GlobalMaxPool", (), dict(keepdims=False), "global_max_pool"),
        ("GlobalLpPool", (), {}, "global_lp_pool"),
        ("GlobalLpPool", (3.0,), dict(keepdims=False), "global_lp_pool"),
    ]
    return rows


TABLE = _table()
IDS = [f"{r[0]}{r[1]}{sorted(r[2].items())}" for r in TABLE]
# the pooling layers defined in fastpool.layers itself; the family layers it re-exports
# (unpooling, fractional, stochastic, mixed, pyramid, RoI) take other arguments and
# have their own tests
ALL_LAYER_NAMES = {n for n in L.__all__ if n not in ("Layer", "Sequential")
                   and getattr(L, n).__module__ == L.__name__}


def nd_of(cls_name):
    return int(cls_name[-2]) if cls_name[-1] == "d" else 2


def test_table_covers_every_layer_class():
    assert {r[0] for r in TABLE} == ALL_LAYER_NAMES
    for name in ALL_LAYER_NAMES:
        assert issubclass(getattr(L, name), L.Layer)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("row", TABLE, ids=IDS)
def test_layer_equals_function(row, layout):
    cls_name, args, kw, fname = row
    nd = nd_of(cls_name)
    layer = getattr(L, cls_name)(*args, **kw, layout=layout)
    fn, fn_bwd = getattr(fp, fname), getattr(fp, fname + "_backward")
    x = data(nd, layout=layout)
    want = fn(x, *args, **kw, layout=layout)
    out = layer(x)
    np.testing.assert_array_equal(out, want)
    assert out.dtype == want.dtype
    np.testing.assert_array_equal(layer.forward(x), want)
    g = RNG.standard_normal(want.shape)
    gx = layer.backward(g)
    np.testing.assert_array_equal(gx, fn_bwd(g, x, *args, **kw, layout=layout))
    assert gx.shape == x.shape
    assert layer.output_shape(x.shape) == want.shape


@pytest.mark.parametrize("row", TABLE, ids=IDS)
def test_layer_attributes(row):
    cls_name, args, kw, fname = row
    layer = getattr(L, cls_name)(*args, **kw, layout="NHWC" if "3d" not in cls_name else "NDHWC")
    assert layer.layout == "channels_last" and layer.kwargs["layout"] == "channels_last"
    assert layer.function is getattr(fp, fname)
    assert layer.backward_function is getattr(fp, fname + "_backward")
    for k, v in kw.items():
        assert getattr(layer, k) == v and layer.kwargs[k] == v
    assert layer.nd == (None if cls_name.startswith("Global") else nd_of(cls_name))
    assert fname.startswith(layer.kind)
    assert type(layer).__name__ in repr(layer)


WINDOWED = [r for r in TABLE if not r[0].startswith("Global")]  # global ops need batched input
WINDOWED_IDS = [f"{r[0]}{r[1]}{sorted(r[2].items())}" for r in WINDOWED]


@pytest.mark.parametrize("row", WINDOWED, ids=WINDOWED_IDS)
def test_layer_unbatched_and_float32(row):
    cls_name, args, kw, fname = row
    nd = nd_of(cls_name)
    layer = getattr(L, cls_name)(*args, **kw)
    x = data(nd)[0].astype(np.float32)
    want = getattr(fp, fname)(x, *args, **kw)
    out = layer(x)
    assert out.dtype == np.float32 and out.shape == layer.output_shape(x.shape)
    np.testing.assert_array_equal(out, want)
    g = RNG.standard_normal(out.shape).astype(np.float32)
    np.testing.assert_array_equal(layer.backward(g), getattr(fp, fname + "_backward")(g, x, *args, **kw))


MAX_ROWS = [r for r in TABLE if "Max" in r[0]]
MAX_IDS = [f"{r[0]}{r[1]}{sorted(r[2].items())}" for r in MAX_ROWS]


@pytest.mark.parametrize("row", MAX_ROWS, ids=MAX_IDS)
def test_max_layers_reuse_cached_indices(row, monkeypatch):
    cls_name, args, kw, fname = row
    nd = nd_of(cls_name)
    x = data(nd)
    layer = getattr(L, cls_name)(*args, **kw)
    out = layer(x)
    g = RNG.standard_normal(out.shape)
    want = getattr(fp, fname + "_backward")(g, x, *args, **kw)   # recomputes the argmax
    _, idx = getattr(fp, fname)(x, *args, **kw, return_indices=True)

    seen = []
    real = getattr(fp.pooling, fname + "_backward")

    def spy(*a, **k):
        seen.append(k.get("indices"))
        return real(*a, **k)

    monkeypatch.setattr(fp.pooling, fname + "_backward", spy)
    got = layer.backward(g)
    assert len(seen) == 1 and seen[0] is not None, "the layer must hand its cached indices to backward"
    np.testing.assert_array_equal(seen[0], idx)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("row", MAX_ROWS, ids=MAX_IDS)
def test_max_layers_return_indices(row):
    cls_name, args, kw, fname = row
    x = data(nd_of(cls_name))
    kw = dict(kw, return_indices=True)
    layer = getattr(L, cls_name)(*args, **kw)
    out, idx = layer(x)
    want_out, want_idx = getattr(fp, fname)(x, *args, **kw)
    np.testing.assert_array_equal(out, want_out)
    np.testing.assert_array_equal(idx, want_idx)
    assert idx.dtype == np.int64
    g = RNG.standard_normal(out.shape)
    np.testing.assert_array_equal(layer.backward(g),
                                  getattr(fp, fname + "_backward")(g, x, *args, **kw, indices=want_idx))


@pytest.mark.parametrize("row", TABLE, ids=IDS)
def test_backward_before_forward_raises(row):
    cls_name, args, kw, _ = row
    layer = getattr(L, cls_name)(*args, **kw)
    with pytest.raises(PoolingError, match=cls_name + r"\.backward.*forward"):
        layer.backward(np.zeros((1, 1, 1)))


@pytest.mark.parametrize("cls_name, args, kw, word", [
    ("MaxPool2d", (0,), {}, "kernel_size"),
    ("MaxPool1d", (2,), dict(stride=0), "stride"),
    ("AvgPool3d", (2,), dict(padding=-1), "padding"),
    ("AvgPool2d", (2,), dict(divisor_override=0), "divisor_override"),
    ("LPPool2d", (0, 2), {}, "norm_type"),
    ("LPPool1d", (2, 2), dict(torch_compat=True, power_mean=True), "torch_compat"),
    ("AdaptiveAvgPool2d", (0,), {}, "output_size"),
    ("MaxPool2d", (2,), dict(layout="NCWH"), "layout"),
    ("GlobalLpPool", (-1.0,), {}, "norm_type"),
])
def test_layer_constructor_validates(cls_name, args, kw, word):
    with pytest.raises(PoolingError, match=word):
        getattr(L, cls_name)(*args, **kw)


@pytest.mark.parametrize("row", TABLE, ids=IDS)
def test_output_shape_matches_forward(row):
    cls_name, args, kw, fname = row
    nd = nd_of(cls_name)
    for layout in ("channels_first", "channels_last"):
        layer = getattr(L, cls_name)(*args, **kw, layout=layout)
        shapes = [data(nd, n=1, c=2, layout=layout).shape, data(nd, n=3, c=1, layout=layout).shape]
        if not cls_name.startswith("Global"):
            shapes.append(data(nd, layout=layout)[0].shape)          # unbatched
            shapes.append(tuple(s + 3 for s in data(nd, layout=layout).shape))
        for shape in shapes:
            x = np.zeros(shape)
            assert layer.output_shape(shape) == layer(x).shape, (layout, shape)


# ============================================================================ Sequential


def _pipeline():
    return L.Sequential(
        L.MaxPool2d(3, stride=2, padding=1),
        L.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
        L.LPPool2d(2, 2, torch_compat=True),
        L.AdaptiveMaxPool2d(2),
    )


def _chained(x, g):
    a = fp.max_pool2d(x, 3, stride=2, padding=1)
    b = fp.avg_pool2d(a, 2, stride=1, padding=1, count_include_pad=False)
    c = fp.lp_pool2d(b, 2, 2, torch_compat=True)
    d = fp.adaptive_max_pool2d(c, 2)
    gc = fp.adaptive_max_pool2d_backward(g, c, 2)
    gb = fp.lp_pool2d_backward(gc, b, 2, 2, torch_compat=True)
    ga = fp.avg_pool2d_backward(gb, a, 2, stride=1, padding=1, count_include_pad=False)
    gx = fp.max_pool2d_backward(ga, x, 3, stride=2, padding=1)
    return d, gx


def test_sequential_equals_chained_functions():
    seq = _pipeline()
    x = RNG.standard_normal((2, 3, 13, 12))
    out = seq(x)
    g = RNG.standard_normal(out.shape)
    want_out, want_gx = _chained(x, g)
    np.testing.assert_array_equal(out, want_out)
    np.testing.assert_array_equal(seq.backward(g), want_gx)
    assert seq.output_shape(x.shape) == out.shape
    assert len(seq) == 4 and seq[0] is seq.layers[0] and list(seq) == seq.layers


def test_sequential_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    x = RNG.standard_normal((2, 3, 13, 12))
    seq = _pipeline()
    out = seq(x)
    g = RNG.standard_normal(out.shape)
    gx = seq.backward(g)

    tseq = nn.Sequential(
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
        nn.LPPool2d(2, 2),
        nn.AdaptiveMaxPool2d(2),
    )
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tout = tseq(tx)
    tout.backward(torch.tensor(g, dtype=torch.float64))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-12, atol=0)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_sequential_matches_torch_autograd_1d_and_3d():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    x1 = RNG.standard_normal((2, 3, 17))
    s1 = L.Sequential(L.MaxPool1d(3, stride=1, dilation=2), L.AvgPool1d(3, stride=2, padding=1),
                      L.AdaptiveAvgPool1d(4))
    t1 = nn.Sequential(nn.MaxPool1d(3, stride=1, dilation=2), nn.AvgPool1d(3, stride=2, padding=1),
                       nn.AdaptiveAvgPool1d(4))
    x3 = RNG.standard_normal((1, 2, 7, 6, 5))
    s3 = L.Sequential([L.AvgPool3d(2, stride=1, ceil_mode=True), L.MaxPool3d(2, ceil_mode=True),
                       L.AdaptiveMaxPool3d((2, 1, 2))])
    t3 = nn.Sequential(nn.AvgPool3d(2, stride=1, ceil_mode=True), nn.MaxPool3d(2, ceil_mode=True),
                       nn.AdaptiveMaxPool3d((2, 1, 2)))
    for seq, tseq, x in ((s1, t1, x1), (s3, t3, x3)):
        out = seq(x)
        g = RNG.standard_normal(out.shape)
        gx = seq.backward(g)
        tx = torch.tensor(x, requires_grad=True)
        tout = tseq(tx)
        tout.backward(torch.tensor(g))
        np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-12, atol=0)
        np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-12, atol=1e-15)
        assert seq.output_shape(x.shape) == out.shape


def test_sequential_channels_last_equals_transposed():
    cf = _pipeline()
    cl = L.Sequential(
        L.MaxPool2d(3, stride=2, padding=1, layout="NHWC"),
        L.AvgPool2d(2, stride=1, padding=1, count_include_pad=False, layout="NHWC"),
        L.LPPool2d(2, 2, torch_compat=True, layout="NHWC"),
        L.AdaptiveMaxPool2d(2, layout="NHWC"),
    )
    x = RNG.standard_normal((2, 3, 9, 10))
    out = cf(x)
    g = RNG.standard_normal(out.shape)
    xl = np.moveaxis(x, 1, -1)
    # the layouts may run different kernels whose sums round in another order
    np.testing.assert_allclose(cl(xl), np.moveaxis(out, 1, -1), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(cl.backward(np.moveaxis(g, 1, -1)), np.moveaxis(cf.backward(g), 1, -1),
                               rtol=1e-13, atol=1e-14)
    assert cl.output_shape(xl.shape) == np.moveaxis(out, 1, -1).shape


def test_sequential_nested_and_global_tail():
    inner = L.Sequential(L.MaxPool2d(2), L.AvgPool2d(2, stride=1))
    seq = L.Sequential(inner, L.GlobalAvgPool(keepdims=False))
    x = RNG.standard_normal((2, 3, 8, 8))
    out = seq(x)
    a = fp.max_pool2d(x, 2)
    b = fp.avg_pool2d(a, 2, stride=1)
    np.testing.assert_array_equal(out, fp.global_avg_pool(b, keepdims=False))
    g = RNG.standard_normal(out.shape)
    gb = fp.global_avg_pool_backward(g, b, keepdims=False)
    want = fp.max_pool2d_backward(fp.avg_pool2d_backward(gb, a, 2, stride=1), x, 2)
    np.testing.assert_array_equal(seq.backward(g), want)
    assert seq.output_shape(x.shape) == out.shape == (2, 3)


def test_sequential_last_layer_may_return_indices():
    seq = L.Sequential(L.AvgPool2d(2), L.MaxPool2d(2, return_indices=True))
    x = RNG.standard_normal((1, 2, 8, 8))
    out, idx = seq(x)
    a = fp.avg_pool2d(x, 2)
    want, want_idx = fp.max_pool2d(a, 2, return_indices=True)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(idx, want_idx)
    g = RNG.standard_normal(out.shape)
    want_gx = fp.avg_pool2d_backward(fp.max_pool2d_backward(g, a, 2), x, 2)
    np.testing.assert_array_equal(seq.backward(g), want_gx)


@pytest.mark.parametrize("bad", [np.max, "MaxPool2d", None, 3, lambda x: x])
def test_sequential_rejects_non_layers(bad):
    with pytest.raises(PoolingError, match="Sequential.*layers.*position 1"):
        L.Sequential(L.MaxPool2d(2), bad)


def test_sequential_rejects_inner_return_indices():
    with pytest.raises(PoolingError, match="layer 0.*indices"):
        L.Sequential(L.MaxPool2d(2, return_indices=True), L.AvgPool2d(2))
    with pytest.raises(PoolingError, match="layer 1.*indices"):
        L.Sequential(L.AvgPool1d(2), L.AdaptiveMaxPool1d(3, return_indices=True), L.AvgPool1d(2))


def test_sequential_backward_before_forward_raises():
    with pytest.raises(PoolingError, match="forward"):
        _pipeline().backward(np.zeros((2, 3, 2, 2)))
