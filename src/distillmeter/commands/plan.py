"""``distillmeter plan RUNS_DIR --budget-kwh X``: the best measured configuration that
fits a budget per student, and the rules the measured frontier supports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from distillmeter.errors import UserError


def _positive(name: str, value: float | None) -> None:
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise UserError(f"{name} must be a positive number, got {value:g}")


@click.command("plan")
@click.argument("runs_dir", type=click.Path(path_type=Path))
@click.option("--budget-kwh", type=float, default=None, metavar="X",
              help="Energy budget per student, in kWh.")
@click.option("--budget-co2-kg", type=float, default=None, metavar="X",
              help="Carbon budget per student, in kg CO2e.")
@click.option("--budget-usd", type=float, default=None, metavar="X",
              help="Money budget per student (needs --price-per-kwh unless the reports "
                   "carry a price).")
@click.option("--price-per-kwh", type=float, default=None, metavar="P",
              help="Electricity price per kWh for --budget-usd.")
@click.option("--amortize", type=float, default=1.0, show_default=True, metavar="N",
              help="Divide shared teacher-side energy among N students.")
@click.option("--grid", type=float, default=None, metavar="GCO2_PER_KWH",
              help="Grid intensity for the carbon budget (default: each report's).")
@click.option("--country", default=None, metavar="CC",
              help="Grid intensity of this country (ISO code) for the carbon budget.")
@click.option("--pue", type=float, default=None, metavar="X", help="Power usage effectiveness.")
@click.option("--baseline", "baseline_method", default=None, metavar="METHOD",
              help="The baseline method (default: a method named *baseline*).")
@click.option("--min-q", type=float, default=0.9, show_default=True, metavar="Q",
              help="Q a student needs for its break-even and payback to be stated.")
@click.option("--on-mean", is_flag=True,
              help="Judge fit on the mean cost instead of the upper 95% bound.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--candidates", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="SWEEP.yaml", help="Rank the sweep's configurations, not yet run, by "
                                         "their predicted energy (fitted on RUNS_DIR).")
@click.option("--hardware", default=None, metavar="LABEL",
              help="With --candidates: forecast for this machine's runs in RUNS_DIR.")
def command(runs_dir: Path, budget_kwh: float | None, budget_co2_kg: float | None,
            budget_usd: float | None, price_per_kwh: float | None, amortize: float,
            grid: float | None, country: str | None, pue: float | None,
            baseline_method: str | None,
            min_q: float, on_mean: bool, as_json: bool, candidates: Path | None,
            hardware: str | None) -> None:
    """Pick the best-quality configuration that fits a budget per student (with
    --candidates: rank configurations nobody has run yet by predicted energy)."""
    from distillmeter.analysis.directory import analyse_dir, resolve_grid
    from distillmeter.analysis.planner import Budget, plan
    from distillmeter.render.console import print_plan

    if budget_kwh is None and budget_co2_kg is None and budget_usd is None:
        raise UserError("give a budget: --budget-kwh, --budget-co2-kg or --budget-usd")
    for name, v in (("--budget-kwh", budget_kwh), ("--budget-co2-kg", budget_co2_kg),
                    ("--budget-usd", budget_usd), ("--price-per-kwh", price_per_kwh)):
        _positive(name, v)
    grid = resolve_grid(grid, country)  # an unknown country is a one-line error
    if candidates is not None:
        from distillmeter.analysis.directory import check_options
        from distillmeter.commands.plan_candidates import plan_candidates, show

        check_options(amortize, grid, pue)
        limits = {k: v for k, v in (("kwh", budget_kwh), ("co2_kg", budget_co2_kg),
                                    ("usd", budget_usd)) if v is not None}
        show(plan_candidates(runs_dir, candidates, limits, amortize=amortize,
                             on_mean=on_mean, grid=grid, pue=pue, price=price_per_kwh,
                             hardware=hardware), as_json)
        return
    a = analyse_dir(runs_dir, amortize=amortize, grid=grid, pue=pue,
                    baseline_method=baseline_method, with_sensitivity=False, min_q=min_q)
    if budget_usd is not None and price_per_kwh is None:
        unpriced = [r.run_dir or r.run_id for r in a.runs if r.price_per_kwh is None]
        if unpriced:
            raise UserError("--budget-usd needs --price-per-kwh: these runs' reports carry "
                            f"no electricity price: {', '.join(unpriced[:5])}"
                            + (" ..." if len(unpriced) > 5 else ""))
    result = plan(a, Budget(budget_kwh, budget_co2_kg, budget_usd, price_per_kwh),
                  on_mean=on_mean)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        print_plan(result)
