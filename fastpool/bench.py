"""Benchmark harness: fastpool against PyTorch CPU, onnxruntime and plain NumPy.

``fastpool bench`` runs the quick set (a handful of cases), ``--full`` every case
of :data:`CASES`; ``--report`` regenerates the README table and the chart from
the results file.  Every peer runs in this process at the same thread count,
interleaved in blocks after a warm-up, and its output is checked once
against fastpool's so a timing never compares different computations.  The copy
bandwidth (~100 MB, bytes read + written per second: the better of one-thread
``np.copyto`` and a copy split over the run's threads; one-thread cases take
``np.copyto``'s alone) is measured in the same run: pooling is memory-bound,
and each case reports ``(input bytes + output bytes) / time`` as a fraction of
it.

torch, onnxruntime, onnx, tqdm and matplotlib are imported lazily; a missing one
drops that peer (or the progress bar / chart) with a message, never the run.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import gc
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace

import numpy as np

import fastpool as fp
from fastpool import numpy_baseline as npb

CF, CL = "channels_first", "channels_last"
MARK_START, MARK_END = "<!-- bench:start -->", "<!-- bench:end -->"
DEFAULT_OUT = os.path.join("benchmarks", "results.json")
DEFAULT_CHART = os.path.join("benchmarks", "speed.png")

# AveragePool's opset-19+ CPU kernel (the one with dilations) is several times
# slower than the opset-11 one in onnxruntime 1.31; every bench graph uses
# opset 11 so MaxPool and AveragePool come from the same kernel family.
ORT_OPSET = 11
ORT_IR_VERSION = 10
# A pause before each block of calls lets the previous peer's worker threads
# (OpenMP, onnxruntime's pool) stop spinning before the next peer starts: on a
# 2-core machine a spinning pool steals a whole core from whoever runs next.
# Measured with onnxruntime interleaved, max k2s2 on (32, 64, 112, 112), 2
# threads: fastpool's minimum 11.9 ms after a 2 ms pause, 8.0 ms after 20 ms.
# onnxruntime's worker spins ~40 ms: process CPU time while the caller sleeps
# after 50 ms of its calls (avg k2s2 (8, 256, 56, 56) and max k3s2p1
# (64, 512, 14, 14), 2 threads, medians of 6) was 20 ms in the first 20 ms,
# 20 ms in the next 30 and 0.1 ms after that; PyTorch's 8-11 ms in the first
# 20 ms and none after, fastpool's 1 ms.  After a 20 ms pause the next
# library's calls in the following 15 ms ran at half speed behind it.  On a
# later VM (Zen 4, 2026-11-24) the worker spun on past 50 ms: 10.7 ms of CPU in
# 50-100 ms after max k3s2p1 (64, 512, 14, 14), 3.6 ms in 100-200 (medians of
# 6), and fastpool's block after a 50 ms pause ran 3.1-3.3 ms against 2.0-2.3 ms
# with the worker's spinning turned off (onnxruntime's own time the same).
PAUSE_S = 0.1
# The first call after the pause wakes a sleeping thread pool, and on a 2-core
# VM the kernel often puts the woken worker on the caller's core, so that call
# runs at about one thread's speed.  That first call is recorded on its own
# ("after_pause"); the medians come from the back-to-back calls that follow it
# in the block, as a loop over batches sees them.
#
# Blocks are short and many (ROUNDS rounds of every callable, each round in its
# own order from a seeded generator) because this VM's speed changes in phases
# of tenths of a second: global_avg (64, 2048, 7, 7) ran 0.45-0.6 ms in some
# blocks and 1.6-2.1 ms in others, for fastpool, PyTorch and onnxruntime alike,
# in the same rounds.  With 5 blocks of 9 calls a peer's median was whichever
# phase its few blocks fell in (fastpool / PyTorch 1.11-1.85 in three runs);
# the order changes so that no library always follows the same one (rotated,
# fastpool always followed onnxruntime, whose workers spin for ~50-100 ms).
ROUNDS = 12
ORDER_SEED = 20261123
# After the first call, each block runs unrecorded calls for SETTLE_S before the
# recorded ones.  Traced per call on global_avg (64, 2048, 7, 7), 2 threads, 6
# blocks each: right after a PyTorch block fastpool's calls 2-8 took 1.1 ms and
# then 0.5 ms (PyTorch's OpenMP workers spin on for ~5-9 ms: 9 ms of CPU in a
# 0.2 s sleep after its block, against fastpool's 1 ms); after a 20-200 ms
# sleep every library needs ~5 ms of calls to come back to speed (fastpool
# 1.4 -> 0.5 ms, PyTorch 2.0 -> 0.6 ms).  A block of 5 recorded 0.5 ms calls
# was all ramp: the medians timed the previous peer's spinning threads and
# this VM's wake-up more than the kernels.
SETTLE_S = 0.015


# ----------------------------------------------------------------------------- case table


@dataclass(frozen=True)
class Case:
    """One benchmark case; ``shape`` / ``out`` are the arrays' shapes in ``layout``."""

    name: str
    op: str  # max | max_indices | avg | global_avg | adaptive_avg | max_backward | avg_backward
    shape: tuple
    out: tuple
    args: dict = field(default_factory=dict, hash=False)
    why: str = ""
    dtype: str = "float32"
    layout: str = CF
    threads: int | None = None  # None: the run's thread count
    quick: bool = False
    base: str | None = None  # for a thread-scaling case: the case it repeats

    @property
    def nd(self) -> int:
        return len(self.shape) - 2

    @property
    def result_shape(self) -> tuple:
        """Shape of what the timed call returns (a backward returns dL/dx)."""
        return self.shape if self.op.endswith("_backward") else self.out


def _olen(n, k, s, p):
    """Output length, floor mode (PyTorch's documented formula)."""
    return (n + 2 * p - k) // s + 1


def _dims(shape):
    return "x".join(map(str, shape))


_LAYOUT_TAG = {(1, CF): "NCW", (2, CF): "NCHW", (3, CF): "NCDHW",
               (1, CL): "NWC", (2, CL): "NHWC", (3, CL): "NDHWC"}


def _window(op, ncs, k, s, p, why, *, layout=CF, dtype="float32", quick=False):
    """A kernel/stride/padding case on logical (N, C, *spatial) dims ``ncs``;
    ``p="same"`` is stride-1 SAME padding for an odd window (k // 2 each side)."""
    n, c, *sp = ncs
    nd = len(sp)
    if p == "same":
        assert s == 1 and k % 2 == 1, "symmetric 'same' needs stride 1 and an odd window"
        pp, ptag = k // 2, "same"
    else:
        pp, ptag = p, f"p{p}" if p else ""
    osp = tuple(_olen(m, k, s, pp) for m in sp)
    if p == "same":
        assert osp == tuple(sp)
    shape = (n, c, *sp) if layout == CF else (n, *sp, c)
    out = (n, c, *osp) if layout == CF else (n, *osp, c)
    base_op = op.replace("_backward", "")
    name = f"{base_op}{nd}d{'_backward' if op.endswith('_backward') else ''} k{k}s{s}{ptag} " \
           f"{_dims(ncs)} {_LAYOUT_TAG[nd, layout]}" + ("" if dtype == "float32" else f" {dtype}")
    return Case(name, op, shape, out, dict(kernel_size=k, stride=s, padding=p), why, dtype,
                layout, quick=quick)


