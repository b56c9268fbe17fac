"""A stage that completed keeps its product: `distillmeter run` killed with SIGKILL inside
`eval.student`, after `student.train` finished and saved the student, then `--resume`.

The resumed run evaluates the saved student (no second `student.train` window anywhere),
names the interrupted attempt's `student.train` as upstream (its energy stays where it was
measured, counted once, on the student side, never divided among students), and every
report conserves energy."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
from fault_support import EVAL_RUN, run_cli, start_cli
from reliability_support import events, kill9, stage_started, wait_for, write_config

from distillmeter import protocol
from distillmeter.pipelines.artifacts import load_verified

pytestmark = pytest.mark.slow


@dataclass
class Resumed:
    out: Path
    killed_ledger: bytes
    stdout: str


def _in_eval(run_dir: Path) -> bool:
    return stage_started(run_dir, "eval.student") is not None and not any(
        e.get("event") == "stage_end" and e.get("stage") == "eval.student"
        for e in events(run_dir / "ledger.jsonl"))


@pytest.fixture(scope="module")
def resumed(tmp_path_factory) -> Resumed:
    base = tmp_path_factory.mktemp("eval-kill")
    config = write_config(base / "eval.yaml", EVAL_RUN)
    out = base / "runs"
    proc = start_cli("run", str(config), "--out", str(out), "--quiet", "--no-report")
    wait_for("the student's evaluation", lambda: _in_eval(out / "kd-s0"), proc)
    kill9(proc)
    killed = (out / "kd-s0" / "ledger.jsonl").read_bytes()
    done = run_cli("run", str(config), "--out", str(out), "--resume", "--no-report")
    assert done.returncode == 0, done.stderr
    return Resumed(out, killed, done.stdout + done.stderr)


def _report(run_dir: Path) -> protocol.Report:
    report = protocol.load_report(run_dir)
    stages = math.fsum(s.energy_j["total"] for s in report.stages)
    assert stages + report.totals.unattributed_j == pytest.approx(report.totals.energy_j,
                                                                  abs=1e-6)
    return report


def test_the_kill_landed_inside_the_evaluation_after_the_training(resumed):
    evs = [json.loads(ln) for ln in resumed.killed_ledger.decode().splitlines()]
    assert evs[-1]["event"] == "stage_start" and evs[-1]["stage"] == "eval.student"
    assert [(e["stage"], e["status"]) for e in evs if e["event"] == "stage_end"] == [
        ("setup.load", "ok"), ("student.train", "ok")]


def test_the_saved_student_is_evaluated_not_trained_again(resumed):
    out = resumed.out
    assert "kd-s0.failed-1 trained is found and verified" in resumed.stdout
    trains = [(p.parent.name, e["stage"]) for p in out.glob("*/ledger.jsonl")
              for e in events(p) if e["event"] == "stage_start"
              and e["stage"] == "student.train"]
    assert trains == [("kd-s0.failed-1", "student.train")]  # one training window in all
    evs = events(out / "kd-s0" / "ledger.jsonl")
    assert [(e["stage"], e["status"]) for e in evs if e["event"] == "stage_end"] == [
        ("setup.load", "ok"), ("eval.student", "ok")]
    load = next(e for e in evs if e["event"] == "stage_end" and e["stage"] == "setup.load")
    assert load["info"]["trained_in"] == "kd-s0.failed-1"
    quality = [e for e in evs if e["event"] == "quality"]
    assert len(quality) == 1 and quality[0]["n"] == EVAL_RUN["task"]["n_test"]
    # the checkpoint it evaluated is the one that training saved, intact
    ckpt = next((out / "kd-s0.failed-1" / "artifacts").glob("student-*"))
    assert load_verified(ckpt).stage == "student.train"
    assert not list((out / "kd-s0").glob("artifacts/student-*"))


def test_the_interrupted_attempt_is_kept_whole_and_accounted(resumed):
    failed = resumed.out / "kd-s0.failed-1"
    assert (failed / "ledger.jsonl").read_bytes() == resumed.killed_ledger
    report = _report(failed)
    assert [(s.name, s.status) for s in report.stages] == [
        ("setup.load", "ok"), ("student.train", "ok"), ("eval.student", "incomplete")]


def test_the_training_energy_is_counted_once_on_the_student_side(resumed):
    out = resumed.out
    failed, kd = _report(out / "kd-s0.failed-1"), _report(out / "kd-s0")
    train = next(s for s in failed.stages if s.name == "student.train")
    assert train.energy_j["total"] > 0
    start = protocol.read_ledger(out / "kd-s0").run_start
    mine = [u for u in start.upstream if u.run_id == failed.run_id]
    assert len(mine) == 1 and mine[0].stages == ["student.train"]
    assert mine[0].run_dir == "../kd-s0.failed-1"
    carried = [s for s in kd.upstream if s.name == "student.train"]
    assert len(carried) == 1 and carried[0].run_id == failed.run_id
    assert carried[0].energy_j["total"] == pytest.approx(train.energy_j["total"])
    t = kd.totals
    assert t.by_side["student"] == pytest.approx(train.energy_j["total"])  # not teacher side
    assert t.with_upstream_j == pytest.approx(
        t.energy_j + math.fsum(s.energy_j["total"] for s in kd.upstream))
    assert not [w for w in kd.warnings if "upstream" in w]


def test_the_analysis_counts_the_training_once_and_never_divides_it(resumed, tmp_path):
    out = resumed.out
    failed, kd = _report(out / "kd-s0.failed-1"), _report(out / "kd-s0")
    teacher = _report(next(p for p in out.glob("teacher-*")))
    train = next(s for s in failed.stages if s.name == "student.train").energy_j["total"]
    shared = math.fsum(s.energy_j["total"] for s in kd.upstream if s.side != "student")
    for amortize in ("1", "4"):
        res = run_cli("report", str(out), "--no-sensitivity", "--amortize", amortize)
        assert res.returncode == 0, res.stderr
        summary = json.loads((out / "summary.json").read_text())
        campaign = summary["groups"][0]["campaign"]
        # the attempt is skipped (incomplete): its training enters once, through kd-s0
        assert campaign["energy_j"] == pytest.approx(
            teacher.totals.energy_j + kd.totals.energy_j + train)
        cfg = summary["configs"][0]
        a = float(amortize)
        assert cfg["energy_j_mean"] == pytest.approx(kd.totals.energy_j + train + shared / a)
        assert cfg["student_side_j_mean"] == pytest.approx(train)
        assert cfg["by_stage_j_mean"]["student.train"] == pytest.approx(train)
        assert cfg["marginal_j_mean"] == pytest.approx(kd.totals.energy_j + train)


def test_a_resume_that_adds_seeds_trains_them_not_seed_0s_student(tmp_path):
    """Every seed of a configuration shares its config id: a seed with no run directory yet
    must be trained, never evaluated on another seed's saved student (found by that id)."""
    from distillmeter.cli import main
    from tiny_config import BASELINE_ONLY, write_tiny

    path = tmp_path / "one.yaml"
    write_tiny(path, methods=BASELINE_ONLY)
    out = tmp_path / "runs"
    assert main(["run", str(path), "--out", str(out), "--quiet", "--no-report"]) == 0
    assert main(["run", str(path), "--out", str(out), "--quiet", "--no-report", "--resume",
                 "--seeds", "2"]) == 0
    s0, s1 = (protocol.load_report(out / f"baseline-s{i}") for i in (0, 1))
    assert [s.name for s in s1.stages if s.name == "student.train"] == ["student.train"]
    assert not s1.upstream or all(u.run_id != s0.run_id for u in s1.upstream)
    assert s1.quality.details["loss"] != s0.quality.details["loss"]  # its own student
