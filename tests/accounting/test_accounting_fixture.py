"""Accounting the recorded H100 run (tests/data/h100-run-a) against its truth.json."""

from __future__ import annotations

import json
import math

import pytest

from distillmeter.accounting import account, write_report
from distillmeter.protocol import REPORT_SCHEMA, Report, load_report


def test_stage_energy_matches_the_counter_truth(fixture_dir, truth):
    report = account(fixture_dir)
    assert [s.name for s in report.stages] == [s["stage"] for s in truth["stages"]]
    for st, tr in zip(report.stages, truth["stages"], strict=True):
        assert st.energy_j["total"] == pytest.approx(tr["energy_j"], rel=1e-3), st.name
        assert st.energy_j["gpu:0"] == st.energy_j["total"]
        assert st.t_start == tr["t0"] and st.t_end == tr["t1"]
        assert st.tokens == tr["tokens"]
        assert st.source == {"gpu:0": "nvml_counter"}
        assert st.status == "ok"
    assert report.totals.energy_j == pytest.approx(truth["run_energy_j"], rel=1e-9)
    assert report.estimated is False
    assert report.status == "ok"


def test_energy_is_conserved_to_the_joule(fixture_dir):
    report = account(fixture_dir)
    t = report.totals
    stage_sum = math.fsum(s.energy_j["total"] for s in report.stages)
    assert stage_sum + t.unattributed_j == pytest.approx(t.energy_j, abs=1e-6)
    assert t.stages_j == pytest.approx(stage_sum, abs=1e-9)
    # the gaps between stages (idle before setup, the 2 s pauses) are real energy
    assert t.unattributed_j > 0
    assert math.fsum(t.by_side.values()) == pytest.approx(stage_sum, abs=1e-6)
    assert t.kwh == pytest.approx(t.energy_j / 3.6e6)


def test_idle_baseline_and_active_energy(fixture_dir, truth):
    report = account(fixture_dir)
    assert report.idle_power_w == {"gpu:0": pytest.approx(truth["idle_w"])}
    for st in report.stages:
        expected = st.energy_j["total"] - truth["idle_w"] * st.seconds
        assert st.active_energy_j == pytest.approx(expected)
    override = account(fixture_dir, idle_w=100.0)
    gen = next(s for s in override.stages if s.name == "teacher.generate")
    assert gen.active_energy_j == pytest.approx(gen.energy_j["total"] - 100.0 * gen.seconds)
    per_dev = account(fixture_dir, idle_w={"gpu:0": 0.0})
    assert all(s.active_energy_j == s.energy_j["total"] for s in per_dev.stages)


def test_j_per_token_and_short_stage_notes(fixture_dir):
    report = account(fixture_dir)
    by_name = {s.name: s for s in report.stages}
    logits = by_name["teacher.logits"]
    assert logits.j_per_token == pytest.approx(logits.energy_j["total"] / logits.tokens)
    assert by_name["setup.load"].j_per_token is None  # no tokens: no per-token figure
    short = [s.name for s in report.stages if any("short stage" in n for n in s.notes)]
    assert short == ["setup.load", "student.burst0", "student.burst1", "student.burst2",
                     "student.burst3"]
    # the boundary term dominates a 0.15 s burst: its uncertainty is comparable to it
    assert by_name["student.burst0"].uncertainty_j > 0.5 * by_name["student.burst0"].energy_j[
        "total"]
    # and is a small share of a 6 s stage
    assert logits.uncertainty_j < 0.05 * logits.energy_j["total"]


def _without_readings(events: list[dict]) -> list[dict]:
    out = []
    for e in events:
        e = dict(e)
        if "readings" in e:
            e["readings"] = {}
        out.append(e)
    return out