def _nhwc(case: Case, why: str) -> Case:
    """The channels_last twin of a channels_first case."""
    n, c, *sp = case.shape
    on, oc, *osp = case.out
    name = case.name.replace(_LAYOUT_TAG[case.nd, CF], _LAYOUT_TAG[case.nd, CL])
    return Case(name, case.op, (n, *sp, c), (on, *osp, oc), dict(case.args), why, case.dtype, CL)


def _build_cases():
    cases = []
    # Shapes of the issue, float32:
    stem = (32, 64, 112, 112)  # ResNet-50 stem output at batch 32: the largest early map, 103 MB
    mid = (8, 256, 56, 56)  # ResNet stage-1 width at batch 8: 25.7 MB, planes of 56x56
    late = (64, 512, 14, 14)  # late stage at batch 64: many short 14-cell rows, 25.7 MB
    assert np.prod(stem) == 4 * np.prod(mid) == 4 * np.prod(late)
    windows = [
        ("max", 2, 2, 0, "k=s: each input read once, the bandwidth bound"),
        ("max", 3, 2, 1, "ResNet stem pool: overlapping windows, border padding"),
        ("avg", 2, 2, 0, "DenseNet transition: the k=s average"),
        ("avg", 3, 1, 1, "Inception branch pool: stride 1, output as large as input"),
    ]
    quick = {("max", 3, 2, 1, stem), ("avg", 3, 1, 1, mid)}
    nchw = []
    for dims in (stem, mid, late):
        for op, k, s, p, why in windows:
            nchw.append(_window(op, dims, k, s, p, why, quick=(op, k, s, p, dims) in quick))
    cases += nchw
    cases += [_nhwc(c, "channels_last twin: PyTorch's fast CPU layout, NHWC models' layout")
              for c in nchw]
    i = len(nchw) + 4
    assert cases[i].name == "max2d k2s2 8x256x56x56 NHWC"
    cases[i] = replace(cases[i], quick=True)

    gshape = (64, 2048, 7, 7)  # ResNet-50 head: global average of the last stage at batch 64
    cases.append(Case(f"global_avg {_dims(gshape)} NCHW", "global_avg", gshape, (64, 2048, 1, 1), {},
                      "classifier head: 49-cell planes reduced to one value each", quick=True))
    # 56 -> 7 divides (bins of 8), so ONNX AveragePool k8 s8 is the exact equivalent;
    # (32, 256, 56, 56) is the stage-1 map at the stem's batch, 103 MB like the stem case.
    ashape = (32, 256, 56, 56)
    cases.append(Case(f"adaptive_avg2d 56->7 {_dims(ashape)} NCHW", "adaptive_avg", ashape,
                      (32, 256, 7, 7), dict(output_size=7),
                      "adaptive head on a stage-1 map: large window (8x8), k=s"))
    # Spatial pyramid (SPP/SPPF) blocks: max, stride 1, "same"; k3 is the reference
    # for the target "k13 no more than 2x k3" (cost per output independent of k).
    for k in (3, 5, 9, 13):
        cases.append(_window("max", mid, k, 1, "same",
                             "SPP reference window" if k == 3 else "SPP large stride-1 window"))
    # Other precisions of one case: max (onnxruntime has float64/float16 MaxPool only).
    for dt in ("float64", "float16"):
        cases.append(_window("max", mid, 3, 2, 1, f"{dt}: max k3s2p1 of the mid map", dtype=dt))
    # Backward: the max row (103 MB stem) and the stride-1 average.
    cases.append(_window("max_backward", stem, 3, 2, 1,
                         "backward of the stem pool given the forward's indices", quick=True))
    cases.append(_window("avg_backward", mid, 3, 1, 1, "backward of the stride-1 average"))
    # The forward a training step runs: its indices feed the backward above.
    fwd = _window("max", stem, 3, 2, 1, "")
    cases.append(replace(fwd, name=fwd.name.replace("max2d", "max2d_indices"), op="max_indices",
                         why="training forward of the stem pool: values and the indices the backward takes"))
    # 1-D and 3-D at the mid map's element count (6.4 M): a sequence of 3136 steps,
    # a video clip of 8 frames of 56x56.
    seq, vid = (8, 256, 3136), (8, 32, 8, 56, 56)
    assert np.prod(seq) == np.prod(vid) == np.prod(mid)
    for dims, what in ((seq, "1-D sequence"), (vid, "3-D clip")):
        cases.append(_window("max", dims, 3, 2, 1, f"{what}, same element count as the mid map"))
        cases.append(_window("avg", dims, 3, 1, 1, f"{what}, stride-1 average"))
    for c in cases[-2:]:
        cases.append(_nhwc(c, "channels_last_3d twin: PyTorch's channels_last_3d path"))
    # Thread scaling 1 -> run's threads on the compute-heaviest standard case.
    base = next(c for c in cases if c.name == "avg2d k3s1p1 8x256x56x56 NCHW")
    cases.append(Case(base.name + " 1 thread", base.op, base.shape, base.out, dict(base.args),
                      "thread scaling: the same case on one thread", base.dtype, base.layout,
                      threads=1, base=base.name))
    names = [c.name for c in cases]
    assert len(set(names)) == len(names), "case names must be unique"
    return tuple(cases)


CASES = _build_cases()


def quick_cases():
    return [c for c in CASES if c.quick]


# ----------------------------------------------------------------------------- inputs and callables


def _inputs(case: Case, seed=0):
    """Input arrays for a case: {"x"} or, for backward, {"x", "g", "idx"?}."""
    rng = np.random.default_rng(seed)

    def normal(shape):
        dt = np.dtype(case.dtype)
        if dt in (np.float32, np.float64):
            return rng.standard_normal(shape, dtype=dt)
        return rng.standard_normal(shape, dtype=np.float32).astype(dt)

    x = normal(case.shape)
    if not case.op.endswith("_backward"):
        return {"x": x}
    a = case.args
    if case.op == "max_backward":
        y, idx = _fp_fn(case.nd, "max")(x, a["kernel_size"], a["stride"], a["padding"],
                                          return_indices=True, layout=case.layout)
        assert y.shape == case.out
        return {"x": x, "g": normal(case.out), "idx": idx}
    return {"x": x, "g": normal(case.out)}


def _fp_fn(nd, kind):
    return getattr(fp, {"max": f"max_pool{nd}d", "avg": f"avg_pool{nd}d",
                        "max_backward": f"max_pool{nd}d_backward",
                        "avg_backward": f"avg_pool{nd}d_backward",
                        "adaptive_avg": f"adaptive_avg_pool{nd}d"}[kind])


