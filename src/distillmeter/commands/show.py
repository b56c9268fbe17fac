"""``distillmeter show RUN_DIR``: print a run's stage table and totals."""

from __future__ import annotations

from pathlib import Path

import click

from distillmeter.protocol import LEDGER_FILE, REPORT_FILE, ProtocolError


@click.command("show")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--windows", is_flag=True,
              help="A row for every window of a stage (one row per stage name otherwise).")
def command(run_dir: Path, as_json: bool, windows: bool) -> None:
    """Print RUN_DIR's report: from report.json when it is there and valid, else accounted
    in memory from the raw files (nothing is written)."""
    from distillmeter.accounting import account
    from distillmeter.protocol import load_report
    from distillmeter.tables import print_report
    from distillmeter.terminal import get_console, json_text, plain_text

    note = None
    report = None
    report_path, ledger_path = run_dir / REPORT_FILE, run_dir / LEDGER_FILE
    if report_path.exists():
        try:
            report = load_report(run_dir)
        except ProtocolError as exc:
            note = f"{exc}; accounted in memory instead"
        if report is not None and ledger_path.exists() and (
            ledger_path.stat().st_mtime > report_path.stat().st_mtime
        ):
            report = None
            note = f"{report_path} is older than {ledger_path.name}; accounted in memory"
    else:
        note = (f"{run_dir / REPORT_FILE} not written yet; accounted in memory "
                "(`distillmeter account` saves it)")
    if report is None:
        report = account(run_dir)
    else:  # a report.json written before the checks, or edited: its numbers checked again
        from distillmeter.accounting.plausibility import apply_flags, merge_flags, report_flags

        report = apply_flags(report, merge_flags(list(report.flags), report_flags(report)))
    if as_json:
        click.echo(json_text(report.to_json()))
        return
    console = get_console()
    if note:
        console.print(plain_text(note, style="dim"))
    print_report(report, console, windows=windows)
