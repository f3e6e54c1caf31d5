"""The rest of the pooling family: max unpooling, fractional max, stochastic,
mixed, spatial pyramid, RoI pool and RoI align, each with its backward pass.

Semantics follow PyTorch (``max_unpool``, ``fractional_max_pool``) and
torchvision (``roi_pool``, ``roi_align``); stochastic pooling is Zeiler &
Fergus (2013), mixed pooling Yu et al. (2014), spatial pyramid pooling He et
al. (2014) with PyTorch's adaptive bins.  Every argument is checked here,
before compiled code runs; errors name the call, the input shape, the
argument, the rule and the value.

Sampled operators take their randomness from a ``numpy.random.Generator``
(``rng``; a fresh ``np.random.default_rng()`` when omitted) and can return
what they drew (``samples`` / sampled ``indices``) so that a backward pass, or
a second call, sees the same sample.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import _cpu, _cpu_family as _k
from . import _geometry as geo
from . import pooling as P
from ._core import (Canon, as_array, canon_grad, canonical, check_dtype, check_grad,
                    check_indices, compute_dtype, covers, float_backward_input, kernel_input,
                    public, read_only, tables)
from ._spec import int_tuple, is_int, normalize_layout, window_spec
from .errors import PoolingError, PoolingTypeError

__all__ = [
    "max_unpool1d", "max_unpool1d_backward", "max_unpool2d", "max_unpool2d_backward",
    "max_unpool3d", "max_unpool3d_backward",
    "fractional_max_pool2d", "fractional_max_pool2d_backward",
    "fractional_max_pool3d", "fractional_max_pool3d_backward",
    "stochastic_pool1d", "stochastic_pool1d_backward", "stochastic_pool2d",
    "stochastic_pool2d_backward", "stochastic_pool3d", "stochastic_pool3d_backward",
    "mixed_pool1d", "mixed_pool1d_backward", "mixed_pool2d", "mixed_pool2d_backward",
    "mixed_pool3d", "mixed_pool3d_backward",
    "spatial_pyramid_pool", "spatial_pyramid_pool_backward",
    "roi_pool", "roi_pool_backward", "roi_align", "roi_align_backward",
]


# ----------------------------------------------------------------------------- shared checks


def _bool(name, v):
    if isinstance(v, (bool, np.bool_)) or (is_int(v) and v in (0, 1)):
        return bool(v)
    raise PoolingTypeError(f"{name} must be a bool, got {v!r}")


def _generator(rng):
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    raise PoolingTypeError(
        f"rng must be a numpy.random.Generator or None (use np.random.default_rng(seed)), "
        f"got {type(rng).__name__}"
    )


def _real(name, v, positive=False):
    if not isinstance(v, numbers.Real) or isinstance(v, bool):
        raise PoolingTypeError(f"{name} must be a real number, got {v!r}")
    f = float(v)
    if not np.isfinite(f) or (positive and f <= 0):
        rule = "a finite number > 0" if positive else "finite"
        raise PoolingError(f"{name} must be {rule}, got {v!r}")
    return f


def _no_indices(indices, op):
    if indices is not None:
        raise PoolingError(f"indices is not used by {op}; pass indices=None")


def _pick(kernel, a, b):
    """The parallel kernel, or its serial twin for tiny arrays (waking the thread
    pool costs more than a tiny call's work; ``_cpu.pick`` holds the threshold)."""
    return _cpu.pick(kernel, a, b)


def _named(fn, name, doc):
    fn.__name__ = name
    fn.__qualname__ = name
    fn.__doc__ = doc
    return public(name, 1 if name.endswith("_backward") else 0)(fn)


def _user_out(cn: Canon, out5: np.ndarray, osp, dtype) -> np.ndarray:
    out = out5.reshape(cn.user_shape(osp))
    return out if out.dtype == dtype else out.astype(dtype)


def _to_user(cn: Canon, gx5: np.ndarray) -> np.ndarray:
    gx = gx5.reshape(cn.shape)
    return gx if gx.dtype == cn.dtype else gx.astype(cn.dtype)


def _channel_count(cn: Canon) -> int:
    return cn.lead[-1] if cn.layout == "channels_first" else cn.trail[0]


def _scatter(cn: Canon, g5: np.ndarray, idx: np.ndarray, osp) -> np.ndarray:
    """dL/dx of ``out = x.flat_plane[idx]``: each plane adds in output order."""
    gx5 = np.empty(cn.x5.shape, g5.dtype)
    P.scatter_indices(cn, g5, idx, gx5, osp)
    return _to_user(cn, gx5)


def _grad5(cn: Canon, grad_output, osp, op):
    float_backward_input(cn)
    g = check_grad(grad_output, cn.user_shape(osp), op)
    return canon_grad(g, cn, osp, compute_dtype(cn.dtype))


# ----------------------------------------------------------------------------- max unpooling


def _unpool_setup(nd, x, indices, kernel_size, stride, padding, output_size, layout):
    ks = int_tuple("kernel_size", kernel_size, nd, 1)
    st = ks if stride is None else int_tuple("stride", stride, nd, 1)
    pd = int_tuple("padding", padding, nd, 0)
    layout = normalize_layout(layout)
    cn = canonical(x, nd, layout, allow_int=True)
    default = tuple((n - 1) * s - 2 * p + k for n, s, p, k in zip(cn.spatial, st, pd, ks))
    if output_size is None:
        osp = default
    else:
        if not isinstance(output_size, (tuple, list)) or not all(is_int(v) for v in output_size):
            raise PoolingTypeError(f"output_size must be a sequence of ints or None, got {output_size!r}")
        osz = tuple(int(v) for v in output_size)
        if len(osz) == len(cn.shape):   # a full shape, as PyTorch also accepts
            osz = osz[len(osz) - nd:] if layout == "channels_first" else osz[len(osz) - nd - 1:-1]
        if len(osz) != nd:
            raise PoolingError(
                f"output_size must hold {nd} spatial sizes (or the full output shape), got {output_size!r}"
            )
        for a, (o, d, s) in enumerate(zip(osz, default, st)):
            # PyTorch's rule: within one stride of the default size
            if not (d - s < o < d + s):
                raise PoolingError(
                    f"output_size on spatial axis {a} must lie strictly between {d - s} and {d + s} "
                    f"(the default size {d} +/- stride {s}), got {o}"
                )
        osp = osz
    for a, o in enumerate(osp):
        if o < 0:
            raise PoolingError(
                f"the unpooled size on spatial axis {a} is {o} (from kernel_size={ks}, stride={st}, "
                f"padding={pd}); it must be >= 0"
            )
    idx = as_array(indices, "indices")
    if idx.dtype.kind not in "iu":
        raise PoolingTypeError(f"indices must be an integer array, got dtype {idx.dtype}")
    if tuple(idx.shape) != cn.shape:
        raise PoolingError(f"indices must have x's shape {cn.shape}, got {tuple(idx.shape)}")
    n_out = 1
    for o in osp:   # Python ints: an int64 product of huge sizes would wrap
        n_out *= int(o)
    if n_out * max(cn.x5.shape[0] * cn.x5.shape[4], 1) >= (1 << 63) // 8:
        raise PoolingError(
            f"the unpooled output would have spatial size {tuple(osp)}, more elements than an "
            f"array can hold"
        )
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= n_out:
            bad = lo if lo < 0 else hi
            raise PoolingError(
                f"indices must lie in [0, {n_out}) (flat positions in one output plane of "
                f"spatial size {tuple(osp)}), got {bad}"
            )
    idx5 = read_only(np.ascontiguousarray(idx, dtype=np.int64).reshape(cn.x5.shape))
    return cn, tuple(osp), idx5


def _make_unpool(nd):
    def max_unpool(x, indices, kernel_size, stride=None, padding=0, output_size=None, *,
                   layout="channels_first"):
        cn, osp, idx5 = _unpool_setup(nd, x, indices, kernel_size, stride, padding, output_size, layout)
        xin = kernel_input(cn)
        b, c = xin.shape[0], xin.shape[4]
        out = np.zeros((b, int(np.prod(osp, dtype=np.int64)), c), xin.dtype)
        if xin.size:
            _pick(_k.unpool_forward, xin, out)(xin.reshape(b, -1, c), idx5.reshape(b, -1, c), out)
        return _user_out(cn, out, osp, cn.dtype)

    def max_unpool_backward(grad_output, x, indices, kernel_size, stride=None, padding=0,
                            output_size=None, *, layout="channels_first"):
        cn, osp, idx5 = _unpool_setup(nd, x, indices, kernel_size, stride, padding, output_size, layout)
        g5 = _grad5(cn, grad_output, osp, "max_unpool")
        gx5 = np.empty(cn.x5.shape, g5.dtype)
        b, c = gx5.shape[0], gx5.shape[4]
        if gx5.size:
            _pick(_k.unpool_backward, g5, gx5)(g5.reshape(b, -1, c), idx5.reshape(b, -1, c), gx5.reshape(b, -1, c))
        return _to_user(cn, gx5)

    name = f"max_unpool{nd}d"
    return (
        _named(max_unpool, name,
               f"Inverse of :func:`max_pool{nd}d` (PyTorch's ``max_unpool{nd}d``): a zero array of\n"
               f"the unpooled size with ``x`` written at ``indices`` (per-plane flat positions,\n"
               f"as ``max_pool{nd}d(..., return_indices=True)`` gives).\n\n"
               f"Unpooled size per axis: ``output_size`` if given (within one stride of the\n"
               f"default, PyTorch's rule; the full output shape is accepted too), else\n"
               f"``(n - 1) * stride - 2 * padding + kernel_size``.  When two inputs name the same\n"
               f"cell, the later one (in input order) wins, as on PyTorch's CPU.  Indices\n"
               f"outside the output plane raise a PoolingError naming ``indices``."),
        _named(max_unpool_backward, name + "_backward",
               f"Gradient of :func:`{name}` w.r.t. x: ``grad_output`` gathered at ``indices``\n"
               f"(PyTorch's gradient; an input that lost a duplicate-index write still gets it)."),
    )


max_unpool1d, max_unpool1d_backward = _make_unpool(1)
max_unpool2d, max_unpool2d_backward = _make_unpool(2)
max_unpool3d, max_unpool3d_backward = _make_unpool(3)


# ----------------------------------------------------------------------------- fractional max


def _frac_output(nd, spatial, ks, output_size, output_ratio):
    if output_size is None and output_ratio is None:
        raise PoolingError("output_size or output_ratio must be given (neither was)")
    if output_size is not None and output_ratio is not None:
        raise PoolingError(
            f"give output_size or output_ratio, not both (got {output_size!r} and {output_ratio!r})"
        )
    if output_size is not None:
        osp = int_tuple("output_size", output_size, nd, 1)
    else:
        if isinstance(output_ratio, numbers.Real) and not isinstance(output_ratio, bool):
            ratios = (output_ratio,) * nd
        elif isinstance(output_ratio, (tuple, list)) and len(output_ratio) == nd and all(
                isinstance(r, numbers.Real) and not isinstance(r, bool) for r in output_ratio):
            ratios = tuple(output_ratio)
        else:
            raise PoolingTypeError(
                f"output_ratio must be a number or a sequence of {nd} numbers, got {output_ratio!r}"
            )
        for r in ratios:
            if not (0 < float(r) < 1):
                raise PoolingError(f"output_ratio must lie in (0, 1), got {output_ratio!r}")
        osp = tuple(int(n * float(r)) for n, r in zip(spatial, ratios))
        for a, (o, n) in enumerate(zip(osp, spatial)):
            if o < 1:
                raise PoolingError(
                    f"output_ratio={output_ratio!r} gives an empty output on spatial axis {a} "
                    f"(int({n} * {ratios[a]}) = {o})"
                )
    for a, (o, n, k) in enumerate(zip(osp, spatial, ks)):
        if o + k - 1 > n:
            raise PoolingError(
                f"output size + kernel_size - 1 must be <= the input size on spatial axis {a}: "
                f"output {o}, kernel_size {k}, input {n}"
            )
    return osp


def _frac_samples(cn: Canon, nd, samples, rng, T):
    C = _channel_count(cn)
    B, Cc = cn.x5.shape[0], cn.x5.shape[4]
    nb = (B * Cc) // C if C else (cn.shape[0] if len(cn.shape) == nd + 2 else 1)
    want = (nb, C, nd)
    if samples is None:
        gen = _generator(rng)
        # drawn in the compute precision, so no draw rounds up to 1.0
        smp = gen.random(want, dtype=np.float32 if T == np.float32 else np.float64).astype(T)
    else:
        smp = as_array(samples, "samples")
        if smp.dtype.kind not in "fiu" or smp.dtype == np.bool_:
            raise PoolingTypeError(f"samples must be a real array, got dtype {smp.dtype}")
        if tuple(smp.shape) != want:
            raise PoolingError(
                f"samples must have shape (batch, channels, {nd}) = {want} "
                f"(PyTorch's _random_samples; batch 1 for unbatched input), got {tuple(smp.shape)}"
            )
        smp = np.asarray(smp, dtype=T)
        if smp.size and not (np.all(smp >= 0) and np.all(smp < 1)):
            bad = smp[~((smp >= 0) & (smp < 1))].ravel()[0].item()
            raise PoolingError(f"samples must lie in [0, 1), got {bad!r}")
    return smp


def _intervals(u, n, out, k, T):
    """PyTorch's fractional sequence per plane, in the input's precision."""
    lo = np.empty(u.shape + (out,), np.int64)
    if out > 1:
        alpha = T(n - k) / T(out - 1)
        i = np.arange(out - 1).astype(T)
        lo[..., :-1] = ((i + u[..., None]) * alpha).astype(np.int64) - (u * alpha).astype(np.int64)[..., None]
    lo[..., -1] = n - k
    if not (np.all(lo >= 0) and np.all(lo <= n - k)):  # guards the kernel's reads
        raise PoolingError(f"internal: fractional window starts outside [0, {n - k}]")
    return lo


def _frac_tables(cn: Canon, nd, smp, ks, osp, T):
    B, Cc = cn.x5.shape[0], cn.x5.shape[4]
    s = smp.reshape(B, Cc, nd)
    cols = (0,) if nd == 1 else ((1, 0) if nd == 2 else (0, 1, 2))  # PyTorch: [..., 0] drives W in 2-D
    los = [_intervals(s[:, :, cols[a]], cn.spatial[a], osp[a], ks[a], T) for a in range(nd)]
    pad = [np.zeros((B, Cc, 1), np.int64)] * (3 - nd)
    return pad + los, [1] * (3 - nd) + list(ks)


def _frac_forward(cn: Canon, nd, ks, osp, smp, T):
    xin = kernel_input(cn)
    los, k3 = _frac_tables(cn, nd, smp, ks, osp, T)
    out5 = np.empty(cn.canon_shape(osp), xin.dtype)
    idx5 = np.empty(cn.canon_shape(osp), np.int64)
    if out5.size:
        _pick(_k.frac_max_forward, xin, out5)(xin, out5, idx5, *los, *(np.int64(k) for k in k3))
    return out5, idx5


def _frac_dtype(cn: Canon):
    return np.float32 if cn.dtype in (np.float16, np.float32) else np.float64


def _make_frac(nd):
    def fractional_max_pool(x, kernel_size, output_size=None, output_ratio=None,
                            return_indices=False, *, samples=None, rng=None,
                            layout="channels_first"):
        layout = normalize_layout(layout)
        ks = int_tuple("kernel_size", kernel_size, nd, 1)
        want = _bool("return_indices", return_indices)
        cn = canonical(x, nd, layout, allow_int=True)
        osp = _frac_output(nd, cn.spatial, ks, output_size, output_ratio)
        T = _frac_dtype(cn)
        smp = _frac_samples(cn, nd, samples, rng, T)
        out5, idx5 = _frac_forward(cn, nd, ks, osp, smp, T)
        out = _user_out(cn, out5, osp, cn.dtype)
        return (out, idx5.reshape(out.shape)) if want else out

    def fractional_max_pool_backward(grad_output, x, kernel_size, output_size=None,
                                     output_ratio=None, return_indices=False, *, samples=None,
                                     rng=None, layout="channels_first", indices=None):
        layout = normalize_layout(layout)
        ks = int_tuple("kernel_size", kernel_size, nd, 1)
        cn = canonical(x, nd, layout, allow_int=True)
        osp = _frac_output(nd, cn.spatial, ks, output_size, output_ratio)
        g5 = _grad5(cn, grad_output, osp, "fractional_max_pool")
        if indices is not None:
            idx = check_indices(indices, cn.user_shape(osp))
        elif samples is not None:
            T = _frac_dtype(cn)
            _, idx = _frac_forward(cn, nd, ks, osp, _frac_samples(cn, nd, samples, None, T), T)
        else:
            raise PoolingError(
                "backward needs the forward's samples= or indices= (without them the windows "
                "would be drawn anew)"
            )
        return _scatter(cn, g5, idx, osp)

    name = f"fractional_max_pool{nd}d"
    axes = "``[..., 0]`` drives W and ``[..., 1]`` H" if nd == 2 else \
        "``[..., 0]`` drives D, ``[..., 1]`` H and ``[..., 2]`` W"
    return (
        _named(fractional_max_pool, name,
               f"Fractional max pooling (Graham 2014) with PyTorch's window sequence:\n"
               f"``alpha = (n - k) / (out - 1)``, ``start_i = int((i + u) * alpha) - int(u * alpha)``,\n"
               f"last start ``n - k``, computed in the input's precision.\n\n"
               f"``samples`` (shape ``(N, C, {nd})``, values in [0, 1); {axes}) is PyTorch's\n"
               f"``_random_samples``: given the same samples the result equals PyTorch's.  Without\n"
               f"it, samples are drawn from ``rng`` (a ``numpy.random.Generator``).  Give\n"
               f"``output_size`` or ``output_ratio`` (in (0, 1); ``int(n * ratio)``)."),
        _named(fractional_max_pool_backward, name + "_backward",
               f"Gradient of :func:`{name}` w.r.t. x; needs the forward's ``samples`` or ``indices``."),
    )


fractional_max_pool2d, fractional_max_pool2d_backward = _make_frac(2)
fractional_max_pool3d, fractional_max_pool3d_backward = _make_frac(3)


# ----------------------------------------------------------------------------- stochastic


def _check_nonneg(cn: Canon):
    v = cn.x5
    if v.size == 0:
        return
    if v.dtype.kind == "f":
        ok = np.isfinite(v) & (v >= 0)
        if not ok.all():
            bad = v[~ok].ravel()[0].item()
            raise PoolingError(
                f"x must be finite and non-negative for stochastic pooling (probabilities are "
                f"proportional to values; apply a ReLU first), got {bad!r}"
            )
    elif v.min() < 0:
        raise PoolingError(
            f"x must be non-negative for stochastic pooling (probabilities are proportional "
            f"to values; apply a ReLU first), got {v.min().item()!r}"
        )


def _stoch_setup(nd, x, kernel_size, stride, padding, layout):
    spec = window_spec(nd, kernel_size, stride, padding, 1, False, layout)
    cn = canonical(x, nd, spec.layout, allow_int=True)
    axes = geo.plan(spec, cn.spatial)
    _check_nonneg(cn)
    return cn, axes, [t.out for t in axes]


def _stoch_infer(cn: Canon, axes, osp):
    out5 = np.empty(cn.canon_shape(osp), np.float64)
    s5 = np.empty(cn.canon_shape(osp), np.float64)
    if out5.size:
        _pick(_k.stoch_infer_forward, cn.x5, out5)(kernel_input(cn), out5, s5, *tables(axes))
    return out5, s5


def _make_stochastic(nd):
    def stochastic_pool(x, kernel_size, stride=None, padding=0, *, training=True, rng=None,
                        return_indices=False, layout="channels_first"):
        training = _bool("training", training)
        want = _bool("return_indices", return_indices)
        if want and not training:
            raise PoolingError("return_indices=True needs training=True (inference samples no cell)")
        cn, axes, osp = _stoch_setup(nd, x, kernel_size, stride, padding, layout)
        if not training:
            out5, _ = _stoch_infer(cn, axes, osp)
            return _user_out(cn, out5, osp, cn.dtype if cn.dtype.kind == "f" else np.dtype(np.float64))
        gen = _generator(rng)
        xin = kernel_input(cn)
        u = gen.random(cn.canon_shape(osp))
        out5 = np.empty(u.shape, xin.dtype)
        idx5 = np.empty(u.shape, np.int64)
        if out5.size:
            _pick(_k.stoch_train_forward, xin, out5)(xin, u, out5, idx5, *tables(axes))
        out = _user_out(cn, out5, osp, cn.dtype)
        return (out, idx5.reshape(out.shape)) if want else out

    def stochastic_pool_backward(grad_output, x, kernel_size, stride=None, padding=0, *,
                                 training=True, rng=None, return_indices=False,
                                 layout="channels_first", indices=None):
        training = _bool("training", training)
        _bool("return_indices", return_indices)
        cn, axes, osp = _stoch_setup(nd, x, kernel_size, stride, padding, layout)
        g5 = _grad5(cn, grad_output, osp, "stochastic_pool")
        if training:
            if indices is None:
                raise PoolingError(
                    "training-mode backward needs the sampled cells: pass indices= from "
                    f"stochastic_pool{nd}d(..., return_indices=True)"
                )
            idx = check_indices(indices, cn.user_shape(osp))
            return _scatter(cn, g5, idx, osp)
        _no_indices(indices, "inference-mode stochastic pooling")
        gx5 = np.empty(cn.x5.shape, g5.dtype)
        if gx5.size:
            out5, s5 = _stoch_infer(cn, axes, osp)
            _pick(_k.stoch_infer_backward, g5, gx5)(g5, kernel_input(cn), out5, s5, gx5, *covers(axes))
        return _to_user(cn, gx5)

    name = f"stochastic_pool{nd}d"
    return (
        _named(stochastic_pool, name,
               f"{nd}-D stochastic pooling (Zeiler & Fergus 2013) of non-negative x.\n\n"
               f"``training=True``: each window outputs one of its cells, drawn with probability\n"
               f"value / window sum from ``rng`` (a ``numpy.random.Generator``; one uniform draw per\n"
               f"output, in output order); an all-zero window outputs 0 from a uniformly drawn\n"
               f"cell.  ``return_indices=True`` also returns the drawn cells (per-plane flat\n"
               f"positions), which the backward pass needs.  ``training=False``: the\n"
               f"probability-weighted average ``sum a^2 / sum a`` (0 for an all-zero window).\n"
               f"Padding cells are zeros (never drawn).  Negative, NaN or infinite x is an error."),
        _named(stochastic_pool_backward, name + "_backward",
               f"Gradient of :func:`{name}` w.r.t. x.  Training: ``grad_output`` routed to the\n"
               f"drawn cells (pass ``indices``).  Inference: ``(2 a_j - out) / sum a`` per window\n"
               f"(0 for all-zero windows)."),
    )


stochastic_pool1d, stochastic_pool1d_backward = _make_stochastic(1)
stochastic_pool2d, stochastic_pool2d_backward = _make_stochastic(2)
stochastic_pool3d, stochastic_pool3d_backward = _make_stochastic(3)


# ----------------------------------------------------------------------------- mixed


def _alpha(alpha, cn: Canon, nd):
    """``(value as float64 array broadcastable to the output, per_channel)``."""
    if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
        return np.float64(_real("alpha", alpha)), False
    a = as_array(alpha, "alpha")
    if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
        raise PoolingTypeError(f"alpha must be a real number or a real per-channel array, got dtype {a.dtype}")
    if a.ndim == 0:
        return np.float64(_real("alpha", float(a))), False
    C = _channel_count(cn)
    if a.shape != (C,):
        raise PoolingError(f"alpha must be a scalar or have one value per channel, shape ({C},); got {a.shape}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise PoolingError(f"alpha must be finite, got {a[~np.isfinite(a)][0].item()!r}")
    if cn.layout == "channels_first":
        a = a.reshape((C,) + (1,) * nd)
    return a, True


def _mixed_setup(nd, x, kernel_size, stride, padding, alpha, layout):
    spec = window_spec(nd, kernel_size, stride, padding, 1, False, layout)
    cn = canonical(x, nd, spec.layout, allow_int=True)
    axes = geo.plan(spec, cn.spatial)   # raises here for windows that do not fit
    a, per_channel = _alpha(alpha, cn, nd)
    return spec, cn, [t.out for t in axes], a, per_channel


def _make_mixed(nd):
    mp, ap = getattr(P, f"max_pool{nd}d"), getattr(P, f"avg_pool{nd}d")
    mpb, apb = getattr(P, f"max_pool{nd}d_backward"), getattr(P, f"avg_pool{nd}d_backward")

    def parts(x, kernel_size, stride, padding, layout):
        mx = mp(x, kernel_size, stride, padding, layout=layout)
        av = ap(x, kernel_size, stride, padding, layout=layout)
        return mx.astype(np.float64), av.astype(np.float64)

    def mixed_pool(x, kernel_size, stride=None, padding=0, *, alpha=0.5, layout="channels_first"):
        spec, cn, osp, a, _ = _mixed_setup(nd, x, kernel_size, stride, padding, alpha, layout)
        mx, av = parts(x, kernel_size, stride, padding, spec.layout)
        dt = cn.dtype if cn.dtype.kind == "f" else np.dtype(np.float64)
        return (a * mx + (1.0 - a) * av).astype(dt)

    def mixed_pool_backward(grad_output, x, kernel_size, stride=None, padding=0, *, alpha=0.5,
                            layout="channels_first", indices=None):
        spec, cn, osp, a, per_channel = _mixed_setup(nd, x, kernel_size, stride, padding, alpha, layout)
        float_backward_input(cn)
        g = check_grad(grad_output, cn.user_shape(osp), "mixed_pool")
        g64 = np.asarray(g, dtype=np.float64)
        cdt = compute_dtype(cn.dtype)
        gmax = mpb((g64 * a).astype(cdt), x, kernel_size, stride, padding, layout=spec.layout,
                   indices=indices)
        gavg = apb((g64 * (1.0 - a)).astype(cdt), x, kernel_size, stride, padding, layout=spec.layout)
        gx = (gmax.astype(np.float64) + gavg).astype(cn.dtype)
        mx, av = parts(x, kernel_size, stride, padding, spec.layout)
        d = g64 * (mx - av)
        if per_channel:
            ch = (len(cn.shape) - nd - 1) if cn.layout == "channels_first" else len(cn.shape) - 1
            ga = d.sum(axis=tuple(i for i in range(d.ndim) if i != ch)).astype(cn.dtype)
        else:
            ga = cn.dtype.type(d.sum())
        return gx, ga

    name = f"mixed_pool{nd}d"
    return (
        _named(mixed_pool, name,
               f"Mixed pooling (Yu et al. 2014): ``alpha * max_pool{nd}d + (1 - alpha) * avg_pool{nd}d``\n"
               f"with the same window, the average with ``avg_pool{nd}d``'s defaults\n"
               f"(``count_include_pad=True``).  ``alpha`` is a number or one value per channel\n"
               f"(learnable; [0, 1] interpolates).  Integer x gives float64."),
        _named(mixed_pool_backward, name + "_backward",
               f"Gradients of :func:`{name}`: ``(grad_x, grad_alpha)``; ``grad_alpha`` is a scalar\n"
               f"for a scalar alpha, else one value per channel (x's dtype).  ``indices`` (the\n"
               f"max part's, from ``max_pool{nd}d``) skips re-finding the argmax."),
    )


mixed_pool1d, mixed_pool1d_backward = _make_mixed(1)
mixed_pool2d, mixed_pool2d_backward = _make_mixed(2)
mixed_pool3d, mixed_pool3d_backward = _make_mixed(3)


# ----------------------------------------------------------------------------- spatial pyramid


def _levels(levels):
    if is_int(levels):
        levels = (levels,)
    if not isinstance(levels, (tuple, list)) or len(levels) == 0 or not all(is_int(v) for v in levels):
        raise PoolingTypeError(f"levels must be a non-empty sequence of ints, got {levels!r}")
    for v in levels:
        if v < 1:
            raise PoolingError(f"levels must be >= 1, got {tuple(levels)!r}")
    return tuple(int(v) for v in levels)


def _spp_setup(x, levels, mode, layout):
    lv = _levels(levels)
    if not isinstance(mode, str) or mode not in ("max", "avg"):
        raise PoolingError(f"mode must be 'max' or 'avg', got {mode!r}")
    layout = normalize_layout(layout)
    cn = canonical(x, 2, layout, allow_int=True)
    for a, n in enumerate(cn.spatial):
        if n < 1:
            raise PoolingError(f"spatial_pyramid_pool needs a non-empty spatial axis {a}, got size {n}")
    return lv, layout, cn


@public("spatial_pyramid_pool")
def spatial_pyramid_pool(x, levels=(1, 2, 4), *, mode="max", layout="channels_first"):
    """Spatial pyramid pooling (He et al. 2014) of 2-D feature maps.

    For each level ``l``, adaptive max (``mode="max"``) or average (``"avg"``)
    pooling to ``l x l`` bins (PyTorch's bins), flattened channel-major
    ``(N, C, l, l) -> (N, C*l*l)``; levels concatenated in order, so the output
    is ``(N, C * sum(l*l))`` whatever the input size (``(C * sum(l*l),)`` for
    unbatched input).  The feature order is the same for channels-last input.
    """
    lv, layout, cn = _spp_setup(x, levels, mode, layout)
    fn = P.adaptive_max_pool2d if mode == "max" else P.adaptive_avg_pool2d
    parts = []
    for lvl in lv:
        y = fn(x, lvl, layout=layout)
        if layout == "channels_last":
            y = np.moveaxis(y, -1, -3)
        parts.append(y.reshape(y.shape[:-3] + (y.shape[-3] * lvl * lvl,)))   # (-1 fails for an empty batch)
    return np.concatenate(parts, axis=-1)


@public("spatial_pyramid_pool_backward", 1)
def spatial_pyramid_pool_backward(grad_output, x, levels=(1, 2, 4), *, mode="max",
                                  layout="channels_first", indices=None):
    """Gradient of :func:`spatial_pyramid_pool` w.r.t. x (the levels' gradients summed)."""
    lv, layout, cn = _spp_setup(x, levels, mode, layout)
    _no_indices(indices, "spatial_pyramid_pool")
    float_backward_input(cn)
    C = _channel_count(cn)
    lead = cn.lead[:-1] if layout == "channels_first" else cn.lead
    g = check_grad(grad_output, tuple(lead) + (C * sum(v * v for v in lv),), "spatial_pyramid_pool")
    bw = P.adaptive_max_pool2d_backward if mode == "max" else P.adaptive_avg_pool2d_backward
    cdt = compute_dtype(cn.dtype)
    gx = np.zeros(cn.shape, np.float64)
    at = 0
    for lvl in lv:
        piece = np.asarray(g[..., at:at + C * lvl * lvl], dtype=cdt).reshape(tuple(lead) + (C, lvl, lvl))
        at += C * lvl * lvl
        if layout == "channels_last":
            piece = np.moveaxis(piece, -3, -1)
        gx += bw(piece, x, lvl, layout=layout)
    return gx.astype(cn.dtype)


# ----------------------------------------------------------------------------- RoI


def _boxes(boxes, n_images, T):
    """``(K, 5)`` ``[batch, x1, y1, x2, y2]`` in dtype T from either accepted form."""
    per_image = None
    if isinstance(boxes, (list, tuple)):
        arrs = []
        for b in boxes:
            try:
                a = np.asarray(b) if not isinstance(b, np.ndarray) else b
            except Exception:   # ragged: not per-image arrays; the (K, 5) check below says so
                arrs = None
                break
            if a.ndim == 2 and a.shape[1] == 4 or (a.size == 0 and a.ndim >= 1):
                arrs.append(a.reshape(-1, 4))
            else:
                arrs = None
                break
        if arrs is not None and boxes:
            per_image = arrs
    if per_image is not None:
        for i, a in enumerate(per_image):
            if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
                raise PoolingTypeError(f"boxes[{i}] must be a real array, got dtype {a.dtype}")
        rois = np.concatenate(
            [np.concatenate([np.full((len(a), 1), i, np.float64), a.astype(np.float64)], axis=1)
             for i, a in enumerate(per_image)], axis=0)
    else:
        rois = as_array(boxes, "boxes")
        if rois.dtype.kind not in "fiu" or rois.dtype == np.bool_:
            raise PoolingTypeError(f"boxes must be a real array, got dtype {rois.dtype}")
        if rois.ndim != 2 or rois.shape[1] != 5:
            raise PoolingError(
                f"boxes must be (K, 5) rows [batch, x1, y1, x2, y2] or a list of per-image (Ki, 4) "
                f"arrays [x1, y1, x2, y2], got shape {rois.shape}"
            )
        rois = rois.astype(np.float64)
    bid = rois[:, 0]
    ok = np.isfinite(bid) & (bid == np.floor(bid))
    if not ok.all():
        bad = bid[~ok][0].item()
        raise PoolingError(f"boxes' batch indices must be integers, got {bad!r}")
    if bid.size and (bid.min() < 0 or bid.max() >= n_images):
        bad = bid.min() if bid.min() < 0 else bid.max()
        raise PoolingError(f"boxes' batch indices must lie in [0, {n_images}) (x has {n_images} images), got {int(bad)}")
    coords = rois[:, 1:].astype(T)
    if not np.isfinite(coords).all():
        bad = rois[:, 1:][~np.isfinite(coords)][0].item()
        raise PoolingError(f"box coordinates must be finite (in x's precision), got {bad!r}")
    return bid.astype(np.int64), coords


def _roi_setup(x, boxes, output_size, spatial_scale, layout, op):
    layout = normalize_layout(layout)
    xa = as_array(x)
    check_dtype(xa, allow_int=False)
    if xa.ndim != 4:
        want = "(N, C, H, W)" if layout == "channels_first" else "(N, H, W, C)"
        raise PoolingError(f"x must be 4-D {want} for {op}, got {xa.ndim}-D with shape {xa.shape}")
    dt = xa.dtype.newbyteorder("=") if xa.dtype.byteorder not in "=|" else xa.dtype
    T = compute_dtype(dt).type
    x4 = np.ascontiguousarray(xa, dtype=T)
    if layout == "channels_first":
        N, C, H, W = x4.shape
        x5 = x4.reshape(N, C, H, W, 1)
    else:
        N, H, W, C = x4.shape
        x5 = x4.reshape(N, 1, H, W, C)
    x5 = read_only(x5)
    ph, pw = int_tuple("output_size", output_size, 2, 1)
    scale = T(_real("spatial_scale", spatial_scale, positive=True))
    batch, coords = _boxes(boxes, N, T)
    if H < 1 or W < 1:
        raise PoolingError(f"{op} needs a non-empty feature map, got H={H}, W={W}")
    K = len(batch)
    out_shape = (K, C, ph, pw) if layout == "channels_first" else (K, ph, pw, C)
    return dict(layout=layout, x5=x5, dtype=dt, T=T, N=N, C=C, H=H, W=W, ph=ph, pw=pw,
                scale=scale, batch=batch, coords=coords, K=K, out_shape=out_shape,
                x_shape=tuple(xa.shape))


def _out5(s, dtype=None):
    K, C, ph, pw = s["K"], s["C"], s["ph"], s["pw"]
    shape = (K, C, ph, pw, 1) if s["layout"] == "channels_first" else (K, 1, ph, pw, C)
    return np.empty(shape, s["T"] if dtype is None else dtype)


def _batch_order(s):
    order = np.argsort(s["batch"], kind="stable").astype(np.int64)
    ptr = np.zeros(s["N"] + 1, np.int64)
    np.cumsum(np.bincount(s["batch"], minlength=s["N"]), out=ptr[1:])
    return ptr, order


def _roi_route(s, work):
    """The state the kernels run on.  Channels-first maps with several channels go
    through the channels-last kernels (channels innermost, vectorised; measured
    16 ms against 480 ms for 512 boxes on a (2, 256, 50, 50) map) when the
    sampling ``work`` is comparable to the map, so the two transposes (about one
    pass over the map and the output each) are paid back; the summation order
    per output cell is the same either way, so the results are identical."""
    if s["layout"] != "channels_first" or s["C"] < 2 or 4 * work < s["N"] * s["H"] * s["W"]:
        return s
    r = dict(s)
    x4 = s["x5"].reshape(s["N"], s["C"], s["H"], s["W"])
    r["x5"] = read_only(np.ascontiguousarray(x4.transpose(0, 2, 3, 1)).reshape(s["N"], 1, s["H"], s["W"], s["C"]))
    r["layout"] = "channels_last"
    return r


def _from_route(s, r, a5):
    """Kernel output (``(K, ., PH, PW, .)``) -> the user's output shape."""
    if r is s:
        return a5.reshape(s["out_shape"])
    return np.ascontiguousarray(a5.reshape(s["K"], s["ph"], s["pw"], s["C"]).transpose(0, 3, 1, 2))


def _to_route(s, r, a):
    """A user-shaped ``(K, C, PH, PW)`` array -> the kernels' 5-D form."""
    if r is s:
        return np.ascontiguousarray(a).reshape(_out5(s).shape)
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).reshape(_out5(r).shape)


def _roi_grad(s, r, grad_output, op):
    g = check_grad(grad_output, s["out_shape"], op)
    return read_only(_to_route(s, r, np.asarray(g, dtype=s["T"])))


def _roi_user_grad(s, r, gx5):
    if r is s:
        gx = gx5.reshape(s["x_shape"])
    else:
        gx = np.ascontiguousarray(gx5.reshape(s["N"], s["H"], s["W"], s["C"]).transpose(0, 3, 1, 2))
    return gx if gx.dtype == s["dtype"] else gx.astype(s["dtype"])


def _c_round(v):
    """C's round(): half away from zero (NumPy rounds half to even)."""
    t = np.trunc(v)
    return t + np.where(np.abs(v - t) >= 0.5, np.sign(v), 0).astype(v.dtype)


def _to_int(v):
    # beyond any feature map size the exact value no longer matters; keeps int64 casts defined
    return np.clip(v, -2.0 ** 40, 2.0 ** 40).astype(np.int64)


def _roi_pool_tables(s):
    T, c = s["T"], s["coords"]
    r = _to_int(_c_round(c * s["scale"]))
    rw = np.maximum(r[:, 2] - r[:, 0] + 1, 1)
    rh = np.maximum(r[:, 3] - r[:, 1] + 1, 1)
    bh = rh.astype(T) / T(s["ph"])
    bw = rw.astype(T) / T(s["pw"])

    def bins(b, start, n, size):
        i = np.arange(n).astype(T)
        lo = _to_int(np.floor(i[None, :] * b[:, None])) + start[:, None]
        hi = _to_int(np.ceil((i[None, :] + T(1)) * b[:, None])) + start[:, None]
        return np.clip(lo, 0, size), np.clip(hi, 0, size)

    hs, he = bins(bh, r[:, 1], s["ph"], s["H"])
    ws, we = bins(bw, r[:, 0], s["pw"], s["W"])
    return hs, he, ws, we


def _roi_pool_work(tabs):
    hs, he, ws, we = tabs
    return int(((he - hs).sum(axis=1) * (we - ws).sum(axis=1)).sum())


def _roi_pool_forward(s, tabs, r):
    out5 = _out5(r)
    arg5 = _out5(r, np.int64)
    if out5.size:
        T = s["T"]
        _pick(_k.roi_pool_forward, r["x5"], out5)(r["x5"], out5, arg5, s["batch"], *tabs,
                            T(-np.finfo(np.float32).max), T(0))
    return out5, arg5


# sample rows per axis over all boxes; beyond this the tables alone take gigabytes
_MAX_SAMPLE_ROWS = 1 << 26


def _roi_axis(start, bin_, grid, n_bins, size, T):
    """torchvision's sample rows along one axis, for all RoIs: offsets and tables."""
    per = grid * n_bins
    if per.sum() > _MAX_SAMPLE_ROWS:
        k = int(np.argmax(per))
        raise PoolingError(
            f"adaptive sampling (sampling_ratio <= 0) would take {int(grid[k])} samples per bin "
            f"along one axis for box {k}; pass a positive sampling_ratio or smaller boxes"
        )
    off = np.zeros(len(grid), np.int64)
    if len(grid):
        off[1:] = np.cumsum(per)[:-1]
    total = int(per.sum())
    k = np.repeat(np.arange(len(grid)), per)
    j = np.arange(total) - np.repeat(off, per)
    g = np.maximum(grid[k], 1)
    b, i = j // g, j % g
    # start + b * bin + (i + .5) * bin / grid, left to right, in the input's precision
    v = (start[k] + b.astype(T) * bin_[k]) + ((i.astype(T) + T(0.5)) * bin_[k]) / grid[k].astype(T)
    valid = (v >= -1.0) & (v <= size)
    v = np.where(v <= 0, T(0), v)
    lo = _to_int(v)
    top = lo >= size - 1
    lo = np.where(top, size - 1, lo)
    hi = np.where(top, size - 1, lo + 1)
    v = np.where(top, lo.astype(T), v)
    lw = (v - lo.astype(T)).astype(T)
    hw = (T(1) - lw).astype(T)
    lo = np.where(valid, lo, -1)
    hi = np.where(valid, hi, -1)
    lw = np.where(valid, lw, T(0)).astype(T)
    hw = np.where(valid, hw, T(0)).astype(T)
    return off, lo, hi, lw, hw


def _roi_align_tables(s, sampling_ratio, aligned):
    T, c = s["T"], s["coords"]
    off = T(0.5) if aligned else T(0)
    sw, sh = c[:, 0] * s["scale"] - off, c[:, 1] * s["scale"] - off
    ew, eh = c[:, 2] * s["scale"] - off, c[:, 3] * s["scale"] - off
    rw, rh = ew - sw, eh - sh
    if not aligned:   # torchvision forces malformed RoIs to 1x1
        rw, rh = np.maximum(rw, T(1)), np.maximum(rh, T(1))
    bh, bw = rh / T(s["ph"]), rw / T(s["pw"])
    if sampling_ratio > 0:
        gh = np.full(s["K"], sampling_ratio, np.int64)
        gw = gh.copy()
    else:
        gh = np.maximum(_to_int(np.ceil(bh)), 0)
        gw = np.maximum(_to_int(np.ceil(bw)), 0)
    # a kernel task lists the samples of one bin row of one RoI in a buffer of its own
    per_task = gh.astype(np.float64) * gw * s["pw"]
    if per_task.size and per_task.max() > _MAX_ROW_SAMPLES:
        k = int(np.argmax(per_task))
        raise PoolingError(
            f"box {k} would take {int(gh[k])} x {int(gw[k])} samples per bin, {s['pw']} bins a "
            f"row: more than {_MAX_ROW_SAMPLES} samples per row; pass a smaller sampling_ratio, "
            f"spatial_scale or box"
        )
    count = np.maximum(gh * gw, 1).astype(T)
    yoff, ylo, yhi, ly, hy = _roi_axis(sh, bh, gh, s["ph"], s["H"], T)
    xoff, xlo, xhi, lx, hx = _roi_axis(sw, bw, gw, s["pw"], s["W"], T)
    return (yoff, gh, xoff, gw, count, ylo, yhi, ly, hy, xlo, xhi, lx, hx)


def _roi_align_work(s, tabs):
    gh, gw = tabs[1], tabs[3]
    return int((gh * gw).sum()) * s["ph"] * s["pw"] * 4   # four corners per sample


_MAX_ROW_SAMPLES = 1 << 22


def _roi_align_args(sampling_ratio, aligned):
    if not is_int(sampling_ratio):
        raise PoolingTypeError(f"sampling_ratio must be an int, got {sampling_ratio!r}")
    if sampling_ratio > _MAX_ROW_SAMPLES:
        raise PoolingError(f"sampling_ratio must be <= {_MAX_ROW_SAMPLES}, got {sampling_ratio!r}")
    return int(sampling_ratio), _bool("aligned", aligned)


@public("roi_pool")
def roi_pool(x, boxes, output_size, spatial_scale=1.0, *, return_indices=False,
             layout="channels_first"):
    """torchvision's ``roi_pool`` (Fast R-CNN RoI max pooling) on ``(N, C, H, W)`` maps.

    ``boxes``: ``(K, 5)`` rows ``[batch, x1, y1, x2, y2]`` or a list of per-image
    ``(Ki, 4)`` arrays; corners are scaled by ``spatial_scale`` and rounded half
    away from zero (C's ``round``), the RoI is split into ``output_size`` integer
    bins, and each bin's maximum is taken (an empty bin gives 0; NaN is skipped,
    as in torchvision and onnxruntime's ``MaxRoiPool``).  Returns ``(K, C, PH, PW)``
    (``(K, PH, PW, C)`` channels-last); ``return_indices=True`` also returns each
    bin's argmax (flat ``h * W + w`` in its image plane, -1 for empty bins).
    """
    want = _bool("return_indices", return_indices)
    s = _roi_setup(x, boxes, output_size, spatial_scale, layout, "roi_pool")
    tabs = _roi_pool_tables(s)
    r = _roi_route(s, _roi_pool_work(tabs))
    out5, arg5 = _roi_pool_forward(s, tabs, r)
    out = _from_route(s, r, out5).astype(s["dtype"], copy=False)
    return (out, _from_route(s, r, arg5)) if want else out


@public("roi_pool_backward", 1)
def roi_pool_backward(grad_output, x, boxes, output_size, spatial_scale=1.0, *,
                      return_indices=False, layout="channels_first", indices=None):
    """Gradient of :func:`roi_pool` w.r.t. x: each bin's gradient to its argmax cell."""
    _bool("return_indices", return_indices)
    s = _roi_setup(x, boxes, output_size, spatial_scale, layout, "roi_pool")
    tabs = _roi_pool_tables(s)
    r = _roi_route(s, _roi_pool_work(tabs))
    g5 = _roi_grad(s, r, grad_output, "roi_pool")
    if indices is None:
        arg5 = read_only(_roi_pool_forward(s, tabs, r)[1])
    else:
        idx = as_array(indices, "indices")
        if idx.dtype.kind not in "iu":
            raise PoolingTypeError(f"indices must be an integer array, got dtype {idx.dtype}")
        if tuple(idx.shape) != s["out_shape"]:
            raise PoolingError(f"indices must have the forward output's shape {s['out_shape']}, got {idx.shape}")
        if idx.size and (idx.min() < -1 or idx.max() >= s["H"] * s["W"]):
            bad = idx.min() if idx.min() < -1 else idx.max()
            raise PoolingError(f"indices must lie in [-1, {s['H'] * s['W']}) (-1: empty bin), got {int(bad)}")
        arg5 = read_only(_to_route(s, r, np.asarray(idx, dtype=np.int64)))
    gx5 = np.empty(r["x5"].shape, s["T"])
    if gx5.size:
        _pick(_k.roi_pool_backward, g5, gx5)(g5, arg5, gx5, *_batch_order(s))
    return _roi_user_grad(s, r, gx5)


@public("roi_align")
def roi_align(x, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False, *,
              layout="channels_first"):
    """torchvision's ``roi_align`` (Mask R-CNN) on ``(N, C, H, W)`` maps.

    Each of the ``output_size`` bins averages ``sampling_ratio x sampling_ratio``
    bilinear samples (``ceil(bin size)`` per axis when ``sampling_ratio <= 0``);
    ``aligned=True`` shifts the box by half a pixel (onnxruntime's ``RoiAlign``
    with ``coordinate_transformation_mode="half_pixel"``); ``aligned=False`` forces
    RoIs to at least 1x1 (``"output_half_pixel"``).  Samples outside
    ``[-1, size]`` contribute 0.  ``boxes`` as in :func:`roi_pool`; arithmetic in
    x's precision, in torchvision's order.  Returns ``(K, C, PH, PW)``.
    """
    sr, al = _roi_align_args(sampling_ratio, aligned)
    s = _roi_setup(x, boxes, output_size, spatial_scale, layout, "roi_align")
    tabs = _roi_align_tables(s, sr, al)
    r = _roi_route(s, _roi_align_work(s, tabs))
    out5 = _out5(r)
    if out5.size:
        _pick(_k.roi_align_forward, r["x5"], out5)(r["x5"], out5, s["batch"], *tabs)
    return _from_route(s, r, out5).astype(s["dtype"], copy=False)


@public("roi_align_backward", 1)
def roi_align_backward(grad_output, x, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1,
                       aligned=False, *, layout="channels_first", indices=None):
    """Gradient of :func:`roi_align` w.r.t. x (bilinear weights / sample count, added per
    image plane in RoI, bin and sample order)."""
    sr, al = _roi_align_args(sampling_ratio, aligned)
    s = _roi_setup(x, boxes, output_size, spatial_scale, layout, "roi_align")
    _no_indices(indices, "roi_align")
    tabs = _roi_align_tables(s, sr, al)
    r = _roi_route(s, _roi_align_work(s, tabs))
    g5 = _roi_grad(s, r, grad_output, "roi_align")
    gx5 = np.empty(r["x5"].shape, s["T"])
    if gx5.size:
        _pick(_k.roi_align_backward, g5, gx5)(g5, gx5, *_batch_order(s), *tabs)
    return _roi_user_grad(s, r, gx5)