def fastpool_call(case: Case, inp):
    """The fastpool call a case times.  Each writes into one ``out=`` array, as
    onnxruntime writes into its bound
    output: a fresh array of 100 MB costs ~7 ms of page faults per call here
    (glibc maps blocks that large anew each time), which is the allocator's time,
    not the kernel's.  PyTorch's pooling functions have no ``out=`` and allocate."""
    x, a, lay, nd = inp["x"], case.args, case.layout, case.nd
    if case.op in ("max", "avg"):
        f = _fp_fn(nd, case.op)
        out = np.empty(case.result_shape, x.dtype)
        return lambda: f(x, a["kernel_size"], a["stride"], a["padding"], layout=lay, out=out)
    if case.op == "max_indices":
        # both into out=, as onnxruntime writes into its two bound outputs
        f = _fp_fn(nd, "max")
        out = (np.empty(case.result_shape, x.dtype), np.empty(case.result_shape, np.int64))
        return lambda: f(x, a["kernel_size"], a["stride"], a["padding"], layout=lay, return_indices=True, out=out)
    if case.op == "global_avg":
        out = np.empty(case.result_shape, x.dtype)
        return lambda: fp.global_avg_pool(x, layout=lay, out=out)
    if case.op == "adaptive_avg":
        f = _fp_fn(nd, "adaptive_avg")
        out = np.empty(case.result_shape, x.dtype)
        return lambda: f(x, a["output_size"], layout=lay, out=out)
    if case.op == "max_backward":
        f, g, idx = _fp_fn(nd, "max_backward"), inp["g"], inp["idx"]
        gx = np.empty_like(x)
        return lambda: f(g, x, a["kernel_size"], a["stride"], a["padding"], layout=lay, indices=idx, out=gx)
    if case.op == "avg_backward":
        f, g = _fp_fn(nd, "avg_backward"), inp["g"]
        gx = np.empty_like(x)
        return lambda: f(g, x, a["kernel_size"], a["stride"], a["padding"], layout=lay, out=gx)
    raise ValueError(f"unknown op {case.op!r}")


def _int_pad(case):
    p = case.args["padding"]
    return case.args["kernel_size"] // 2 if p == "same" else p


def _adaptive_window(case):
    """Window of an adaptive case whose sizes divide (then it is k = s = n / o)."""
    sp = case.shape[2:] if case.layout == CF else case.shape[1:-1]
    o = case.args["output_size"]
    if any(n % o for n in sp) or len(set(sp)) != 1:
        return None
    return sp[0] // o


@dataclass
class Peer:
    name: str
    fn: object  # the timed call
    result: object  # fn's return value -> NumPy array in the case's layout


class PeerUnavailable(Exception):
    """This peer has no form of this case (recorded, not an error of the run)."""


def _numpy_peer(case: Case, inp) -> Peer:
    x, a, nd, lay = inp["x"], case.args, case.nd, case.layout
    if case.op in ("max", "avg"):
        f = npb.max_pool_separable if case.op == "max" else npb.avg_pool_separable
        k, s, p = a["kernel_size"], a["stride"], _int_pad(case)
        fn = lambda: f(x, nd, k, s, p, lay)  # noqa: E731
    elif case.op == "global_avg":
        axes = npb._spatial_axes(x.ndim, nd, lay)
        fn = lambda: x.mean(axis=axes, keepdims=True)  # noqa: E731
    elif case.op == "adaptive_avg":
        k = _adaptive_window(case)
        if k is None:
            raise PeerUnavailable("no short NumPy form for non-dividing adaptive bins")
        fn = lambda: npb.avg_pool_separable(x, nd, k, k, 0, lay)  # noqa: E731
    elif case.op == "max_backward":
        if lay != CF:
            raise PeerUnavailable("bincount form written for channels_first indices")
        g, idx = inp["g"], inp["idx"]
        fn = lambda: npb.max_pool_backward_bincount(g, idx, x.shape, nd)  # noqa: E731
    elif case.op == "avg_backward":
        g, k, s, p = inp["g"], a["kernel_size"], a["stride"], _int_pad(case)
        fn = lambda: npb.avg_pool_backward_separable(g, x.shape, nd, k, s, p, lay)  # noqa: E731
    elif case.op == "max_indices":
        raise PeerUnavailable("NumPy has no argmax over sliding windows short of a stacked-window copy")
    else:
        raise PeerUnavailable(case.op)
    return Peer("numpy", fn, lambda r: r)


def _torch_peer(case: Case, inp, torch) -> Peer:
    F = torch.nn.functional
    nd, a, cl = case.nd, case.args, case.layout == CL
    if cl and nd == 1:
        raise PeerUnavailable("PyTorch has no channels_last memory format for 1-D")

    def tt(arr):  # NumPy array in the case's layout -> tensor of logical (N, C, *sp) shape
        t = torch.from_numpy(arr)
        if cl:
            t = t.permute(0, nd + 1, *range(1, nd + 1))
            fmt = torch.channels_last if nd == 2 else torch.channels_last_3d
            assert t.is_contiguous(memory_format=fmt)
        return t

    def back(y):  # -> NumPy array in the case's layout
        if cl:
            y = y.permute(0, *range(2, nd + 2), 1)
        return y.numpy()

    x = tt(inp["x"])
    if case.op in ("max", "avg"):
        f = getattr(F, f"{case.op}_pool{nd}d")
        k, s, p = a["kernel_size"], a["stride"], _int_pad(case)
        fn = lambda: f(x, k, s, p)  # noqa: E731
    elif case.op == "max_indices":
        f = getattr(F, f"max_pool{nd}d")
        k, s, p = a["kernel_size"], a["stride"], _int_pad(case)
        fn = lambda: f(x, k, s, p, return_indices=True)  # noqa: E731
        return Peer("torch_channels_last" if cl else "torch", fn, lambda r: (back(r[0]), back(r[1])))
    elif case.op == "global_avg":
        f = getattr(F, f"adaptive_avg_pool{nd}d")
        fn = lambda: f(x, 1)  # noqa: E731
    elif case.op == "adaptive_avg":
        f = getattr(F, f"adaptive_avg_pool{nd}d")
        o = a["output_size"]
        fn = lambda: f(x, o)  # noqa: E731
    elif case.op in ("max_backward", "avg_backward"):
        if nd == 1:
            raise PeerUnavailable("PyTorch runs 1-D pooling backward through 2-D")
        g = tt(inp["g"])
        k, s, p = [a["kernel_size"]] * nd, [a["stride"]] * nd, [_int_pad(case)] * nd
        if case.op == "max_backward":
            # the indices autograd saves: PyTorch's own forward's
            _, idx = getattr(F, f"max_pool{nd}d")(x, k, s, p, return_indices=True)
            op = getattr(torch.ops.aten, f"max_pool{nd}d_with_indices_backward")
            fn = lambda: op(g, x, k, s, p, [1] * nd, False, idx)  # noqa: E731
        else:
            op = getattr(torch.ops.aten, f"avg_pool{nd}d_backward")
            fn = lambda: op(g, x, k, s, p, False, True, None)  # noqa: E731
    else:
        raise PeerUnavailable(case.op)
    return Peer("torch_channels_last" if cl else "torch", fn, back)


def ort_session_options(ort, threads):
    so = ort.SessionOptions()
    # EXTENDED keeps MLAS's NCHW pooling kernel; the default (ALL) wraps the node in
    # NCHWc reorders, which for a lone pooling node only add two copies.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return so


