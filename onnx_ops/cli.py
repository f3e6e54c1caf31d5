"""``fastpool export`` and ``fastpool check``: the functions behind the two commands.

``main_export(argv)`` writes a fastpool layer (or Sequential) as an ONNX model;
``main_check(argv)`` runs every pooling node of any ONNX model in fastpool and
in onnxruntime and prints a parity table.  Both return exit codes: 0 success,
1 a parity mismatch, 2 a usage or input error.
"""

from __future__ import annotations

import argparse
import ast
import sys

import numpy as np

from fastpool import layers as fpl
from fastpool.errors import PoolingError

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A usage problem: reported on stderr, exit code 2."""


# ============================================================================ layer expressions

_LAYER_NAMES = tuple(n for n in fpl.__all__ if n != "Layer")


def parse_layer(text: str):
    """Build a layer from an expression like ``"MaxPool2d(3, stride=2, padding=1)"``.

    Only fastpool.layers constructors with literal arguments (numbers, strings,
    tuples, lists, None, booleans) are accepted, and ``Sequential(...)`` of
    such calls; nothing is evaluated.
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise CliError(f"cannot parse the layer expression {text!r}: {e.msg}") from None
    return _build(tree.body, text)


def _build(node, text):
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise CliError(
            f"the layer expression must be a call such as 'MaxPool2d(3, stride=2)'; "
            f"got {ast.unparse(node)!r} in {text!r}"
        )
    name = node.func.id
    if name not in _LAYER_NAMES:
        raise CliError(f"unknown layer {name!r}; choose one of {', '.join(_LAYER_NAMES)}")
    if any(k.arg is None for k in node.keywords) or any(isinstance(a, ast.Starred) for a in node.args):
        raise CliError(f"{name}(...): *args and **kwargs are not accepted in layer expressions")
    if name == "Sequential":
        if node.keywords:
            raise CliError("Sequential takes layers only, no keyword arguments")
        args, kwargs = [_build(a, text) for a in node.args], {}
    else:
        args = [_literal(a, name) for a in node.args]
        kwargs = {k.arg: _literal(k.value, name) for k in node.keywords}
    try:
        return getattr(fpl, name)(*args, **kwargs)
    except PoolingError as e:
        raise CliError(f"{name}: {e}") from None
    except TypeError as e:
        raise CliError(f"{name}: {e}") from None


def _literal(node, owner):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        raise CliError(f"{owner}(...): arguments must be literals (numbers, strings, tuples, "
                       f"None, True/False), got {ast.unparse(node)!r}") from None


