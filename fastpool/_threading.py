"""Numba's threading layer, chosen before any fastpool kernel runs, and the thread count.

Measured here (numba 0.68.1, Linux, 2 cores; tests/test_concurrency.py keeps it true):

* ``tbb``: right answers from 16 Python threads at once, a ``ThreadPoolExecutor``,
  dask's threaded scheduler, and ``multiprocessing`` fork (after the parent ran
  parallel kernels), spawn and forkserver.
* ``omp`` (GNU OpenMP, numba's pick when TBB cannot be loaded): thread-safe, but a
  child forked after the parent ran a parallel kernel is killed ("fork() called
  from a process already using GNU OpenMP") as soon as it runs one itself.
* ``workqueue``: aborts the process when two threads run parallel kernels at once.

So fastpool prefers ``tbb`` (the ``threads`` extra, where PyPI has wheels).  pip puts
``libtbb.so.12`` in ``<prefix>/lib``, which the dynamic loader does not search in a
virtual environment, and numba then quietly falls back to OpenMP; the library is
preloaded from there so ``tbb`` loads.  Without TBB the layer stays numba's
fallback, made safe where it is not: after a fork under ``omp`` the pooling
functions run their serial kernels, and under ``workqueue`` fastpool calls take
turns.  A user's ``NUMBA_THREADING_LAYER`` (or ``numba.config.THREADING_LAYER``
set before importing fastpool) is respected as given.

``set_num_threads(n)`` / ``FASTPOOL_NUM_THREADS`` bound the worker threads of every
fastpool call, from whichever Python thread it comes (numba's own
``set_num_threads`` is per calling thread), and leave numba's count for other code
as it was.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

import numba
from numba.np.ufunc import parallel as _parallel

from ._spec import is_int
from .errors import PoolingError, PoolingTypeError

_LAYERS = ("tbb", "omp", "workqueue")
_PRIORITY = ["tbb", "omp", "workqueue"]


def _tbb_candidates():
    seen = set()
    for prefix in (sys.prefix, sys.exec_prefix, sys.base_prefix):
        path = os.path.join(prefix, "lib", "libtbb.so.12")
        if path not in seen:
            seen.add(path)
            yield path
    try:
        import site
        yield os.path.join(site.getuserbase(), "lib", "libtbb.so.12")
    except Exception:  # site can be stubbed out in embedded interpreters
        pass


def _preload_tbb() -> str | None:
    """Load pip's libtbb globally so numba's ``dlopen("libtbb.so.12")`` finds it."""
    if not sys.platform.startswith("linux"):
        return None
    for path in _tbb_candidates():
        if os.path.exists(path):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                return path
            except OSError:
                continue
    return None


def _user_chose_layer() -> bool:
    if os.environ.get("NUMBA_THREADING_LAYER"):
        return True
    return str(numba.config.THREADING_LAYER).lower() != "default"


def _configure() -> None:
    if _parallel._is_initialized:  # another library already launched numba's threads
        return
    if _user_chose_layer():
        if str(numba.config.THREADING_LAYER).lower() in ("tbb", "safe", "forksafe", "threadsafe"):
            _preload_tbb()
        return
    _preload_tbb()
    if not os.environ.get("NUMBA_THREADING_LAYER_PRIORITY"):
        numba.config.THREADING_LAYER_PRIORITY = list(_PRIORITY)


_configure()


# ----------------------------------------------------------------------------- thread count


def _max_threads() -> int:
    return int(numba.config.NUMBA_NUM_THREADS)


def _check_count(n, name: str) -> int:
    if not is_int(n):
        raise PoolingTypeError(f"{name} must be an int, got {n!r}")
    n = int(n)
    top = _max_threads()
    if not 1 <= n <= top:
        raise PoolingError(
            f"{name} must be between 1 and {top} (numba's NUMBA_NUM_THREADS here), got {n}"
        )
    return n


_num_threads: int | None = None
_lock = threading.RLock()     # fastpool calls take turns under the workqueue layer
_serialize = False
_layer_known = False


class _Guard:
    """Around a public call: the fastpool thread count, and turns where the layer needs them."""

    __slots__ = ("prev", "locked")

    def __enter__(self):
        self.locked = _serialize
        if self.locked:
            _lock.acquire()
        n = _num_threads
        self.prev = None
        if n is not None:
            cur = numba.get_num_threads()
            if cur != n:
                numba.set_num_threads(n)
                self.prev = cur
        return self

    def __exit__(self, *exc):
        if self.prev is not None:
            numba.set_num_threads(self.prev)
        if self.locked:
            _lock.release()
        return False


def _learn_layer() -> None:
    """On the first call: launch numba's threads and note what the layer needs."""
    global _serialize, _layer_known
    with _lock:
        if _layer_known:
            return
        numba.get_num_threads()  # launches the threading layer
        _serialize = numba.threading_layer() == "workqueue"
        _layer_known = True
        _update_guard()


def _first_call_guard():
    _learn_layer()
    return _Guard()


# ``_core.public`` reads this: None means "call straight through" (the common case).
guard = _first_call_guard


def _update_guard() -> None:
    global guard
    if not _layer_known:
        guard = _first_call_guard
    elif _serialize or _num_threads is not None:
        guard = _Guard
    else:
        guard = None


def set_num_threads(n) -> None:
    """Use at most ``n`` worker threads in every fastpool call (from any Python thread).

    ``n`` runs from 1 to numba's ``NUMBA_NUM_THREADS``; ``None`` goes back to
    numba's per-thread count.  The ``FASTPOOL_NUM_THREADS`` environment variable
    sets it at import.  numba's count for other code is left as it was.
    """
    global _num_threads
    _num_threads = None if n is None else _check_count(n, "set_num_threads: n")
    _update_guard()


def get_num_threads() -> int:
    """The worker threads a fastpool call from this Python thread uses."""
    return _num_threads if _num_threads is not None else int(numba.get_num_threads())


def threading_layer() -> str:
    """The Numba threading layer fastpool's parallel kernels run on (launches it if needed)."""
    _learn_layer()
    return numba.threading_layer()


def _from_env() -> None:
    raw = os.environ.get("FASTPOOL_NUM_THREADS", "").strip()
    if not raw:
        return
    try:
        n = int(raw)
    except ValueError:
        raise PoolingError(f"FASTPOOL_NUM_THREADS must be an int, got {raw!r}") from None
    set_num_threads(_check_count(n, "FASTPOOL_NUM_THREADS"))


_from_env()


# ----------------------------------------------------------------------------- fork


def _after_fork_in_child() -> None:
    # GNU OpenMP kills a forked child that starts a parallel region once the
    # parent has used it; the serial twins of the kernels need no thread pool.
    if not _parallel._is_initialized:
        return
    try:
        layer = numba.threading_layer()
    except ValueError:
        return
    if layer == "omp":
        cpu = sys.modules.get("fastpool._cpu")
        if cpu is not None:
            cpu.SERIAL_BELOW = sys.maxsize


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
