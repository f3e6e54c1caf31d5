"""Layer objects for the rest of the pooling family (re-exported by ``fastpool.layers``).

Same conventions as :mod:`fastpool.layers`: constructor arguments are the
function's arguments minus the data, kept as attributes and in ``kwargs``;
``forward`` caches what ``backward`` needs, including what a sampled layer drew
(fractional samples, stochastic cells), so the backward pass routes the
gradient through the same windows.  Layers that take a second input (unpool
indices, RoI boxes) take it in ``forward``.
"""

from __future__ import annotations

import numpy as np

from . import family as F
from ._core import check_shape
from ._spec import int_tuple, window_spec
from .errors import PoolingError, PoolingTypeError
from .layers import Layer

__all__ = [
    "MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d",
    "FractionalMaxPool2d", "FractionalMaxPool3d",
    "StochasticPool1d", "StochasticPool2d", "StochasticPool3d",
    "MixedPool1d", "MixedPool2d", "MixedPool3d",
    "SpatialPyramidPool", "RoIPool", "RoIAlign",
]


class _FamilyLayer(Layer):
    @property
    def function(self):
        return getattr(F, self.function_name)

    @property
    def backward_function(self):
        return getattr(F, self.function_name + "_backward")

    def _need_forward(self):
        if self._saved is None:
            raise PoolingError(f"{type(self).__name__}.backward needs a forward call first")
        return self._saved


def _gen(rng):
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    raise PoolingTypeError(f"rng must be a numpy.random.Generator or None, got {type(rng).__name__}")


def _kw(layer, *drop):
    return {k: v for k, v in layer.kwargs.items() if k not in drop}


# ----------------------------------------------------------------------------- max unpool


class _MaxUnpool(_FamilyLayer):
    """``forward(x, indices, output_size=None)``, as ``torch.nn.MaxUnpool*d``."""

    kind = "max_unpool"

    def __init__(self, kernel_size, stride=None, padding=0, *, layout="channels_first"):
        super().__init__(kernel_size=kernel_size, stride=stride, padding=padding, layout=layout)

    def _make_spec(self):
        k = self.kwargs
        int_tuple("kernel_size", k["kernel_size"], self.nd, 1)
        if k["stride"] is not None:
            int_tuple("stride", k["stride"], self.nd, 1)
        int_tuple("padding", k["padding"], self.nd, 0)
        return None

    def forward(self, x, indices, output_size=None):
        out = self.function(x, indices, **self.kwargs, output_size=output_size)
        self._saved = (x, indices, output_size)
        return out

    __call__ = forward

    def backward(self, grad_output):
        x, indices, output_size = self._need_forward()
        return self.backward_function(grad_output, x, indices, **self.kwargs, output_size=output_size)

    def output_shape(self, input_shape, output_size=None) -> tuple:
        s, nd = check_shape(input_shape, (self.nd + 1, self.nd + 2)), self.nd
        if output_size is not None:
            return self.function(np.zeros(s, np.float32), np.zeros(s, np.int64), **self.kwargs,
                                 output_size=output_size).shape
        k = self.kwargs
        ks = int_tuple("kernel_size", k["kernel_size"], nd, 1)
        st = ks if k["stride"] is None else int_tuple("stride", k["stride"], nd, 1)
        pd = int_tuple("padding", k["padding"], nd, 0)
        sp = s[len(s) - nd:] if self.layout == "channels_first" else s[len(s) - nd - 1:-1]
        osp = tuple((n - 1) * a - 2 * p + q for n, a, p, q in zip(sp, st, pd, ks))
        if self.layout == "channels_first":
            return s[: len(s) - nd] + osp
        return s[: len(s) - nd - 1] + osp + s[-1:]


# ----------------------------------------------------------------------------- fractional