def parse_shape(text: str) -> tuple:
    parts = [p for p in text.replace(" ", "").strip("()[]").split(",") if p]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise CliError(f"--input-shape must be comma-separated positive ints like 1,3,32,32, got {text!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise CliError(f"--input-shape must be comma-separated positive ints like 1,3,32,32, got {text!r}")
    return shape


# ============================================================================ export


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


# random inputs of symbolic dimensions: beyond this a dimension alone is gigabytes
_MAX_DIM = 1 << 16


def _size(text: str) -> int:
    v = _count(text)
    if not 1 <= v <= _MAX_DIM:
        raise argparse.ArgumentTypeError(f"must be between 1 and {_MAX_DIM}, got {v}")
    return v


def _tolerance(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not (0 <= v < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return v


def _export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastpool export",
        description="Write a fastpool layer (or Sequential) as an ONNX model.",
        epilog='example: fastpool export "MaxPool2d(3, stride=2, padding=1)" '
               '--input-shape 1,3,32,32 -o m.onnx --check',
    )
    p.add_argument("layer", help="layer expression, e.g. 'MaxPool2d(3, stride=2, padding=1)' or "
                                 "'Sequential(MaxPool2d(2), AdaptiveAvgPool2d(5))'")
    p.add_argument("--input-shape", required=True, help="input shape, e.g. 1,3,32,32")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--dtype", default="float32", help="input dtype (default float32)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset, 18..22 (default 21)")
    p.add_argument("--static-batch", action="store_true",
                   help="keep axis 0 fixed (default: symbolic batch axis 'N')")
    p.add_argument("--native-only", action="store_true",
                   help="fail instead of exporting a layer as a decomposition")
    p.add_argument("--check", action="store_true",
                   help="also run the model in onnxruntime and fastpool on random input and print "
                        "the parity table (exit 1 on a mismatch)")
    p.add_argument("--seed", type=_count, default=0, help="random seed for --check (default 0)")
    return p


def main_export(argv=None) -> int:
    import onnx

    from . import _lower
    from .export import export
    from .parity import check_parity, example_second_input, random_array

    p = _export_parser()
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0) and EXIT_USAGE
    try:
        layer = parse_layer(args.layer)
        shape = parse_shape(args.input_shape)
        opset = _lower.DEFAULT_OPSET if args.opset is None else args.opset
        model = export(layer, shape, dtype=args.dtype, opset=opset,
                       dynamic_batch=not args.static_batch, native_only=args.native_only)
        onnx.save(model, args.output)
    except (CliError, PoolingError, OSError) as e:
        print(f"fastpool export: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    g = model.graph
    ops = ", ".join(sorted({n.op_type for n in g.node}))
    print(f"wrote {args.output}: ONNX opset {opset}, IR {model.ir_version}, "
          f"{len(g.node)} node{'s' if len(g.node) != 1 else ''} ({ops})")
    for vi in list(g.input) + list(g.output):
        dims = [d.dim_param or str(d.dim_value) for d in vi.type.tensor_type.shape.dim]
        dt = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))
        role = "input " if vi in g.input else "output"
        print(f"  {role} {vi.name!r}: [{', '.join(dims)}] {dt}")
    lowering = next((q.value for q in model.metadata_props if q.key == "fastpool.lowering"), "")
    for line in lowering.splitlines():
        print(f"  {line}")
    if args.check:
        rng = np.random.default_rng(args.seed)
        x = random_array(shape, np.dtype(args.dtype), rng)
        second = example_second_input(layer, x, rng)
        report = check_parity(layer, x, *([] if second is None else [second]), onnx_model=model)
        print(report)
        return EXIT_OK if report.ok else EXIT_MISMATCH
    return EXIT_OK


# ============================================================================ check


def _check_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastpool check",
        description="Run every pooling node of an ONNX model in fastpool and in onnxruntime "
                    "(on the same node inputs) and print a parity table; exit 1 on a mismatch.",
    )
    p.add_argument("model", help="the .onnx file")
    p.add_argument("--inputs", help=".npz file with the graph inputs (by name, or arr_0, arr_1, ... "
                                    "in graph order); default: random NaN-free data")
    p.add_argument("--seed", type=_count, default=0, help="random seed (default 0)")
    p.add_argument("--dim", type=_size, default=1,
                   help="size for symbolic dimensions of random inputs (default 1)")
    p.add_argument("--rtol", type=_tolerance, default=None, help="relative tolerance (default per dtype)")
    p.add_argument("--atol", type=_tolerance, default=None, help="absolute tolerance (default per dtype)")
    return p


def main_check(argv=None) -> int:
    import onnx

    from .parity import check_model_nodes

    p = _check_parser()
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0) and EXIT_USAGE
    try:
        model = onnx.load(args.model)
    except Exception as e:  # missing file, not a protobuf, ...
        print(f"fastpool check: error: cannot load {args.model}: {e}", file=sys.stderr)
        return EXIT_USAGE
    feeds = None
    if args.inputs:
        try:
            with np.load(args.inputs, allow_pickle=False) as z:
                feeds = {k: z[k] for k in z.files}
        except Exception as e:
            print(f"fastpool check: error: cannot read {args.inputs}: {e}", file=sys.stderr)
            return EXIT_USAGE
    try:
        report = check_model_nodes(model, feeds, rtol=args.rtol, atol=args.atol,
                                   seed=args.seed, dim=args.dim, label=args.model)
    except PoolingError as e:
        print(f"fastpool check: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError as e:   # inputs or outputs the model declares too large for this machine
        print(f"fastpool check: error: not enough memory to run the model: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(report)
    return EXIT_OK if report.ok else EXIT_MISMATCH


__all__ = ["main_export", "main_check", "parse_layer", "parse_shape", "CliError"]
