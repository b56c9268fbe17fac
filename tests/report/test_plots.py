"""Plot building blocks: ticks, downsampling, power from a counter, escaping."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest
from runbuilder import FIXTURE

from distillmeter.protocol import read_trace
from distillmeter.render import svg
from distillmeter.render.timeline import downsample, power_from_counter, power_series


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


def test_quality_axis_stays_inside_a_rate_range() -> None:
    pts = [svg.ParetoPoint("a", 1.0, 0.98, 0.9, 1.1, 0.94, 1.0, True),
           svg.ParetoPoint("b", 2.0, 0.05, 1.8, 2.2, 0.0, 0.09, True)]
    bounded = ET.fromstring(svg.pareto_svg(pts, xlabel="kJ", ylabel="q",
                                           y_bounds=(0.0, 1.0)))
    free = ET.fromstring(svg.pareto_svg(pts, xlabel="kJ", ylabel="q"))

    def y_range(root) -> tuple[float, float]:
        """The quality values at the bottom and top of the y axis, from the tick labels'
        positions (a linear map) and the axis line's ends."""
        ticks = [(float(t.text), float(t.get("y")) - 4) for t in root.iter()
                 if t.tag.endswith("text") and t.get("text-anchor") == "end" and t.text]
        (v0, y0), (v1, y1) = ticks[0], ticks[-1]
        axis = next(e for e in root.iter() if e.tag.endswith("line")
                    and e.get("x1") == e.get("x2") and e.get("stroke") == "#333")
        top, bottom = float(axis.get("y1")), float(axis.get("y2"))

        def value(y: float) -> float:
            return v0 + (v1 - v0) * (y - y0) / (y1 - y0)

        return value(bottom), value(top)

    lo, hi = y_range(bounded)
    assert lo >= -1e-9 and hi <= 1 + 1e-9
    lo, hi = y_range(free)
    assert hi > 1.0 or lo < 0.0  # without bounds the padding runs past the range


def test_timeline_legend_names_devices_sources_and_idle() -> None:
    doc = svg.timeline_svg({"cpu:0": ([0.0, 1.0, 2.0], [2.0, 3.0, 2.5]),
                            "dram:0": ([0.0, 1.0, 2.0], [8.8, 8.8, 8.8]),
                            "gpu:0": ([0.0, 1.0, 2.0], [120.0, 400.0, 130.0])},
                           [("student.train", 0.5, 1.5, "student")], title="run",
                           idle_w={"cpu:0": 0.45, "dram:0": 8.77, "gpu:0": 120.5},
                           sources={"cpu:0": "estimate", "dram:0": "estimate",
                                    "gpu:0": "nvml_counter"})
    root = ET.fromstring(doc)
    legend = next(g for g in root.iter() if g.get("class") == "legend")
    text = " ".join(t.text or "" for t in legend.iter() if t.tag.endswith("text"))
    assert "cpu:0 (estimate)" in text and "dram:0 (estimate)" in text
    assert "gpu:0 (counter)" in text and "idle baseline" in text and "student" in text
    idle = [e for e in root.iter() if e.get("class") == "idle"]
    assert len(idle) == 3  # one dashed line per device, in its colour
    assert len({e.get("stroke") for e in idle}) == 3
