"""The sum kernels' multipliers: ``_core.divisor_rows`` keeps one row per
distinct row of ``1 / divisor`` and an index per output row; the rows it
indexes must give back the whole table bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from fastpool import _geometry as geo
from fastpool._core import divisor, divisor_rows
from fastpool._spec import adaptive_spec, window_spec

PLANS = [
    # nd, kernel, stride, padding, ceil_mode, spatial
    (2, 3, 1, 1, False, (56, 56)),
    (2, 2, 2, 0, False, (14, 14)),
    (2, 3, 2, 1, True, (10, 13)),
    (3, 3, 1, 1, False, (5, 9, 7)),
    (3, (2, 3, 2), (1, 2, 2), (1, 1, 0), True, (4, 7, 6)),
    (1, 5, 2, 2, True, (17,)),
]


@pytest.mark.parametrize("mode, override", [("pad", None), ("valid", None), ("pad", 7)])
@pytest.mark.parametrize("plan", PLANS, ids=str)
def test_rows_rebuild_the_reciprocal_table(plan, mode, override):
    nd, k, s, p, ceil, spatial = plan
    axes = geo.plan(window_spec(nd, k, s, p, 1, ceil, "channels_first"), spatial)
    rows, at = divisor_rows(axes, mode, override)
    full = 1.0 / divisor(axes, mode, override)
    assert at.shape == full.shape[:2] and rows.shape[1] == full.shape[2]
    np.testing.assert_array_equal(rows[at], full)
    # every row is used and none twice
    assert sorted(set(at.ravel().tolist())) == list(range(rows.shape[0]))
    assert len({r.tobytes() for r in rows}) == rows.shape[0]
    assert not rows.flags.writeable and not at.flags.writeable


def test_one_row_when_every_window_has_the_same_divisor():
    axes = geo.plan(window_spec(2, 3, 1, 1, 1, False, "channels_first"), (56, 56))
    assert divisor_rows(axes, "pad")[0].shape == (1, 56)
    # without the padding taps, the first and last output rows share their row
    assert divisor_rows(axes, "valid")[0].shape == (2, 56)


def test_adaptive_bins():
    axes = geo.plan(adaptive_spec(2, (5, 3), "channels_first"), (12, 10))
    rows, at = divisor_rows(axes, "valid")
    np.testing.assert_array_equal(rows[at], 1.0 / divisor(axes, "valid"))
