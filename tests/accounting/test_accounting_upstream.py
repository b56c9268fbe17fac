"""Shared teacher work: the recorded run split into a teacher run directory and a student
run directory that names it in run_start.upstream."""

from __future__ import annotations

import json
import shutil

import pytest

from distillmeter.accounting import account, write_report

TEACHER_STAGES = ("teacher.logits", "teacher.generate")


def _split(ledger_events: list[dict], upstream_dir: str) -> tuple[list[dict], list[dict]]:
    teacher, student = [], []
    for e in ledger_events:
        kind, stage = e["event"], e.get("stage")
        if kind in ("stage_start", "stage_end"):
            (teacher if stage in TEACHER_STAGES else student).append(dict(e))
        else:
            teacher.append(dict(e))
            student.append(dict(e))
    teacher[0] = {**teacher[0], "run_id": "teacher-run"}
    student[0] = {**student[0], "run_id": "student-run", "upstream": [
        {"run_id": "teacher-run", "run_dir": upstream_dir, "stages": list(TEACHER_STAGES)}]}
    return teacher, student


@pytest.fixture
def split_runs(run_copy, ledger_events):
    teacher, student = _split(ledger_events, "../teacher")
    return run_copy("teacher", events=teacher), run_copy("student", events=student)


def test_student_counts_upstream_teacher_stages_in_full(split_runs, truth):
    _, student_dir = split_runs
    report = account(student_dir, price_per_kwh=0.1)
    expected = {s["stage"]: s["energy_j"] for s in truth["stages"]}
    assert [s.name for s in report.upstream] == list(TEACHER_STAGES)
    for st in report.upstream:
        assert st.run_id == "teacher-run"
        assert st.energy_j["total"] == pytest.approx(expected[st.name], rel=1e-3)
    upstream_j = sum(expected[n] for n in TEACHER_STAGES)
    t = report.totals
    assert t.upstream_j == pytest.approx(upstream_j, rel=1e-3)
    assert t.with_upstream_j == pytest.approx(t.energy_j + upstream_j, rel=1e-6)
    assert t.by_side["teacher"] == pytest.approx(upstream_j, rel=1e-3)  # no own teacher stage
    assert {s.name for s in report.stages}.isdisjoint(TEACHER_STAGES)
    # the student's own energy is conserved without the upstream part
    assert t.stages_j + t.unattributed_j == pytest.approx(t.energy_j, abs=1e-6)
    c = report.carbon
    assert c.co2e_g_with_upstream == pytest.approx(
        c.co2e_g * t.with_upstream_j / t.energy_j)
    assert report.cost.total_with_upstream == pytest.approx(t.with_upstream_j / 3.6e6 * 0.1)


def test_absolute_upstream_dir_and_report_json_fallback(run_copy, ledger_events, tmp_path):
    teacher_events, _ = _split(ledger_events, "")
    teacher_dir = run_copy("teacher", events=teacher_events)
    write_report(teacher_dir, account(teacher_dir))
    # the raw files are gone (archived elsewhere): the report.json still serves
    moved = tmp_path / "archive" / "teacher"
    moved.parent.mkdir()
    shutil.move(str(teacher_dir), moved)
    (moved / "ledger.jsonl").unlink()
    (moved / "trace.csv").unlink()
    _, student = _split(ledger_events, str(moved))
    report = account(run_copy("student", events=student))
    assert [s.name for s in report.upstream] == list(TEACHER_STAGES)
    assert report.totals.upstream_j > 4000


def test_missing_upstream_is_a_warning_not_a_crash(run_copy, ledger_events):
    _, student = _split(ledger_events, "../nowhere")
    report = account(run_copy("student", events=student))
    assert report.upstream == []
    assert report.totals.upstream_j == 0.0
    assert any("directory" in w and "not found" in w and "teacher.logits" in w
               for w in report.warnings)


def test_unknown_upstream_stage_and_duplicates(run_copy, ledger_events):
    teacher, student = _split(ledger_events, "../teacher")
    run_copy("teacher", events=teacher)
    ref = student[0]["upstream"][0]
    student[0]["upstream"] = [{**ref, "stages": ["teacher.logits", "teacher.train"]}, ref]
    report = account(run_copy("student", events=student))
    assert any("no stage 'teacher.train'" in w for w in report.warnings)
    assert any("listed twice" in w for w in report.warnings)
    assert [s.name for s in report.upstream] == ["teacher.logits"]  # counted once


def test_upstream_accounted_with_the_same_options(split_runs):
    _, student_dir = split_runs
    base = account(student_dir)
    shifted = account(student_dir, boundary_shift=0.05, idle_w=0.0)
    for a, b in zip(base.upstream, shifted.upstream, strict=True):
        assert b.t_start == pytest.approx(a.t_start + 0.05 * a.seconds)
        assert b.active_energy_j == b.energy_j["total"]  # idle override reached upstream


def test_upstream_written_report_is_valid(split_runs):
    _, student_dir = split_runs
    write_report(student_dir, account(student_dir))
    data = json.loads((student_dir / "report.json").read_text())
    assert [s["run_id"] for s in data["upstream"]] == ["teacher-run", "teacher-run"]
