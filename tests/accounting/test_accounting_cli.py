"""`distillmeter account` and `distillmeter show`, and the report tables."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from rich.console import Console

from distillmeter.accounting import account
from distillmeter.cli import cli, main
from distillmeter.protocol import load_report
from distillmeter.tables import print_report, stage_table


def test_account_writes_a_valid_report_and_prints_the_table(run_copy, truth):
    d = run_copy()
    result = CliRunner().invoke(cli, ["account", str(d)])
    assert result.exit_code == 0, result.output
    report = load_report(d)
    assert report.totals.energy_j == pytest.approx(truth["run_energy_j"])
    for name in ("teacher.logits", "student.burst3", "unattributed", "CO2e", "wrote"):
        assert name in result.output
    assert "3,133.9" in result.output  # teacher.logits energy, as the table prints it


def test_account_options_reach_the_report(run_copy):
    d = run_copy()
    args = ["account", str(d), "--grid", "250", "--pue", "1.3", "--price-per-kwh", "0.3",
            "--currency", "EUR", "--idle-w", "gpu:0=90"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    r = load_report(d)
    assert (r.carbon.grid_gco2_per_kwh, r.carbon.grid_source, r.carbon.pue) == (250, "user", 1.3)
    assert r.carbon.co2e_g == pytest.approx(r.totals.kwh * 1.3 * 250)
    assert r.cost.total == pytest.approx(r.totals.kwh * 1.3 * 0.3)
    assert r.cost.currency == "EUR"
    assert r.idle_power_w == {"gpu:0": 90.0}
    result = CliRunner().invoke(cli, ["account", str(d), "--country", "NO", "--idle-w", "80"])
    assert result.exit_code == 0, result.output
    r = load_report(d)
    assert (r.carbon.country, r.idle_power_w, r.cost.total) == ("NO", {"gpu:0": 80.0}, None)


def test_account_json_output(run_copy):
    d = run_copy()
    result = CliRunner().invoke(cli, ["account", str(d), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["schema"] == "distillmeter.report/1"
    assert data == json.loads((d / "report.json").read_text())


def test_show_reads_report_json_or_accounts_in_memory(run_copy):
    d = run_copy()
    result = CliRunner().invoke(cli, ["show", str(d)])
    assert result.exit_code == 0, result.output
    assert "not written yet" in result.output and "teacher.generate" in result.output
    assert not (d / "report.json").exists()  # show never writes
    CliRunner().invoke(cli, ["account", str(d), "--grid", "123"])
    result = CliRunner().invoke(cli, ["show", str(d)])
    assert "123 gCO2e/kWh" in result.output and "not written yet" not in result.output
    # a ledger newer than the report (the run was resumed): re-accounted, not trusted
    import os
    st = (d / "report.json").stat()
    os.utime(d / "ledger.jsonl", (st.st_atime, st.st_mtime + 10))
    result = CliRunner().invoke(cli, ["show", str(d)])
    assert "older than ledger.jsonl" in result.output and "471 gCO2e/kWh" in result.output
    (d / "report.json").write_text('{"schema": "distillmeter.report/1"}')
    result = CliRunner().invoke(cli, ["show", str(d), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["carbon"]["country"] == "WORLD"  # re-accounted


@pytest.mark.parametrize("argv, message", [
    (["account", "{tmp}/missing"], "no such run directory"),
    (["show", "{tmp}/missing"], "no such run directory"),
    (["account", "{run}", "--grid", "100", "--country", "FR"], "not both"),
    (["account", "{run}", "--idle-w", "80", "--idle-w", "gpu:0=3"], "--idle-w takes one"),
    (["account", "{run}", "--idle-w", "lots"], "not a number of watts"),
    (["account", "{run}", "--country", "ZZ"], "no grid intensity for country 'ZZ'"),
    (["account", "{run}", "--pue", "0.5"], "PUE must be at least 1.0"),
])
def test_user_mistakes_print_one_line_and_exit_2(argv, message, run_copy, tmp_path, capsys):
    d = run_copy()
    argv = [a.format(tmp=tmp_path, run=d) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err


def test_malformed_ledger_via_cli_names_the_line(run_copy, fixture_dir, capsys):
    lines = (fixture_dir / "ledger.jsonl").read_text().splitlines(keepends=True)
    lines[2] = "{oops\n"
    d = run_copy(ledger_text="".join(lines))
    assert main(["account", str(d)]) == 2
    assert "ledger.jsonl:3: not valid JSON" in capsys.readouterr().err


def test_tables_flag_estimates_upstream_and_warnings(fixture_dir):
    report = account(fixture_dir)
    st = report.stages[1]
    est = st.model_copy(update={"source": {"gpu:0": "estimate"}})
    up = report.stages[2].model_copy(update={"run_id": "abcdef1234"})
    report = report.model_copy(update={
        "stages": [report.stages[0], est], "upstream": [up], "estimated": True,
        "warnings": ["something odd"],
    })
    console = Console(record=True, width=200)
    print_report(report, console)
    text = console.export_text()
    assert "estimate*" in text and "estimated:" in text
    assert "student.train (upstream abcdef12)" in text
    assert "something odd" in text
    assert "short stage" in text  # setup.load's note
    table = stage_table(report)
    assert table.row_count == 3


def test_repeated_windows_are_one_row_unless_asked(tmp_path):
    """An on-policy run's rounds: each phase's windows are one row (energies, tokens and
    uncertainties summed), and `show --windows` lists every window."""
    import time

    from distillmeter.energy import EnergyMeter

    with EnergyMeter(tmp_path / "run", idle_seconds=0) as meter:
        for _ in range(3):
            for name, tok in (("student.generate", 10), ("teacher.score", 20)):
                meter.begin_window(name)
                time.sleep(0.01)
                meter.end_window(name, tokens=tok, samples=1)
    report = account(tmp_path / "run")
    assert [s.name for s in report.stages] == ["student.generate", "teacher.score"] * 3
    table = stage_table(report)
    assert table.row_count == 2
    console = Console(record=True, width=250)
    print_report(report, console)
    text = console.export_text()
    assert "student.generate x3" in text and "teacher.score x3" in text
    score = [s for s in report.stages if s.name == "teacher.score"]
    total = sum(s.energy_j["total"] for s in score)
    assert f"{total:,.1f}" in text and "60" in text
    assert "(and 2 more notes on its windows: --windows)" in text
    assert stage_table(report, windows=True).row_count == 6
    result = CliRunner().invoke(cli, ["show", str(tmp_path / "run"), "--windows"])
    assert result.exit_code == 0 and result.output.count("teacher.score") >= 3
