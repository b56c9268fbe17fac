"""kill -9 of a real `distillmeter run`, then `--resume`: nothing measured is lost or counted
twice, teacher work is never redone, and every report validates.

One scenario, as a user would live it (module fixture, ~40 s here):
  A. `distillmeter run` is killed with SIGKILL inside `teacher.logits`, after the cache has
     written at least one shard and the trace holds samples inside the stage;
  B. `distillmeter run --resume` finishes the teacher (only the cache, from its good shards)
     and the first student, and is killed inside the second student's `student.train`;
  C. `distillmeter run --resume` finishes; `distillmeter report` analyses the directory.
The tests below check each step's files.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from reliability_support import (
    KILL_RUN,
    cli,
    cli_run,
    events,
    kill9,
    stage_started,
    trace_times,
    wait_for,
    write_config,
)

from distillmeter import protocol
from distillmeter.accounting import account

pytestmark = pytest.mark.slow


@dataclass
class Scenario:
    out: Path
    config: Path
    teacher: Path                  # teacher-<hash> (as named when A was killed)
    killed_teacher_ledger: bytes   # its ledger right after the kill
    killed_teacher_trace: bytes
    killed_shards: list[dict]      # the cache's manifest entries written before the kill
    killed_student_ledger: bytes = b""
    killed_student_trace: bytes = b""
    after_b: dict[str, bytes] = field(default_factory=dict)  # ledgers after B's kill
    resume_b: str = ""
    resume_c: str = ""


def _teacher_dir(out: Path) -> Path | None:
    found = [p for p in out.glob("teacher-*") if ".failed-" not in p.name]
    return found[0] if found else None


def _inside(run_dir: Path, stage: str, *, after: float = 0.3) -> bool:
    """The stage has started, has not ended, and the trace holds samples more than
    ``after`` s into it. (The trace is flushed about once a second: on a loaded machine
    the first rows past ``after`` can arrive after the stage ended, and a kill then
    would land in the next stage.)"""
    start = stage_started(run_dir, stage)
    if start is None:
        return False
    if any(e.get("event") == "stage_end" and e.get("stage") == stage
           for e in events(run_dir / "ledger.jsonl")):
        return False
    times = trace_times(run_dir / "trace.csv")
    return bool(times) and times[-1] > start["t"] + after


def _cache_shards(teacher: Path) -> list[dict]:
    for manifest in teacher.glob("artifacts/logits-*/manifest.json"):
        try:
            return json.loads(manifest.read_text())["info"]["shards"]
        except (ValueError, KeyError):
            return []  # being replaced right now
    return []


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Scenario:
    base = tmp_path_factory.mktemp("crash")
    out = base / "runs"
    config = write_config(base / "kill.yaml", KILL_RUN)

    # A: killed inside teacher.logits
    proc = cli("run", str(config), "--out", str(out), "--quiet")

    def in_logits():
        t = _teacher_dir(out)
        return t is not None and len(_cache_shards(t)) >= 1 and _inside(t, "teacher.logits")

    wait_for("teacher.logits to be under way", in_logits, proc)
    kill9(proc)
    teacher = _teacher_dir(out)
    sc = Scenario(out, config, teacher, (teacher / "ledger.jsonl").read_bytes(),
                  (teacher / "trace.csv").read_bytes(), _cache_shards(teacher))

    # B: resumed, killed inside the kd student's training
    proc = cli("run", str(config), "--out", str(out), "--quiet", "--resume")
    wait_for("the kd student's training to be under way",
             lambda: _inside(out / "kd-s0", "student.train"), proc)
    kill9(proc)
    sc.killed_student_ledger = (out / "kd-s0" / "ledger.jsonl").read_bytes()
    sc.killed_student_trace = (out / "kd-s0" / "trace.csv").read_bytes()
    sc.after_b = {str(p.relative_to(out)): p.read_bytes() for p in out.glob("*/ledger.jsonl")}

    # C: resumed to the end
    done = cli_run("run", str(config), "--out", str(out), "--resume")
    assert done.returncode == 0, done.stderr
    sc.resume_c = done.stdout + done.stderr
    return sc


def _report(run_dir: Path) -> protocol.Report:
    report = protocol.load_report(run_dir)  # validates against the schema
    stages = math.fsum(s.energy_j["total"] for s in report.stages)
    assert stages + report.totals.unattributed_j == pytest.approx(report.totals.energy_j,
                                                                  abs=1e-6)
    return report


def _ended(run_dir: Path) -> list[tuple[str, str]]:
    return [(e["stage"], e["status"]) for e in events(run_dir / "ledger.jsonl")
            if e["event"] == "stage_end"]


def _recorded_counter_span(ledger: bytes, trace: bytes) -> dict[str, tuple[float, float]]:
    """Per device: (first reading at run_start, last value the files recorded anywhere)."""
    lines = [json.loads(s) for s in ledger.decode().splitlines() if s.strip()]
    first = lines[0]["readings"]
    last = dict(first)
    for ev in lines:
        for d, v in (ev.get("readings") or {}).items():
            if v is not None:
                last[d] = max(last[d], v)
    for row in trace.decode().splitlines()[1:]:
        t, d, e, _ = row.split(",")
        if e:
            last[d] = max(last[d], float(e))
    return {d: (first[d], last[d]) for d in first}


def test_the_kill_left_the_teacher_mid_stage(scenario):
    lines = scenario.killed_teacher_ledger.decode().splitlines()
    last = json.loads(lines[-1])
    assert last["event"] == "stage_start" and last["stage"] == "teacher.logits"
    assert not any('"run_end"' in s for s in lines)
    assert len(scenario.killed_shards) >= 1


def _check_interrupted(failed: Path, stage: str, ledger: bytes, trace: bytes) -> None:
    # the interrupted run directory is moved aside whole, never appended to
    assert (failed / "ledger.jsonl").read_bytes() == ledger
    report = _report(failed)
    assert report.status == "incomplete"
    last = report.stages[-1]
    assert last.name == stage and last.status in ("incomplete", "failed")
    assert any("never ended" in n for n in last.notes)
    # never dropped: every joule the files recorded is in the run total, and the stage
    # holds what was recorded after it started (the estimate's counter is in the trace)
    span = _recorded_counter_span(ledger, trace)
    start = next(json.loads(s) for s in ledger.decode().splitlines()
                 if f'"stage": "{stage}"' in s)["readings"]
    for d, (first, top) in span.items():
        assert report.totals.by_device[d] == pytest.approx(top - first, rel=0.05, abs=0.05)
        assert last.energy_j[d] == pytest.approx(top - start[d], rel=0.05, abs=0.05)
        assert last.energy_j[d] > 0
    assert report.totals.unattributed_j >= -report.totals.uncertainty_j


def test_interrupted_teacher_is_kept_and_accounted_with_its_energy(scenario):
    failed = scenario.teacher.with_name(scenario.teacher.name + ".failed-1")
    assert failed.is_dir()
    _check_interrupted(failed, "teacher.logits", scenario.killed_teacher_ledger,
                       scenario.killed_teacher_trace)
    assert _ended(failed) == [("setup.load", "ok"), ("teacher.train", "ok"),
                              ("eval.teacher", "ok"), ("teacher.generate", "ok")]


def test_interrupted_student_is_kept_and_accounted_with_its_energy(scenario):
    failed = scenario.out / "kd-s0.failed-1"
    _check_interrupted(failed, "student.train", scenario.killed_student_ledger,
                       scenario.killed_student_trace)
    assert _ended(failed) == [("setup.load", "ok")]


def test_resume_made_only_the_missing_cache_shards(scenario):
    # the new teacher run measured only what was missing
    assert _ended(scenario.teacher) == [("setup.load", "ok"), ("teacher.logits", "ok")]
    cache = next(scenario.teacher.glob("artifacts/logits-*"))
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["complete"]
    new = {s["file"]: s for s in manifest["info"]["shards"]}
    failed_cache = scenario.teacher.with_name(scenario.teacher.name + ".failed-1") / \
        "artifacts" / cache.name
    for shard in scenario.killed_shards:
        assert new[shard["file"]]["sha256"] == shard["sha256"]
        # taken over from the interrupted attempt (copied with its time stamp), not redone
        assert (cache / shard["file"]).stat().st_mtime == pytest.approx(
            (failed_cache / shard["file"]).stat().st_mtime)
    assert len(new) > len(scenario.killed_shards)


def test_teacher_stages_ran_once_across_all_ledgers(scenario):
    teacher_side = ("teacher.train", "eval.teacher", "teacher.generate", "teacher.logits")
    ok = sorted(stage for p in scenario.out.glob("*/ledger.jsonl")
                for stage, status in _ended(p.parent) if stage in teacher_side
                and status == "ok")
    assert ok == sorted(teacher_side)
    # C found every teacher artifact by its hash and did not run the teacher at all
    assert "every artifact found and verified; not run again" in scenario.resume_c


def test_completed_runs_were_not_run_again(scenario):
    for name, before in scenario.after_b.items():
        if name.startswith(("teacher-", "synthetic-s0")):
            assert (scenario.out / name).read_bytes() == before, name


def test_no_stage_is_accounted_twice_and_every_report_validates(scenario):
    out = scenario.out
    dirs = sorted(p.parent for p in out.glob("*/ledger.jsonl"))
    assert sorted(d.name for d in dirs) == sorted([
        scenario.teacher.name, scenario.teacher.name + ".failed-1", "synthetic-s0", "kd-s0",
        "kd-s0.failed-1"])
    reports = {d.name: _report(d) for d in dirs}
    for name, report in reports.items():
        own = [s.name for s in report.stages]
        up = [(s.run_id, s.name) for s in report.upstream]
        assert len(own) == len(set(own)), name
        assert len(up) == len(set(up)), name
        assert not set(own) & {s.name for s in report.upstream}, name
    for name in ("synthetic-s0", "kd-s0"):
        assert reports[name].status == "ok"
        assert [s.status for s in reports[name].stages] == ["ok", "ok", "ok"]
    kd = reports["kd-s0"]
    # each upstream stage is the one measured run's figure, counted once
    by_run = {r.run_id: r for r in reports.values()}
    for s in kd.upstream:
        measured = next(x for x in by_run[s.run_id].stages if x.name == s.name)
        assert measured.status == "ok"
        assert s.energy_j["total"] == pytest.approx(measured.energy_j["total"])
    assert sorted(s.name for s in kd.upstream) == ["eval.teacher", "teacher.generate",
                                                   "teacher.logits", "teacher.train"]
    assert kd.run_id != reports["kd-s0.failed-1"].run_id
    # no lock is left behind in a live directory
    assert not (out / ".distillmeter.lock").exists()
    for d in ("kd-s0", "synthetic-s0", scenario.teacher.name):
        assert not (out / d / ".distillmeter.lock").exists()


def test_distillmeter_report_on_the_resumed_directory(scenario, tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(scenario.out, out)
    res = cli_run("report", str(out), "--no-sensitivity")
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    text = json.dumps(summary)
    assert "kd-s0.failed-1" in res.stdout + res.stderr + text
    assert (out / "report.html").stat().st_size > 0


def test_a_ledger_cut_mid_line_is_read_up_to_it(scenario, tmp_path):
    """A crash while a line is being written: every byte prefix of the last line reads as
    the ledger without it (with a warning), and accounts."""
    run = tmp_path / "run"
    shutil.copytree(scenario.out / "kd-s0", run)
    lines = (run / "ledger.jsonl").read_bytes().splitlines(keepends=True)
    head, last = b"".join(lines[:-1]), lines[-1]
    n_events = len(head.splitlines())
    for cut in range(1, len(last) - 1, max(1, len(last) // 17)):
        (run / "ledger.jsonl").write_bytes(head + last[:cut])
        ledger = protocol.read_ledger(run)
        assert len(ledger.events) == n_events and ledger.truncated
        assert any("cut off" in w or "incomplete" in w for w in ledger.warnings)
        report = account(run)
        assert report.status == "incomplete"


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at % len(data)] ^= 0x5A
    path.write_bytes(bytes(data))


def test_corrupted_teacher_artifacts_are_detected_and_made_again(scenario, tmp_path):
    """Bytes flipped in a logit-cache shard and in the synthetic data: a resume finds them by
    checksum, says so, never trains on them, and makes them again in a new run directory."""
    out = tmp_path / "runs"
    shutil.copytree(scenario.out, out)
    teacher = out / scenario.teacher.name
    shard = sorted(teacher.glob("artifacts/logits-*/shard-*.safetensors"))[-1]
    _flip(shard, shard.stat().st_size // 2)
    failed = out / (scenario.teacher.name + ".failed-1")  # synthetic data lives there
    data = next(failed.glob("artifacts/synthetic-*/data.jsonl"))
    _flip(data, 40)
    corrupted = {shard: shard.read_bytes(), data: data.read_bytes()}
    for name in ("synthetic-s0", "kd-s0"):  # both students need the teacher's data again
        shutil.rmtree(out / name)
    res = cli_run("run", str(scenario.config), "--out", str(out), "--resume")
    assert res.returncode == 0, res.stderr
    said = res.stdout + res.stderr
    assert "corrupted" in said and shard.name in said and "data.jsonl" in said
    redo = out / (scenario.teacher.name + "-2")
    assert _ended(redo) == [("setup.load", "ok"), ("teacher.generate", "ok"),
                            ("teacher.logits", "ok")]
    for path, content in corrupted.items():  # evidence is left where it was
        assert path.read_bytes() == content
    kd = protocol.read_ledger(out / "kd-s0").run_start
    refs = {u.run_dir: sorted(u.stages) for u in kd.upstream}
    assert refs[f"../{redo.name}"] == ["teacher.generate", "teacher.logits"]
    for name in ("synthetic-s0", "kd-s0"):
        assert _report(out / name).status == "ok"