class _FractionalMaxPool(_FamilyLayer):
    """Draws fresh samples per forward call from ``rng`` unless ``samples`` is fixed;
    ``last_samples`` holds the ones used (PyTorch's ``_random_samples``)."""

    kind = "fractional_max_pool"

    def __init__(self, kernel_size, output_size=None, output_ratio=None, return_indices=False, *,
                 samples=None, rng=None, layout="channels_first"):
        self._rng = _gen(rng)
        self.last_samples = None
        super().__init__(kernel_size=kernel_size, output_size=output_size,
                         output_ratio=output_ratio, return_indices=return_indices,
                         samples=samples, rng=rng, layout=layout)

    def _make_spec(self):
        k = self.kwargs
        int_tuple("kernel_size", k["kernel_size"], self.nd, 1)
        if (k["output_size"] is None) == (k["output_ratio"] is None):
            raise PoolingError("give exactly one of output_size and output_ratio")
        if k["output_size"] is not None:
            int_tuple("output_size", k["output_size"], self.nd, 1)
        return None

    def _draw(self, x):
        x = np.asarray(x)
        nd = self.nd
        batched = x.ndim == nd + 2
        c = x.shape[x.ndim - nd - 1] if self.layout == "channels_first" else x.shape[-1]
        n = x.shape[0] if batched else 1
        dt = np.float32 if x.dtype in (np.float16, np.float32) else np.float64
        return self._rng.random((n, c, nd), dtype=dt)

    def forward(self, x):
        kw = _kw(self, "samples", "rng", "return_indices")
        samples = self.kwargs["samples"]
        if samples is None:
            if np.ndim(x) not in (self.nd + 1, self.nd + 2):
                return self.function(x, **kw, samples=None, rng=self._rng)  # raises the usual error
            samples = self._draw(x)
        out, idx = self.function(x, **kw, return_indices=True, samples=samples)
        self.last_samples = samples
        self._saved = (x, idx, samples)
        return (out, idx) if self.returns_indices else out

    __call__ = forward

    def backward(self, grad_output):
        x, idx, samples = self._need_forward()
        return self.backward_function(grad_output, x, **_kw(self, "samples", "rng"),
                                      samples=samples, indices=idx)

    def output_shape(self, input_shape) -> tuple:
        s, nd = check_shape(input_shape, (self.nd + 1, self.nd + 2)), self.nd
        sp = s[len(s) - nd:] if self.layout == "channels_first" else s[len(s) - nd - 1:-1]
        k = self.kwargs
        if k["output_size"] is not None:
            osp = int_tuple("output_size", k["output_size"], nd, 1)
        else:
            r = k["output_ratio"]
            r = (r,) * nd if not isinstance(r, (tuple, list)) else tuple(r)
            osp = tuple(int(n * float(q)) for n, q in zip(sp, r))
        if self.layout == "channels_first":
            return s[: len(s) - nd] + osp
        return s[: len(s) - nd - 1] + osp + s[-1:]


# ----------------------------------------------------------------------------- stochastic


class _StochasticPool(_FamilyLayer):
    """Training mode samples cells from ``rng`` and remembers them for ``backward``;
    ``eval()`` switches to the probability-weighted average, ``train()`` back."""

    kind = "stochastic_pool"

    def __init__(self, kernel_size, stride=None, padding=0, *, training=True, rng=None,
                 layout="channels_first"):
        self._rng = _gen(rng)
        super().__init__(kernel_size=kernel_size, stride=stride, padding=padding,
                         training=bool(training), rng=rng, layout=layout)

    def _make_spec(self):
        k = self.kwargs
        return window_spec(self.nd, k["kernel_size"], k["stride"], k["padding"], 1, False, k["layout"])

    @property
    def training(self):
        return self.kwargs["training"]

    @training.setter
    def training(self, value):
        self.kwargs["training"] = bool(value)

    def train(self, mode=True):
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def forward(self, x):
        kw = _kw(self, "rng")
        if self.training:
            out, idx = self.function(x, **kw, rng=self._rng, return_indices=True)
        else:
            out, idx = self.function(x, **kw), None
        self._saved = (x, idx, self.training)
        return out

    __call__ = forward

    def backward(self, grad_output):
        x, idx, training = self._need_forward()
        kw = _kw(self, "rng", "training")
        return self.backward_function(grad_output, x, **kw, training=training, indices=idx)


# ----------------------------------------------------------------------------- mixed


class _MixedPool(_FamilyLayer):
    """``backward`` returns dL/dx and leaves dL/dalpha in ``grad_alpha``; ``alpha``
    may be reassigned (a learnable parameter)."""

    kind = "mixed_pool"

    def __init__(self, kernel_size, stride=None, padding=0, *, alpha=0.5, layout="channels_first"):
        self.grad_alpha = None
        super().__init__(kernel_size=kernel_size, stride=stride, padding=padding, alpha=alpha,
                         layout=layout)

    def _make_spec(self):
        k = self.kwargs
        return window_spec(self.nd, k["kernel_size"], k["stride"], k["padding"], 1, False, k["layout"])

    @property
    def alpha(self):
        return self.kwargs["alpha"]

    @alpha.setter
    def alpha(self, value):
        self.kwargs["alpha"] = value

    def forward(self, x):
        out = self.function(x, **self.kwargs)
        self._saved = (x,)
        return out

    __call__ = forward

    def backward(self, grad_output):
        (x,) = self._need_forward()
        gx, self.grad_alpha = self.backward_function(grad_output, x, **self.kwargs)
        return gx


# ----------------------------------------------------------------------------- SPP and RoI


