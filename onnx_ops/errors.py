"""The exceptions onnx_ops raises; all are :class:`fastpool.PoolingError` subclasses."""

from __future__ import annotations

from fastpool.errors import PoolingError


class OnnxOpsError(PoolingError):
    """Base class of every onnx_ops error."""


class ExportError(OnnxOpsError):
    """A layer cannot be exported as asked (opset, dtype, batch axis, native_only)."""


class BackendError(OnnxOpsError):
    """An ONNX model or node the fastpool backend cannot run as given (bad attributes,
    wrong input rank or dtype, ...); the message names the node and the rule."""


class UnsupportedOpError(BackendError, NotImplementedError):
    """The model holds an operator the fastpool backend does not execute."""
