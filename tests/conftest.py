"""Hypothesis profiles: "ci" (default, fixed and small) and "long" (exploratory).

Select with FASTPOOL_HYPOTHESIS_PROFILE=long.
"""

from __future__ import annotations

import os

# Tiny test arrays would otherwise run the serial twins of the kernels; the
# suite exercises the parallel kernels, and test_serial.py the twins.
os.environ.setdefault("FASTPOOL_SERIAL_BELOW", "0")

# OpenMP worker threads (numba's omp layer, PyTorch's runtime) spin after each
# parallel region by default; the suite makes tens of thousands of calls on tiny
# arrays, and on 2 busy cores the spinning starves the next call.  Measured here
# for test_vs_reference/vs_torch/gradcheck/properties together: 107 s with the
# default policy, 21 s with PASSIVE.  Read when the OpenMP runtime loads, so it is
# set before any test module imports numba or torch; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=40, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long", max_examples=2000, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("FASTPOOL_HYPOTHESIS_PROFILE", "ci"))


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _routes_unremembered(monkeypatch):
    """Every call takes the whole path: tests patch the routing (``_cpu.pick``
    spies, thresholds), which a remembered route would skip; tests/test_memo.py
    turns it back on and checks it against the whole path."""
    from fastpool import _memo

    monkeypatch.setattr(_memo, "enabled", False)
    monkeypatch.setattr(_memo, "_routes", {})
    monkeypatch.setattr(_memo, "_first", {})
    monkeypatch.setattr(_memo, "_never", set())
    monkeypatch.setattr(_memo, "_differed", set())