def _ort_peer(case: Case, inp, ort, onnx, threads) -> Peer:
    if case.op.endswith("_backward"):
        raise PeerUnavailable("onnxruntime (inference) has no pooling backward kernels")
    if case.layout == CL:
        raise PeerUnavailable("onnxruntime's CPU provider has no float NHWC pooling kernel")
    from onnx import helper

    nd, a = case.nd, case.args
    outs = ["y"]
    if case.op in ("max", "avg", "max_indices"):
        k, s, p = a["kernel_size"], a["stride"], _int_pad(case)
        attrs = dict(kernel_shape=[k] * nd, strides=[s] * nd, pads=[p] * (2 * nd))
        if case.op == "max_indices":
            outs.append("i")
        if case.op == "avg":
            if case.dtype == "float64":
                raise PeerUnavailable("onnxruntime has no float64 AveragePool")
            attrs["count_include_pad"] = 1
        op_type = "AveragePool" if case.op == "avg" else "MaxPool"
    elif case.op == "global_avg":
        op_type, attrs = "GlobalAveragePool", {}
    elif case.op == "adaptive_avg":
        k = _adaptive_window(case)
        if k is None:
            raise PeerUnavailable("ONNX has no adaptive pooling op")
        op_type, attrs = "AveragePool", dict(kernel_shape=[k] * nd, strides=[k] * nd)
    else:
        raise PeerUnavailable(case.op)
    x = inp["x"]
    et = helper.np_dtype_to_tensor_dtype(x.dtype)
    graph = helper.make_graph(
        [helper.make_node(op_type, ["x"], outs, **attrs)], "bench",
        [helper.make_tensor_value_info("x", et, list(x.shape))],
        [helper.make_tensor_value_info("y", et, list(case.out))]
        + [helper.make_tensor_value_info("i", helper.np_dtype_to_tensor_dtype(np.dtype(np.int64)), list(case.out))
           for _ in outs[1:]])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ORT_OPSET)],
                              ir_version=ORT_IR_VERSION)
    sess = ort.InferenceSession(model.SerializeToString(), ort_session_options(ort, threads),
                                providers=["CPUExecutionProvider"])
    # I/O binding onto NumPy buffers: no per-call input check or output copy,
    # the fastest way to call a session from Python.
    y = np.empty(case.out, x.dtype)
    io = sess.io_binding()
    io.bind_input("x", "cpu", 0, x.dtype, list(x.shape), x.ctypes.data)
    io.bind_output("y", "cpu", 0, y.dtype, list(y.shape), y.ctypes.data)
    if len(outs) == 1:
        def fn():
            sess.run_with_iobinding(io)
            return y

        return Peer("onnxruntime", fn, lambda r: r)
    i = np.empty(case.out, np.int64)
    io.bind_output("i", "cpu", 0, i.dtype, list(i.shape), i.ctypes.data)

    def fn_i():
        sess.run_with_iobinding(io)
        return y, i

    # ONNX's indices count from the start of the whole tensor, PyTorch's (and
    # fastpool's) from the start of each plane
    plane = int(np.prod(case.shape[2:]))
    return Peer("onnxruntime", fn_i, lambda r: (r[0], r[1] % plane))


# ----------------------------------------------------------------------------- measuring


def _stats(samples):
    ms = np.asarray(samples) * 1e3
    q1, med, q3 = np.percentile(ms, [25, 50, 75])
    return dict(median_ms=float(med), q1_ms=float(q1), q3_ms=float(q3), min_ms=float(ms.min()),
                max_ms=float(ms.max()), n=len(ms), samples_ms=[round(float(v), 4) for v in ms])


