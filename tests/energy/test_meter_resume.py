"""Resuming a run after ``kill -9`` inside a stage, through the public API alone
(``EnergyMeter(resume=True)``, as docs/energy.md shows it): the stage the crash left open
is closed at the crash point and marked incomplete, and no stage overlaps another, so no
energy is counted twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from distillmeter.accounting import account
from distillmeter.energy import EnergyMeter
from distillmeter.protocol import read_ledger

WORKER = textwrap.dedent("""
    import sys, time
    from distillmeter.energy import EnergyMeter
    meter = EnergyMeter(sys.argv[1], idle_seconds=0, sample_hz=50, method="sft")
    meter.start()
    with meter.stage("setup.load"):
        time.sleep(0.2)
    meter.begin_window("student.train")
    print("in the stage", flush=True)
    x = 0
    while True:  # training until killed
        x += 1
""")


def _trace_rows_after(run_dir: Path, t: float) -> int:
    try:
        lines = (run_dir / "trace.csv").read_text().splitlines()[1:]
    except FileNotFoundError:
        return 0
    return sum(1 for line in lines if line.count(",") == 3 and float(line.split(",")[0]) > t)


def _killed_inside_a_stage(run_dir: Path) -> float:
    """Run the worker, kill -9 it once the trace holds samples from inside its
    student.train stage; return that stage's start time."""
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(run_dir)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "in the stage"
        start = next(ev.t for ev in read_ledger(run_dir / "ledger.jsonl").of("stage_start")
                     if ev.stage == "student.train")
        deadline = time.monotonic() + 60
        while _trace_rows_after(run_dir, start + 0.3) < 4:  # the trace flushes ~1/s
            assert time.monotonic() < deadline, "no trace rows from inside the stage"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return start


def test_resume_after_kill_inside_a_stage_closes_it_at_the_crash(tmp_path):
    run_dir = tmp_path / "run"
    crashed_start = _killed_inside_a_stage(run_dir)
    before = read_ledger(run_dir / "ledger.jsonl")
    assert before.run_end is None and before.of("stage_start")[-1].stage == "student.train"

    with EnergyMeter(run_dir, resume=True, idle_seconds=0, sample_hz=50) as meter:
        with meter.stage("student.train") as st:
            sum(i * i for i in range(300_000))
            st.add(tokens=100)
        with meter.stage("eval.student"):
            sum(i * i for i in range(100_000))

    ledger = read_ledger(run_dir / "ledger.jsonl")
    closing = [ev for ev in ledger.of("stage_end") if ev.status == "incomplete"]
    assert len(closing) == 1 and closing[0].stage == "student.train"
    resumed = next(ev for ev in ledger.of("warning") if ev.message.startswith("resumed"))
    # closed at the crash point: after the stage began, no later than the resume
    assert crashed_start < closing[0].t <= resumed.t
    assert "stopped inside this stage" in closing[0].error

    report = account(run_dir)
    assert [(s.name, s.status) for s in report.stages] == [
        ("setup.load", "ok"), ("student.train", "incomplete"), ("student.train", "ok"),
        ("eval.student", "ok")]
    for earlier, later in zip(report.stages, report.stages[1:], strict=False):
        assert earlier.t_end <= later.t_start, f"{earlier.name} overlaps {later.name}"
    crashed = report.stages[1]
    assert crashed.t_end == closing[0].t and crashed.energy_j["total"] > 0
    # conservation without double counting: the stages hold no more than the run
    stages_j = sum(s.energy_j["total"] for s in report.stages)
    assert stages_j <= report.totals.energy_j + report.totals.uncertainty_j
    assert report.totals.unattributed_j >= -report.totals.uncertainty_j


def test_a_clean_run_resumed_gets_no_closing_event(tmp_path):
    run_dir = tmp_path / "run"
    with EnergyMeter(run_dir, idle_seconds=0, sample_hz=0) as meter:
        with meter.stage("student.train"):
            pass
    with EnergyMeter(run_dir, resume=True, idle_seconds=0, sample_hz=0) as meter:
        with meter.stage("eval.student"):
            pass
    ends = read_ledger(run_dir / "ledger.jsonl").of("stage_end")
    assert [(e.stage, e.status) for e in ends] == [("student.train", "ok"),
                                                    ("eval.student", "ok")]
