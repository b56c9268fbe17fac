"""End to end on this machine: the real meter (CPU/DRAM via RAPL or the labelled estimate)
writes a run directory, and accounting reads it back."""

from __future__ import annotations

import time

import pytest

from distillmeter.accounting import account, write_report
from distillmeter.protocol import load_report


def test_meter_run_accounts_and_conserves(tmp_path):
    energy = pytest.importorskip("distillmeter.energy")
    d = tmp_path / "run"
    meter = energy.EnergyMeter(d, idle_seconds=0.3, sample_hz=20.0, method="sft", seed=7)
    with meter:
        with meter.stage("setup.load"):
            time.sleep(0.2)
        with meter.stage("student.train", tokens=50) as st:
            sum(range(2_000_000))
            st.add(tokens=50)
        meter.record_quality("exact_match", 0.25, n=8)
    report = account(d)
    write_report(d, report)
    assert load_report(d) == report
    # the idle baseline measured at start is a stage of its own, so it is not unattributed
    assert [s.name for s in report.stages] == ["setup.idle", "setup.load", "student.train"]
    assert report.stages[0].active_energy_j == pytest.approx(0.0, abs=report.stages[0]
                                                             .uncertainty_j)
    assert report.stages[2].tokens == 100
    assert (report.method, report.seed, report.quality.value) == ("sft", 7, 0.25)
    assert set(report.devices) == set(report.totals.by_device)
    assert all(s.energy_j["total"] > 0 for s in report.stages)
    t = report.totals
    assert t.stages_j + t.unattributed_j == pytest.approx(t.energy_j, abs=1e-6)
    assert t.unattributed_j > -1e-6
    # this machine has no NVML; without RAPL the CPU is an estimate and must say so
    if any(src == "estimate" for src in report.sources.values()):
        assert report.estimated
    assert report.hardware.get("cpu")
