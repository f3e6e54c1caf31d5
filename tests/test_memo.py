"""Remembered routes (fastpool/_memo.py): a repeated call goes straight to the
kernel its first two calls took.  Checked against the whole path (the memo off)
bit for bit and against the NumPy reference, on fresh data every call: every
rank and layout, dtypes whose output dtype differs, ``out=`` given and not,
the serial and parallel kernels; that the route is taken (no kernel is picked
again), that paths with a second kernel call or a copy of the input are never
remembered, and that bad arguments still raise once a route is known."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import fastpool as fp
from fastpool import _cpu, _memo
from fastpool.errors import PoolingError, PoolingTypeError

from probes import sprinkled
from reference import avg_pool, max_pool


@pytest.fixture
def memo(monkeypatch):
    monkeypatch.setattr(_memo, "enabled", True)
    return _memo


def _picks(monkeypatch):
    seen = []
    real = _cpu.pick

    def spy(kernel, a, b):
        seen.append(kernel)
        return real(kernel, a, b)

    monkeypatch.setattr(_cpu, "pick", spy)
    return seen


CASES = [
    # (function, nd, spatial, channels, kwargs)
    ("max", 2, (13, 17), 3, dict(kernel_size=3, stride=2, padding=1)),
    ("max", 2, (12, 12), 5, dict(kernel_size=2, stride=2, ceil_mode=True)),
    ("max", 2, (20, 21), 2, dict(kernel_size=9, stride=1, padding=4)),
    ("max", 1, (40,), 4, dict(kernel_size=3, stride=2, padding=1, dilation=2)),
    ("max", 3, (5, 9, 10), 2, dict(kernel_size=(2, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))),
    ("avg", 2, (13, 17), 3, dict(kernel_size=3, stride=1, padding=1)),
    ("avg", 2, (12, 14), 16, dict(kernel_size=2, stride=2)),
    ("avg", 2, (11, 11), 3, dict(kernel_size=3, stride=2, padding=1, count_include_pad=False, ceil_mode=True)),
    ("avg", 2, (10, 10), 2, dict(kernel_size=(2, 4), stride=(2, 1), divisor_override=3)),
    ("avg", 1, (33,), 4, dict(kernel_size=4, stride=3, padding=2)),
    ("avg", 3, (6, 7, 8), 9, dict(kernel_size=3, stride=1, padding=1)),
]


def _call(op, nd, x, layout, out, kw):
    f = getattr(fp, f"{op}_pool{nd}d")
    return f(x, **kw, layout=layout, out=out) if out is not None else f(x, **kw, layout=layout)


def _want(op, nd, x, layout, kw):
    xf = x if layout == "channels_first" else np.moveaxis(x, -1, 1)
    ref = (max_pool(xf, nd, **kw)[0] if op == "max" else avg_pool(xf, nd, **kw))
    return ref if layout == "channels_first" else np.moveaxis(ref, 1, -1)


@pytest.mark.parametrize("serial", [False, True], ids=["parallel", "serial"])
@pytest.mark.parametrize("with_out", [False, True], ids=["new", "out"])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_remembered_route_matches_whole_path(monkeypatch, memo, case, dtype, layout, with_out, serial):
    op, nd, spatial, c, kw = CASES[case]
    if serial:
        monkeypatch.setattr(_cpu, "SERIAL_BELOW", 1 << 40)
    rng = np.random.default_rng(case)
    shape = (2, c) + spatial if layout == "channels_first" else (2,) + spatial + (c,)
    probe = _call(op, nd, np.zeros(shape, dtype), layout, None, kw)
    out = np.empty(probe.shape, probe.dtype) if with_out else None
    picks = _picks(monkeypatch)
    results = []
    for i in range(4):
        x = sprinkled(rng, shape, dtype, 20, ((np.nan, 2), (-np.inf, 1), (-0.0, 3)))
        before = x.copy()
        n = len(picks)
        got = _call(op, nd, x, layout, out, kw)
        memo.enabled = False
        whole = _call(op, nd, x, layout, None, kw)
        memo.enabled = True
        np.testing.assert_array_equal(x, before)
        assert got.dtype == whole.dtype and got.shape == whole.shape
        np.testing.assert_array_equal(got.view(np.uint8), whole.view(np.uint8))
        if dtype == np.float64:
            np.testing.assert_allclose(got, _want(op, nd, x, layout, kw), rtol=1e-12, atol=1e-12)
        if with_out:
            assert got is out
        else:
            assert not any(np.shares_memory(got, r) for r in results)
        results.append(got.copy() if with_out else got)
        if i >= 2:
            # the whole path picked its kernel once more (the comparison); the
            # remembered call picked none
            assert len(picks) == n + 1
    assert len(memo._routes) == 1


OTHERS = [
    (lambda x, **o: fp.lp_pool2d(x, 2.0, 3, 2, **o), 2),
    (lambda x, **o: fp.lp_pool1d(x, 1.5, 4, 1, padding=1, torch_compat=True, **o), 1),
    (lambda x, **o: fp.adaptive_avg_pool2d(x, (3, 5), **o), 2),
    (lambda x, **o: fp.adaptive_max_pool3d(x, 2, **o), 3),
    (lambda x, **o: fp.global_avg_pool(x, **o), 2),
    (lambda x, **o: fp.global_avg_pool(x, keepdims=False, **o), 2),
    (lambda x, **o: fp.global_max_pool(x, keepdims=False, **o), 1),
    (lambda x, **o: fp.global_lp_pool(x, 3.0, **o), 2),
]


@pytest.mark.parametrize("with_out", [False, True], ids=["new", "out"])
@pytest.mark.parametrize("case", range(len(OTHERS)))
def test_other_forward_routes_match_whole_path(monkeypatch, memo, case, with_out):
    f, nd = OTHERS[case]
    rng = np.random.default_rng(100 + case)
    shape = (2, 5) + (7, 9, 6)[:nd]
    probe = f(np.zeros(shape, np.float32))
    out = np.empty(probe.shape, probe.dtype) if with_out else None
    picks = _picks(monkeypatch)
    for i in range(4):
        x = sprinkled(rng, shape, np.float32, 3, ((np.nan, 1), (-0.0, 3)))
        n = len(picks)
        got = f(x, out=out) if with_out else f(x)
        memo.enabled = False
        whole = f(x)
        memo.enabled = True
        assert got.shape == whole.shape and got.dtype == whole.dtype
        np.testing.assert_array_equal(got.view(np.uint8), whole.view(np.uint8))
        if with_out:
            assert got is out
        if i >= 2:
            assert len(picks) == n + 1
    assert len(memo._routes) == 1


def test_float16_and_copies_are_never_remembered(monkeypatch, memo):
    # float16 converts the input with a kernel of its own (two kernel calls);
    # a strided input is copied first: neither route is kept
    x16 = np.random.default_rng(1).standard_normal((2, 3, 9, 9)).astype(np.float16)
    xs = np.random.default_rng(2).standard_normal((2, 3, 9, 18))[..., ::2]
    for x in (x16, xs):
        for _ in range(3):
            got = fp.avg_pool2d(x, 3, 1, 1)
            memo.enabled = False
            want = fp.avg_pool2d(x, 3, 1, 1)
            memo.enabled = True
            np.testing.assert_array_equal(got, want)
    assert memo._routes == {}
    # the float16 key; the strided input is not even recorded
    assert len(memo._never) == 1


def test_a_temporary_argument_is_never_remembered(monkeypatch, memo):
    # kernel arguments that are new arrays each call (neither views of the
    # input or the output nor shared objects): two calls that differ, twice,
    # and the key is dropped
    x = np.random.default_rng(7).standard_normal((2, 3, 9, 9)).astype(np.float32)
    real = _cpu.pick

    def fresh_tables(kernel, a, b):
        k = real(kernel, a, b)

        def call(*args):
            return k(*(v.copy() if isinstance(v, np.ndarray) and v.dtype == np.int64 and v.size < 64 else v
                       for v in args))

        return call

    monkeypatch.setattr(_cpu, "pick", fresh_tables)
    want = max_pool(x, 2, 3, 2, 1)[0]
    for _ in range(5):
        np.testing.assert_array_equal(fp.max_pool2d(x, 3, 2, 1), want)
    assert memo._routes == {}
    assert len(memo._never) == 1


def test_return_indices_is_never_remembered(memo):
    x = np.random.default_rng(3).standard_normal((2, 3, 9, 9)).astype(np.float32)
    for _ in range(3):
        v, i = fp.max_pool2d(x, 3, 2, 1, return_indices=True)
        want, iw = max_pool(x, 2, 3, 2, 1)
        np.testing.assert_array_equal(v, want)
        np.testing.assert_array_equal(i, iw)
    assert memo._routes == {}


def test_bad_arguments_still_raise_after_a_route(memo):
    x = np.random.default_rng(4).standard_normal((2, 3, 8, 8)).astype(np.float32)
    out = np.empty((2, 3, 8, 8), np.float32)
    for _ in range(3):
        fp.max_pool2d(x, (1, 1), 1, out=out)
        fp.avg_pool2d(x, 2, 2)
    assert len(memo._routes) == 2
    # True == 1 and hashes alike: a bool kernel size must not take the route
    with pytest.raises(PoolingTypeError, match="kernel_size"):
        fp.max_pool2d(x, (True, True), 1, out=out)
    # an output that overlaps the input, of the remembered shape and dtype
    alias = x.copy()
    with pytest.raises(PoolingError, match="share memory"):
        fp.max_pool2d(alias, (1, 1), 1, out=alias)
    ro = np.empty((2, 3, 4, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(PoolingError, match="writeable"):
        fp.avg_pool2d(x, 2, 2, out=ro)
    with pytest.raises(PoolingError, match="shape"):
        fp.avg_pool2d(x, 2, 2, out=np.empty((2, 3, 4, 5), np.float32))


def test_serial_bound_is_part_of_the_key(monkeypatch, memo):
    x = np.random.default_rng(5).standard_normal((1, 2, 6, 6)).astype(np.float32)
    for _ in range(2):
        fp.avg_pool2d(x, 2, 2)
    monkeypatch.setattr(_cpu, "SERIAL_BELOW", 1 << 40)
    picks = _picks(monkeypatch)
    fp.avg_pool2d(x, 2, 2)
    assert len(picks) == 1


def test_remembered_routes_across_threads(memo):
    rng = np.random.default_rng(6)
    xs = [rng.standard_normal((2, 8, 12, 12)).astype(np.float32) for _ in range(8)]
    wants = [max_pool(x, 2, 3, 2, 1)[0] for x in xs]
    errors = []

    def work(k):
        try:
            for r in range(30):
                i = (k + r) % len(xs)
                np.testing.assert_array_equal(fp.max_pool2d(xs[i], 3, 2, 1), wants[i])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(memo._routes) == 1
