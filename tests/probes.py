"""Test inputs with special values sprinkled in, and a spy on the arguments the
kernels get (which route a call took)."""

from __future__ import annotations

import numpy as np

from fastpool import _cpu


def sprinkled(rng, shape, dtype, scale, specials=()):
    """``rng.standard_normal(shape) * scale`` as ``dtype``: floats with each
    ``(value, count)`` of ``specials`` written at ``count`` random cells, in
    turn; integers clipped to their range."""
    x = rng.standard_normal(shape) * scale
    if np.dtype(dtype).kind == "f":
        x = x.astype(dtype)
        flat = x.reshape(-1)
        for value, count in specials:
            flat[rng.integers(0, flat.size, count)] = value
        return x
    info = np.iinfo(dtype)
    return np.clip(x, info.min, info.max).astype(dtype)


def kernel_args(monkeypatch, names, index, conv=int):
    """``conv(args[index])`` of every call of the ``_cpu`` kernels named in the
    tuple ``names`` (through ``_cpu.pick``), in call order; ``index`` may be a
    dict of an index per name."""
    seen = []
    real = _cpu.pick

    def spy(kernel, a, b):
        k = real(kernel, a, b)
        name = getattr(getattr(kernel, "py_func", None), "__name__", "")
        if name not in names:
            return k
        i = index[name] if isinstance(index, dict) else index

        def call(*args):
            seen.append(conv(args[i]))
            return k(*args)

        return call

    monkeypatch.setattr(_cpu, "pick", spy)
    return seen


def assert_float32_sums(got, want, want_abs, taps, what=""):
    """float32 window averages added in float32 (``pooling.SUM32_TAPS``) against
    the float64 reference ``want``: within the error bound of a float32 sum of
    ``taps`` terms, ``taps * eps * avg|x| + eps * |want|`` (``want_abs``: the
    reference's average of ``|x|``), NaN where ``want`` is."""
    eps = float(np.finfo(np.float32).eps)
    got64, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    np.testing.assert_array_equal(np.isnan(got64), np.isnan(want), err_msg=f"{what}: NaN")
    fin = np.isfinite(want)
    np.testing.assert_array_equal(got64[~fin], want[~fin], err_msg=f"{what}: inf")
    err = np.abs(got64[fin] - want[fin])
    bound = taps * eps * np.asarray(want_abs, np.float64)[fin] + eps * np.abs(want[fin])
    worst = int(np.argmax(err - bound)) if err.size else 0
    assert np.all(err <= bound), (f"{what}: {err[worst]:.3g} off, bound {bound[worst]:.3g} "
                                  f"(got {got64[fin][worst]!r}, want {want[fin][worst]!r})")


def assert_float32_avg(got, x, nd, **geom):
    """``assert_float32_sums`` for ``avg_pool{nd}d(x, **geom)`` of float32 ``x``,
    against the NumPy reference."""
    from reference import avg_pool

    taps = int(np.prod(np.broadcast_to(geom["kernel_size"], (nd,))))
    assert_float32_sums(got, avg_pool(x, nd, **geom), avg_pool(np.abs(x), nd, **geom), taps,
                        f"avg_pool{nd}d {dict(geom)}")
