"""``distillmeter measure``: a real command, metered, accounted, its exit status kept."""

from __future__ import annotations

import json
import sys

from distillmeter.cli import main
from distillmeter.protocol import load_report, read_ledger

BURN = ("import time\nt=time.process_time()\nwhile time.process_time()-t<0.2: pass\n"
        "print('child says hi')\n")


def test_measure_runs_accounts_and_keeps_the_exit_status(tmp_path, capfd):
    out = tmp_path / "run"
    rc = main(["measure", "--out", str(out), "--idle-seconds", "0.2", "--stage", "eval.command",
               "--tokens", "100", "--", sys.executable, "-c", BURN + "raise SystemExit(3)"])
    assert rc == 3
    captured = capfd.readouterr()
    assert "child says hi" in captured.out          # the command's stdout passes through
    assert "eval.command" in captured.err           # the report goes to stderr
    assert "child says hi" not in captured.err
    ledger = read_ledger(out)
    idle, end = ledger.of("stage_end")  # the idle baseline measured first, then the command
    assert idle.stage == "setup.idle"
    assert (end.stage, end.status, end.tokens) == ("eval.command", "failed", 100)
    assert "status 3" in end.error and ledger.run_end.status == "failed"
    report = load_report(out)
    _, stage = report.stages
    assert stage.name == "eval.command" and stage.energy_j["total"] > 0
    # No RAPL on this machine: CPU energy must come out marked as an estimate.
    if ledger.run_start.sources.get("cpu:0") == "estimate":
        assert report.estimated and stage.source["cpu:0"] == "estimate"
    config = (out / "config.yaml").read_text()
    assert "eval.command" in config and "idle_seconds: 0.2" in config


def test_measure_success_with_the_default_stage(tmp_path, capfd):
    out = tmp_path / "ok"
    rc = main(["measure", "--out", str(out), "--idle-seconds", "0", "--sample-hz", "50",
               sys.executable, "-c", "print('fine')"])  # no "--": options end at CMD
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert [s["name"] for s in report["stages"]] == ["student.command"]
    assert report["stages"][0]["status"] == "ok"


def test_measure_user_mistakes_are_one_line_errors(tmp_path, capfd):
    assert main(["measure", "--out", str(tmp_path / "a"), "--",
                 "no-such-program-xyz", "--flag"]) == 2
    assert "command not found: 'no-such-program-xyz'" in capfd.readouterr().err
    assert not (tmp_path / "a").exists()
    assert main(["measure", "--out", str(tmp_path / "b")]) == 2
    assert "no command to measure" in capfd.readouterr().err
    assert main(["measure", "--stage", "training", "--", sys.executable, "-V"]) == 2
    err = capfd.readouterr().err
    assert "--stage" in err and "Traceback" not in err
    assert main(["measure", "--devices", "tpu", "--out", str(tmp_path / "c"), "--",
                 sys.executable, "-V"]) == 2
    assert "unknown device selector" in capfd.readouterr().err