def measure(fns, *, min_reps=5, max_reps=25, budget_s=0.5, warmup=1, pause_s=PAUSE_S,
            rounds=ROUNDS, settle_s=SETTLE_S):
    """Time callables interleaved in blocks: after ``warmup`` calls each, up to
    ``rounds`` rounds run every callable as a block, each round in a new order
    (seeded: ``ORDER_SEED``): a pause, one call timed as ``after_pause``,
    unrecorded calls until ``settle_s`` has passed since it (at least one when
    ``settle_s`` > 0), then back-to-back
    calls, the samples of the statistics, until each callable has its
    repetitions (``budget_s / warm-up time`` clipped to [min_reps, max_reps]).
    Results are kept alive past the clock so freeing them is not timed."""
    est = {}
    for name, f in fns.items():
        for _ in range(max(warmup, 1)):
            t0 = time.perf_counter()
            r = f()
            est[name] = time.perf_counter() - t0
            del r
    target = {n: int(np.clip(budget_s / max(est[n], 1e-9), min_reps, max_reps)) for n in fns}
    block = {n: -(-target[n] // max(1, min(rounds, target[n]))) for n in fns}
    samples = {n: [] for n in fns}
    first = {n: [] for n in fns}
    names = list(fns)
    order = np.random.default_rng(ORDER_SEED)
    while any(len(samples[n]) < target[n] for n in names):
        for n in [names[i] for i in order.permutation(len(names))]:
            want = min(block[n], target[n] - len(samples[n]))
            if want <= 0:
                continue
            if pause_s:
                time.sleep(pause_s)
            t0 = time.perf_counter()
            r = fns[n]()
            t1 = time.perf_counter()
            del r
            first[n].append(t1 - t0)
            if settle_s:
                while True:
                    r = fns[n]()
                    del r
                    if time.perf_counter() - t1 >= settle_s:
                        break
            for _ in range(want):
                t0 = time.perf_counter()
                r = fns[n]()
                t1 = time.perf_counter()
                del r
                samples[n].append(t1 - t0)
    return {n: dict(_stats(v), after_pause=_stats(first[n])) for n, v in samples.items()}


@functools.cache
def _split_copy():
    import numba

    @numba.njit(parallel=True, nogil=True, cache=True)
    def copy(src, dst, parts):
        n = src.size
        for i in numba.prange(parts):
            a, b = i * n // parts, (i + 1) * n // parts
            dst[a:b] = src[a:b]

    return copy


def _copy_rates(res):
    """``(np.copyto's, the split copy's)`` rates, each the better of the run's
    two measurements; None for results from before the split copy."""
    cb = res["copy_bandwidth"]
    if "threads_gbps" not in cb["start"]:
        return None
    return tuple(max(cb["start"][k], cb["end"][k]) for k in ("numpy_gbps", "threads_gbps"))


def copy_reference(res, threads):
    """The copy bandwidth a case on ``threads`` threads is a fraction of: the
    run's, or for a one-thread case (the scaling case) one-thread
    ``np.copyto``'s."""
    rates = _copy_rates(res)
    if rates is not None and threads == 1 and res["copy_bandwidth"]["start"]["threads"] != 1:
        return rates[0]
    return res["copy_bandwidth"]["gbps"]


def copy_bandwidth(mb=100, reps=9, threads=1):
    """Copy bandwidth of an ``mb`` MB float64 array, bytes read + written: the
    better of ``np.copyto`` (one thread) and the same copy split in ``threads``
    contiguous parts on as many threads, the peers' thread count.  One core
    alone may not stream what the machine can (on a 2-vCPU VM, one thread's
    copy measured 12.7-14.6 GB/s where two moved 29.5), so ``np.copyto`` alone
    would flatter every fraction of it."""
    import numba

    n = int(mb * 1e6) // 8
    src = np.random.default_rng(1).standard_normal(n)
    dst = np.zeros_like(src)  # touched, so page faults are not timed
    split = _split_copy()
    was = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        split(src[:8], dst[:8], threads)  # compiled (or loaded) before timing
        st = measure({"numpy": lambda: np.copyto(dst, src), "threads": lambda: split(src, dst, threads)},
                     min_reps=reps, max_reps=reps, budget_s=0, pause_s=0)
    finally:
        numba.set_num_threads(was)
    rate = {k: 2 * src.nbytes / (v["median_ms"] * 1e-3) / 1e9 for k, v in st.items()}
    return dict(gbps=max(rate.values()), numpy_gbps=rate["numpy"], threads_gbps=rate["threads"], threads=threads,
                bytes=int(src.nbytes), **st["numpy"], threaded=st["threads"])


def _case_bytes(case: Case, inp):
    """Bytes a case must move: inputs read + output written (for max backward the
    gradient and the int64 indices are read, x is not needed)."""
    item = np.dtype(case.dtype).itemsize
    n_in, n_out = int(np.prod(case.shape)), int(np.prod(case.out))
    if case.op == "max_backward":
        return n_out * item + inp["idx"].nbytes + n_in * item
    if case.op == "max_indices":
        return (n_in + n_out) * item + n_out * 8
    if case.op == "avg_backward":
        return n_out * item + n_in * item
    return (n_in + n_out) * item


def _tol(case):
    return {"float64": (1e-10, 1e-12), "float32": (1e-4, 1e-5), "float16": (2e-3, 2e-3)}[case.dtype]


def _check(case, ref, got):
    """'ok', or why a peer's output differs from fastpool's (values and indices:
    the values within the case's tolerance, the indices exactly)."""
    if isinstance(ref, tuple):
        why = _check(case, ref[0], got[0])
        if why != "ok":
            return why
        if np.shape(got[1]) != ref[1].shape:
            return f"indices: shape {np.shape(got[1])} != fastpool's {ref[1].shape}"
        bad = int(np.count_nonzero(np.asarray(got[1]) != ref[1]))
        return "ok" if bad == 0 else f"indices: {bad} differ"
    got = np.asarray(got)
    if got.shape != ref.shape:
        return f"shape {got.shape} != fastpool's {ref.shape}"
    rtol, atol = _tol(case)
    if np.allclose(got.astype(np.float64), ref.astype(np.float64), rtol=rtol, atol=atol,
                   equal_nan=True):
        return "ok"
    err = float(np.nanmax(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
    return f"mismatch: max |diff| {err:.3g} (rtol {rtol}, atol {atol})"


class _Peers:
    """Lazily imported peer libraries; a missing one is reported once."""

    def __init__(self, log):
        self.log, self.missing, self._mods = log, {}, {}

    def get(self, name):
        if name not in self._mods:
            try:
                if name == "onnxruntime":
                    import onnx  # noqa: F401  (graphs are built with onnx.helper)
                    import onnxruntime as mod
                else:
                    mod = __import__(name)
            except ImportError as e:
                hint = "pip install 'fastpool[onnx]'" if name == "onnxruntime" else f"pip install {name}"
                self.missing[name] = f"not installed ({e}); {hint}"
                self.log(f"fastpool bench: {name} peer skipped: {self.missing[name]}")
                mod = None
            self._mods[name] = mod
        return self._mods[name]


def _set_threads(n, peers):
    import numba

    numba.set_num_threads(n)
    torch = peers.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


def run_case(case: Case, threads: int, peers: _Peers, *, min_reps=5, max_reps=25, budget_s=0.5):
    """Measure one case: fastpool and every peer that has a form of it."""
    _set_threads(threads, peers)
    inp = _inputs(case)
    fcall = fastpool_call(case, inp)
    ref = fcall()
    got = ref[0].shape if isinstance(ref, tuple) else ref.shape
    assert got == case.result_shape, f"{case.name}: fastpool gave {got}, the table says {case.result_shape}"
    rec = dict(name=case.name, op=case.op, nd=case.nd, shape=list(case.shape), out_shape=list(case.out),
               dtype=case.dtype, layout=case.layout, args=case.args, why=case.why, threads=threads,
               base=case.base, bytes=_case_bytes(case, inp), peers={})
    fns = {"fastpool": fcall}
    builders = [("numpy", lambda: _numpy_peer(case, inp))]
    torch = peers.get("torch")
    if torch is not None:
        builders.append(("torch", lambda: _torch_peer(case, inp, torch)))
    ort = peers.get("onnxruntime")
    if ort is not None:
        import onnx

        builders.append(("onnxruntime", lambda: _ort_peer(case, inp, ort, onnx, threads)))
    for label, build in builders:
        try:
            peer = build()
            check = _check(case, ref, peer.result(peer.fn()))
        except PeerUnavailable as e:
            rec["peers"][label] = dict(unavailable=str(e))
            continue
        except Exception as e:  # a peer failing must not stop the run; it is recorded
            rec["peers"][label] = dict(error=f"{type(e).__name__}: {e}")
            continue
        rec["peers"][peer.name] = dict(check=check)
        if check == "ok":
            fns[peer.name] = peer.fn
    del ref
    stats = measure(fns, min_reps=min_reps, max_reps=max_reps, budget_s=budget_s)
    rec["fastpool"] = stats.pop("fastpool")
    for name, st in stats.items():
        rec["peers"][name].update(st)
    timed = {n: p["median_ms"] for n, p in rec["peers"].items() if "median_ms" in p}
    if timed:
        best = min(timed, key=timed.get)
        rec.update(best_peer=best, best_peer_ms=timed[best],
                   ratio=rec["fastpool"]["median_ms"] / timed[best])
        cold = {n: p["after_pause"]["median_ms"] for n, p in rec["peers"].items() if "after_pause" in p}
        rec["ratio_after_pause"] = rec["fastpool"]["after_pause"]["median_ms"] / min(cold.values())
    else:
        rec.update(best_peer=None, best_peer_ms=None, ratio=None, ratio_after_pause=None)
    rec["gbps"] = rec["bytes"] / (rec["fastpool"]["median_ms"] * 1e-3) / 1e9
    return rec


# ----------------------------------------------------------------------------- first-call latency

_LATENCY_SCRIPT = r"""
import json, time
t0 = time.perf_counter()
import fastpool
import numpy as np
t1 = time.perf_counter()
x = np.random.default_rng(0).standard_normal((1, 64, 56, 56)).astype(np.float32)
t2 = time.perf_counter()
fastpool.max_pool2d(x, 3, 2, 1)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_call_s": t3 - t2, "total_s": (t1 - t0) + (t3 - t2)}))
"""
LATENCY_CALL = "import fastpool; fastpool.max_pool2d(x, 3, 2, 1), x float32 (1, 64, 56, 56)"


# The same measure for Numba alone: importing numba and numpy, then calling one
# trivial function from Numba's cache (its first cache load sets up Numba's
# typing and target contexts, which import ~50 more modules; fastpool's kernels
# load without that, see ``_cpu._LoadCache``).  Written to a file so that
# cache=True can store it.
_FLOOR_SCRIPT = r"""
import json, time
t0 = time.perf_counter()
import numba
import numpy as np
t1 = time.perf_counter()


@numba.njit(cache=True)
def first(x):
    return x[0] + 1.0


first(np.ones(3))
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_call_s": t2 - t1, "total_s": t2 - t0}))
"""


def _latency_once(threads, cache_dir=None, script=None):
    env = dict(os.environ)
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(fp.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_root] + [p for p in [env.get("PYTHONPATH")] if p])
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    env["NUMBA_NUM_THREADS"] = str(threads)
    # An installed package has its bytecode compiled (pip writes the .pyc files), so
    # the warm case lets Python keep its bytecode cache too.  With the variable set,
    # fastpool's ~7000 lines are compiled from source in every process: 0.05-0.09 s.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    t0 = time.perf_counter()
    cmd = [sys.executable, script] if script else [sys.executable, "-c", _LATENCY_SCRIPT]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise RuntimeError(f"latency subprocess failed: {out.stderr.strip()[-500:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_wall_s"] = wall
    return res


def first_call_latency(threads, *, cold=True, warm_reps=7):
    """Seconds from before ``import fastpool`` to the end of the first call, in a new
    process.  Warm: this environment's Numba cache, filled first by one unrecorded
    process (median of ``warm_reps`` processes after it).  Cold: an empty
    ``NUMBA_CACHE_DIR``, so every kernel the call needs is compiled.  Both let
    Python write and read its bytecode cache, as an installed package has.
    ``numba_floor``: ``_FLOOR_SCRIPT``'s warm time, alternated with the warm runs."""
    # A process, not a call here, fills the cache: Numba invalidates cache entries
    # whose source file changed since this process imported it.
    _latency_once(threads)
    res = {"call": LATENCY_CALL, "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR"),
           "python_bytecode_cache": True,
           "fastpool_numba_cache": os.environ.get("FASTPOOL_NUMBA_CACHE", "1")}
    with tempfile.TemporaryDirectory(prefix="fastpool-bench-floor-") as d:
        script = os.path.join(d, "numba_floor.py")
        with open(script, "w") as f:
            f.write(_FLOOR_SCRIPT)
        _latency_once(threads, script=script)  # fills its cache
        warm, floor = [], []
        for _ in range(warm_reps):  # alternated: this VM's speed drifts
            warm.append(_latency_once(threads))
            floor.append(_latency_once(threads, script=script))
    for key, runs in (("warm", warm), ("numba_floor", floor)):
        med = sorted(runs, key=lambda r: r["total_s"])[len(runs) // 2]
        res[key] = dict(med, runs_total_s=[r["total_s"] for r in runs])
    if cold:
        with tempfile.TemporaryDirectory(prefix="fastpool-bench-cache-") as d:
            res["cold"] = _latency_once(threads, d)
    return res


# ----------------------------------------------------------------------------- run


def machine_info(threads):
    import numba

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "numba": numba.__version__, "fastpool": getattr(fp, "__version__", "?")}
    for mod in ("torch", "onnxruntime", "onnx"):
        m = sys.modules.get(mod)
        versions[mod] = getattr(m, "__version__", None) if m else None
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        layer = None
    return dict(cpu=cpu, cores=os.cpu_count(),
                usable_cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                platform=platform.platform(), versions=versions, threads=threads,
                numba_threading_layer=layer,
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def _loadavg():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


class _Progress:
    """tqdm if installed, else a one-line bar on stderr."""

    def __init__(self, total, enabled=True):
        self.total, self.done, self.enabled, self._bar = total, 0, enabled, None
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc="fastpool bench", unit="step", file=sys.stderr,
                                 dynamic_ncols=True)
            except ImportError:
                pass

    def write(self, msg):
        if self._bar is not None:
            self._bar.write(msg, file=sys.stderr)
        else:
            if self.enabled:
                sys.stderr.write("\r\033[K")
            print(msg, file=sys.stderr)

    def start(self, label):
        if self._bar is not None:
            self._bar.set_postfix_str(label[:48])
        elif self.enabled:
            w = 30
            fill = int(w * self.done / max(self.total, 1))
            sys.stderr.write(f"\r\033[K[{'#' * fill}{'.' * (w - fill)}] {self.done}/{self.total} {label[:48]}")
            sys.stderr.flush()

    def step(self):
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)

    def close(self):
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            sys.stderr.write(f"\r\033[K[{'#' * 30}] {self.done}/{self.total} done\n")


def default_threads():
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)


