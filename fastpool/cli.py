"""The ``fastpool`` command: ``demo``, ``bench``, ``export``, ``check``."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _best_of(fn, repeat=5):
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def demo(argv=None) -> int:
    """The seeds' worked examples, then a pooling pipeline on a batch of feature maps."""
    p = argparse.ArgumentParser(prog="fastpool demo", description=demo.__doc__)
    p.add_argument("--batch", type=_positive_int, default=16, help="feature maps in the batch (default 16)")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export and parity step")
    args = p.parse_args(argv)

    import fastpool as fp
    from fastpool import layers as L
    from fastpool import numpy_baseline as npb

    np.set_printoptions(precision=4, suppress=True)
    grid = np.array([[1, 3, 2, 4], [5, 6, 1, 2], [7, 2, 3, 1], [4, 8, 5, 6]], np.float64)[None, None]
    print("== worked examples")
    print("input 4x4:\n", grid[0, 0])
    out, idx = fp.max_pool2d(grid, 2, return_indices=True)
    print("max_pool2d k2:\n", out[0, 0], "\nindices (flat, per plane):\n", idx[0, 0])
    print("avg_pool2d k2:\n", fp.avg_pool2d(grid, 2)[0, 0])
    up = np.array([[1.0, 2.0], [3.0, 4.0]])[None, None]
    print("max backward of upstream [[1,2],[3,4]]:\n", fp.max_pool2d_backward(up, grid, 2, indices=idx)[0, 0])
    from fastpool._geometry import adaptive_axis
    t = adaptive_axis(10, 7)
    print("adaptive bins 10 -> 7:", [(int(a), int(a + b)) for a, b in zip(t.lo, t.taps)])
    print("32x32, k3 s2 p1 ->", fp.max_pool2d(np.zeros((1, 1, 32, 32), np.float32), 3, 2, 1).shape[2:])

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 64, 56, 56)).astype(np.float32)
    net = L.Sequential(L.MaxPool2d(3, stride=2, padding=1), L.AvgPool2d(2), L.AdaptiveAvgPool2d(5),
                       L.GlobalMaxPool(keepdims=False))
    print(f"\n== pipeline on a batch of feature maps {x.shape} float32")
    print(net)
    y = net(x)
    g = net.backward(np.ones_like(y))
    print("output", y.shape, "gradient", g.shape, g.dtype)

    steps = [
        ("max_pool2d k3 s2 p1", lambda: fp.max_pool2d(x, 3, 2, 1), lambda: npb.max_pool_separable(x, 2, 3, 2, 1)),
        ("avg_pool2d k2 s2", lambda: fp.avg_pool2d(x, 2), lambda: npb.avg_pool_separable(x, 2, 2)),
        ("global_avg_pool", lambda: fp.global_avg_pool(x), lambda: npb.global_avg_pool(x, 2)),
    ]
    print(f"\n{'op':24s} {'fastpool':>10s} {'NumPy':>10s} {'speed-up':>9s}  max |diff|")
    for name, f, n in steps:
        diff = float(np.max(np.abs(f().astype(np.float64) - n().astype(np.float64))))
        tf, tn = _best_of(f), _best_of(n, repeat=2)
        print(f"{name:24s} {tf * 1e3:8.2f}ms {tn * 1e3:8.2f}ms {tn / tf:8.1f}x  {diff:.2e}")

    if not args.no_onnx:
        try:
            import onnx_ops
        except ImportError as e:  # onnx / onnxruntime not installed
            print(f"\n(ONNX step skipped: {e})")
        else:
            print("\n== export to ONNX and check parity in onnxruntime")
            report = onnx_ops.check_parity(net, x[:2])
            print(report)
            if not report.ok:
                return 1
    return 0


def _bench(argv) -> int:
    try:
        from fastpool._bench import main
    except ImportError as e:
        print(f"fastpool bench needs the benchmark harness: {e}", file=sys.stderr)
        return 2
    return main(argv)


def _onnx(name, argv) -> int:
    try:
        from onnx_ops import cli as ocli
    except ImportError as e:
        print(f"fastpool {name} needs onnx and onnxruntime: {e}", file=sys.stderr)
        return 2
    return getattr(ocli, f"main_{name}")(argv)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cmds = {
        "demo": demo,
        "bench": _bench,
        "export": lambda a: _onnx("export", a),
        "check": lambda a: _onnx("check", a),
    }
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in cmds:
        print("usage: fastpool {demo,bench,export,check} [options]\n\n"
              "  demo    worked examples, a pooling pipeline timed against NumPy, ONNX parity\n"
              "  bench   benchmarks against PyTorch, onnxruntime and NumPy (--full for all cases)\n"
              "  export  write a fastpool layer as an ONNX model\n"
              "  check   run every pooling node of an ONNX model in fastpool and onnxruntime")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return cmds[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
