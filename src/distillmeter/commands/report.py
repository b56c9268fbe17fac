"""``distillmeter report RUNS_DIR``: analyse every run below a directory.

Writes RUNS_DIR/summary.json, RUNS_DIR/summary.csv and RUNS_DIR/report.html (one
self-contained page) and prints the summary table.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import click

from distillmeter.analysis.breakeven import DEFAULT_MIN_Q
from distillmeter.analysis.efficiency import load_floors
from distillmeter.analysis.loading import default_account, load_runs, run_label
from distillmeter.analysis.runs import figures
from distillmeter.analysis.sensitivity import default_account_shifted, sensitivity
from distillmeter.analysis.summary import Analysis, analyse, summary_csv, summary_dict
from distillmeter.errors import UserError, cannot_write
from distillmeter.protocol import ProtocolError
from distillmeter.terminal import printable


def check_options(amortize: float, grid: float | None, pue: float | None,
                  min_q: float = DEFAULT_MIN_Q) -> None:
    """Reject option values that make no sense, with a message that says why."""
    if not math.isfinite(min_q) or min_q < 0:
        raise UserError(f"--min-q must be a Q (student / teacher quality) >= 0, got {min_q:g}")
    if not math.isfinite(amortize) or amortize < 1:
        raise UserError(f"--amortize must be a number of students >= 1, got {amortize:g}")
    if grid is not None and (not math.isfinite(grid) or grid < 0):
        raise UserError(f"--grid must be a carbon intensity >= 0 gCO2e/kWh, got {grid:g}")
    if pue is not None and (not math.isfinite(pue) or pue < 1):
        raise UserError(f"--pue must be >= 1 (facility energy / IT energy), got {pue:g}")


def resolve_grid(grid: float | None, country: str | None) -> float | None:
    """The grid intensity the options ask for: ``--grid``, else ``--country``'s from the
    packaged table (an unknown code is a one-line error suggesting close matches)."""
    if country is None:
        return grid
    if grid is not None:
        raise UserError("give --grid (a number) or --country (a code), not both")
    from distillmeter.accounting import grid_intensity

    return grid_intensity(None, country)[0]


def analyse_dir(runs_dir: Path, *, amortize: float = 1.0, grid: float | None = None,
                pue: float | None = None, baseline_method: str | None = None,
                with_sensitivity: bool = True, min_q: float = DEFAULT_MIN_Q,
                country: str | None = None) -> Analysis:
    """Load (accounting where needed) and analyse every run below ``runs_dir``. A run
    accounted here uses ``grid``/``country``/``pue`` when given, else the carbon settings
    its config.yaml names; one that cannot be accounted is skipped, named, never given a
    default grid in place of the one it asked for."""
    grid = resolve_grid(grid, country)
    check_options(amortize, grid, pue, min_q)
    carbon = {"grid_gco2_per_kwh": grid, "country": country, "pue": pue}
    if grid is not None:
        carbon.pop("country")
    loaded, skipped = load_runs(runs_dir, lambda d: default_account(d, carbon))
    if not loaded:
        if not skipped:
            raise UserError(f"{runs_dir}: no run directories (directories with ledger.jsonl)"
                            " below it")
        reasons = "; ".join(f"{s.run_dir}: {s.reason}" for s in skipped)
        raise UserError(f"{runs_dir}: no run could be read ({reasons})")
    reports = [(run_label(r.run_dir, runs_dir), r.report) for r in loaded]
    sens = None
    if with_sensitivity:
        sens = sensitivity([(r.run_dir, figures(r.report), run_label(r.run_dir, runs_dir))
                            for r in loaded], default_account_shifted)
    a = analyse(reports, amortize=amortize, grid=grid, pue=pue,
                baseline_method=baseline_method, floors=load_floors(), sensitivity=sens,
                skipped=[s.to_dict() for s in skipped], min_q=min_q)
    a.run_paths = {r.report.run_id: str(r.run_dir) for r in loaded}
    if grid is None:
        a.notes += _default_grid_notes([r.report for r in loaded])
    return a


def _default_grid_notes(reports: list) -> list[str]:
    """Say when CO2e rests on the table's world average because no grid was given: never
    a silent fallback."""
    from distillmeter.accounting import grid_table

    table = grid_table()
    world = [r for r in reports if r.carbon.country == table["default"]
             and r.carbon.grid_source != "user"]
    if not world:
        return []
    g = world[0].carbon.grid_gco2_per_kwh
    return [f"carbon: {len(world)} of {len(reports)} run(s) use the table's world-average grid "
            f"intensity ({g:.0f} gCO2e/kWh) because none was given when they were accounted: "
            "their CO2e is that average's (pass --grid or --country for your grid's)"]


def timelines(a: Analysis, max_points: int = 300) -> dict:
    """Each run's downsampled power per device, read from its trace.csv (runs whose trace
    cannot be read are left out; the page says which)."""
    from distillmeter.report.timeline import run_power_series

    out = {}
    for r in a.runs:
        path = Path(a.run_paths[r.run_id]) if r.run_id in a.run_paths else None
        if path is None or not (path / "trace.csv").exists():
            continue
        try:
            out[r.run_id] = run_power_series(path, max_points)
        except ProtocolError:
            continue
    return out


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temp file and rename, so a reader never sees half a file."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:  # no half-written temp file is left beside the outputs
            Path(tmp).unlink(missing_ok=True)
        raise cannot_write(exc, path) from None


def forecast_check(runs_dir: Path, a: Analysis) -> dict | None:
    """Forecast vs measured, when ``runs_dir`` holds the forecast made for its runs
    (``distillmeter estimate CONFIG --from ... --save RUNS_DIR``); None otherwise."""
    from distillmeter.analysis.forecast_check import check_forecast

    path = runs_dir / "forecast.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        a.notes.append(f"{path}: unreadable, forecast not compared ({exc})")
        return None
    reports = [(a.run_paths.get(rid, rep.run_dir or rid), rep) for rid, rep in a.reports.items()]
    check = check_forecast(doc, reports) if isinstance(doc, dict) else None
    if check is not None:
        check["forecast_file"] = str(path)
    return check


def write_outputs(a: Analysis, runs_dir: Path) -> dict[str, Path]:
    """Write summary.json, summary.csv and report.html into ``runs_dir`` (with forecast vs
    measured when a forecast was saved there)."""
    from distillmeter.report.html import render_html

    summary = summary_dict(a, str(runs_dir))
    check = forecast_check(runs_dir, a)
    if check is not None:
        summary["forecast_check"] = check
    paths = {"json": runs_dir / "summary.json", "csv": runs_dir / "summary.csv",
             "html": runs_dir / "report.html"}
    _write_atomic(paths["json"], json.dumps(summary, indent=2) + "\n")
    _write_atomic(paths["csv"], summary_csv(summary))
    html = render_html(a, timelines=timelines(a), floors=load_floors(),
                       runs_dir=str(runs_dir), forecast_check=check)
    _write_atomic(paths["html"], html)
    return paths


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
    from distillmeter.report.console import print_summary
    from distillmeter.report.verdict import print_verdict

    a = analyse_dir(runs_dir, amortize=amortize, grid=grid, pue=pue,
                    baseline_method=baseline_method, with_sensitivity=not no_sensitivity,
                    min_q=min_q, country=country)
    paths = write_outputs(a, runs_dir)
    print_summary(a)
    check = forecast_check(runs_dir, a)
    if check is not None:
        from distillmeter.report.forecast import print_check

        print_check(check)
    click.echo("wrote " + ", ".join(printable(p) for p in paths.values()))
    print_verdict(a)