def run(cases=None, *, full=False, threads=None, reps=None, budget_s=None, copy_mb=100,
        latency="auto", progress=True, log=None):
    """Run the cases and return the results dict (see :func:`write_results`).

    ``cases``: default the quick set, or every case with ``full``; ``reps``:
    (min, max) repetitions; ``latency``: True / False / "auto" (warm in quick
    runs, cold and warm in full runs)."""
    mode = ("full" if full else "quick") if cases is None else "custom"
    cases = list(CASES if full else quick_cases()) if cases is None else list(cases)
    threads = threads or default_threads()
    min_reps, max_reps = reps or ((12, 36) if full else (6, 24))
    budget_s = (1.5 if full else 0.4) if budget_s is None else budget_s
    do_latency = (latency == "auto") or bool(latency)
    cold = full if latency == "auto" else bool(latency)
    t_run = time.perf_counter()
    bar = _Progress(len(cases) + 2 + do_latency, progress)
    log = log or bar.write
    peers = _Peers(log)
    res = dict(schema=1, mode=mode,
               load_average_start=_loadavg(), cases=[], settings=dict(
                   repetitions=[min_reps, max_reps], budget_s_per_peer=budget_s, warmup_calls=1,
                   pause_s=PAUSE_S, rounds=ROUNDS, settle_s=SETTLE_S,
                   timing="interleaved blocks, each round in a seeded random order: pause, one call "
                          "(after_pause), unrecorded calls for "
                          "settle_s, then back-to-back calls (the medians)", input="standard normal, seed 0",
                   onnxruntime=dict(graph_optimization_level="ORT_ENABLE_EXTENDED", opset=ORT_OPSET,
                                    ir_version=ORT_IR_VERSION, intra_op_num_threads=threads,
                                    inter_op_num_threads=1, io_binding=True),
                   torch="torch.set_num_threads(threads); NCHW and channels_last tensors from NumPy "
                         "without copies; backward = aten *_backward kernels"))
    load = res["load_average_start"]
    if load and load[0] > 1.0:
        log(f"fastpool bench: load average {load[0]:.2f} > 1: timings will be noisy")
    try:
        bar.start("copy bandwidth")
        copy0 = copy_bandwidth(copy_mb, threads=threads)
        bar.step()
        for case in cases:
            bar.start(case.name)
            t0 = time.perf_counter()
            rec = run_case(case, case.threads or threads, peers, min_reps=min_reps,
                           max_reps=max_reps, budget_s=budget_s)
            rec["wall_s"] = round(time.perf_counter() - t0, 2)
            res["cases"].append(rec)
            gc.collect()
            bar.step()
        _set_threads(threads, peers)
        if do_latency:
            bar.start("first-call latency (subprocesses)")
            t0 = time.perf_counter()
            try:
                res["latency"] = first_call_latency(threads, cold=cold)
            except Exception as e:  # recorded, the timings above still stand
                res["latency"] = dict(error=f"{type(e).__name__}: {e}")
            res["latency"]["wall_s"] = round(time.perf_counter() - t0, 2)
            bar.step()
        bar.start("copy bandwidth")
        copy1 = copy_bandwidth(copy_mb, threads=threads)
        bar.step()
    finally:
        bar.close()
    # The better of the two copy measurements is the reference (the conservative
    # choice: a copy slowed by a busy moment would flatter every fraction).
    res["copy_bandwidth"] = dict(gbps=max(copy0["gbps"], copy1["gbps"]), start=copy0, end=copy1)
    for rec in res["cases"]:
        rec["copy_fraction"] = rec["gbps"] / copy_reference(res, rec["threads"])
    res["machine"] = machine_info(threads)
    res["load_average_end"] = _loadavg()
    res["wall_s"] = round(time.perf_counter() - t_run, 1)
    res["skipped_peers"] = dict(peers.missing)
    res["summary"] = summarize(res)
    return res


