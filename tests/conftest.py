"""Hypothesis profiles: "ci" (default, fixed and small) and "long" (exploratory).

Select with FASTPOOL_HYPOTHESIS_PROFILE=long.
"""

from __future__ import annotations

import os

# Tiny test arrays would otherwise run the serial twins of the kernels; the
# suite exercises the parallel kernels, and test_serial.py the twins.
os.environ.setdefault("FASTPOOL_SERIAL_BELOW", "0")

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
