"""A full disk and a read-only output directory: one line naming the path, exit 2, and
nothing already measured lost (every ledger line written stays valid, a half-written
artifact is never taken for a finished one, `--resume` works once the disk has room).

The faults are real, in child processes (see fault_support.py): a file size limit
(RLIMIT_FSIZE: writes past it fail with EFBIG mid-write, as a full disk fails with
ENOSPC), ``/dev/full`` (ENOSPC) for one file, and ``chmod a-w`` (with root held to the
modes where the tests run as root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fault_support import (
    SIGNAL_RUN,
    SMALL_FILES_RUN,
    file_size_limit,
    held_to_modes,
    make_readonly,
    make_writable,
    one_error_line,
    readonly_works,
    run_cli,
    start_cli,
)
from reliability_support import TINY_RUN, events, kill9, stage_started, wait_for, write_config

from distillmeter import EnergyMeter, protocol
from distillmeter.accounting import account

_LEDGER_FILLER = """
import sys
from distillmeter import EnergyMeter
meter = EnergyMeter(sys.argv[1], idle_seconds=0, sample_hz=0, write_environment=False)
try:
    with meter:
        for i in range(100000):
            with meter.stage("student.train") as st:
                st.add(tokens=i + 1)
except OSError as exc:  # distillmeter.errors.OutputError is one
    print(f"{type(exc).__name__}|{getattr(exc, 'path', None)}|{exc}")
    sys.exit(2)
"""


def _whole_lines(ledger: Path) -> list[dict]:
    """The ledger's complete lines, each checked to be valid JSON; at most the last line is
    cut short."""
    raw = ledger.read_bytes().split(b"\n")
    for line in raw[:-1]:
        json.loads(line)
    return [json.loads(line) for line in raw[:-1]]


def _no_locks(root: Path) -> None:
    """No lock left in a live directory (an attempt moved aside keeps the files a kill -9
    left, its lock included, as evidence)."""
    assert not [p for p in root.rglob(".distillmeter.lock") if ".failed-" not in str(p)]


def test_the_api_stops_at_a_full_ledger_and_keeps_every_line_before(tmp_path):
    run_dir = tmp_path / "api"
    r = subprocess.run([sys.executable, "-c", _LEDGER_FILLER, str(run_dir)],
                       preexec_fn=file_size_limit(3000), capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    kind, path, message = r.stdout.strip().split("|")
    assert kind == "OutputError" and path == str(run_dir / "ledger.jsonl")
    assert message.startswith(f"cannot write {run_dir / 'ledger.jsonl'}: File too large")
    ledger = run_dir / "ledger.jsonl"
    assert 2000 < ledger.stat().st_size <= 3000
    evs = _whole_lines(ledger)
    windows = sum(e["event"] == "stage_end" for e in evs)
    assert windows >= 3 and evs[0]["event"] == "run_start"
    assert not any(e["event"] == "run_end" for e in evs)  # nothing after the failed line
    _no_locks(run_dir)
    report = account(run_dir)  # what was written accounts, as after a crash
    assert report.status == "incomplete"
    assert sum(s.status == "ok" for s in report.stages) == windows

    # with room again, the run resumes: the cut line is trimmed, the open stage closed
    with EnergyMeter(run_dir, resume=True, idle_seconds=0, sample_hz=0,
                     write_environment=False) as meter:
        with meter.stage("eval.student"):
            pass
    report = account(run_dir)
    assert protocol.read_ledger(run_dir).run_end.status == "ok"
    names = [s.name for s in report.stages]
    assert names.count("student.train") in (windows, windows + 1) and "eval.student" in names


_TRACE_FILLER = """
import sys, time
from distillmeter import EnergyMeter
from distillmeter.energy import ReplaySensor
run_dir, replay = sys.argv[1], sys.argv[2]
with EnergyMeter(run_dir, sensors=[ReplaySensor(replay)], idle_seconds=0, sample_hz=100,
                 write_environment=False) as meter:
    with meter.stage("student.train") as st:
        deadline = time.monotonic() + 60
        while "trace.csv" not in open(run_dir + "/ledger.jsonl").read():
            assert time.monotonic() < deadline, "the trace never filled up"
            time.sleep(0.05)
        st.add(tokens=1)