def summarize(res):
    """Derived figures the issue's targets are stated in."""
    by = {c["name"]: c for c in res["cases"]}
    out = {}
    scaling = []
    for c in res["cases"]:
        b = by.get(c.get("base") or "")
        if b:
            row = dict(case=b["name"], threads=[c["threads"], b["threads"]],
                       fastpool_speedup=c["fastpool"]["median_ms"] / b["fastpool"]["median_ms"])
            for p, st in b["peers"].items():
                if "median_ms" in st and "median_ms" in c["peers"].get(p, {}):
                    row[f"{p}_speedup"] = c["peers"][p]["median_ms"] / st["median_ms"]
            scaling.append(row)
    if scaling:
        out["thread_scaling"] = scaling
    k3, k13 = by.get("max2d k3s1same 8x256x56x56 NCHW"), by.get("max2d k13s1same 8x256x56x56 NCHW")
    if k3 and k13:
        out["k13_over_k3"] = k13["fastpool"]["median_ms"] / k3["fastpool"]["median_ms"]
    bw = {}
    for c in res["cases"]:
        if c["op"].endswith("_backward"):
            for p in ("torch", "torch_channels_last"):
                if "median_ms" in c["peers"].get(p, {}):
                    bw[c["name"]] = c["peers"][p]["median_ms"] / c["fastpool"]["median_ms"]
    if bw:
        out["backward_speedup_vs_torch"] = bw
    for key, label in (("ratio", "cases_fastpool_not_slower"),
                       ("ratio_after_pause", "cases_fastpool_not_slower_after_pause")):
        ratios = [c[key] for c in res["cases"] if c.get(key) is not None]
        if ratios:
            out[label] = f"{sum(r <= 1 for r in ratios)}/{len(ratios)}"
    return out


def write_results(res, path):
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")


# ----------------------------------------------------------------------------- report

_PEER_COLS = (("PyTorch", ("torch", "torch_channels_last")), ("onnxruntime", ("onnxruntime",)),
              ("NumPy", ("numpy",)))


def _ms(v):
    return "-" if v is None else (f"{v:.3g}" if v < 100 else f"{v:.0f}")


def _copy_parts(res):
    rates = _copy_rates(res)
    if rates is None:
        return ", NumPy's np.copyto on one thread"
    return (f"; the better of NumPy's np.copyto on one thread, {rates[0]:.1f} GB/s, and the same copy "
            f"split over {res['copy_bandwidth']['start']['threads']} threads, {rates[1]:.1f} GB/s")


def render_table(res, chart=None):
    """The README block (Markdown) for a results dict; ``chart``: image path to embed."""
    m, cb = res["machine"], res["copy_bandwidth"]["gbps"]
    v = m["versions"]
    peers_v = ", ".join(f"{k} {v[k]}" for k in ("torch", "onnxruntime") if v.get(k))
    lines = [
        f"Generated by `fastpool bench --report` from `benchmarks/results.json`: a {res['mode']} run "
        f"on {m['date'][:10]}, {m['cpu']} ({m['cores']} cores), {m['threads']} threads for every "
        f"library, fastpool {v.get('fastpool')}, numba {v.get('numba')}, NumPy {v.get('numpy')}"
        + (f", {peers_v}" if peers_v else "") + f". Copy bandwidth measured in the same run: "
        f"{cb:.1f} GB/s (read + write{_copy_parts(res)}). Load average at the start: "
        f"{res.get('load_average_start')}.",
        "",
        "Medians in ms of back-to-back calls in blocks of a few calls per library, "
        f"{res['settings'].get('rounds', 5)} rounds of them, each round in a seeded random order "
        "of the libraries (this VM's speed changes in phases, so every library samples them "
        "alike), recorded after "
        f"{1e3 * res['settings'].get('settle_s', 0):.0f} ms of unrecorded calls in each block "
        "(the previous library's spinning threads and the wake-up from the pause stay out of "
        "them; fastpool's interquartile range in brackets); the "
        "fastest peer in the same layout in **bold**; ratio = fastpool / fastest peer (below 1: "
        "fastpool is faster); after idle = the same ratio for the first call after a "
        f"{1e3 * res['settings'].get('pause_s', PAUSE_S):.0f} ms pause, which wakes each library's "
        "sleeping threads (one such call per block, medians of those); GB/s = "
        "(input + output bytes) / fastpool's time, and its fraction of the copy bandwidth (the "
        "one-thread copy's for a one-thread case; above "
        "100%: back-to-back calls found part of an input that fits in the last-level cache there); "
        "`-`: no kernel for the case in that library (onnxruntime's CPU provider has no NHWC "
        "or backward pooling); `differs`: its output did not match fastpool's, so it was not timed.",
        "",
        "| case | fastpool | " + " | ".join(c for c, _ in _PEER_COLS)
        + " | ratio | after idle | GB/s | of copy |",
        "|---|---:|" + "---:|" * len(_PEER_COLS) + "---:|---:|---:|---:|",
    ]
    for c in res["cases"]:
        f = c["fastpool"]
        cells = [f"`{c['name']}`", f"{_ms(f['median_ms'])} [{_ms(f['q1_ms'])}-{_ms(f['q3_ms'])}]"]
        for _, names in _PEER_COLS:
            cell = "-"
            for n in names:
                p = c["peers"].get(n)
                if p is None:
                    continue
                if "median_ms" in p:
                    cell = _ms(p["median_ms"])
                    cell = f"**{cell}**" if n == c.get("best_peer") else cell
                elif p.get("check", "ok") != "ok":
                    cell = "differs"
                elif "error" in p:
                    cell = "error"
            cells.append(cell)
        cells += ["-" if c.get("ratio") is None else f"{c['ratio']:.2f}",
                  "-" if c.get("ratio_after_pause") is None else f"{c['ratio_after_pause']:.2f}",
                  f"{c['gbps']:.1f}",
                  f"{100 * c['copy_fraction']:.0f}%"]
        lines.append("| " + " | ".join(cells) + " |")
    s = res.get("summary", {})
    notes = []
    for row in s.get("thread_scaling", []):
        extra = ", ".join(f"{k[:-8]} {v:.2f}x" for k, v in row.items() if k.endswith("_speedup")
                          and k != "fastpool_speedup")
        notes.append(f"Thread scaling {row['threads'][0]} -> {row['threads'][1]} on `{row['case']}`: "
                     f"fastpool {row['fastpool_speedup']:.2f}x" + (f" ({extra})" if extra else "") + ".")
    if "k13_over_k3" in s:
        notes.append(f"SPP max, stride 1 \"same\": k13 takes {s['k13_over_k3']:.2f}x the time of k3.")
    for name, sp in s.get("backward_speedup_vs_torch", {}).items():
        notes.append(f"`{name}`: PyTorch's backward kernel takes {sp:.2f}x fastpool's time.")
    lat = res.get("latency") or {}
    if "warm" in lat:
        t = f"First call in a new process ({lat['call']}), including the import: " \
            f"{lat['warm']['total_s']:.2f} s with warm Numba and bytecode caches"
        if "cold" in lat:
            t += f", {lat['cold']['total_s']:.1f} s with an empty one (compiling)"
        if "numba_floor" in lat:
            t += (f"; the same for Numba alone (import numba and numpy, one trivial function "
                  f"from Numba's cache), alternated with it: {lat['numba_floor']['total_s']:.2f} s")
        notes.append(t + ".")
    elif "error" in lat:
        notes.append(f"First-call latency not measured: {lat['error']}")
    for name, why in (res.get("skipped_peers") or {}).items():
        notes.append(f"Peer {name} not measured: {why}.")
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    if chart:
        lines += ["", f"![fastpool and the fastest peer per case]({chart})"]
    return "\n".join(lines)


