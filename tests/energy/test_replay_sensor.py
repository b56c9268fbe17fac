"""ReplaySensor on the recorded H100 run (tests/data/h100-run-a)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from nvml_standin import ManualClock

from distillmeter.energy import EnergyMeter, ReplaySensor
from distillmeter.protocol import read_ledger, read_trace

RUN_A = Path(__file__).resolve().parents[1] / "data" / "h100-run-a"
TRACE = read_trace(RUN_A)
GPU = TRACE.series("gpu:0")


def last_at_or_before(col: str, t: float) -> float | None:
    pts = [(ti, v) for ti, v in zip(GPU["t"], GPU[col], strict=True)
           if ti <= t and not math.isnan(v)]
    return pts[-1][1] if pts else None


def test_replay_returns_the_last_recorded_values_at_the_meters_time():
    clock = ManualClock()
    s = ReplaySensor(RUN_A)
    s.start(clock)
    assert s.devices == ["gpu:0"] and s.sources == {"gpu:0": "nvml_counter"}
    for t in (0.0, 0.1, 5.0, 17.3, 30.01):
        clock.t = t
        tt = GPU["t"][0] + t
        assert s.read_energy()["gpu:0"] == last_at_or_before("energy_j", tt)
        assert s.read_power()["gpu:0"] == last_at_or_before("power_w", tt)
    clock.t = 1e6  # past the end: hold the last values
    assert s.read_energy()["gpu:0"] == last_at_or_before("energy_j", 1e9)


def test_speed_and_start_map_meter_time_to_trace_time():
    clock = ManualClock(2.0)
    s = ReplaySensor(RUN_A / "trace.csv", speed=10.0, start=15.0)
    s.start(clock)
    assert s.trace_time() == pytest.approx(35.0)
    assert s.read_energy()["gpu:0"] == last_at_or_before("energy_j", 35.0)
    with pytest.raises(ValueError):
        ReplaySensor(RUN_A, speed=0)


def test_meter_over_replay_reproduces_the_recorded_stage_energy(tmp_path):
    """Replaying run a at 20x, a meter stage around the teacher.logits window (15.92 s to
    21.94 s of trace time) measures the counter energy truth.json gives for it, to within
    the counter's own steps near the edges."""
    truth = {s["stage"]: s for s in json.loads((RUN_A / "truth.json").read_text())["stages"]}
    want = truth["teacher.logits"]
    speed = 20.0
    s = ReplaySensor(RUN_A, speed=speed, start=0.0)
    with EnergyMeter(tmp_path / "run", sensors=[s], idle_seconds=0, sample_hz=50) as meter:
        while s.trace_time() < want["t0"]:
            time.sleep(0.001)
        with meter.stage("teacher.logits") as st:
            while s.trace_time() < want["t1"]:
                time.sleep(0.001)
    # Each edge can be off by the counter's ~100 ms step: up to ~0.1 s x 700 W.
    assert st.energy_j["gpu:0"] == pytest.approx(want["energy_j"], abs=2 * 0.1 * 700)
    assert st.energy_j["gpu:0"] > 0.8 * want["energy_j"]
    ledger = read_ledger(tmp_path / "run")
    assert ledger.run_start.sources == {"gpu:0": "nvml_counter"}
    assert read_trace(tmp_path / "run").series("gpu:0")["power_w"]
