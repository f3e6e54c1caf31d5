"""Layer objects: arguments held once, ``forward`` caches what ``backward`` needs.

Each layer keeps its constructor arguments as attributes (the names of the
functional API) and in ``layer.kwargs``; ``layer.spec`` is the normalised
geometry the ONNX exporter lowers.  ``Sequential`` chains layers forward and
their gradients backward.
"""

from __future__ import annotations

import numpy as np

from . import pooling as P
from ._core import check_shape
from ._spec import adaptive_spec, norm_type_value, normalize_layout, window_spec
from .errors import PoolingError

__all__ = [
    "Layer", "Sequential",
    "MaxPool1d", "MaxPool2d", "MaxPool3d",
    "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "LPPool1d", "LPPool2d", "LPPool3d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
    "GlobalAvgPool", "GlobalMaxPool", "GlobalLpPool",
]


class Layer:
    """Base class: subclasses set ``kind`` and ``nd`` and fill ``kwargs``."""

    kind: str = ""      # "max_pool", "avg_pool", "lp_pool", "adaptive_avg_pool", ...
    nd: int | None = None

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        for k, v in kwargs.items():
            setattr(self, k, v)
        self.layout = normalize_layout(kwargs.get("layout", "channels_first"))
        self.kwargs["layout"] = self.layout
        self.spec = self._make_spec()
        self._saved = None

    @property
    def function_name(self) -> str:
        return self.kind if self.nd is None else f"{self.kind}{self.nd}d"

    @property
    def function(self):
        return getattr(P, self.function_name)

    @property
    def backward_function(self):
        return getattr(P, self.function_name + "_backward")

    def _make_spec(self):
        return None

    @property
    def returns_indices(self) -> bool:
        return bool(self.kwargs.get("return_indices", False))

    def forward(self, x):
        kw = dict(self.kwargs)
        if "return_indices" in kw:
            kw["return_indices"] = True
            out, idx = self.function(x, **kw)
            self._saved = (x, idx)
            return (out, idx) if self.returns_indices else out
        out = self.function(x, **kw)
        self._saved = (x, None)
        return out

    __call__ = forward

    def backward(self, grad_output):
        if self._saved is None:
            raise PoolingError(f"{type(self).__name__}.backward needs a forward call first")
        x, idx = self._saved
        return self.backward_function(grad_output, x, **self.kwargs, indices=idx)

    def output_shape(self, input_shape) -> tuple:
        """The forward output's shape for an input shape, without running anything."""
        return P.output_shape(self.spec, input_shape) if self.spec is not None else \
            self.function(np.empty(check_shape(input_shape), np.float32)).shape

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{type(self).__name__}({args})"


# ----------------------------------------------------------------------------- windowed


class _MaxPool(Layer):
    kind = "max_pool"

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                 return_indices=False, *, layout="channels_first"):
        super().__init__(kernel_size=kernel_size, stride=stride, padding=padding,
                         dilation=dilation, ceil_mode=ceil_mode,
                         return_indices=return_indices, layout=layout)

    def _make_spec(self):
        k = self.kwargs
        return window_spec(self.nd, k["kernel_size"], k["stride"], k["padding"], k["dilation"],
                           k["ceil_mode"], k["layout"])


class _AvgPool(Layer):
    kind = "avg_pool"

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None, *, dilation=1,
                 layout="channels_first"):
        super().__init__(kernel_size=kernel_size, stride=stride, padding=padding,
                         ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                         divisor_override=divisor_override, dilation=dilation, layout=layout)

    def _make_spec(self):
        k = self.kwargs
        P._divisor_override(k["divisor_override"])
        return window_spec(self.nd, k["kernel_size"], k["stride"], k["padding"], k["dilation"],
                           k["ceil_mode"], k["layout"])


class _LPPool(Layer):
    kind = "lp_pool"

    def __init__(self, norm_type, kernel_size, stride=None, ceil_mode=False, *, padding=0,
                 dilation=1, torch_compat=False, power_mean=False, layout="channels_first"):
        super().__init__(norm_type=norm_type, kernel_size=kernel_size, stride=stride,
                         ceil_mode=ceil_mode, padding=padding, dilation=dilation,
                         torch_compat=torch_compat, power_mean=power_mean, layout=layout)

    def _make_spec(self):
        k = self.kwargs
        norm_type_value(k["norm_type"])
        P._lp_mode(k["torch_compat"], k["power_mean"])
        return window_spec(self.nd, k["kernel_size"], k["stride"], k["padding"], k["dilation"],
                           k["ceil_mode"], k["layout"])


class _AdaptiveAvgPool(Layer):
    kind = "adaptive_avg_pool"

    def __init__(self, output_size, *, layout="channels_first"):
        super().__init__(output_size=output_size, layout=layout)

    def _make_spec(self):
        return adaptive_spec(self.nd, self.kwargs["output_size"], self.kwargs["layout"])


class _AdaptiveMaxPool(Layer):
    kind = "adaptive_max_pool"

    def __init__(self, output_size, return_indices=False, *, layout="channels_first"):
        super().__init__(output_size=output_size, return_indices=return_indices, layout=layout)

    def _make_spec(self):
        return adaptive_spec(self.nd, self.kwargs["output_size"], self.kwargs["layout"])


