"""ONNX for fastpool: export layers, prove onnxruntime parity, run ONNX pooling nodes.

``export`` turns a fastpool layer or ``Sequential`` into an ``onnx.ModelProto``;
``check_parity`` / ``assert_parity`` run that model in onnxruntime next to the
same layers in fastpool; ``backend`` executes ONNX pooling graphs with fastpool
(the ONNX backend convention).  This package imports fastpool; fastpool never
imports it.
"""

from . import backend
from .errors import BackendError, ExportError, OnnxOpsError, UnsupportedOpError
from .export import export
from .parity import ParityReport, assert_parity, check_parity

__all__ = [
    "export", "check_parity", "assert_parity", "ParityReport", "backend",
    "OnnxOpsError", "ExportError", "BackendError", "UnsupportedOpError",
]
