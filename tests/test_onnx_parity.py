"""The parity report: comparison rules, the table, and assert_parity."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from fastpool import layers as L  # noqa: E402

import onnx_ops  # noqa: E402
from onnx_ops.parity import compare  # noqa: E402


def test_compare_rules():
    e = np.array([1.0, np.nan, np.inf, -2.0], np.float32)
    assert compare("y", e, e.copy()).ok  # NaN equals NaN, inf equals inf
    c = compare("y", e, np.array([1.0, 0.0, np.inf, -2.0], np.float32))
    assert not c.ok and c.worst_index == (1,) and "NaN on one side" in c.note
    c = compare("y", e, np.array([1.0, np.nan, -np.inf, -2.0], np.float32))
    assert not c.ok and c.worst_index == (2,)
    c = compare("y", np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-9]), rtol=1e-12, atol=0)
    assert not c.ok and c.max_abs == pytest.approx(1e-9) and c.max_rel == pytest.approx(5e-10)
    assert compare("y", np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-9]), rtol=1e-6).ok
    i = np.array([3, 4], np.int64)
    assert not compare("i", i, i + [0, 1]).ok  # integers: exact
    c = compare("y", np.zeros((2, 2)), np.zeros((2, 3)))
    assert not c.ok and c.note == "shape mismatch"
    c = compare("y", np.zeros(2, np.float32), np.zeros(2, np.float64))
    assert not c.ok and "dtype mismatch" in c.note


def test_report_table_and_assert_parity():
    layer = L.MaxPool2d(3, stride=2, padding=1, return_indices=True)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    report = onnx_ops.assert_parity(layer, x)
    text = str(report)
    assert report.ok and report.max_abs == 0
    for part in ("parity of MaxPool2d", "input (2, 3, 8, 8) float32, ONNX opset 21", "fastpool shape",
                 "onnxruntime shape", "max abs err", "worst element", "output", "indices",
                 "parity: PASS"):
        assert part in text
    assert [c.name for c in report.comparisons] == ["output", "indices"]
    assert report.comparisons[1].rtol == 0 and report.comparisons[1].atol == 0


def test_assert_parity_raises_with_the_table():
    # a model of another layer stands in for an exporter bug
    model = onnx_ops.export(L.AvgPool2d(2), (1, 1, 4, 4))
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    with pytest.raises(AssertionError, match=r"(?s)fastpool and onnxruntime differ.*MISMATCH.*parity: FAIL"):
        onnx_ops.assert_parity(L.MaxPool2d(2), x, onnx_model=model)
