"""SIGTERM and SIGHUP end a metered run as Ctrl-C does: the running stage ends ``failed``,
``run_end`` is written, every lock is released, and the exit status is 128 + the signal.

Real processes and real signals: `distillmeter run` signalled inside `student.train` (then
`--resume`), `distillmeter measure` (the signal passed on to the measured command), and a
program using the EnergyMeter API. The library's handler bookkeeping (a program's own
handler kept and called, an ignored signal left ignored, nothing installed outside the
main thread, the previous handlers back afterwards) is checked in this process."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from fault_support import SIGNAL_RUN, run_cli, start_cli
from reliability_support import events, stage_started, wait_for, write_config

from distillmeter import EnergyMeter, protocol
from distillmeter.accounting import account
from distillmeter.energy import signals
from distillmeter.energy.signals import Terminated


def _in_stage(run_dir: Path, stage: str):
    ended = any(e.get("event") == "stage_end" and e.get("stage") == stage
                for e in events(run_dir / "ledger.jsonl"))
    return stage_started(run_dir, stage) is not None and not ended


def _closed_on(run_dir: Path, stage: str, sig: signal.Signals) -> None:
    """The ledger ends with the stage failed by the signal, then run_end failed; every
    line is whole."""
    lines = (run_dir / "ledger.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    assert all(ln.endswith("\n") for ln in lines)
    evs = events(run_dir / "ledger.jsonl")
    end, run_end = evs[-2], evs[-1]
    assert end["event"] == "stage_end" and end["stage"] == stage
    assert end["status"] == "failed" and sig.name in end["error"]
    assert run_end["event"] == "run_end" and run_end["status"] == "failed"
    report = account(run_dir)
    assert report.status == "failed"
    assert [s.status for s in report.stages if s.name == stage] == ["failed"]


def _no_locks(root: Path) -> None:
    assert not list(root.rglob(".distillmeter.lock"))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_run_signalled_mid_stage_ends_cleanly_and_resumes(tmp_path, sig):
    config = write_config(tmp_path / "sig.yaml", SIGNAL_RUN)
    out = tmp_path / "runs"
    proc = start_cli("run", str(config), "--out", str(out), "--quiet")
    wait_for("the student's training", lambda: _in_stage(out / "kd-s0", "student.train"),
             proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, stderr  # 143 / 129, not -15 / -1
    assert "Traceback" not in stderr and f"terminated by {sig.name}" in stderr
    _closed_on(out / "kd-s0", "student.train", sig)
    _no_locks(out)
    killed = (out / "kd-s0" / "ledger.jsonl").read_bytes()

    done = run_cli("run", str(config), "--out", str(out), "--resume", "--no-report")
    assert done.returncode == 0, done.stderr
    assert "stale" not in done.stdout + done.stderr  # the lock was released, not left
    assert (out / "kd-s0.failed-1" / "ledger.jsonl").read_bytes() == killed
    assert protocol.load_report(out / "kd-s0").status == "ok"
    _no_locks(out)


@pytest.mark.slow
def test_sweep_signalled_mid_stage_ends_cleanly(tmp_path):
    sweep = write_config(tmp_path / "sweep.yaml", {"base": SIGNAL_RUN, "grid": {},
                                                   "seeds": [0]})
    out = tmp_path / "runs"
    proc = start_cli("sweep", str(sweep), "--out", str(out), "--quiet")
    wait_for("the student's training",
             lambda: _in_stage(out / "base" / "kd-s0", "student.train"), proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    _closed_on(out / "base" / "kd-s0", "student.train", signal.SIGTERM)
    _no_locks(out)


_CHILD = """
import os, signal, sys, time
if {trap}:
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))
print(os.getpid(), flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("sig,trap,rc", [(signal.SIGTERM, False, 143),
                                         (signal.SIGHUP, False, 129),
                                         (signal.SIGTERM, True, 3)],
                         ids=["SIGTERM", "SIGHUP", "SIGTERM-trapped-exit-3"])
def test_measure_passes_the_signal_on_and_keeps_the_commands_status(tmp_path, sig, trap, rc):
    run_dir = tmp_path / "m"
    proc = start_cli("measure", "--out", str(run_dir), "--idle-seconds", "0", "--",
                     sys.executable, "-c", _CHILD.format(trap=trap))
    child = int(proc.stdout.readline())  # the command runs, inside its stage
    assert _in_stage(run_dir, "student.command")
    proc.send_signal(sig)  # to distillmeter alone, as `kill PID` does
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == rc, stderr
    assert "Traceback" not in stderr
    assert not Path(f"/proc/{child}").exists()  # the command did not outlive it
    _closed_on(run_dir, "student.command", sig)
    _no_locks(run_dir)
    assert protocol.load_report(run_dir).status == "failed"  # accounted, as after Ctrl-C


_API = """
import sys, time
from distillmeter import EnergyMeter
with EnergyMeter(sys.argv[1], idle_seconds=0, sample_hz=20) as meter:
    with meter.stage("student.train") as st:
        st.add(tokens=5)
        print("in", flush=True)
        time.sleep(120)
print("not reached")
"""


def test_a_program_using_the_api_is_closed_cleanly_by_sigterm(tmp_path):
    run_dir = tmp_path / "api"
    proc = subprocess.Popen([sys.executable, "-c", _API, str(run_dir)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "in"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    # an uncaught Terminated is a SystemExit: a quiet exit with 128 + 15, after cleanup
    assert proc.returncode == 143 and err == "" and "not reached" not in out
    _closed_on(run_dir, "student.train", signal.SIGTERM)
    _no_locks(run_dir)


# -- the library's handler bookkeeping, in this process


@pytest.fixture(autouse=True)
def default_handlers():
    """Each test starts from Python's defaults: another test in this process may have left
    its own SIGTERM handler (Ray's ``sys.exit``), which a meter would rightly call instead."""
    saved = {s: signal.getsignal(s) for s in signals.SIGNALS}
    for s in signals.SIGNALS:
        signal.signal(s, signal.SIG_DFL)
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def _to_me(sig: signal.Signals) -> None:
    """The signal, to this (main) thread: delivered before the call returns, so its Python
    handler runs right after it."""
    signal.pthread_kill(threading.main_thread().ident, sig)


def _meter(tmp_path: Path, name: str = "r") -> EnergyMeter:
    return EnergyMeter(tmp_path / name, sensors=[], sample_hz=0, idle_seconds=0,
                       write_environment=False)


def test_handlers_are_installed_while_the_meter_runs_and_restored_after(tmp_path):
    before = {s: signal.getsignal(s) for s in signals.SIGNALS}
    with _meter(tmp_path):
        for s in signals.SIGNALS:
            assert signal.getsignal(s) is signals._handler
        with _meter(tmp_path, "nested"):  # overlapping meters share one installation
            pass
        assert signal.getsignal(signal.SIGTERM) is signals._handler
    assert {s: signal.getsignal(s) for s in signals.SIGNALS} == before


def test_sigterm_inside_a_stage_closes_it_failed_and_ends_the_run(tmp_path):
    meter = _meter(tmp_path)
    with pytest.raises(Terminated) as caught, meter, meter.stage("student.train"):
        assert signal.getsignal(signal.SIGTERM) is signals._handler  # else: pytest dies
        _to_me(signal.SIGTERM)
    assert caught.value.code == 143 and caught.value.signum == signal.SIGTERM
    _closed_on(meter.run_dir, "student.train", signal.SIGTERM)
    _no_locks(meter.run_dir)


def test_sigterm_while_the_stage_opens_ends_that_stage_failed(tmp_path, monkeypatch):
    """The signal lands while the stage_start line is written (a supervisor that saw the
    line and signalled at once): it waits for the line, then the stage ends failed by it,
    not "still running" when the run closes."""
    meter = _meter(tmp_path)
    write = meter._write

    def write_then_signal(ev):
        write(ev)
        if ev.get("event") == "stage_start":
            _to_me(signal.SIGTERM)

    with pytest.raises(Terminated), meter:
        monkeypatch.setattr(meter, "_write", write_then_signal)
        with meter.stage("student.train"):
            raise AssertionError("the stage's body never runs")
    _closed_on(meter.run_dir, "student.train", signal.SIGTERM)
    _no_locks(meter.run_dir)


def test_a_programs_own_handler_is_called_and_kept(tmp_path):
    calls = []

    def mine(signum, frame):
        calls.append(signum)

    old = signal.signal(signal.SIGTERM, mine)
    try:
        with _meter(tmp_path) as meter, meter.stage("student.train"):
            _to_me(signal.SIGTERM)
            assert calls == [signal.SIGTERM]  # it decided; the stage goes on
        assert events(meter.run_dir / "ledger.jsonl")[-2]["status"] == "ok"
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, old)


def test_an_ignored_signal_stays_ignored(tmp_path):
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        with _meter(tmp_path):
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is signals._handler
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, old)


def test_a_meter_in_another_thread_installs_nothing(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    seen, errors = [], []

    def work():
        try:
            with _meter(tmp_path) as meter, meter.stage("student.train"):
                seen.append(signal.getsignal(signal.SIGTERM))
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert errors == [] and seen == [before]
    assert events(tmp_path / "r" / "ledger.jsonl")[-1]["event"] == "run_end"


def test_a_signal_inside_the_meters_bookkeeping_waits_until_it_is_done():
    assert signals.install()
    try:
        done = []
        with pytest.raises(Terminated):
            with signals.deferred():
                _to_me(signal.SIGTERM)
                done.append("the section ran to its end")
        assert done == ["the section ran to its end"]
    finally:
        signals.release()


def test_the_measure_command_script_waits_for_its_child(tmp_path):
    """The child of `measure` gets the signal once and is waited for: its energy stays in
    the stage (the stage ends after the child did)."""
    script = tmp_path / "slow_exit.py"
    script.write_text(textwrap.dedent("""
        import os, signal, sys, time
        def bye(*a):
            time.sleep(0.5)  # cleanup work the stage must still contain
            print("child done", flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, bye)
        print(os.getpid(), flush=True)
        time.sleep(120)
    """))
    run_dir = tmp_path / "m"
    proc = start_cli("measure", "--out", str(run_dir), "--idle-seconds", "0", "--",
                     sys.executable, str(script))
    int(proc.stdout.readline())
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert "child done" in out and proc.returncode == 0, err  # the command's own status
    evs = events(run_dir / "ledger.jsonl")
    start = next(e for e in evs if e["event"] == "stage_start")
    end = next(e for e in evs if e["event"] == "stage_end")
    assert end["status"] == "failed" and "SIGTERM" in end["error"]
    assert end["t"] - start["t"] >= 0.5