"""


def test_a_full_trace_is_said_and_the_run_goes_on_with_boundary_readings(tmp_path):
    run_dir = tmp_path / "api"
    replay = Path(__file__).resolve().parents[1] / "data" / "h100-run-a"
    r = subprocess.run([sys.executable, "-c", _TRACE_FILLER, str(run_dir), str(replay)],
                       preexec_fn=file_size_limit(6000), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    evs = _whole_lines(run_dir / "ledger.jsonl")
    said = [e["message"] for e in evs if e["event"] == "warning"
            and f"cannot write {run_dir / 'trace.csv'}: File too large" in e["message"]]
    assert len(said) == 1 and "boundary readings only" in said[0]
    assert [(e["stage"], e["status"]) for e in evs if e["event"] == "stage_end"] == [
        ("student.train", "ok")]
    assert evs[-1]["event"] == "run_end" and evs[-1]["status"] == "ok"
    _no_locks(run_dir)
    report = account(run_dir)  # the cut last trace row is dropped; boundary readings hold
    assert report.stages[0].energy_j["total"] > 0


def test_measure_on_a_full_disk_names_the_ledger(tmp_path):
    run_dir = tmp_path / "m"
    run_dir.mkdir()
    os.symlink("/dev/full", run_dir / "ledger.jsonl")  # writes fail with ENOSPC
    r = run_cli("measure", "--out", str(run_dir), "--idle-seconds", "0", "--",
                sys.executable, "-c", "print('ran')")
    assert r.returncode == 2, r.stderr
    one_error_line(r.stderr, str(run_dir / "ledger.jsonl"), "No space left on device",
                   "the disk is full")
    assert "ran" not in r.stdout  # nothing is run that could not be metered
    _no_locks(run_dir)


@pytest.mark.slow
def test_run_on_a_full_disk_while_saving_a_checkpoint_then_resume(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", TINY_RUN)
    out = tmp_path / "runs"
    # the teacher's model.safetensors (~46 kB) is the first file past 20 kB
    r = run_cli("run", str(config), "--out", str(out), "--quiet", "--no-report",
                preexec=file_size_limit(20_000))
    assert r.returncode == 2, r.stderr
    teacher = next(out.glob("teacher-*"))
    ckpt = next(teacher.glob("artifacts/teacher-*"))
    line = one_error_line(r.stderr, str(ckpt), "File too large", "--resume")
    assert "SafetensorError" not in line
    evs = _whole_lines(teacher / "ledger.jsonl")
    end = [e for e in evs if e["event"] == "stage_end"][-1]
    assert end["stage"] == "teacher.train" and end["status"] == "failed"
    assert "cannot write" in end["error"]
    assert evs[-1]["event"] == "run_end" and evs[-1]["status"] == "failed"
    assert not (ckpt / "manifest.json").exists()  # half a checkpoint is no checkpoint
    _no_locks(out)

    done = run_cli("run", str(config), "--out", str(out), "--quiet", "--no-report",
                   "--resume")
    assert done.returncode == 0, done.stderr
    kept = teacher.with_name(teacher.name + ".failed-1")
    assert not (kept / ckpt.relative_to(teacher) / "manifest.json").exists()
    redone = [(e["stage"], e["status"]) for e in events(teacher / "ledger.jsonl")
              if e["event"] == "stage_end"]
    assert ("teacher.train", "ok") in redone  # trained again, not taken from the half
    assert protocol.load_report(kept).status == "failed"  # its energy kept, accounted
    for name in ("baseline-s0", "synthetic-s0", "kd-s0"):
        assert protocol.load_report(out / name).status == "ok"


@pytest.mark.slow
def test_run_on_a_full_disk_while_writing_the_report(tmp_path):
    config = write_config(tmp_path / "small.yaml", SMALL_FILES_RUN)
    out = tmp_path / "runs"
    r = run_cli("run", str(config), "--out", str(out), "--quiet",
                preexec=file_size_limit(20_000))
    assert r.returncode == 2, r.stderr
    one_error_line(r.stderr, str(out / "summary.json"), "File too large")
    # the runs are all there and accounted; no half-written file is left beside them
    for name in ("baseline-s0", "synthetic-s0", "kd-s0"):
        assert protocol.load_report(out / name).status == "ok"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    again = run_cli("report", str(out), "--no-sensitivity")
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "summary.json").read_text())["n_runs"] == 4


# -- a read-only output directory


@pytest.fixture
def readonly_ok(tmp_path):
    why = readonly_works(tmp_path)
    if why is not None:
        pytest.skip(why)


@pytest.mark.slow
def test_run_into_a_readonly_out_dir(tmp_path, readonly_ok):
    config = write_config(tmp_path / "tiny.yaml", TINY_RUN)
    out = tmp_path / "runs"
    out.mkdir()
    make_readonly(out)
    try:
        r = run_cli("run", str(config), "--out", str(out), "--quiet",
                    preexec=held_to_modes())
        assert r.returncode == 2, r.stderr
        one_error_line(r.stderr, str(out / ".distillmeter.lock"), "Permission denied",
                       "not writable", "another --out")
        assert list(out.iterdir()) == []
        r = run_cli("run", str(config), "--out", str(out / "sub"), "--quiet",
                    preexec=held_to_modes())
        assert r.returncode == 2, r.stderr
        one_error_line(r.stderr, str(out / "sub"), "Permission denied")
    finally:
        make_writable(out)


def test_measure_into_a_readonly_dir(tmp_path, readonly_ok):
    ro = tmp_path / "ro"
    ro.mkdir()
    make_readonly(ro)
    try:
        for target, named in ((ro / "m", ro / "m"), (ro, ro / ".distillmeter.lock")):
            r = run_cli("measure", "--out", str(target), "--idle-seconds", "0", "--",
                        sys.executable, "-c", "print('ran')", preexec=held_to_modes())
            assert r.returncode == 2, r.stderr
            one_error_line(r.stderr, str(named), "Permission denied")
            assert "ran" not in r.stdout
        assert list(ro.iterdir()) == []
    finally:
        make_writable(ro)


@pytest.mark.slow
def test_resume_in_a_readonly_out_dir_touches_nothing_then_works(tmp_path, readonly_ok):
    config = write_config(tmp_path / "sig.yaml", SIGNAL_RUN)
    out = tmp_path / "runs"
    proc = start_cli("run", str(config), "--out", str(out), "--quiet", "--no-report")
    wait_for("the student's training", lambda: stage_started(out / "kd-s0", "student.train"),
             proc)
    kill9(proc)
    before = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    make_readonly(out)
    try:
        r = run_cli("run", str(config), "--out", str(out), "--quiet", "--resume",
                    preexec=held_to_modes())
    finally:
        make_writable(out)
    assert r.returncode == 2, r.stderr
    one_error_line(r.stderr, str(out / ".distillmeter.lock"), "Permission denied")
    after = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # the killed run's files, its stale locks included, as they were
    done = run_cli("run", str(config), "--out", str(out), "--quiet", "--resume",
                   "--no-report")
    assert done.returncode == 0, done.stderr
    assert protocol.load_report(out / "kd-s0").status == "ok"
    assert (out / "kd-s0.failed-1" / "ledger.jsonl").read_bytes() == before[
        "kd-s0/ledger.jsonl"]
    _no_locks(out)
