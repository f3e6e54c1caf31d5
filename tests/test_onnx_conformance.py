"""ONNX's own pooling conformance cases, run by the fastpool backend.

onnx ships its node test cases as code: ``onnx.backend.test.BackendTest``
builds them in memory (model, inputs, expected outputs from the spec's
reference) and compares with what our backend returns.  Every pooling case is
either run here or listed in ``EXCLUDED`` with its reason; a test checks that
the two lists cover all of ONNX's pooling cases, so a new case in a later onnx
release cannot go unnoticed.

Besides the node cases, onnx ships models exported from PyTorch
(``pytorch-converted``, ``pytorch-operator``); the pooling ones run here too.
"""

from __future__ import annotations

import re
import warnings

import pytest

pytest.importorskip("onnx", reason="the ONNX conformance cases need the onnx package")

import onnx.backend.test  # noqa: E402

from onnx_ops.backend import FastpoolBackend  # noqa: E402
from onnx_ops.errors import UnsupportedOpError  # noqa: E402

RUN = r"^test_(averagepool|maxpool|lppool|globalaveragepool|globalmaxpool)(_|$)"
POOLING = r"(?i)pool|roi"

# case -> (error the backend must raise, reason the case is not compared)
EXCLUDED = {
    "test_maxunpool_export_without_output_shape": (
        "MaxUnpool", "fastpool has no unpooling kernel yet"),
    "test_maxunpool_export_with_output_shape": (
        "MaxUnpool", "fastpool has no unpooling kernel yet; besides, this case's expected output "
        "contradicts the ONNX spec, onnxruntime and PyTorch (onnx#2398)"),
    "test_roialign_aligned_false": ("RoiAlign", "fastpool has no RoI align kernel yet"),
    "test_roialign_aligned_true": ("RoiAlign", "fastpool has no RoI align kernel yet"),
    "test_roialign_mode_max": ("RoiAlign", "fastpool has no RoI align kernel yet (and ONNX's max "
                                           "mode takes the max of weighted corners, onnx#4764)"),
    # pytorch-converted models that wrap the pool in ops outside the backend's set
    "test_AvgPool1d": ("Unsqueeze", "the graph is Unsqueeze -> AveragePool -> Squeeze; the "
                                    "backend runs pooling operators only"),
    "test_AvgPool1d_stride": ("Unsqueeze", "the graph is Unsqueeze -> AveragePool -> Squeeze; "
                                           "the backend runs pooling operators only"),
}

with warnings.catch_warnings():  # onnx's case generators warn about casts of other ops
    warnings.simplefilter("ignore")
    _runner = onnx.backend.test.BackendTest(FastpoolBackend, __name__)
_runner.include(POOLING)
_CLASSES = _runner.test_cases


def _cases(pattern):
    found = {}
    for cls in _CLASSES.values():
        for attr in dir(cls):
            if attr.startswith("test_") and attr.endswith("_cpu") and re.search(pattern, attr[:-4]):
                found[attr[:-4]] = cls
    return found


ALL_POOLING = _cases(POOLING)
NODE_CASES = {n: c for n, c in _cases(RUN).items() if c.__name__ == "OnnxBackendNodeModelTest"}
MODEL_CASES = {n: c for n, c in ALL_POOLING.items()
               if c.__name__ != "OnnxBackendNodeModelTest" and n not in EXCLUDED}


def _run(name: str) -> None:
    cls = ALL_POOLING[name]
    getattr(cls(name + "_cpu"), name + "_cpu")()


def test_every_pooling_case_is_run_or_excluded_with_a_reason():
    assert len(NODE_CASES) == 51  # onnx 1.23: 51 runnable pooling node cases
    covered = set(NODE_CASES) | set(MODEL_CASES) | set(EXCLUDED)
    assert covered == set(ALL_POOLING)
    assert not set(EXCLUDED) & (set(NODE_CASES) | set(MODEL_CASES))


@pytest.mark.parametrize("name", sorted(NODE_CASES))
def test_onnx_node_case(name):
    _run(name)


@pytest.mark.parametrize("name", sorted(MODEL_CASES))
def test_onnx_pytorch_exported_model(name):
    _run(name)


@pytest.mark.parametrize("name", sorted(EXCLUDED))
def test_excluded_case_fails_with_a_clear_error(name):
    op, reason = EXCLUDED[name]
    cls = ALL_POOLING[name]
    model_test = getattr(cls, name + "_cpu")
    # node cases reach prepare(); file-based ones ask is_compatible() first and skip
    if cls.__name__ == "OnnxBackendNodeModelTest":
        with pytest.raises(NotImplementedError, match=op) as info:
            model_test(cls(name + "_cpu"))
        assert isinstance(info.value, UnsupportedOpError)
    else:
        with pytest.raises(Exception, match="Not compatible"):
            model_test(cls(name + "_cpu"))
        with pytest.raises(UnsupportedOpError, match=op):
            FastpoolBackend.prepare(_model_of(name))
    assert reason


def _model_of(name):
    import os

    import onnx
    import onnx.backend.test.loader as loader

    for kind in ("pytorch-converted", "pytorch-operator"):
        path = os.path.join(loader.DATA_DIR, kind, name, "model.onnx")
        if os.path.exists(path):
            return onnx.load(path)
    raise FileNotFoundError(name)
