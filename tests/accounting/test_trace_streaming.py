"""The accounting of a trace is the accounting of the in-memory reading it replaced.

``tests/data/streaming-golden.json`` holds the figures the in-memory implementation (the
trace parsed whole into lists, then arrays; commit 3ecdf05) gave for the recorded H100 run
and for each of its variants in ``trace_variants.py``, accounted with the sensitivity
analysis' moved boundaries, a widened window and a user idle figure. Every number must
agree to 1e-9 (relative) and every message exactly.
"""

from __future__ import annotations

import importlib.util
import json
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import trace_variants as tv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillmeter.accounting import account
from distillmeter.accounting.plotseries import PlotBuckets
from distillmeter.accounting.scan import clear_cache, run_trace, scan_trace
from distillmeter.accounting.series import Probes, UnplannedProbe
from distillmeter.protocol import ProtocolError
from distillmeter.protocol import trace as trace_mod
from distillmeter.protocol.trace import TraceReader, collect, parse_trace_lines

GOLDEN = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "streaming-golden.json").read_text())
REL = 1e-9


def assert_same(got: object, want: object, where: str = "") -> None:
    """Equal structures; numbers to REL, everything else exactly. A dict may hold keys the
    golden file lacks (report fields added since it was recorded, such as the meter's
    overhead): the recorded figures must all be there, unchanged."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(want) <= set(got), where
        for k in want:
            assert_same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(got, bool):
        assert isinstance(got, (int, float)), where
        assert math.isclose(got, want, rel_tol=REL, abs_tol=1e-12), f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def check_variant(name: str, dest: Path) -> None:
    run = tv.build(name, dest)
    for opt, kw in tv.OPTIONS.items():
        assert_same(tv.figures(account(run, **kw), run), GOLDEN[f"{name}/{opt}"],
                    f"{name}/{opt}")


@pytest.mark.parametrize("name", sorted(tv.VARIANTS))
def test_figures_match_the_in_memory_implementation(tmp_path, name):
    check_variant(name, tmp_path / name)


def test_the_golden_file_covers_every_variant():
    assert set(GOLDEN) == {f"{n}/{o}" for n in tv.VARIANTS for o in tv.OPTIONS}


# --------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("name", ["recorded", "unsorted", "two_devices", "counter_only",
                                  "crashed", "csv_quirks"])
def test_chunk_boundaries_everywhere_change_nothing(tmp_path, monkeypatch, name):
    # chunks of 333 bytes (about 12 rows) and csv-path chunks of 7 rows: every carry from
    # one chunk to the next is exercised, and every stretch around an edge is cut
    monkeypatch.setattr(trace_mod, "CHUNK_BYTES", 333)
    monkeypatch.setattr(trace_mod, "SLOW_ROWS", 7)
    check_variant(name, tmp_path / name)


TEXT_CELLS = {
    "t": ["0", "1.5", "2", "1e3", "+3.25", "-0.5", ".5", "5.", "", " 7 ", "x", "inf", "nan",
          "1e999", "3.000001", "1_0", "0x10", "1e", '"4"', "12.345678"],
    "device": ["gpu:0", "gpu:1", "cpu:0", "dram:0", "gpu:01", "gpu:12", " gpu:0", "GPU:0", "",
               "gpu", "tpu:0", "dram:10"],
    "value": ["", "1.5", "100.125", "7e2", "-3", "nan", "inf", "abc", " 2 ", '"9.5"',
              "1e400", "+0.001", "123456.789"],
}


@st.composite
def trace_texts(draw) -> str:
    """Trace files: mostly plain rows the fast parser reads, with the cells, line ends and
    cut-off endings that send it to the csv path."""
    plain = draw(st.booleans())
    rows = []
    for i in range(draw(st.integers(0, 40))):
        if plain and draw(st.integers(0, 9)):
            dev = draw(st.sampled_from(["gpu:0", "cpu:0", "dram:1"]))
            e = draw(st.sampled_from(["", f"{1000 + 3.25 * i:.3f}"]))
            p = draw(st.sampled_from(["", f"{draw(st.floats(0, 800)):.3f}"]))
            rows.append(f"{0.01 * i + draw(st.floats(0, 0.02)):.6f},{dev},{e},{p}")
            continue
        cells = [draw(st.sampled_from(TEXT_CELLS[c])) for c in ("t", "device", "value", "value")]
        cells = cells[:draw(st.integers(2, 5))] if not draw(st.integers(0, 9)) else cells
        rows.append(",".join(cells))
    nl = draw(st.sampled_from(["\n", "\n", "\r\n", "\r"]))
    end = draw(st.sampled_from([nl, nl, ""]))
    return "t,device,energy_j,power_w" + nl + nl.join(rows) + (end if rows else nl)


def _parsed(read) -> tuple:
    try:
        t = read()
    except ProtocolError as exc:
        return ("error", str(exc))
    data = {d: {k: [x if x == x else "nan" for x in v] for k, v in s.items()}
            for d, s in t.devices.items()}
    return ("ok", data, t.warnings, list(t.devices))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=trace_texts(), chunk=st.sampled_from([64, 333, 1 << 20]))
def test_fast_parser_reads_as_the_csv_module_does(tmp_path_factory, text, chunk):
    path = tmp_path_factory.mktemp("t") / "trace.csv"
    path.write_bytes(text.encode())
    old = trace_mod.CHUNK_BYTES
    trace_mod.CHUNK_BYTES = chunk
    try:
        fast = _parsed(lambda: collect(TraceReader(path)))
        slow = _parsed(lambda: collect(TraceReader(path, fast=False)))
    finally:
        trace_mod.CHUNK_BYTES = old
    # the csv module over the text as a text-mode file reads it: the reading the fast
    # parser stands in for
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    whole = _parsed(lambda: parse_trace_lines(lines, path))
    assert fast == slow == whole


def test_an_unplanned_figure_is_an_error_not_a_guess(fixture_dir):
    probes = Probes.build({0.0}, {0.0}, {0.1}, set(), set())
    scan = scan_trace(TraceReader(fixture_dir / "trace.csv"), probes)
    gpu = scan.series("gpu:0")
    assert gpu.power_cumulative(0.0) < 0  # before the first power sample (t = 0.000586)
    with pytest.raises(UnplannedProbe):
        gpu.power_cumulative(2.0)
    with pytest.raises(UnplannedProbe):
        gpu.edge_power(0.0, 0.001)


def test_first_and_last_times_per_device(fixture_dir):
    scan = run_trace(fixture_dir / "trace.csv", Probes())
    gpu = scan.series("gpu:0")
    assert (gpu.t_first, gpu.t_last) == (0.000586, scan.t_range["gpu:0"][1])
    assert gpu.n_power == 8600 and gpu.n_counter == 2150
    assert gpu.first_counter_t == 0.000586 and gpu.last_counter_t <= gpu.last_power_t


def _tiled(dest: Path, repeats: int) -> Path:
    spec = importlib.util.spec_from_file_location(
        "trace_scale", Path(__file__).resolve().parents[2] / "benchmarks" / "trace_scale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_run(dest, repeats)


def _peak_bytes(run: Path) -> int:
    clear_cache()
    tracemalloc.start()
    try:
        account(run)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_trace(tmp_path):
    # the recorded run with every stretch repeated 10 and 30 times: 2.4 and 7.4 MB of trace
    small, large = _tiled(tmp_path / "x10", 10), _tiled(tmp_path / "x30", 30)
    assert (large / "trace.csv").stat().st_size > 3 * (small / "trace.csv").stat().st_size
    peak_small, peak_large = _peak_bytes(small), _peak_bytes(large)
    # the trace parsed whole took ~8 bytes of memory per byte of trace.csv; the stream holds
    # one chunk (1 MiB of text, ~16 MiB at its peak) at a time, whatever the trace's length
    assert peak_large < 1.2 * peak_small, (peak_small, peak_large)
    report = account(large)
    assert report.status == "ok" and report.conservation[0]["agrees"]


def test_plot_buckets_stay_bounded_and_keep_the_energy():
    buckets = PlotBuckets(300, span=100.0)
    t = np.arange(0.0, 400.0, 0.005)  # four times the expected length: the buckets double
    p = 100.0 + 50.0 * (np.floor(t) % 2)
    for lo in range(0, t.size, 7777):
        buckets.add(t[lo:lo + 7777], p[lo:lo + 7777])
    ts, ps = buckets.mean_series()
    assert 150 <= len(ts) <= 300 and ts == sorted(ts)
    energy = sum((b - a) * w for a, b, w in zip(ts, ts[1:], ps, strict=False))
    assert energy == pytest.approx(125.0 * 400.0, rel=0.01)
    few = PlotBuckets(300)
    few.add(t[:200], p[:200])  # a short series is kept whole
    assert few.mean_series() == (t[:200].tolist(), p[:200].tolist())


def test_plot_buckets_survive_absurd_times():
    # found by the fuzz test: a span that overflowed the integer bucket index
    buckets = PlotBuckets(300, span=3e-193)
    for x in ([3.2313691129672e-193, -9223372037.0], [-1e308, 1e308]):
        buckets.add(np.array(x), np.zeros(2))
    assert len(buckets.mean_series()[0]) <= 300
    counter = PlotBuckets(4, last=True)
    counter.add(np.arange(10.0), 5.0 * np.arange(10.0))  # 5 W from a counter
    assert counter.counter_power_series()[1] == pytest.approx([5.0] * 3)
