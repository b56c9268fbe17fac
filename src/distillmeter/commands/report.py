"""``distillmeter report RUNS_DIR``: analyse every run below a directory.

Writes RUNS_DIR/summary.json, RUNS_DIR/summary.csv and RUNS_DIR/report.html (one
self-contained page) and prints the summary table (``render.outputs.report_runs``).
"""

from __future__ import annotations

from pathlib import Path

import click

from distillmeter.analysis.breakeven import DEFAULT_MIN_Q


@click.command("report")
@click.argument("runs_dir", type=click.Path(path_type=Path))
@click.option("--amortize", type=float, default=1.0, show_default=True, metavar="N",
              help="Divide shared (upstream) teacher-side energy among N students.")
@click.option("--grid", type=float, default=None, metavar="GCO2_PER_KWH",
              help="Re-account carbon with this grid intensity (gCO2e/kWh).")
@click.option("--country", default=None, metavar="CC",
              help="Re-account carbon with this country's grid intensity (ISO code; the "
                   "packaged table).")
@click.option("--pue", type=float, default=None, metavar="X",
              help="Re-account carbon with this power usage effectiveness.")
@click.option("--baseline", "baseline_method", default=None, metavar="METHOD",
              help="The baseline method for break-even (default: a method named *baseline*).")
@click.option("--no-sensitivity", is_flag=True,
              help="Skip re-accounting every run with boundaries moved by +-5%.")
@click.option("--min-q", type=float, default=DEFAULT_MIN_Q, show_default=True, metavar="Q",
              help="Q (student / teacher quality) a student needs for its break-even and "
                   "payback to be stated.")
def command(runs_dir: Path, amortize: float, grid: float | None, country: str | None,
            pue: float | None, baseline_method: str | None, no_sensitivity: bool,
            min_q: float) -> None:
    """Analyse all runs under RUNS_DIR: summary.json, summary.csv and report.html. The
    verdict (each method against the baseline) is printed last."""
    from distillmeter.render.outputs import report_runs

    report_runs(runs_dir, amortize=amortize, grid=grid, pue=pue,
                baseline_method=baseline_method, with_sensitivity=not no_sensitivity,
                min_q=min_q, country=country)
