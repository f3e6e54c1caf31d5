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

RUN = r"^test_(averagepool|maxpool|lppool|globalaveragepool|globalmaxpool|maxunpool|roialign)(_|$)"
POOLING = r"(?i)pool|roi"

# case -> (op, reason the case is not compared).  How each exclusion is checked is in
# test_excluded_case_is_checked_another_way.
EXCLUDED = {
    "test_maxunpool_export_with_output_shape": (
        "MaxUnpool", "the expected output writes the indices into the default 4x4 plane and then "
        "pads it to 5x5 (the ONNX reference implementation's reading), while the spec, "
        "onnxruntime and PyTorch read I as flat indices into the 5x5 output_shape (onnx#2398); "
        "the fastpool backend follows the spec"),
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
NODE_CASES = {n: c for n, c in _cases(RUN).items()
              if c.__name__ == "OnnxBackendNodeModelTest" and n not in EXCLUDED}
MODEL_CASES = {n: c for n, c in ALL_POOLING.items()
               if c.__name__ != "OnnxBackendNodeModelTest" and n not in EXCLUDED}


def _run(name: str) -> None:
    cls = ALL_POOLING[name]
    getattr(cls(name + "_cpu"), name + "_cpu")()


def test_every_pooling_case_is_run_or_excluded_with_a_reason():
    # onnx 1.23: 56 pooling node cases, one excluded (maxunpool with output_shape)
    assert len(NODE_CASES) == 55
    covered = set(NODE_CASES) | set(MODEL_CASES) | set(EXCLUDED)
    assert covered == set(ALL_POOLING)
    assert not set(EXCLUDED) & (set(NODE_CASES) | set(MODEL_CASES))


@pytest.mark.parametrize("name", sorted(NODE_CASES))
def test_onnx_node_case(name):
    _run(name)


@pytest.mark.parametrize("name", sorted(MODEL_CASES))
def test_onnx_pytorch_exported_model(name):
    _run(name)


def _node_case(name):
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return next(c for c in collect_testcases(None) if c.name == name)


@pytest.mark.parametrize("name", sorted(EXCLUDED))
def test_excluded_case_is_checked_another_way(name):
    op, reason = EXCLUDED[name]
    assert reason
    cls = ALL_POOLING[name]
    model_test = getattr(cls, name + "_cpu")
    if name == "test_maxunpool_export_with_output_shape":
        import numpy as np

        from onnx_ops.parity import ort_session

        case = _node_case(name)
        inputs, (expected,) = case.data_sets[0]
        ours = FastpoolBackend.prepare(case.model).run(inputs)[0]
        sess = ort_session(case.model)
        theirs = sess.run(None, dict(zip([i.name for i in sess.get_inputs()], inputs)))[0]
        np.testing.assert_array_equal(ours, theirs)   # the spec's reading, as onnxruntime's
        # indices 5, 7, 13, 15 of a 5x5 plane: (1, 0), (1, 2), (2, 3), (3, 0)
        want = np.zeros((1, 1, 5, 5), np.float32)
        want.reshape(-1)[[5, 7, 13, 15]] = [5, 6, 7, 8]
        np.testing.assert_array_equal(ours, want)
        assert not np.array_equal(ours, expected)
        with pytest.raises(AssertionError):
            model_test(cls(name + "_cpu"))
        return
    # file-based cases ask is_compatible() first and skip
    with pytest.raises(Exception, match="Not compatible"):
        model_test(cls(name + "_cpu"))
    with pytest.raises(UnsupportedOpError, match=op):
        FastpoolBackend.prepare(_model_of(name))


def _model_of(name):
    import os

    import onnx
    import onnx.backend.test.loader as loader

    for kind in ("pytorch-converted", "pytorch-operator"):
        path = os.path.join(loader.DATA_DIR, kind, name, "model.onnx")
        if os.path.exists(path):
            return onnx.load(path)
    raise FileNotFoundError(name)
