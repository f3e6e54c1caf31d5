"""Concurrent use: many Python threads at once, a ThreadPoolExecutor, dask's threaded
scheduler, multiprocessing with fork (after the parent ran parallel kernels) and
spawn, and the thread-count controls.

Every result must equal the single-threaded one bit for bit, and no process may
abort.  Layer-specific behaviour runs in subprocesses with a forced
``NUMBA_THREADING_LAYER``: under ``omp`` (GNU OpenMP kills a forked child that
starts a parallel region after its parent did) the pooling functions of a
forked child run their serial kernels; under ``workqueue`` (which aborts on
concurrent parallel calls) fastpool calls take turns.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pytest

import fastpool as fp
from fastpool import PoolingError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RNG = np.random.default_rng(7)
X = RNG.standard_normal((4, 8, 40, 44)).astype(np.float32)
XL = np.ascontiguousarray(X.transpose(0, 2, 3, 1))
BOXES = np.array([[0, 1, 2, 30, 25], [3, 0, 0, 43, 39], [2, 5.5, 7.25, 20, 38]])

WORK = {
    "max": lambda: fp.max_pool2d(X, 3, 2, 1),
    "max idx cl": lambda: fp.max_pool2d(XL, 3, 1, 1, return_indices=True, layout="NHWC"),
    "max van Herk": lambda: fp.max_pool2d(X, 6, 1, "same"),
    "avg cl": lambda: fp.avg_pool2d(XL, 3, 2, 1, layout="NHWC"),
    "lp backward": lambda: fp.lp_pool2d_backward(np.ones((4, 8, 20, 22), np.float32), X, 2.0, 2),
    "max backward": lambda: fp.max_pool2d_backward(np.ones((4, 8, 20, 22), np.float32), X, 3, 2, 1),
    "adaptive": lambda: fp.adaptive_avg_pool2d(X, (7, 9)),
    "global": lambda: fp.global_max_pool(X, return_indices=True),
    "roi_align": lambda: fp.roi_align(X, BOXES, (5, 5), 1.0, 2, True),
    "stochastic": lambda: fp.stochastic_pool2d(np.abs(X), 2, rng=np.random.default_rng(3)),
}
EXPECTED = {k: f() for k, f in WORK.items()}


def _same(a, b):
    if isinstance(a, tuple):
        return isinstance(b, tuple) and all(_same(u, v) for u, v in zip(a, b))
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _run_all(rounds: int = 3):
    bad = []
    for _ in range(rounds):
        for k, f in WORK.items():
            if not _same(f(), EXPECTED[k]):
                bad.append(k)
    return bad


def test_threading_layer_is_chosen_deliberately():
    layer = fp.threading_layer()
    assert layer == numba.threading_layer()
    assert layer in ("tbb", "omp", "workqueue")
    # tbb wherever its library is installed (the threads and test extras, on Linux x86_64)
    have_tbb = any(os.path.exists(os.path.join(p, "lib", "libtbb.so.12"))
                   for p in {sys.prefix, sys.base_prefix})
    if have_tbb and not os.environ.get("NUMBA_THREADING_LAYER"):
        assert layer == "tbb"


def test_many_python_threads_at_once():
    errors, bad = [], []
    start = threading.Barrier(12)

    def worker():
        try:
            start.wait()
            bad.extend(_run_all(2))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors and not bad, (errors, sorted(set(bad)))


def test_thread_pool_executor():
    keys = sorted(WORK) * 4
    with ThreadPoolExecutor(max_workers=6) as ex:
        results = list(ex.map(lambda k: (k, WORK[k]()), keys))
    assert all(_same(r, EXPECTED[k]) for k, r in results)


def test_dask_threaded_scheduler():
    dask = pytest.importorskip("dask", reason="dask is in the [test] extra")
    import dask.array as da

    x = np.concatenate([X] * 2)
    d = da.from_array(x, chunks=(1, 8, 40, 44))
    y = d.map_blocks(lambda b: fp.max_pool2d(b, 3, 2, 1), chunks=(1, 8, 20, 22), dtype=np.float32)
    z = d.map_blocks(lambda b: fp.avg_pool2d_backward(np.ones((b.shape[0], 8, 20, 22), np.float32), b, 2),
                     dtype=np.float32)
    with dask.config.set(scheduler="threads", num_workers=6):
        got_y, got_z = dask.compute(y, z)
    assert _same(got_y, fp.max_pool2d(x, 3, 2, 1))
    assert _same(got_z, fp.avg_pool2d_backward(np.ones((8, 8, 20, 22), np.float32), x, 2))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing(method):
    if method not in mp.get_all_start_methods():
        pytest.skip(f"{method} is not available on {sys.platform}")
    fp.max_pool2d(X, 3, 2, 1)   # the parent has run parallel kernels before forking
    ctx = mp.get_context(method)
    args = [(X[i:i + 1], 3, 2, 1) for i in range(4)] + [(XL, 3, 1, 1, 1, False, True)]
    with ctx.Pool(2) as pool:
        got = pool.starmap_async(fp.max_pool2d, args).get(timeout=120)
    for a, g in zip(args, got):
        assert _same(g, fp.max_pool2d(*a))


def test_set_num_threads_applies_to_every_thread(monkeypatch):
    seen = []
    real_pick = fp._cpu.pick

    def spy(kernel, a, b):
        seen.append(numba.get_num_threads())
        return real_pick(kernel, a, b)

    monkeypatch.setattr(fp._cpu, "pick", spy)
    top = numba.config.NUMBA_NUM_THREADS
    before = numba.get_num_threads()
    try:
        fp.set_num_threads(1)
        assert fp.get_num_threads() == 1
        with ThreadPoolExecutor(max_workers=3) as ex:
            outs = list(ex.map(lambda _: fp.max_pool2d(X, 3, 2, 1), range(3)))
        assert all(_same(o, EXPECTED["max"]) for o in outs)
        assert seen and set(seen) == {1}
        assert numba.get_num_threads() == before, "numba's own count must be left alone"
        seen.clear()
        fp.set_num_threads(None)
        fp.max_pool2d(X, 3, 2, 1)
        assert seen == [before]
    finally:
        fp.set_num_threads(None)
    for bad in (0, -1, top + 1):
        with pytest.raises(PoolingError, match=r"between 1 and"):
            fp.set_num_threads(bad)
    for bad in (1.0, "2", True):
        with pytest.raises(fp.PoolingTypeError, match="must be an int"):
            fp.set_num_threads(bad)


def _python(code: str, **env):
    e = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
             FASTPOOL_SERIAL_BELOW="0", **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=e, capture_output=True,
                          text=True, timeout=180)


def test_environment_controls():
    r = _python("""
        import fastpool as fp, numba
        print(fp.get_num_threads(), numba.get_num_threads(), fp.threading_layer())
    """, FASTPOOL_NUM_THREADS="1", NUMBA_THREADING_LAYER="workqueue")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", str(numba.config.NUMBA_NUM_THREADS), "workqueue"]
    r = _python("import fastpool", FASTPOOL_NUM_THREADS="many")
    assert r.returncode != 0 and "FASTPOOL_NUM_THREADS must be an int, got 'many'" in r.stderr


# A child forked after the parent ran parallel kernels, and concurrent threads,
# under the layers numba falls back to without TBB.
_LAYER_SCRIPT = """
import os, sys, threading
import numpy as np
import fastpool as fp
x = np.random.default_rng(0).standard_normal((2, 8, 64, 64)).astype(np.float32)
want = fp.max_pool2d(x, 3, 2, 1)
wantb = fp.roi_align(x, np.array([[1, 2, 3, 40, 50.5]]), 4)
ok = []
def work():
    ok.append(all(np.array_equal(fp.max_pool2d(x, 3, 2, 1), want) for _ in range(20)))
ts = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
pid = os.fork()
if pid == 0:
    good = np.array_equal(fp.max_pool2d(x, 3, 2, 1), want) and np.array_equal(
        fp.roi_align(x, np.array([[1, 2, 3, 40, 50.5]]), 4), wantb)
    os._exit(0 if good else 3)
_, status = os.waitpid(pid, 0)
print(fp.threading_layer(), all(ok) and len(ok) == 8, os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
@pytest.mark.parametrize("layer", ["omp", "workqueue", "tbb"])
def test_threads_and_fork_under_each_layer(layer):
    r = _python(_LAYER_SCRIPT, NUMBA_THREADING_LAYER=layer)
    if layer == "tbb" and r.returncode != 0 and "TBB" in r.stderr:
        pytest.skip("TBB is not installed here (the threads and test extras install it on Linux x86_64)")
    assert r.returncode == 0, r.stderr[-3000:]
    # numba's TBB pool may print "Unable to join threads to shut down before fork()"
    # on stdout; what counts is the child's exit code on the last line
    assert r.stdout.strip().splitlines()[-1].split() == [layer, "True", "0"], (r.stdout, r.stderr[-2000:])
