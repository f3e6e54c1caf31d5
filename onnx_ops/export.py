"""fastpool layers and ``Sequential`` -> ``onnx.ModelProto``."""

from __future__ import annotations

import numbers

import numpy as np
import onnx
from onnx import helper

import fastpool
from fastpool.errors import PoolingError
from fastpool.layers import Layer, Sequential

from . import _lower as L
from .errors import ExportError

INPUT_NAME = "input"
OUTPUT_NAME = "output"
INDICES_NAME = "indices"
BOXES_NAME = "boxes"
BATCH_DIM = "N"
BOXES_DIM = "K"


def flatten(model) -> list:
    """The layers of a layer or (nested) Sequential, in order."""
    if isinstance(model, Layer):
        return [model]
    if isinstance(model, Sequential):
        out = []
        for m in model.layers:
            out += flatten(m)
        return out
    raise ExportError(f"export takes a fastpool layer or fastpool.layers.Sequential, "
                      f"got {type(model).__name__}")


def _check_shape(input_shape) -> tuple:
    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__iter__"):
        raise ExportError(f"input_shape must be a sequence of positive ints, got {input_shape!r}")
    shape = tuple(input_shape)
    if not shape or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1
                            for s in shape):
        raise ExportError(f"input_shape must be a sequence of positive ints, got {input_shape!r}")
    return tuple(int(s) for s in shape)


def _batch_axis_ok(layers, shape) -> str | None:
    """Why axis 0 cannot be symbolic, or None: every layer must read it as batch or channels."""
    s = shape
    for i, layer in enumerate(layers):
        nd = L.layer_nd(layer)
        unbatched = nd is not None and len(s) == nd + 1
        if unbatched and layer.layout == "channels_last":
            return (f"layer {i} ({layer!r}) reads axis 0 of its {len(s)}-D channels_last input "
                    f"as a spatial axis")
        if layer.kind == "fractional_max_pool":
            return (f"layer {i} ({layer!r}) has fixed samples, one per (image, channel), which fix "
                    f"the batch size")
        s = _layer_output_shape(layer, s)
    return None


def _second_input(layers):
    """The layer taking a second graph input (indices, boxes), or None; such a layer is
    exported on its own (fastpool's Sequential passes one array from layer to layer)."""
    two = [layer for layer in layers if layer.kind in L.SECOND_INPUT]
    if two and len(layers) > 1:
        raise ExportError(f"{two[0]!r} takes a second input ({L.SECOND_INPUT[two[0].kind]}) and "
                          f"can only be exported on its own, not inside a Sequential of "
                          f"{len(layers)} layers (fastpool's Sequential passes one array)")
    return two[0] if two else None


def _layer_output_shape(layer, shape, output_size=None, num_boxes=1):
    if layer.kind == "max_unpool":
        return tuple(layer.output_shape(shape, output_size))
    if layer.kind in L.ROI_KINDS:
        return tuple(layer.output_shape(shape, num_boxes))
    return tuple(layer.output_shape(shape))


