"""A directory of runs, analysed: the options checked, every run below it loaded (accounted
where it has no report yet), the analysis assembled, and the forecast saved beside the runs
compared with what they measured. ``distillmeter run``, ``report`` and ``plan`` all start
here; ``render/outputs.py`` writes and prints the result.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from distillmeter.analysis.breakeven import DEFAULT_MIN_Q
from distillmeter.analysis.efficiency import load_floors
from distillmeter.analysis.forecast_check import check_forecast
from distillmeter.analysis.loading import default_account, load_runs, run_label
from distillmeter.analysis.result import Analysis
from distillmeter.analysis.runs import figures
from distillmeter.analysis.sensitivity import default_account_shifted, sensitivity
from distillmeter.analysis.summary import analyse
from distillmeter.errors import UserError


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
    floors = load_floors()  # read once: the efficiency figures and the page's table
    a = analyse(reports, amortize=amortize, grid=grid, pue=pue,
                baseline_method=baseline_method, floors=floors, sensitivity=sens,
                skipped=[s.to_dict() for s in skipped], min_q=min_q)
    a.floors = floors
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


def forecast_check(runs_dir: Path, a: Analysis) -> dict | None:
    """Forecast vs measured, when ``runs_dir`` holds the forecast made for its runs
    (``distillmeter estimate CONFIG --from ... --save RUNS_DIR``); None otherwise. Reads
    forecast.json once: the caller hands the result to the files and the terminal."""
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
