"""The channels-first max rows that ask for their input ahead
(``_core.cf_ahead``, ``_cpu._ask_ahead``): the same values as the NumPy
reference when the hint is on (forced on small inputs here: it is meant for
inputs past the last cache), and the hint's reach."""

from __future__ import annotations

import numpy as np
import pytest

import fastpool as fp
from fastpool import _core
from fastpool import _geometry as geo
from fastpool._spec import window_spec

from probes import kernel_args, sprinkled
from reference import max_pool

CASES = [
    # nd, input shape, kernel, stride, padding
    (2, (2, 3, 40, 37), 3, 2, 1),
    (2, (1, 2, 19, 40), 3, 1, 1),   # rows past FLAT_MAX_W: the row kernels
    (2, (1, 3, 33, 17), (2, 3), (2, 1), (1, 0)),   # 15 windows: past the short rows
    (3, (1, 2, 7, 12, 18), 3, 2, 1),
    (1, (2, 3, 97), 3, 2, 1),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int8])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_rows_asked_ahead_match_reference(monkeypatch, case, dtype):
    nd, shape, k, s, p = case
    x = sprinkled(np.random.default_rng(len(shape) + shape[-1]), shape, dtype, 30, ((np.nan, 3), (-np.inf, 2)))
    monkeypatch.setattr(_core, "AHEAD_FROM", 0)
    names = ("cf_max_forward", "cf_half_max_forward")
    asked = kernel_args(monkeypatch, names, 23 if dtype != np.float16 else 19)
    got = getattr(fp, f"max_pool{nd}d")(x, k, s, p)
    assert asked and all(a > 0 for a in asked)
    np.testing.assert_array_equal(got, max_pool(x, nd, k, s, p)[0])


def test_reach():
    axes = geo.plan(window_spec(2, 3, 2, 1, 1, False, "channels_first"), (112, 112))
    small = np.zeros((1, 1, 112, 112), np.float32)
    assert _core.cf_ahead(axes, small) == (0, 0)
    # nbytes of a broadcast view counts every cell without allocating them
    big = np.broadcast_to(np.float32(0), (_core.AHEAD_FROM // 4,))
    ahead, n = _core.cf_ahead(axes, big)
    # stride 2 on H: each output row reads two new input rows of 112 cells
    assert n == 2 * 112
    assert ahead == _core.AHEAD_BYTES // 4
    wide = geo.plan(window_spec(2, 3, 2, 1, 1, False, "channels_first"), (9, 4096))
    assert _core.cf_ahead(wide, big) == (2 * 4096, 2 * 4096)
