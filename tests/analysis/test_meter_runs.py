"""`distillmeter report` / `plan` on run directories written by the real meter, fed by the
recorded H100 trace played back (ReplaySensor): the analysis reads exactly what the meter
and the accounting produce, environment.json included."""

from __future__ import annotations

import json
import time
from pathlib import Path

from runbuilder import FIXTURE

from distillmeter.cli import main
from distillmeter.energy import EnergyMeter
from distillmeter.energy.sensors.replay import ReplaySensor

SPEED = 40.0  # trace seconds per wall second
LEAD = 10.0  # trace seconds replayed before the first stage: the meter's start-up time


def wait_until(sensor: ReplaySensor, trace_t: float) -> None:
    while sensor.trace_time() < trace_t:
        time.sleep(0.002)


def metered_run(run_dir: Path, stages: list[tuple[str, float, float, int]], *,
                start: float, **labels) -> None:
    sensor = ReplaySensor(FIXTURE, speed=SPEED, start=start)
    quality = labels.pop("quality", None)
    with EnergyMeter(run_dir, sensors=[sensor], idle_seconds=0, sample_hz=50,
                     **labels) as meter:
        for name, t0, t1, tokens in stages:
            # a start-up slower than the lead would cut the stage short: say so, not a
            # wrong number
            assert sensor.trace_time() < t0, "meter start-up outran the replay lead"
            wait_until(sensor, t0)
            with meter.stage(name, tokens=tokens):
                wait_until(sensor, t1)
        if quality is not None:
            meter.record_quality("exact_match", quality, n=100)


def test_report_and_plan_on_metered_runs(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    metered_run(runs / "teacher", [("teacher.logits", 15.92, 21.94, 663552)], start=15.92 - LEAD,
                run_id="t-1", method="teacher", task="arithmetic")
    up = [{"run_id": "t-1", "run_dir": "../teacher", "stages": ["teacher.logits"]}]
    for seed, q in enumerate((0.60, 0.64)):
        metered_run(runs / f"kd-s{seed}", [("student.train", 23.95, 27.0 + seed, 876544),
                                           ("eval.student", 30.0, 31.5 + seed, 1851392)],
                    start=23.95 - LEAD, run_id=f"kd-{seed}", method="kd", seed=seed,
                    config_id="kd", task="arithmetic", upstream=up, quality=q)
    for seed, q in enumerate((0.40, 0.42)):
        metered_run(runs / f"baseline-s{seed}", [("student.train", 23.95, 26.0 + seed, 876544),
                                                 ("eval.student", 30.0, 31.5 + seed, 1851392)],
                    start=23.95 - LEAD, run_id=f"base-{seed}", method="baseline", seed=seed,
                    config_id="baseline", task="arithmetic", quality=q)
    assert main(["report", str(runs)]) == 0
    summary = json.loads((runs / "summary.json").read_text())
    assert summary["skipped"] == []
    configs = {c["config"]: c for c in summary["configs"]}
    assert set(configs) == {"kd", "baseline"}
    assert summary["teacher_runs"][0]["run_id"] == "t-1"
    kd = configs["kd"]
    # the upstream teacher.logits energy: within the counter's 100 ms steps of the truth
    assert abs(kd["teacher_side_j_mean"] - 3133.859) < 2 * 0.1 * 700
    # the seeds end their runs a second apart: their energies differ
    assert kd["n_seeds"] == 2 and kd["energy_j_std"] > 50
    assert (runs / "report.html").stat().st_size > 10_000
    capsys.readouterr()
    assert main(["plan", str(runs), "--budget-kwh", "1"]) == 0
    assert "pick kd" in capsys.readouterr().out
