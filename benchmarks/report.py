"""Regenerate the README's speed table and ``benchmarks/speed.png`` from
``benchmarks/results.json`` (the same as ``fastpool bench --report``).

    python benchmarks/report.py [--results PATH] [--readme PATH] [--chart PATH]
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default=os.path.join(ROOT, "benchmarks", "results.json"))
    p.add_argument("--readme", default=os.path.join(ROOT, "README.md"))
    p.add_argument("--chart", default=os.path.join(ROOT, "benchmarks", "speed.png"))
    a = p.parse_args(argv)
    sys.path.insert(0, ROOT)
    from fastpool.bench import report

    return report(a.results, a.readme, a.chart)


if __name__ == "__main__":
    sys.exit(main())
