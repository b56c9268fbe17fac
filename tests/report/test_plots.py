"""Plot building blocks: ticks, downsampling, power from a counter, escaping."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest
from runbuilder import FIXTURE

from distillmeter.protocol import read_trace
from distillmeter.report import svg
from distillmeter.report.timeline import downsample, power_from_counter, power_series


@pytest.mark.parametrize("lo,hi", [(0, 10), (2.3, 7.9), (0, 1.08), (15.6, 49.3), (0, 760),
                                   (0.38, 0.66), (-3, 3)])
def test_nice_ticks_are_round_and_inside_the_range(lo: float, hi: float) -> None:
    ticks = svg.nice_ticks(lo, hi, 5)
    assert 3 <= len(ticks) <= 7
    assert lo - 1e-9 <= ticks[0] and ticks[-1] <= hi + 1e-9
    step = ticks[1] - ticks[0]
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert round(mantissa, 6) in (1, 2, 2.5, 5)
    assert all(abs((b - a) - step) < 1e-9 for a, b in zip(ticks, ticks[1:], strict=False))


def test_nice_ticks_degenerate_ranges() -> None:
    assert svg.nice_ticks(5, 5) and svg.nice_ticks(float("nan"), 1) == []


def test_downsample_keeps_the_mean_of_each_bucket() -> None:
    ts = [i * 0.01 for i in range(10000)]
    ps = [100.0 if i % 2 else 300.0 for i in range(10000)]
    t2, p2 = downsample(ts, ps, 200)
    assert len(t2) == 200 and all(p == pytest.approx(200.0) for p in p2)
    assert downsample([0.0, 1.0], [1.0, float("nan")], 5) == ([0.0], [1.0])


def test_power_from_counter_recovers_constant_power() -> None:
    ts = [i * 0.1 for i in range(50)]
    es = [1000.0 + 250.0 * t for t in ts]  # 250 W
    t2, p2 = power_from_counter(ts, es)
    assert p2 and all(p == pytest.approx(250.0) for p in p2)


def test_recorded_trace_downsampled_keeps_its_energy() -> None:
    trace = read_trace(FIXTURE)
    (dev, (ts, ps)), = power_series(trace, 300).items()
    assert dev == "gpu:0" and len(ts) <= 300
    # integrating the buckets gives the run's energy within a few percent of the counter
    raw = trace.series("gpu:0")
    energy = sum((b - a) * p for a, b, p in zip(ts, ts[1:], ps, strict=False))
    counter = [e for e in raw["energy_j"] if e == e]
    assert energy == pytest.approx(counter[-1] - counter[0], rel=0.05)


def test_labels_are_escaped_and_svg_parses() -> None:
    hostile = '<b onload="x">&'
    pts = [svg.ParetoPoint(hostile, 1.0, 0.5, 0.9, 1.1, 0.4, 0.6, True),
           svg.ParetoPoint("b", 2.0, 0.7, frontier=True)]
    for doc in (svg.pareto_svg(pts, xlabel=hostile, ylabel="q"),
                svg.stacked_bars_svg([(hostile, [("teacher", 1.0), (hostile, 2.0)])],
                                     ylabel="kJ"),
                svg.timeline_svg({"gpu:0": ([0.0, 1.0], [100.0, 200.0])},
                                 [(hostile, 0.2, 0.8, "student")], title=hostile,
                                 idle_w=80.0)):
        root = ET.fromstring(doc)
        assert root.tag.endswith("svg") and "<b " not in doc
        assert hostile in "".join(root.itertext())


def test_shade() -> None:
    assert svg.shade("#000000", 0.5) == "#808080"
    assert svg.shade("#2b7bb9", 0.0) == "#2b7bb9"