class SpatialPyramidPool(_FamilyLayer):
    """Layer form of :func:`fastpool.spatial_pyramid_pool`."""

    kind = "spatial_pyramid_pool"

    def __init__(self, levels=(1, 2, 4), *, mode="max", layout="channels_first"):
        super().__init__(levels=levels, mode=mode, layout=layout)

    def _make_spec(self):
        F._levels(self.kwargs["levels"])
        if self.kwargs["mode"] not in ("max", "avg"):
            raise PoolingError(f"mode must be 'max' or 'avg', got {self.kwargs['mode']!r}")
        return None

    def forward(self, x):
        out = self.function(x, **self.kwargs)
        self._saved = (x,)
        return out

    __call__ = forward

    def backward(self, grad_output):
        (x,) = self._need_forward()
        return self.backward_function(grad_output, x, **self.kwargs)

    def output_shape(self, input_shape) -> tuple:
        s = check_shape(input_shape, (3, 4))
        lv = F._levels(self.kwargs["levels"])
        c = s[-3] if self.layout == "channels_first" else s[-1]
        feats = c * sum(v * v for v in lv)
        return (s[0], feats) if len(s) == 4 else (feats,)


class _RoILayer(_FamilyLayer):
    def _make_spec(self):
        int_tuple("output_size", self.kwargs["output_size"], 2, 1)
        F._real("spatial_scale", self.kwargs["spatial_scale"], positive=True)
        return None

    def backward(self, grad_output):
        x, boxes, idx = self._need_forward()
        kw = dict(self.kwargs)
        if idx is not None:
            kw["indices"] = idx
        return self.backward_function(grad_output, x, boxes, **kw)

    def output_shape(self, input_shape, num_boxes=None) -> tuple:
        """``(K, C, PH, PW)`` (``(K, PH, PW, C)`` channels-last); K is ``num_boxes``."""
        s = check_shape(input_shape)
        if len(s) != 4:
            want = "(N, C, H, W)" if self.layout == "channels_first" else "(N, H, W, C)"
            raise PoolingError(f"{type(self).__name__} expects 4-D {want} input, got {len(s)}-D: {s}")
        ph, pw = int_tuple("output_size", self.kwargs["output_size"], 2, 1)
        if self.layout == "channels_first":
            return (num_boxes, s[1], ph, pw)
        return (num_boxes, ph, pw, s[-1])


class RoIPool(_RoILayer):
    """Layer form of :func:`fastpool.roi_pool`: ``forward(x, boxes)``."""

    kind = "roi_pool"

    def __init__(self, output_size, spatial_scale=1.0, *, layout="channels_first"):
        super().__init__(output_size=output_size, spatial_scale=spatial_scale, layout=layout)

    def forward(self, x, boxes):
        out, idx = self.function(x, boxes, **self.kwargs, return_indices=True)
        self._saved = (x, boxes, idx)
        return out

    __call__ = forward


class RoIAlign(_RoILayer):
    """Layer form of :func:`fastpool.roi_align`: ``forward(x, boxes)``."""

    kind = "roi_align"

    def __init__(self, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False, *,
                 layout="channels_first"):
        super().__init__(output_size=output_size, spatial_scale=spatial_scale,
                         sampling_ratio=sampling_ratio, aligned=aligned, layout=layout)

    def _make_spec(self):
        super()._make_spec()
        F._roi_align_args(self.kwargs["sampling_ratio"], self.kwargs["aligned"])
        return None

    def forward(self, x, boxes):
        out = self.function(x, boxes, **self.kwargs)
        self._saved = (x, boxes, None)
        return out

    __call__ = forward


def _ranked(base, nd, name, fname):
    return type(name, (base,), {"nd": nd, "__doc__": f"Layer form of :func:`fastpool.{fname}`.\n\n"
                                + (base.__doc__ or ""), "__module__": __name__})


MaxUnpool1d = _ranked(_MaxUnpool, 1, "MaxUnpool1d", "max_unpool1d")
MaxUnpool2d = _ranked(_MaxUnpool, 2, "MaxUnpool2d", "max_unpool2d")
MaxUnpool3d = _ranked(_MaxUnpool, 3, "MaxUnpool3d", "max_unpool3d")
FractionalMaxPool2d = _ranked(_FractionalMaxPool, 2, "FractionalMaxPool2d", "fractional_max_pool2d")
FractionalMaxPool3d = _ranked(_FractionalMaxPool, 3, "FractionalMaxPool3d", "fractional_max_pool3d")
StochasticPool1d = _ranked(_StochasticPool, 1, "StochasticPool1d", "stochastic_pool1d")
StochasticPool2d = _ranked(_StochasticPool, 2, "StochasticPool2d", "stochastic_pool2d")
StochasticPool3d = _ranked(_StochasticPool, 3, "StochasticPool3d", "stochastic_pool3d")
MixedPool1d = _ranked(_MixedPool, 1, "MixedPool1d", "mixed_pool1d")
MixedPool2d = _ranked(_MixedPool, 2, "MixedPool2d", "mixed_pool2d")
MixedPool3d = _ranked(_MixedPool, 3, "MixedPool3d", "mixed_pool3d")
