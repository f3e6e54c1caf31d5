"""The benchmark harness (fastpool.bench) on one tiny case, in process: the results'
structure, the peers' output checks, the README block and the chart.  Timings are
recorded, never asserted (this machine's speed is not a test's business)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fastpool as fp
from fastpool import bench
from fastpool._spec import adaptive_spec, window_spec
from fastpool.cli import main as cli_main

TINY = bench._window("max", (2, 3, 12, 12), 3, 2, 1, "tiny test case")
QUIET = dict(reps=(3, 3), budget_s=0, copy_mb=4, latency=False, progress=False, log=lambda m: None)


@pytest.fixture(scope="module")
def results():
    return bench.run([TINY], **QUIET)


def test_case_table_shapes_agree_with_fastpool_geometry():
    names = [c.name for c in bench.CASES]
    assert len(set(names)) == len(names)
    assert 0 < len(bench.quick_cases()) < len(bench.CASES)
    for c in bench.CASES:
        assert c.why, c.name
        if c.op == "global_avg":
            sp = c.shape[2:] if c.layout == "channels_first" else c.shape[1:-1]
            want = c.shape[:2] + (1,) * len(sp) if c.layout == "channels_first" \
                else (c.shape[0],) + (1,) * len(sp) + (c.shape[-1],)
        elif c.op == "adaptive_avg":
            want = fp.pooling.output_shape(adaptive_spec(c.nd, c.args["output_size"], c.layout), c.shape)
        else:
            a = c.args
            spec = window_spec(c.nd, a["kernel_size"], a["stride"], a["padding"], 1, False, c.layout)
            want = fp.pooling.output_shape(spec, c.shape)
        assert tuple(want) == c.out, c.name
    # the scaling case repeats a case of the table on one thread
    scaling = [c for c in bench.CASES if c.base]
    assert scaling and all(c.threads == 1 and c.base in names for c in scaling)


def test_results_structure(results, tmp_path):
    path = tmp_path / "results.json"
    bench.write_results(results, str(path))
    res = json.loads(path.read_text())
    assert res["mode"] == "custom"
    m = res["machine"]
    for key in ("cpu", "cores", "threads", "date", "versions"):
        assert m[key] not in (None, ""), key
    assert {"numpy", "numba", "torch", "onnxruntime", "onnx"} <= set(m["versions"])
    cb = res["copy_bandwidth"]
    for c in (cb["start"], cb["end"]):
        # the reference is the better of the one-thread and the split copy
        assert c["numpy_gbps"] > 0 and c["threads_gbps"] > 0 and c["threads"] == m["threads"]
        assert c["gbps"] == max(c["numpy_gbps"], c["threads_gbps"])
        assert c["numpy_gbps"] == pytest.approx(2 * c["bytes"] / c["median_ms"] / 1e6)
        assert c["threads_gbps"] == pytest.approx(2 * c["bytes"] / c["threaded"]["median_ms"] / 1e6)
    assert cb["gbps"] == max(cb["start"]["gbps"], cb["end"]["gbps"])
    (c,) = res["cases"]
    assert c["name"] == TINY.name and c["shape"] == [2, 3, 12, 12] and c["out_shape"] == [2, 3, 6, 6]
    assert c["bytes"] == (2 * 3 * 12 * 12 + 2 * 3 * 6 * 6) * 4

    def ok_stats(st):
        assert st["n"] == 3 == len(st["samples_ms"])
        assert st["min_ms"] <= st["q1_ms"] <= st["median_ms"] <= st["q3_ms"] <= st["max_ms"]
        # three rounds of one back-to-back call, each after its own first call
        ap = st["after_pause"]
        assert ap["n"] == 3 and ap["min_ms"] <= ap["median_ms"] <= ap["max_ms"]

    ok_stats(c["fastpool"])
    # every peer computed the same thing as fastpool and was timed
    assert set(c["peers"]) == {"torch", "onnxruntime", "numpy"}
    for p in c["peers"].values():
        assert p["check"] == "ok"
        ok_stats(p)
    medians = {n: p["median_ms"] for n, p in c["peers"].items()}
    assert c["best_peer"] == min(medians, key=medians.get)
    assert c["ratio"] == pytest.approx(c["fastpool"]["median_ms"] / medians[c["best_peer"]])
    idle = min(p["after_pause"]["median_ms"] for p in c["peers"].values())
    assert c["ratio_after_pause"] == pytest.approx(c["fastpool"]["after_pause"]["median_ms"] / idle)
    assert c["gbps"] == pytest.approx(c["bytes"] / c["fastpool"]["median_ms"] / 1e6)
    assert c["copy_fraction"] == pytest.approx(c["gbps"] / res["copy_bandwidth"]["gbps"])


def test_indices_case_checks_values_and_indices_of_each_peer():
    fwd = bench._window("max", (2, 3, 12, 12), 3, 2, 1, "tiny")
    case = bench.replace(fwd, name="max2d_indices tiny", op="max_indices", why="tiny")
    (c,) = bench.run([case], **QUIET)["cases"]
    # onnxruntime counts its indices from the tensor's start: compared per plane
    assert c["peers"]["torch"]["check"] == "ok" and c["peers"]["onnxruntime"]["check"] == "ok"
    assert "unavailable" in c["peers"]["numpy"]
    assert c["bytes"] == (2 * 3 * 12 * 12 + 2 * 3 * 6 * 6) * 4 + 2 * 3 * 6 * 6 * 8
    y, idx = fp.max_pool2d(np.arange(16.0).reshape(1, 1, 4, 4), 2, return_indices=True)
    assert bench._check(case, (y, idx), (y, idx)) == "ok"
    assert bench._check(case, (y, idx), (y, idx + 1)) == "indices: 4 differ"
    assert bench._check(case, (y, idx), (y + 1, idx)).startswith("mismatch")


def test_a_peer_computing_something_else_is_reported_and_not_timed(monkeypatch):
    def wrong_numpy_peer(case, inp):
        return bench.Peer("numpy", lambda: np.zeros(case.out, np.float32), lambda r: r)

    monkeypatch.setattr(bench, "_numpy_peer", wrong_numpy_peer)
    res = bench.run([TINY], **QUIET)
    p = res["cases"][0]["peers"]["numpy"]
    assert p["check"].startswith("mismatch")
    assert "median_ms" not in p and res["cases"][0]["best_peer"] != "numpy"


def test_readme_block_between_markers(results, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# fastpool\n\nIntro text.\n")
    table = bench.render_table(results, "benchmarks/speed.png")
    assert TINY.name in table and "| case | fastpool |" in table
    assert bench.update_readme(str(readme), table)
    text = readme.read_text()
    assert text.startswith("# fastpool\n\nIntro text.\n") and "\n## Speed\n" in text
    assert text.count(bench.MARK_START) == text.count(bench.MARK_END) == 1
    # a second report replaces only what lies between the markers
    readme.write_text(text + "\nTrailing section.\n")
    assert not bench.update_readme(str(readme), table)
    assert bench.update_readme(str(readme), "new block")
    text2 = readme.read_text()
    assert TINY.name not in text2 and "new block" in text2
    assert text2.startswith("# fastpool\n\nIntro text.\n") and text2.endswith("\nTrailing section.\n")
    readme.write_text("only a start marker " + bench.MARK_START)
    with pytest.raises(ValueError, match="missing or they are out of order"):
        bench.update_readme(str(readme), table)


def test_bench_report_command(results, tmp_path, capsys):
    out, readme, chart = tmp_path / "r.json", tmp_path / "README.md", tmp_path / "speed.png"
    bench.write_results(results, str(out))
    readme.write_text("# x\n")
    assert cli_main(["bench", "--report", "--out", str(out), "--readme", str(readme),
                     "--chart", str(chart)]) == 0
    assert TINY.name in readme.read_text()
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # the report says so and still writes the table
        assert "matplotlib not installed" in capsys.readouterr().out
    else:
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "![fastpool and the fastest peer per case](speed.png)" in readme.read_text()


def test_measure_blocks_pause_then_back_to_back_calls(monkeypatch):
    """Each block is one pause, one call recorded apart, then back-to-back calls;
    blocks of the callables alternate, and every callable gets its repetitions."""
    log = []
    monkeypatch.setattr(bench.time, "sleep", lambda s: log.append(("pause", s)))
    fns = {n: (lambda n=n: log.append(n)) for n in ("a", "b")}
    st = bench.measure(fns, min_reps=7, max_reps=7, budget_s=0, warmup=1, pause_s=0.01, rounds=3,
                       settle_s=0)
    assert log[:2] == ["a", "b"]  # warm-up
    blocks, cur = [], None
    for e in log[2:]:
        if isinstance(e, tuple):
            cur = []
            blocks.append(cur)
        else:
            cur.append(e)
    # 7 back-to-back calls in blocks of ceil(7 / 3) = 3: 3 + 3 + 1, each block one call longer
    assert [len(b) for b in blocks] == [4, 4, 4, 4, 2, 2]
    # every round runs each callable once, in the seeded generator's order
    perm = np.random.default_rng(bench.ORDER_SEED)
    want = [n for _ in range(3) for n in np.array(["a", "b"])[perm.permutation(2)]]
    assert [b[0] for b in blocks] == want
    assert all(len(set(b)) == 1 for b in blocks)
    for n in fns:
        assert st[n]["n"] == 7 and st[n]["after_pause"]["n"] == 3


def test_measure_settles_each_block_before_recording(monkeypatch):
    """After the first call of a block, unrecorded calls run until ``settle_s`` has
    passed; only the calls after them are samples."""
    clock = [0.0]
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(bench.time, "sleep", lambda s: None)
    calls = {"a": 0}

    def a():  # each call takes 1 ms of the fake clock
        calls["a"] += 1
        clock[0] += 1e-3

    st = bench.measure({"a": a}, min_reps=4, max_reps=4, budget_s=0, warmup=1, rounds=2, settle_s=0.0035)
    # warm-up 1; per block: 1 first call, 4 settling calls (3.5 ms), 2 samples
    assert calls["a"] == 1 + 2 * (1 + 4 + 2)
    assert st["a"]["n"] == 4 and st["a"]["after_pause"]["n"] == 2


def test_numba_floor_runs_from_numba_cache(tmp_path):
    """The floor script runs in a new process and stores its function in Numba's
    cache beside it, so the runs after the first time a cache load, not a compile."""
    script = tmp_path / "numba_floor.py"
    script.write_text(bench._FLOOR_SCRIPT)
    first = bench._latency_once(1, script=str(script))
    assert list((tmp_path / "__pycache__").glob("numba_floor.first-*.nbi"))
    again = bench._latency_once(1, script=str(script))
    for r in (first, again):
        assert r["total_s"] == pytest.approx(r["import_s"] + r["first_call_s"])
        assert r["process_wall_s"] >= r["total_s"] > 0


@pytest.mark.parametrize("parts", [1, 2, 3, 7])
def test_split_copy_moves_every_cell(parts):
    # the copy bandwidth's threaded reference must copy all of it, or it would
    # be timed on less than the bytes it is credited with
    src = np.arange(1001, dtype=np.float64)
    dst = np.zeros_like(src)
    bench._split_copy()(src, dst, parts)
    np.testing.assert_array_equal(dst, src)


def test_one_thread_cases_are_a_fraction_of_the_one_thread_copy():
    one = dict(gbps=9.0, numpy_gbps=9.0, threads_gbps=8.5, threads=2)
    two = dict(gbps=20.0, numpy_gbps=10.0, threads_gbps=20.0, threads=2)
    res = {"copy_bandwidth": dict(gbps=20.0, start=one, end=two)}
    assert bench.copy_reference(res, 2) == 20.0
    assert bench.copy_reference(res, 1) == 10.0
    # a run on one thread has one reference
    res1 = {"copy_bandwidth": dict(gbps=9.0, start=dict(one, threads=1), end=dict(one, threads=1))}
    assert bench.copy_reference(res1, 1) == 9.0
