"""``distillmeter plan RUNS_DIR --budget-kwh X --candidates SWEEP.yaml``: configurations
nobody has run yet (the sweep's grid points) ranked by predicted energy per student
against the budget, from the cost model fitted on RUNS_DIR (``analysis.candidates``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


def plan_candidates(runs_dir: Path, sweep_path: Path, limits: dict[str, float], *,
                    amortize: float = 1.0, on_mean: bool = False, grid: float | None = None,
                    pue: float | None = None, price: float | None = None,
                    hardware: str | None = None) -> dict[str, Any]:
    """Forecast every grid point of the sweep and rank the candidates (see
    ``analysis.candidates.rank_candidates``)."""
    from distillmeter.analysis.candidates import rank_candidates
    from distillmeter.analysis.forecast import forecast_plan
    from distillmeter.commands.estimate import fit_from_runs, measured_keep_fraction
    from distillmeter.pipelines.scale.sweep_file import load_sweep
    from distillmeter.pipelines.work import plan_work

    sweep = load_sweep(sweep_path)
    model, loaded, notes = fit_from_runs(runs_dir, hardware)
    keep = measured_keep_fraction(loaded)
    points, warnings = [], []
    for p in sweep.points:
        fc = forecast_plan(model, plan_work(
            p.config, keep_fraction=keep if p.config.generation.verify else None).as_dict())
        points.append({"point": p.name, "overrides": p.overrides, "forecast": fc})
        warnings += [f"{p.name}: {w}" for w in fc["warnings"]]
        warnings += [f"{p.name}: {c['run']} {c['stage']} not forecast: {c['reason']}"
                     for c in fc["not_forecast"]]
    ref = loaded[0].report if loaded else None
    if ref is not None:
        grid = ref.carbon.grid_gco2_per_kwh if grid is None else grid
        pue = ref.carbon.pue if pue is None else pue
        price = ref.cost.price_per_kwh if price is None else price
    out = rank_candidates(points, limits, amortize=amortize, on_mean=on_mean,
                          pue=pue or 1.0, grid=grid, price=price)
    out.update({"sweep": str(sweep_path), "points": len(sweep.points),
                "basis": {"hardware": model.hardware, "runs_dir": str(runs_dir),
                          "runs": len(model.runs), "time_rel_sd": model.time.rel_sd},
                "warnings": warnings, "notes": notes})
    return out


def show(result: dict[str, Any], as_json: bool) -> None:
    """Print the ranking (JSON, or a table)."""
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    from distillmeter.render.forecast_tables import print_candidates

    print_candidates(result)
