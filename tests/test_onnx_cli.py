"""``fastpool export`` and ``fastpool check``, called in-process through
``onnx_ops.cli.main_export`` / ``main_check`` (exit codes: 0 ok, 1 mismatch, 2 usage)."""

from __future__ import annotations

import re

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import helper  # noqa: E402

from fastpool import layers as L  # noqa: E402
from onnx_ops import cli  # noqa: E402
from onnx_ops.parity import ort_session  # noqa: E402


def _export(tmp_path, expr, *args):
    path = tmp_path / "m.onnx"
    code = cli.main_export([expr, "-o", str(path), *args])
    return code, path


# ============================================================================ export


def test_export_writes_a_valid_model_onnxruntime_runs(tmp_path, capsys):
    code, path = _export(tmp_path, "MaxPool2d(3, stride=2, padding=1)", "--input-shape", "1,3,32,32")
    assert code == 0
    out = capsys.readouterr().out
    assert f"wrote {path}" in out and "MaxPool" in out and "[N, 3, 16, 16]" in out
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    (y,) = ort_session(model).run(None, {"input": x})
    np.testing.assert_array_equal(y, L.MaxPool2d(3, stride=2, padding=1)(x))


def test_export_check_prints_the_parity_table(tmp_path, capsys):
    expr = "Sequential(MaxPool2d(3, stride=2, padding=1), AvgPool2d(2, divisor_override=3), " \
           "AdaptiveMaxPool2d((3, 2), return_indices=True))"
    code, _ = _export(tmp_path, expr, "--input-shape", "2,3,20,18", "--check", "--dtype", "float64",
                      "--opset", "18")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "decomposed: divisor_override" in out
    assert "output " in out and "indices" in out and "parity: PASS" in out


def test_export_static_batch(tmp_path):
    code, path = _export(tmp_path, "GlobalLpPool(3, keepdims=False)", "--input-shape", "2,3,5",
                         "--static-batch")
    assert code == 0
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 3, 5]


@pytest.mark.parametrize("expr, match", [
    ("__import__('os').system('echo pwned')", "must be a call such as"),
    ("os.system('echo pwned')", "must be a call such as"),
    ("MaxPool2d(open('/etc/passwd'))", "arguments must be literals"),
    ("MaxPool2d(2, stride=(lambda: 1)())", "arguments must be literals"),
    ("MaxPool2d(*[2])", r"\*args and \*\*kwargs are not accepted"),
    ("MaxPool2d(**{'kernel_size': 2})", r"\*args and \*\*kwargs are not accepted"),
    ("Layer()", "unknown layer 'Layer'"),
    ("Conv2d(3)", "unknown layer 'Conv2d'"),
    ("Sequential(MaxPool2d(2), 3)", "must be a call"),
    ("MaxPool2d(2", "cannot parse the layer expression"),
    ("MaxPool2d(0)", "kernel_size must be >= 1"),
    ("MaxPool2d(2, bogus=1)", "unexpected keyword argument 'bogus'"),
])
def test_export_refuses_unsafe_or_bad_expressions(tmp_path, capsys, expr, match):
    code, path = _export(tmp_path, expr, "--input-shape", "1,1,8,8")
    assert code == 2
    err = capsys.readouterr().err
    assert "fastpool export: error:" in err
    assert re.search(match, err), err
    assert not path.exists()


@pytest.mark.parametrize("args, match", [
    (["--input-shape", "1,3,x"], "--input-shape must be comma-separated positive ints"),
    (["--input-shape", "1,0,8,8"], "--input-shape must be comma-separated positive ints"),
    (["--input-shape", "1,3,8,8", "--opset", "17"], "opset 17 is not supported"),
    (["--input-shape", "1,3,8,8", "--dtype", "bfloat16"], "dtype"),
    (["--input-shape", "1,3,2,2"], "kernel_size must fit"),
])
def test_export_usage_errors(tmp_path, capsys, args, match):
    code, _ = _export(tmp_path, "MaxPool2d(3)", *args)
    assert code == 2
    assert match in capsys.readouterr().err


def test_export_missing_arguments_return_2(capsys):
    assert cli.main_export(["MaxPool2d(2)"]) == 2
    assert "required" in capsys.readouterr().err
    assert cli.main_export(["--help"]) == 0


def test_fastpool_command_routes_to_onnx_ops(tmp_path, capsys):
    from fastpool import cli as fcli

    path = tmp_path / "m.onnx"
    assert fcli.main(["export", "AvgPool1d(2)", "--input-shape", "1,2,8", "-o", str(path)]) == 0
    assert fcli.main(["check", str(path)]) == 0
    assert "parity: PASS" in capsys.readouterr().out


# ============================================================================ check


def _graph_model(nodes, inputs, outputs, opset=21):
    g = helper.make_graph(nodes, "g", inputs, outputs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _f(name, shape):
    return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape)


def test_check_exported_model(tmp_path, capsys):
    code, path = _export(tmp_path, "Sequential(MaxPool2d(3, 2, 1, return_indices=True))",
                         "--input-shape", "2,3,16,16")
    capsys.readouterr()
    assert cli.main_check([str(path), "--dim", "3"]) == 0
    out = capsys.readouterr().out
    assert "MaxPool" in out and "(3, 3, 16, 16)" in out and "parity: PASS" in out
    assert "random (seed 0, symbolic dims = 3)" in out


