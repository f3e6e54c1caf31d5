"""Hostile ONNX input: the backend and ``fastpool check`` given files that are not
ONNX models, truncated models, and malformed pooling nodes answer with a clear
message (BackendError / exit code 2 and one ``fastpool check: error:`` line),
never a trace from deep inside onnx, protobuf, NumPy or Numba.

The attribute checks themselves (missing kernel_shape, negative pads, pads and
strides of the wrong length, unknown auto_pad, wrong input rank...) are in
test_onnx_backend.py; here are the file-level failures, attribute values past
what any array can use, and the command line end to end.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import helper  # noqa: E402

from onnx_ops import backend, cli  # noqa: E402
from onnx_ops.errors import BackendError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
S = (1, 2, 6, 6)


def node_model(op, attrs, shape=S, opset=21):
    node = helper.make_node(op, ["x"], ["y"], name="pool", **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(shape))],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


GOOD = node_model("MaxPool", dict(kernel_shape=[2, 2])).SerializeToString()
NOT_MODELS = {
    "truncated": GOOD[: len(GOOD) // 2],
    "one byte short": GOOD[:-1],
    "binary garbage": bytes(range(256)) * 3,
    "text": b"this is not an ONNX model\n",
    "png header": b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
}


@pytest.mark.parametrize("name", sorted(NOT_MODELS))
def test_backend_refuses_bytes_and_files_that_are_not_models(name, tmp_path):
    blob = NOT_MODELS[name]
    with pytest.raises(BackendError, match=r"is not a readable ONNX model"):
        backend.prepare(blob)
    path = tmp_path / "m.onnx"
    path.write_bytes(blob)
    with pytest.raises(BackendError, match=r"m\.onnx.*is not a readable ONNX model"):
        backend.prepare(str(path))
    assert backend.is_compatible(blob) is False


def test_backend_refuses_missing_files_and_directories(tmp_path):
    with pytest.raises(BackendError, match=r"cannot read the model file.*No such file"):
        backend.prepare(str(tmp_path / "missing.onnx"))
    with pytest.raises(BackendError, match=r"cannot read the model file.*directory"):
        backend.prepare(tmp_path)
    with pytest.raises(BackendError, match=r"imports no default-domain"):
        backend.prepare(b"")   # parses as an empty ModelProto


X = np.random.default_rng(0).standard_normal(S).astype(np.float32)


@pytest.mark.parametrize("op, attrs, match", [
    ("MaxPool", dict(kernel_shape=[2**62 + 1, 2]), r"kernel_size must be <= 2\*\*62"),
    ("AveragePool", dict(kernel_shape=[2, 2], strides=[2**63 - 1, 1]), r"stride must be <= 2\*\*62"),
    ("LpPool", dict(kernel_shape=[2, 2], pads=[2**62 + 5, 0, 0, 0]), r"padding must be <= 2\*\*62"),
    ("MaxPool", dict(kernel_shape=[2, 2], dilations=[2**40, 1], pads=[2**40, 0, 2**40, 0]),
     r"every window must hold an input cell"),
    ("AveragePool", dict(kernel_shape=[7, 2], pads=[0, 0, 0, 0]), r"kernel_size must fit"),
    ("MaxPool", dict(kernel_shape=[2, 2], auto_pad="SAME_UPPER", strides=[2**62, 1]), r"node 'pool'"),
])
def test_attribute_values_past_any_array_are_refused_at_run(op, attrs, match):
    rep = backend.prepare(node_model(op, attrs))
    try:
        y = rep.run([X])
    except BackendError as e:
        assert "node 'pool'" in str(e)
        assert re.search(match, str(e)), str(e)
    else:   # SAME padding with a huge stride is one window: a valid answer
        assert match == r"node 'pool'" and y[0].shape == (1, 2, 1, 6)


@pytest.mark.parametrize("attrs, rois, match", [
    (dict(mode="max", sampling_ratio=2**40), [[0, 0, 3, 3]], r"samples"),
    (dict(mode="max", spatial_scale=1e38), [[0, 0, 3e38, 3e38]], r"not finite"),
    (dict(mode="avg", sampling_ratio=2**40), [[0, 0, 3, 3]], r"sampling_ratio must be <="),
    (dict(mode="avg", spatial_scale=1e30), [[0, 0, 3, 3]], r"samples per row"),
])
def test_roi_align_with_huge_sampling_is_refused(attrs, rois, match):
    node = helper.make_node("RoiAlign", ["x", "r", "b"], ["y"], **attrs)
    with pytest.raises(BackendError, match=match):
        backend.run_node(node, [X, np.asarray(rois, np.float32), np.zeros(len(rois), np.int64)])


# ============================================================================ fastpool check

MALFORMED = {
    "missing kernel_shape": node_model("MaxPool", {}),
    "negative pads": node_model("MaxPool", dict(kernel_shape=[2, 2], pads=[-1, 0, 0, 0])),
    "pads of the wrong length": node_model("AveragePool", dict(kernel_shape=[2, 2], pads=[1, 1])),
    "strides of the wrong length": node_model("LpPool", dict(kernel_shape=[2, 2], strides=[1])),
    "wrong input rank": node_model("MaxPool", dict(kernel_shape=[2, 2]), shape=(1, 2, 6)),
    "unknown auto_pad": node_model("MaxPool", dict(kernel_shape=[2, 2], auto_pad="FOO")),
    "kernel larger than the input": node_model("MaxPool", dict(kernel_shape=[9, 9])),
}


@pytest.mark.parametrize("name", sorted(MALFORMED) + sorted(NOT_MODELS))
def test_check_command_gives_a_clear_error(name, tmp_path, capsys):
    path = tmp_path / "m.onnx"
    if name in MALFORMED:
        onnx.save(MALFORMED[name], str(path))
    else:
        path.write_bytes(NOT_MODELS[name])
    assert cli.main_check([str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fastpool check: error: "), err


def test_fastpool_check_process_exits_cleanly(tmp_path):
    """The installed command line, end to end: exit status 2, one line, no traceback."""
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(NOT_MODELS["truncated"])
    worse = tmp_path / "no_kernel.onnx"
    onnx.save(MALFORMED["missing kernel_shape"], str(worse))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for path in (bad, worse):
        r = subprocess.run([sys.executable, "-m", "fastpool.cli", "check", str(path)], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, (r.stdout, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("fastpool check: error: "), r.stderr


# ============================================================================ export, check_parity, demo

from fastpool import PoolingError  # noqa: E402
from fastpool import layers as L  # noqa: E402
import onnx_ops  # noqa: E402

XP = np.random.default_rng(1).standard_normal((1, 2, 8, 8)).astype(np.float32)


@pytest.mark.parametrize("call", [
    lambda: onnx_ops.export(L.MaxPool2d(2), (1, 2, 8, 8), native_only=np.array([1, 0])),
    lambda: onnx_ops.export(L.AvgPool2d(2), (1, 2, 8, 8), dynamic_batch="yes"),
    lambda: onnx_ops.export(L.MaxPool2d(2), "1,2,8,8"),
    lambda: onnx_ops.export(L.MaxPool2d(2), (1, 2, 8, 8), dtype="complex64"),
    lambda: onnx_ops.export(L.MaxPool2d(2), (1, 2, 8, 8), opset=99),
    lambda: onnx_ops.export(L.MaxPool2d(20), (1, 2, 8, 8)),
    lambda: onnx_ops.export([L.MaxPool2d(2)], (1, 2, 8, 8)),
    lambda: onnx_ops.check_parity(L.MaxPool2d(2), XP, rtol="tight"),
    lambda: onnx_ops.check_parity(L.MaxPool2d(2), XP, atol=-1.0),
    lambda: onnx_ops.check_parity(L.MaxPool2d(2), XP, rtol=float("nan")),
    lambda: onnx_ops.check_parity(L.MaxPool2d(2), XP, onnx_model=b"bytes"),
    lambda: onnx_ops.check_parity(L.MaxPool2d(2), XP[0, 0]),
    lambda: onnx_ops.check_parity(object(), XP),
], ids=["native_only array", "dynamic_batch str", "shape str", "dtype", "opset", "kernel too big", "list model",
        "rtol str", "atol negative", "rtol nan", "onnx_model bytes", "input rank", "not a layer"])
def test_export_and_parity_arguments_raise_pooling_errors(call):
    with pytest.raises(PoolingError):
        call()


def test_demo_refuses_a_batch_below_one(capsys):
    from fastpool import cli as fcli
    for bad in ("0", "-3"):
        with pytest.raises(SystemExit) as info:
            fcli.main(["demo", "--batch", bad, "--no-onnx"])
        assert info.value.code == 2
        assert "--batch: must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("args, match", [
    (["--dim", "-1"], r"--dim: must be >= 0"),
    (["--dim", "0"], r"--dim: must be between 1 and"),
    (["--dim", "10000000"], r"--dim: must be between 1 and"),
    (["--seed", "-5"], r"--seed: must be >= 0"),
    (["--rtol", "-1"], r"--rtol: must be a finite number >= 0"),
    (["--atol", "nan"], r"--atol: must be a finite number >= 0"),
])
def test_check_command_options_are_validated(args, match, tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(node_model("MaxPool", dict(kernel_shape=[2, 2]), shape=("N", 2, 6, 6)), str(path))
    assert cli.main_check([str(path)] + args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and re.search(match, err), err


def test_check_command_reports_inputs_too_large_for_memory(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    onnx.save(node_model("GlobalMaxPool", {}, shape=(2**20, 2**20, 2**10)), str(path))
    assert cli.main_check([str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fastpool check: error: "), err
