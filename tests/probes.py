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
