"""The meter's own idle measurement (``setup.idle``) is the meter's overhead, not the
workload's: real meter runs on this machine, accounted and analysed by the real CLI.

It stays in the ledger, the stage table and the run's total (stages + unattributed = run
total, to the joule), is named ``totals.meter_overhead_j`` beside ``totals.workload_j``,
and is left out of every figure across runs: energy per student, sides, the verdict and
the plan."""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path

import pytest

from distillmeter.accounting import account
from distillmeter.cli import main
from distillmeter.energy import EnergyMeter
from distillmeter.protocol import load_report


def metered(run_dir: Path, method: str, seed: int, quality: float, work: int) -> None:
    with EnergyMeter(run_dir, idle_seconds=0.4, sample_hz=20.0, method=method, seed=seed,
                     config_id=method, task="arithmetic") as meter:
        with meter.stage("setup.load"):
            time.sleep(0.05)
        with meter.stage("student.train", tokens=1000):
            sum(range(work))
        meter.record_quality("exact_match", quality, n=50)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("overhead") / "runs"
    for seed in range(2):
        metered(root / f"baseline-s{seed}", "baseline", seed, 0.40 + 0.01 * seed, 300_000)
        metered(root / f"kd-s{seed}", "kd", seed, 0.60 + 0.01 * seed, 900_000)
    return root


def test_the_idle_measurement_is_named_apart_and_energy_still_conserves(runs):
    rep = account(runs / "kd-s0")
    idle = [s for s in rep.stages if s.name == "setup.idle"]
    assert len(idle) == 1 and idle[0].energy_j["total"] > 0
    t = rep.totals
    assert t.meter_overhead_j == pytest.approx(idle[0].energy_j["total"], rel=1e-12)
    assert t.meter_overhead_s == pytest.approx(idle[0].seconds, rel=1e-12)
    assert t.workload_j == pytest.approx(t.energy_j - t.meter_overhead_j, rel=1e-12)
    assert math.fsum(s.energy_j["total"] for s in rep.stages) + t.unattributed_j == \
        pytest.approx(t.energy_j, abs=1e-9)
    assert t.by_side["setup"] >= t.meter_overhead_j  # still in the ledger's view


def test_show_names_the_meter_overhead(runs, capsys):
    assert main(["show", str(runs / "baseline-s1")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "meter overhead" in out and "not counted in energy per student" in out
    assert "workload" in out


def test_energy_per_student_leaves_the_idle_measurement_out(runs, capsys):
    assert main(["report", str(runs), "--no-sensitivity"]) == 0
    capsys.readouterr()
    summary = json.loads((runs / "summary.json").read_text())
    for c in summary["configs"]:
        reps = [load_report(runs / d) for d in c["run_dirs"]]
        work = statistics.fmean(r.totals.workload_j for r in reps)
        over = statistics.fmean(r.totals.meter_overhead_j for r in reps)
        assert over > 0
        assert c["energy_j_mean"] == pytest.approx(work, rel=1e-9)
        assert c["meter_overhead_j_mean"] == pytest.approx(over, rel=1e-9)
        assert "setup.idle" not in c["by_stage_j_mean"]
        sides = sum(v for k, v in c.items() if k.endswith("side_j_mean")) + \
            c["eval_j_mean"] + c["setup_j_mean"] + c["unattributed_j_mean"]
        assert sides == pytest.approx(c["energy_j_mean"], rel=1e-9)
    kd = next(v for v in summary["verdict"] if v.get("config") == "kd")
    base = next(c for c in summary["configs"] if c["config"] == "baseline")
    assert kd["baseline_energy_j"] == pytest.approx(base["energy_j_mean"], rel=1e-12)
    assert any(n.startswith("meter overhead: 4 run(s)") for n in summary["notes"])
    assert "Meter overhead: the meter measured its idle baseline" in \
        (runs / "report.html").read_text()


def test_the_plan_holds_the_workload_against_the_budget(runs, capsys):
    assert main(["plan", str(runs), "--budget-kwh", "1", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    rows = {r["config"]: r for r in plan["groups"][0]["candidates"]}
    for config, row in rows.items():
        reps = [load_report(p / "report.json") for p in runs.iterdir()
                if p.name.startswith(config + "-")]
        work = statistics.fmean(r.totals.workload_j for r in reps)
        assert row["kwh_mean"] == pytest.approx(work / 3.6e6, rel=1e-9)
