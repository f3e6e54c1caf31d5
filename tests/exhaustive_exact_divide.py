"""Every float32 sum through the W pass's division by fused multiply-adds
(``_simd._exact_scaled``) against the float64 product, for every divisor 1 to
``_simd.EXACT_DIVISORS``, bit for bit: one binade (beyond it both scale by
powers of two as long as q is normal), every value under 2^-100 in magnitude
(subnormal q, and the q the rule holds for next to them) and the largest values
with infinities and NaNs; both signs.  About 4 minutes on two cores:

    python tests/exhaustive_exact_divide.py

It prints the divisors with a mismatch (none) and exits 1 if there is one.
``test_exact_divide.py`` checks a sample of the same in the suite."""

from __future__ import annotations

import sys
import time

import numpy as np
from numba import njit, prange

from fastpool import _simd

CHUNK = 1 << 16


@njit(parallel=True)
def _mismatches(lo, n, d):
    bad = np.zeros(n // CHUNK, np.int64)
    y, m = np.float32(1.0 / d), 1.0 / d
    for c in prange(n // CHUNK):
        s = np.arange(lo + c * CHUNK, lo + (c + 1) * CHUNK).astype(np.uint32).view(np.float32)
        pairs = np.empty(2 * CHUNK, np.float32)
        pairs[:CHUNK] = y
        pairs[CHUNK:] = np.float32(d)
        got = np.empty(CHUNK, np.float32)
        _simd.sum_wins(s, 0, got, 0, pairs, CHUNK, 1, 1, 1)
        want = np.empty(CHUNK, np.float32)
        for i in range(CHUNK):
            want[i] = np.float32(np.float64(s[i]) * m)
        gb, wb = got.view(np.uint32), want.view(np.uint32)
        for i in range(CHUNK):
            bad[c] += gb[i] != wb[i]
    return bad.sum()


RANGES = [(0x3F800000, 1 << 23), (0x00000000, 0x0D800000), (0x7E000000, 0x02000000)]


def main() -> int:
    t0 = time.time()
    bad = []
    for d in range(1, _simd.EXACT_DIVISORS + 1):
        k = sum(_mismatches(lo | sign, n, float(d)) for lo, n in RANGES for sign in (0, 0x80000000))
        if k:
            bad.append((d, int(k)))
        print(f"d={d}: {k} mismatches ({time.time() - t0:.0f} s)", flush=True)
    print("divisors with a mismatch:", bad)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