def update_readme(path, block):
    """Put ``block`` between the bench markers of the README at ``path``; if the
    markers are missing, append a "## Speed" section holding them.  Text outside
    the markers is left as it is.  Returns True if the file changed."""
    with open(path) as f:
        text = f.read()
    new_block = f"{MARK_START}\n{block.rstrip()}\n{MARK_END}"
    i, j = text.find(MARK_START), text.find(MARK_END)
    if i >= 0 and j > i:
        new = text[:i] + new_block + text[j + len(MARK_END):]
    elif i >= 0 or j >= 0:
        raise ValueError(f"{path}: one of {MARK_START} / {MARK_END} is missing or they are out of order")
    else:
        new = text.rstrip("\n") + "\n\n## Speed\n\n" + new_block + "\n"
    if new != text:
        with open(path, "w") as f:
            f.write(new)
    return new != text


def plot(res, path):
    """Horizontal bars per case, fastpool and the fastest peer (log time axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [c for c in res["cases"] if c.get("best_peer_ms")]
    n = len(cases)
    fig, ax = plt.subplots(figsize=(10, 1.4 + 0.32 * n))
    y = np.arange(n)[::-1]
    h = 0.38
    ax.barh(y + h / 2, [c["fastpool"]["median_ms"] for c in cases], h, label="fastpool",
            color="#1f77b4", xerr=[[c["fastpool"]["median_ms"] - c["fastpool"]["q1_ms"] for c in cases],
                                   [c["fastpool"]["q3_ms"] - c["fastpool"]["median_ms"] for c in cases]])
    peer = [c["peers"][c["best_peer"]] for c in cases]
    ax.barh(y - h / 2, [c["best_peer_ms"] for c in cases], h, label="fastest peer", color="#ff7f0e",
            xerr=[[p["median_ms"] - p["q1_ms"] for p in peer], [p["q3_ms"] - p["median_ms"] for p in peer]])
    for yi, c, p in zip(y, cases, peer):
        ax.text(p["q3_ms"] * 1.08, yi - h / 2, c["best_peer"], va="center", fontsize=6)
        ax.text(c["fastpool"]["q3_ms"] * 1.08, yi + h / 2, f"{c['ratio']:.2f}x", va="center", fontsize=6)
    ax.set_yticks(y)
    ax.set_yticklabels([c["name"] for c in cases], fontsize=7)
    ax.set_xscale("log")
    right = max(max(c["fastpool"]["q3_ms"], p["q3_ms"]) for c, p in zip(cases, peer))
    ax.set_xlim(right=right * 3)
    ax.set_xlabel("median time, ms, interquartile range as whiskers (log scale; shorter is faster);"
                  " fastpool / fastest peer beside fastpool's bar", fontsize=8)
    m = res["machine"]
    ax.set_title(f"fastpool vs fastest peer, {m['threads']} threads, {m['cpu']} ({res['mode']} run, "
                 f"{m['date'][:10]})", fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(results_path=DEFAULT_OUT, readme_path="README.md", chart_path=DEFAULT_CHART, log=print):
    """Regenerate the README table and the chart from a results file."""
    with open(results_path) as f:
        res = json.load(f)
    chart_rel = None
    if chart_path:
        try:
            plot(res, chart_path)
        except ImportError:
            log("fastpool bench --report: matplotlib not installed, chart not drawn "
                "(pip install 'fastpool[bench]')")
        else:
            chart_rel = os.path.relpath(chart_path, os.path.dirname(os.path.abspath(readme_path)))
            chart_rel = chart_rel.replace(os.sep, "/")
            log(f"wrote {chart_path}")
    changed = update_readme(readme_path, render_table(res, chart_rel))
    log(f"{'updated' if changed else 'unchanged'}: {readme_path}")
    return 0


# ----------------------------------------------------------------------------- command line


def _print_summary(res, out=sys.stdout):
    print(f"\ncopy bandwidth {res['copy_bandwidth']['gbps']:.1f} GB/s{_copy_parts(res)}, "
          f"{res['machine']['threads']} threads, load average {res.get('load_average_start')} -> {res.get('load_average_end')}",
          file=out)
    print(f"{'case':44s} {'fastpool':>9s} {'best peer':>20s} {'ratio':>6s} {'idle':>6s} {'GB/s':>6s} "
          f"{'copy':>5s}", file=out)
    for c in res["cases"]:
        best = f"{c['best_peer']} {_ms(c['best_peer_ms'])}" if c.get("best_peer") else "-"
        ratio = "-" if c.get("ratio") is None else f"{c['ratio']:.2f}"
        idle = "-" if c.get("ratio_after_pause") is None else f"{c['ratio_after_pause']:.2f}"
        print(f"{c['name']:44s} {_ms(c['fastpool']['median_ms']):>9s} {best:>20s} {ratio:>6s} "
              f"{idle:>6s} {c['gbps']:6.1f} {100 * c['copy_fraction']:4.0f}%", file=out)
        for n, p in c["peers"].items():
            if p.get("check", "ok") != "ok" or "error" in p:
                print(f"    {n}: {p.get('error') or p['check']}", file=out)
    lat = res.get("latency") or {}
    for kind in ("warm", "cold", "numba_floor"):
        if kind in lat:
            print(f"first call, {kind} cache: {lat[kind]['total_s']:.2f} s", file=out)
    for k, v in res.get("summary", {}).items():
        if k != "thread_scaling":
            print(f"{k}: {v}", file=out)
    for row in res.get("summary", {}).get("thread_scaling", []):
        print(f"thread scaling {row}", file=out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="fastpool bench",
        description="Time fastpool against PyTorch CPU, onnxruntime and NumPy in one process, "
                    "same thread count, and write the results as JSON.")
    p.add_argument("--full", action="store_true",
                   help="every case, thread scaling and the cold-cache first call (default: the "
                        "quick set and the warm first call, under a minute on an idle 2-core machine)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"results file (default {DEFAULT_OUT})")
    p.add_argument("--report", action="store_true",
                   help="do not measure: regenerate the README table and the chart from --out")
    p.add_argument("--readme", default="README.md", help="README to update with --report")
    p.add_argument("--chart", default=DEFAULT_CHART, help=f"chart written by --report ({DEFAULT_CHART})")
    p.add_argument("--threads", type=int, default=None, help="threads for every library "
                   "(default: Numba's thread count, normally the number of cores)")
    p.add_argument("--cases", metavar="REGEX", default=None,
                   help="only the cases (of the full table) whose name matches")
    p.add_argument("--no-latency", action="store_true", help="skip the first-call subprocesses")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    if a.list:
        for c in CASES:
            print(f"{'Q' if c.quick else ' '} {c.name:44s} {c.why}")
        print("\nQ: in the quick set")
        return 0
    if a.report:
        if not os.path.exists(a.out):
            print(f"fastpool bench --report: no results file {a.out}; run `fastpool bench` first",
                  file=sys.stderr)
            return 2
        return report(a.out, a.readme, a.chart)
    cases = None
    if a.cases:
        rx = re.compile(a.cases)
        cases = [c for c in CASES if rx.search(c.name)]
        if not cases:
            print(f"fastpool bench: no case matches {a.cases!r} (see --list)", file=sys.stderr)
            return 2
    nthreads = default_threads()
    if a.threads is not None and not 1 <= a.threads <= nthreads:
        print(f"fastpool bench: --threads must be in 1..{nthreads} (NUMBA_NUM_THREADS), got {a.threads}",
              file=sys.stderr)
        return 2
    res = run(cases, full=a.full, threads=a.threads, progress=not a.no_progress,
              latency=False if a.no_latency else "auto")
    if cases is not None:
        res["mode"] = "selected"
    write_results(res, a.out)
    _print_summary(res)
    print(f"\nwrote {a.out}; `fastpool bench --report` puts it in the README")
    return 0


if __name__ == "__main__":
    sys.exit(main())
