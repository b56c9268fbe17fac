"""Loading, grouping and sensitivity on real run directories (recorded H100 data, the real
accounting)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from runbuilder import FIXTURE, TEACHER_ID, build_campaign, make_run

from distillmeter.analysis.loading import find_run_dirs, load_runs
from distillmeter.analysis.runs import figures
from distillmeter.analysis.sensitivity import default_account_shifted, sensitivity
from distillmeter.analysis.summary import analyse
from distillmeter.errors import UserError

TRUTH = {s["stage"]: s["energy_j"] for s in
         json.loads((FIXTURE / "truth.json").read_text())["stages"]}


def test_accounts_runs_without_a_report_and_then_reuses_it(campaign_dir: Path) -> None:
    loaded, skipped = load_runs(campaign_dir)
    assert skipped == [] and len(loaded) == 10
    assert all(r.accounted for r in loaded)
    assert all((r.run_dir / "report.json").exists() for r in loaded)
    again, _ = load_runs(campaign_dir)
    assert not any(r.accounted for r in again)


def test_numbers_are_the_recorded_counter_deltas(campaign_dir: Path) -> None:
    loaded, _ = load_runs(campaign_dir)
    by_id = {r.report.run_id: r.report for r in loaded}
    kd0 = figures(by_id["kd-s0"])
    # kd-s0's windows are run a's student.train and eval.student; its upstream is the
    # teacher run's teacher.logits, run a's teacher.logits
    assert kd0.stage_j["student.train"] == pytest.approx(TRUTH["student.train"], abs=1e-6)
    assert kd0.stage_j["eval.student"] == pytest.approx(TRUTH["eval.student"], abs=1e-6)
    assert kd0.upstream_j == pytest.approx(TRUTH["teacher.logits"], abs=1e-6)
    assert kd0.upstream_stages == {(TEACHER_ID, "teacher.logits"): pytest.approx(
        TRUTH["teacher.logits"], abs=1e-6)}
    assert kd0.total_j() == pytest.approx(by_id["kd-s0"].totals.with_upstream_j)
    # sides add up to the total, own and shared
    sides = sum(kd0.side_j(s) for s in ("setup", "teacher", "student", "eval", "unattributed"))
    assert sides == pytest.approx(kd0.total_j())


def test_grouping_of_a_campaign(campaign_dir: Path) -> None:
    loaded, _ = load_runs(campaign_dir)
    a = analyse([(r.run_dir.name, r.report) for r in loaded])
    assert [g.id for g in a.grouping.groups] == ["g1"]
    assert sorted(c.config for c in a.configs) == ["baseline-cfg", "kd-cfg", "sft_synth-cfg"]
    assert all(c.n_seeds == 3 and c.seeds == [0, 1, 2] for c in a.configs)
    assert [t.run_id for t in a.grouping.teacher_runs] == [TEACHER_ID]
    assert a.notes == []  # one task, one kind of hardware


def test_broken_report_and_ledger_are_skipped_with_the_reason(campaign_dir: Path) -> None:
    load_runs(campaign_dir)
    (campaign_dir / "kd-s1" / "report.json").write_text("{not json", encoding="utf-8")
    ledger = campaign_dir / "baseline-s2" / "ledger.jsonl"
    lines = ledger.read_text().splitlines(keepends=True)
    ledger.write_text(lines[0] + "garbage\n" + "".join(lines[1:]))
    (campaign_dir / "baseline-s2" / "report.json").unlink()
    loaded, skipped = load_runs(campaign_dir)
    assert len(loaded) == 8
    reasons = {s.run_dir: s.reason for s in skipped}
    assert set(reasons) == {"kd-s1", "baseline-s2"}
    assert "report.json" in reasons["kd-s1"] and "not valid JSON" in reasons["kd-s1"]
    assert "ledger.jsonl:2" in reasons["baseline-s2"]


def test_stale_report_is_reaccounted(campaign_dir: Path) -> None:
    load_runs(campaign_dir)
    ledger = campaign_dir / "kd-s0" / "ledger.jsonl"
    later = (campaign_dir / "kd-s0" / "report.json").stat().st_mtime + 10
    os.utime(ledger, (later, later))
    loaded, _ = load_runs(campaign_dir)
    kd0 = next(r for r in loaded if r.report.run_id == "kd-s0")
    assert kd0.accounted and "older than ledger" in kd0.notes[0]


def test_report_from_before_the_uncertainty_split_is_reaccounted(campaign_dir: Path) -> None:
    load_runs(campaign_dir)
    path = campaign_dir / "kd-s0" / "report.json"
    old = json.loads(path.read_text())
    del old["totals"]["uncertainty_parts"]
    for st in old["stages"] + old["upstream"]:
        del st["uncertainty_parts"]
    path.write_text(json.dumps(old))
    loaded, _ = load_runs(campaign_dir)
    kd0 = next(r for r in loaded if r.report.run_id == "kd-s0")
    assert kd0.accounted and "no uncertainty_parts" in kd0.notes[0]
    assert kd0.report.totals.uncertainty_parts["random"] > 0
    # raw files that cannot be accounted any more: the old report is used as it is
    path.write_text(json.dumps(old))
    (campaign_dir / "kd-s0" / "trace.csv").write_text("not,a,trace\n")
    loaded, skipped = load_runs(campaign_dir)
    kd0 = next(r for r in loaded if r.report.run_id == "kd-s0")
    assert not kd0.accounted and skipped == []
    assert kd0.report.totals.uncertainty_parts == {}


def test_copied_run_is_counted_once(campaign_dir: Path) -> None:
    shutil.copytree(campaign_dir / "kd-s0", campaign_dir / "copies" / "kd-s0")
    loaded, skipped = load_runs(campaign_dir)
    assert len(loaded) == 10
    assert len(skipped) == 1 and "same run_id kd-s0" in skipped[0].reason


def test_mixed_tasks_and_hardware_are_grouped_apart(campaign_dir: Path) -> None:
    labels = {"student_params": 124668672}
    for seed in range(2):
        make_run(campaign_dir / f"other-task-s{seed}", window=(23.0, 33.0),
                 run_id=f"other-{seed}", method="baseline", seed=seed, config_id="baseline-cfg",
                 task="sorting", labels=labels,
                 stages=[("student.train", 23.9455, 29.9608, 1000),
                         ("eval.student", 29.9608, 32.9755, 1000)],
                 quality=("exact_match", 0.9, 100, {}))
    make_run(campaign_dir / "a100-s0", window=(23.0, 33.0), run_id="a100-0",
             method="baseline", seed=0, config_id="baseline-cfg", gpu="NVIDIA A100-SXM4-80GB",
             stages=[("student.train", 23.9455, 29.9608, 1000)],
             quality=("exact_match", 0.3, 100, {}))
    loaded, _ = load_runs(campaign_dir)
    a = analyse([(r.run_dir.name, r.report) for r in loaded])
    groups = {(g.task, g.hardware): g for g in a.grouping.groups}
    assert len(groups) == 3
    other = groups[("sorting", "1x NVIDIA H100 80GB HBM3")]
    assert other.configs == ["baseline-cfg"]
    a100 = groups[("arithmetic", "1x NVIDIA A100-SXM4-80GB")]
    assert a100.configs == ["baseline-cfg"] and a100.teacher_runs == []
    # the same config id on another task is another configuration, never pooled
    base = [c for c in a.configs if c.config == "baseline-cfg"]
    assert sorted(c.n_seeds for c in base) == [1, 2, 3]
    assert any("3 different tasks or hardware" in n for n in a.notes)


def test_empty_and_missing_directories(tmp_path: Path) -> None:
    assert find_run_dirs(tmp_path) == []
    with pytest.raises(UserError, match="no such directory"):
        find_run_dirs(tmp_path / "nope")


def test_sensitivity_with_the_real_accounting(tmp_path: Path) -> None:
    root = build_campaign(tmp_path / "runs", seeds=1)
    loaded, _ = load_runs(root)
    sens = sensitivity([(r.run_dir, figures(r.report), r.run_dir.name) for r in loaded],
                       default_account_shifted)
    assert sens["failed"] == [] and len(sens["runs"]) == 4
    by_id = {r["run_id"]: r for r in sens["runs"]}
    # a run's own total comes from its first and last readings: moving stage boundaries
    # cannot change it; its sides do move
    assert by_id["baseline-s0"]["total"] == pytest.approx(0.0, abs=1e-12)
    assert 0 < by_id["baseline-s0"]["student"] < 0.2
    assert by_id["baseline-s0"]["teacher"] is None  # no teacher-side energy to move
    # a student with upstream work moves with its teacher's shifted stage
    assert 0 < by_id["kd-s0"]["teacher"] < 0.2
    assert sens["max"]["student"]["max_rel_change"] >= by_id["baseline-s0"]["student"]


def test_unfinished_run_is_listed_not_counted(campaign_dir: Path) -> None:
    ledger = campaign_dir / "kd-s2" / "ledger.jsonl"
    lines = ledger.read_text().splitlines(keepends=True)
    assert '"run_end"' in lines[-1]
    ledger.write_text("".join(lines[:-1]))  # the run never ended (killed)
    loaded, skipped = load_runs(campaign_dir)
    assert len(loaded) == 9
    assert [s.run_dir for s in skipped] == ["kd-s2"]
    assert "run status is 'incomplete'" in skipped[0].reason