def test_without_readings_falls_back_to_instant_power(run_copy, ledger_events, truth):
    d = run_copy(events=_without_readings(ledger_events))
    report = account(d)
    for st, tr in zip(report.stages, truth["stages"], strict=True):
        assert st.source == {"gpu:0": "nvml_instant"}
        err = st.energy_j["total"] - tr["energy_j"]
        if tr["t1"] - tr["t0"] >= 3.0:
            assert abs(err) <= 0.03 * tr["energy_j"], st.name
        # the stated uncertainty covers the real error on every stage, short ones included
        assert abs(err) <= st.uncertainty_j, st.name
    assert report.estimated is False
    t = report.totals
    assert t.energy_j == pytest.approx(truth["run_energy_j"], rel=0.03)
    assert t.stages_j + t.unattributed_j == pytest.approx(t.energy_j, abs=1e-6)


def test_boundary_shift_moves_stages_not_the_run(fixture_dir):
    base = account(fixture_dir)
    assert account(fixture_dir, boundary_shift=0.0).totals == base.totals
    for f in (-0.05, 0.05):
        shifted = account(fixture_dir, boundary_shift=f)
        assert shifted.totals.energy_j == base.totals.energy_j
        assert shifted.accounting["boundary_shift"] == f
        for a, b in zip(base.stages, shifted.stages, strict=True):
            assert b.seconds == pytest.approx(a.seconds)
            assert b.t_start == pytest.approx(a.t_start + f * a.seconds)
            assert any("boundaries moved" in n for n in b.notes)
        t = shifted.totals
        assert t.stages_j + t.unattributed_j == pytest.approx(t.energy_j, abs=1e-6)
        moved = abs(t.stages_j - base.totals.stages_j)
        assert 0 < moved < 0.05 * base.totals.stages_j
    widened = account(fixture_dir, boundary_widen=0.05)
    assert widened.totals.stages_j > base.totals.stages_j


def test_write_report_is_valid_and_atomic(run_copy):
    d = run_copy()
    report = account(d, price_per_kwh=0.2, currency="EUR", country="DE")
    path = write_report(d, report)
    assert path == d / "report.json"
    data = json.loads(path.read_text())
    assert data["schema"] == REPORT_SCHEMA
    again = load_report(d)
    assert again == Report.model_validate(data)
    assert again.totals == report.totals
    assert again.cost.currency == "EUR"
    assert [p.name for p in d.iterdir() if p.name.startswith(".report.")] == []


def test_failed_stage_keeps_its_energy(run_copy, ledger_events, truth):
    for e in ledger_events:
        if e["event"] == "stage_end" and e["stage"] == "student.train":
            e["status"] = "failed"
            e["error"] = "RuntimeError: CUDA out of memory"
    report = account(run_copy(events=ledger_events))
    st = next(s for s in report.stages if s.name == "student.train")
    assert st.status == "failed"
    assert st.energy_j["total"] == pytest.approx(truth["stages"][2]["energy_j"])
    assert "CUDA out of memory" in st.notes[0]
    assert report.totals.by_side["student"] >= st.energy_j["total"]


def test_quality_and_labels_come_from_the_ledger(run_copy, ledger_events):
    ledger_events[0].update(method="kd", seed=3, config_id="abc", task="arith",
                            labels={"k": 64})
    ledger_events.insert(-1, {"event": "quality", "t": 48.0, "metric": "exact_match",
                              "value": 0.5, "n": 10})
    ledger_events.insert(-1, {"event": "quality", "t": 48.5, "metric": "exact_match",
                              "value": 0.75, "n": 200, "details": {"q": 0.9}})
    report = account(run_copy(events=ledger_events))
    assert (report.method, report.seed, report.config_id, report.task) == (
        "kd", 3, "abc", "arith")
    assert report.labels == {"k": 64}
    assert report.quality is not None
    assert (report.quality.value, report.quality.n, report.quality.details) == (
        0.75, 200, {"q": 0.9})


def test_hardware_from_environment_json(run_copy, fixture_dir):
    assert any("environment.json: missing" in w for w in account(fixture_dir).warnings)
    d = run_copy()
    (d / "environment.json").write_text(json.dumps(
        {"gpus": [{"name": "NVIDIA H100 80GB HBM3"}], "cpu_model": "Xeon", "python": "3.12"}))
    report = account(d)
    assert report.hardware == {"gpus": [{"name": "NVIDIA H100 80GB HBM3"}], "cpu_model": "Xeon"}
    assert not any("environment.json" in w for w in report.warnings)