def test_check_runs_every_pooling_node_of_a_foreign_model(tmp_path, capsys):
    # pooling nodes between other ops, each compared on the input onnxruntime gave it
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["a", "ai"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1], name="pool1"),
        helper.make_node("Sigmoid", ["a"], ["s"]),
        helper.make_node("AveragePool", ["s"], ["b"], kernel_shape=[2, 2], ceil_mode=1,
                         strides=[2, 2], count_include_pad=1, name="pool2"),
        helper.make_node("LpPool", ["b"], ["c"], kernel_shape=[2, 2], auto_pad="SAME_LOWER", p=3),
        helper.make_node("GlobalAveragePool", ["c"], ["d"]),
    ]
    model = _graph_model(nodes, [_f("x", ["batch", 3, 17, 15])],
                         [_f("d", None), helper.make_tensor_value_info("ai", onnx.TensorProto.INT64, None)])
    path = tmp_path / "foreign.onnx"
    onnx.save(model, str(path))
    x = np.random.default_rng(1).standard_normal((2, 3, 17, 15)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    assert cli.main_check([str(path), "--inputs", str(tmp_path / "in.npz")]) == 0
    out = capsys.readouterr().out
    for label in ("pool1", "pool2", "LpPool", "GlobalAveragePool"):
        assert label in out
    assert "Relu" not in out.split("\n", 1)[1]  # only pooling nodes are rows
    assert "inputs: given" in out and "parity: PASS" in out
    np.savez(tmp_path / "pos.npz", x)  # positional: arr_0
    assert cli.main_check([str(path), "--inputs", str(tmp_path / "pos.npz")]) == 0


def test_check_fails_on_a_doctored_model(tmp_path, capsys):
    # SAME padding with dilation: onnxruntime ignores the dilation (a known divergence),
    # so a model that relies on it does not run the same in onnxruntime and fastpool
    code, path = _export(tmp_path, "MaxPool2d(3, stride=1, dilation=2, padding='same')",
                         "--input-shape", "1,2,9,9")
    assert code == 0
    model = onnx.load(str(path))
    node = model.graph.node[0]
    del node.attribute[:]
    node.attribute.extend([helper.make_attribute("kernel_shape", [3, 3]),
                           helper.make_attribute("dilations", [2, 2]),
                           helper.make_attribute("auto_pad", "SAME_UPPER")])
    del model.graph.output[0].type.tensor_type.shape.dim[:]
    doctored = tmp_path / "doctored.onnx"
    onnx.save(model, str(doctored))
    capsys.readouterr()
    assert cli.main_check([str(doctored)]) == 1
    out = capsys.readouterr().out
    assert "shape mismatch" in out and "MISMATCH" in out and "parity: FAIL (1 of 1 pooling nodes differ)" in out


def test_check_fails_on_nan_input(tmp_path, capsys):
    # onnxruntime's max ignores NaN; fastpool propagates it
    model = _graph_model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
                         [_f("x", [1, 1, 4, 4])], [_f("y", None)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", x=x)
    assert cli.main_check([str(path), "--inputs", str(tmp_path / "nan.npz")]) == 1
    out = capsys.readouterr().out
    assert "NaN on one side" in out and "parity: FAIL" in out


def test_check_compares_unpool_and_roi_nodes(tmp_path, capsys):
    nodes = [helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("MaxUnpool", ["y", "i"], ["u"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("RoiAlign", ["x", "r", "b"], ["a"], output_height=2, output_width=2,
                              sampling_ratio=2),
             helper.make_node("MaxRoiPool", ["x", "r5"], ["m"], pooled_shape=[2, 3])]
    ins = [_f("x", [2, 1, 4, 4]), _f("r", ["K", 4]), helper.make_tensor_value_info("b", onnx.TensorProto.INT64, ["K"]),
           _f("r5", [3, 5])]
    model = _graph_model(nodes, ins, [_f("u", None), _f("a", None), _f("m", None)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    # random inputs: the boxes and batch indices are drawn valid for x's (2, 1, 4, 4)
    assert cli.main_check([str(path), "--dim", "5"]) == 0
    out = capsys.readouterr().out
    for op, shape in (("MaxUnpool", "(2, 1, 4, 4)"), ("RoiAlign", "(5, 1, 2, 2)"), ("MaxRoiPool", "(3, 1, 2, 3)")):
        assert op in out and shape in out
    assert "parity: PASS" in out


def test_check_without_pooling_nodes(tmp_path, capsys):
    model = _graph_model([helper.make_node("Relu", ["x"], ["y"])], [_f("x", [1, 2])], [_f("y", None)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert cli.main_check([str(path)]) == 0
    assert "no pooling nodes" in capsys.readouterr().out


def test_check_usage_errors(tmp_path, capsys):
    assert cli.main_check([str(tmp_path / "missing.onnx")]) == 2
    assert "cannot load" in capsys.readouterr().err
    model = _graph_model([helper.make_node("GlobalMaxPool", ["x"], ["y"])], [_f("x", [1, 2, 3])],
                         [_f("y", None)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    np.savez(tmp_path / "wrong.npz", z=np.zeros((1, 2, 3), np.float32))
    assert cli.main_check([str(path), "--inputs", str(tmp_path / "wrong.npz")]) == 2
    assert "lacks graph inputs ['x']" in capsys.readouterr().err
    np.savez(tmp_path / "f64.npz", x=np.zeros((1, 2, 3)))
    assert cli.main_check([str(path), "--inputs", str(tmp_path / "f64.npz")]) == 2
    assert "declared float32, the file holds float64" in capsys.readouterr().err
    assert cli.main_check([]) == 2
