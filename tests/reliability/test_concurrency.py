"""Two writers on one directory: the second is refused with a message naming the holder
(pid, host, start time), and the first is unharmed.

The first process is held still with SIGSTOP while the second tries: it is alive and holds
its locks, with no race on how far it got (SIGCONT lets it finish afterwards)."""

from __future__ import annotations

import os
import signal
import socket
import sys

import pytest
from reliability_support import (
    TINY_RUN,
    cli,
    cli_run,
    events,
    stage_started,
    wait_for,
    write_config,
)

from distillmeter import protocol

pytestmark = pytest.mark.slow


def _holder_named(message: str, pid: int) -> None:
    assert "error:" in message and "Traceback" not in message
    assert f"pid {pid}" in message and socket.gethostname() in message
    assert "started 20" in message  # the holder's start time, ISO 8601


def test_a_second_run_into_the_same_out_dir_is_refused(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", TINY_RUN)
    out = tmp_path / "runs"
    first = cli("run", str(config), "--out", str(out), "--quiet")
    try:
        teacher = wait_for("the teacher's first stage", lambda: next(
            (p for p in out.glob("teacher-*") if stage_started(p, "setup.load")), None), first)
        os.kill(first.pid, signal.SIGSTOP)
        before = sorted(p.name for p in out.iterdir())
        ledger = (teacher / "ledger.jsonl").read_bytes()
        # without --resume and with it (which would otherwise move "interrupted" run
        # directories aside): both refused, before touching anything
        for extra in ([], ["--resume"]):
            second = cli_run("run", str(config), "--out", str(out), "--quiet", *extra)
            assert second.returncode == 2, second.stderr
            _holder_named(second.stderr, first.pid)
            assert str(out) in second.stderr
        assert sorted(p.name for p in out.iterdir()) == before
        assert (teacher / "ledger.jsonl").read_bytes() == ledger
    finally:
        os.kill(first.pid, signal.SIGCONT)
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    for run_dir in (p.parent for p in out.glob("*/ledger.jsonl")):
        report = protocol.load_report(run_dir)
        assert report.status == "ok", run_dir
        assert len(protocol.read_ledger(run_dir).of("run_start")) == 1


def test_a_second_meter_on_a_run_directory_is_refused_across_processes(tmp_path):
    """Two `distillmeter measure` into one run directory at once."""
    run_dir = tmp_path / "m"
    script = "import time; time.sleep(30)"
    first = cli("measure", "--out", str(run_dir), "--idle-seconds", "0", "--", sys.executable,
                "-c", script)
    try:
        wait_for("the first meter's stage", lambda: stage_started(run_dir, "student.command"),
                 first)
        second = cli_run("measure", "--out", str(run_dir), "--idle-seconds", "0", "--",
                         sys.executable, "-c", "print('never runs')")
        assert second.returncode == 2
        assert "never runs" not in second.stdout
        _holder_named(second.stderr, first.pid)
        assert [e["event"] for e in events(run_dir / "ledger.jsonl")].count("run_start") == 1
    finally:
        # the measured command is the first meter's child: end the meter, then the command
        first.kill()
        first.wait()
        import psutil

        for child in psutil.Process().children(recursive=True):
            if child.cmdline()[-1:] == [script]:
                child.kill()