def _ranked(base, nd, name, doc):
    return type(name, (base,), {"nd": nd, "__doc__": doc, "__module__": __name__})


MaxPool1d = _ranked(_MaxPool, 1, "MaxPool1d", "Layer form of :func:`fastpool.max_pool1d`.")
MaxPool2d = _ranked(_MaxPool, 2, "MaxPool2d", "Layer form of :func:`fastpool.max_pool2d`.")
MaxPool3d = _ranked(_MaxPool, 3, "MaxPool3d", "Layer form of :func:`fastpool.max_pool3d`.")
AvgPool1d = _ranked(_AvgPool, 1, "AvgPool1d", "Layer form of :func:`fastpool.avg_pool1d`.")
AvgPool2d = _ranked(_AvgPool, 2, "AvgPool2d", "Layer form of :func:`fastpool.avg_pool2d`.")
AvgPool3d = _ranked(_AvgPool, 3, "AvgPool3d", "Layer form of :func:`fastpool.avg_pool3d`.")
LPPool1d = _ranked(_LPPool, 1, "LPPool1d", "Layer form of :func:`fastpool.lp_pool1d`.")
LPPool2d = _ranked(_LPPool, 2, "LPPool2d", "Layer form of :func:`fastpool.lp_pool2d`.")
LPPool3d = _ranked(_LPPool, 3, "LPPool3d", "Layer form of :func:`fastpool.lp_pool3d`.")
AdaptiveAvgPool1d = _ranked(_AdaptiveAvgPool, 1, "AdaptiveAvgPool1d", "Layer form of :func:`fastpool.adaptive_avg_pool1d`.")
AdaptiveAvgPool2d = _ranked(_AdaptiveAvgPool, 2, "AdaptiveAvgPool2d", "Layer form of :func:`fastpool.adaptive_avg_pool2d`.")
AdaptiveAvgPool3d = _ranked(_AdaptiveAvgPool, 3, "AdaptiveAvgPool3d", "Layer form of :func:`fastpool.adaptive_avg_pool3d`.")
AdaptiveMaxPool1d = _ranked(_AdaptiveMaxPool, 1, "AdaptiveMaxPool1d", "Layer form of :func:`fastpool.adaptive_max_pool1d`.")
AdaptiveMaxPool2d = _ranked(_AdaptiveMaxPool, 2, "AdaptiveMaxPool2d", "Layer form of :func:`fastpool.adaptive_max_pool2d`.")
AdaptiveMaxPool3d = _ranked(_AdaptiveMaxPool, 3, "AdaptiveMaxPool3d", "Layer form of :func:`fastpool.adaptive_max_pool3d`.")


# ----------------------------------------------------------------------------- global


class GlobalAvgPool(Layer):
    """Layer form of :func:`fastpool.global_avg_pool` (any spatial rank)."""

    kind = "global_avg_pool"

    def __init__(self, *, keepdims=True, layout="channels_first"):
        super().__init__(keepdims=keepdims, layout=layout)


class GlobalMaxPool(Layer):
    """Layer form of :func:`fastpool.global_max_pool` (any spatial rank)."""

    kind = "global_max_pool"

    def __init__(self, *, keepdims=True, return_indices=False, layout="channels_first"):
        super().__init__(keepdims=keepdims, return_indices=return_indices, layout=layout)


class GlobalLpPool(Layer):
    """Layer form of :func:`fastpool.global_lp_pool` (any spatial rank)."""

    kind = "global_lp_pool"

    def __init__(self, norm_type=2.0, *, keepdims=True, layout="channels_first"):
        norm_type_value(norm_type)
        super().__init__(norm_type=norm_type, keepdims=keepdims, layout=layout)


def _global_output_shape(self, input_shape):
    s = check_shape(input_shape, range(3, 6))
    if self.kwargs["keepdims"]:
        return s[:2] + (1,) * (len(s) - 2) if self.layout == "channels_first" else \
            s[:1] + (1,) * (len(s) - 2) + s[-1:]
    return (s[0], s[1]) if self.layout == "channels_first" else (s[0], s[-1])


for _cls in (GlobalAvgPool, GlobalMaxPool, GlobalLpPool):
    _cls.output_shape = _global_output_shape


# ----------------------------------------------------------------------------- Sequential


class Sequential:
    """Layers applied in order; ``backward`` runs their gradients in reverse."""

    def __init__(self, *layers):
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, (Layer, Sequential)):
                raise PoolingError(f"Sequential takes fastpool layers, got {type(layer).__name__} at position {i}")
            if isinstance(layer, Layer) and layer.returns_indices and i != len(layers) - 1:
                raise PoolingError(
                    f"layer {i} ({layer!r}) returns indices, which only the last layer of a Sequential may do"
                )
        self.layers = list(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, grad_output):
        g = grad_output
        for layer in reversed(self.layers):
            g = layer.backward(g)
        return g

    def output_shape(self, input_shape) -> tuple:
        s = check_shape(input_shape)
        for layer in self.layers:
            s = layer.output_shape(s)
        return s

    def __iter__(self):
        return iter(self.layers)

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential(\n  {inner}\n)"

from .layers_family import *  # noqa: E402,F401,F403
from .layers_family import __all__ as _family_all  # noqa: E402
__all__ += _family_all