def export(model, input_shape, *, dtype="float32", opset: int = L.DEFAULT_OPSET,
           dynamic_batch: bool = True, native_only: bool = False, output_size=None,
           num_boxes=None) -> onnx.ModelProto:
    """Export a fastpool layer or ``Sequential`` as an ONNX model onnxruntime runs.

    ``input_shape`` is the shape of one input, batched ``(N, C, *spatial)`` /
    ``(N, *spatial, C)`` or unbatched.  With ``dynamic_batch`` (and batched
    input) the graph's axis 0 is the symbolic ``"N"``, so the model runs on any
    batch size; unbatched input keeps its exact shape.  The graph input is
    ``"input"``; outputs are ``"output"`` and, when the last layer returns
    indices, ``"indices"`` (int64, fastpool's per-plane convention).

    Layers with a second forward input are exported on their own, as two-input
    models: ``MaxUnpool*d`` takes ``"indices"`` (int64, x's shape and layout,
    fastpool's per-plane indices; ``output_size`` is the unpooled size its
    ``forward`` would get, default the layer's default size); ``RoIPool`` /
    ``RoIAlign`` take ``"boxes"`` (``(K, 5)`` rows ``[batch, x1, y1, x2, y2]`` in x's
    dtype; K is the symbolic ``"K"`` unless ``num_boxes`` fixes it).  Stochastic
    pooling exports its inference form (``layer.eval()``; training mode is refused);
    fractional max pooling needs fixed ``samples``, which fix the batch size
    (``dynamic_batch=False``).

    Pooling maps to native ONNX ops where ONNX has fastpool's semantics and
    onnxruntime runs them, and to exact decompositions otherwise; the choice
    per layer is recorded in the model's ``fastpool.lowering`` metadata.  With
    ``native_only=True`` a layer that needs a decomposition raises
    :class:`ExportError` naming the layer, the opset and the reason.

    Raises :class:`ExportError` (a :class:`fastpool.PoolingError`) for an
    unsupported opset (18..22) or dtype, or a geometry that does not fit.
    """
    layers = flatten(model)
    if not layers:
        raise ExportError("export needs at least one layer, got an empty Sequential")
    shape = _check_shape(input_shape)
    dt = L.check_dtype(dtype)
    opset = L.check_opset(opset)
    if not isinstance(dynamic_batch, (bool, np.bool_)):
        raise ExportError(f"dynamic_batch must be a bool, got {dynamic_batch!r}")
    if not isinstance(native_only, (bool, np.bool_)):
        raise ExportError(f"native_only must be a bool, got {native_only!r}")
    two = _second_input(layers)
    kind2 = two.kind if two is not None else None
    if output_size is not None and kind2 != "max_unpool":
        raise ExportError("output_size is MaxUnpool's forward argument; this model has no MaxUnpool layer")
    if num_boxes is not None:
        if kind2 not in L.ROI_KINDS:
            raise ExportError("num_boxes fixes the RoI count of RoIPool / RoIAlign; this model has neither")
        if isinstance(num_boxes, bool) or not isinstance(num_boxes, numbers.Integral) or num_boxes < 0:
            raise ExportError(f"num_boxes must be an int >= 0, got {num_boxes!r}")
    if kind2 in L.ROI_KINDS and dt.kind != "f":
        raise ExportError(f"{two!r} pools floating-point maps; dtype {dt} cannot be exported")
    k_boxes = 1 if num_boxes is None else int(num_boxes)   # stands for K while building
    try:
        if two is not None:
            want_shape = _layer_output_shape(two, shape, output_size, k_boxes)
        else:
            want_shape = model.output_shape(shape)
    except PoolingError as e:
        raise ExportError(f"{model!r} cannot take input of shape {shape}: {e}") from None

    first = layers[0]
    nd0 = L.layer_nd(first)
    batched = nd0 is None or len(shape) == nd0 + 2
    dynamic = bool(dynamic_batch) and batched
    if dynamic:
        why = _batch_axis_ok(layers, shape)
        if why is not None:
            raise ExportError(f"dynamic_batch=True makes axis 0 symbolic, but {why}; "
                              f"pass dynamic_batch=False")

    b = L.new_builder(opset, native_only)
    if kind2 == "max_unpool":   # the unpooled spatial size, as fastpool resolves it
        r = len(want_shape)
        b.output_size = (want_shape[r - nd0:] if first.layout != "channels_last"
                         else want_shape[r - nd0 - 1:-1])
    x = b.add_input(L.Value(INPUT_NAME, shape, dt))
    in_values = [x]
    if kind2 == "max_unpool":
        in_values.append(b.add_input(L.Value(INDICES_NAME, shape, L.I64)))
    elif kind2 is not None:
        in_values.append(b.add_input(L.Value(BOXES_NAME, (k_boxes, 5), dt)))
    values = in_values[:1]
    for i, layer in enumerate(layers):
        b.begin_layer(i, layer)
        if len(values) != 1:  # only the last layer may return indices (Sequential enforces it)
            raise ExportError(f"{b.layer_label} follows a layer that returns indices")
        try:
            values = L.lower_layer(b, layer, values[0], *in_values[1:])
        except ExportError:
            raise
        except PoolingError as e:
            raise ExportError(f"{b.layer_label}: {e}") from None
    names = [OUTPUT_NAME, INDICES_NAME][: len(values)]
    if tuple(values[0].shape) != tuple(want_shape):  # fastpool's geometry is the contract
        raise AssertionError(f"lowering produced {values[0].shape}, fastpool gives {want_shape}")

    nodes = _finalize(b, values, names)
    batch = BATCH_DIM if dynamic else None
    boxes_dim = BOXES_DIM if num_boxes is None else None

    def dims(s, axis0=batch):
        return [axis0 if (i == 0 and axis0) else int(d) for i, d in enumerate(s)]

    inputs = [helper.make_tensor_value_info(v.name, helper.np_dtype_to_tensor_dtype(v.dtype),
                                            dims(v.shape, boxes_dim if v.name == BOXES_NAME else batch))
              for v in in_values]
    out_axis0 = boxes_dim if kind2 in L.ROI_KINDS else batch
    outputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype),
                                             dims(v.shape, out_axis0))
               for n, v in zip(names, values)]
    used = {i for n in nodes for i in n.input}
    inits = [t for t in b.initializers if t.name in used]
    graph = helper.make_graph(nodes, "fastpool", inputs, outputs, initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                          ir_version=L.IR_VERSION, producer_name="fastpool.onnx_ops",
                          producer_version=fastpool.__version__, doc_string=repr(model))
    helper.set_model_props(m, {"fastpool.model": repr(model),
                               "fastpool.lowering": "\n".join(b.notes)})
    onnx.checker.check_model(m, full_check=True)
    return m


def _finalize(b, values, names) -> list:
    """Name the outputs, then keep only the nodes the outputs depend on."""
    nodes = list(b.nodes)
    rename = {}
    for v, n in zip(values, names):
        if v.name in (INPUT_NAME, INDICES_NAME, BOXES_NAME) or v.name in rename:
            nodes.append(helper.make_node("Identity", [v.name], [n], name=f"{n}_identity"))
        else:
            rename[v.name] = n
    for node in nodes:
        for seq in (node.input, node.output):
            for j, name in enumerate(seq):
                if name in rename:
                    seq[j] = rename[name]
    need = set(names)
    keep = []
    for node in reversed(nodes):
        if any(o in need for o in node.output):
            keep.append(node)
            need.update(i for i in node.input if i)
    return keep[::-1]
