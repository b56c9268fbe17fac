"""``distillmeter estimate CONFIG --from RUNS_DIR [--json] [--save OUT]``: forecast what a
config would cost on this hardware, from the runs already measured on it. Runs nothing and
loads no model: the work each stage would do comes from the config (``pipelines.work``),
the cost of that work from the cost model fitted on RUNS_DIR (``analysis.costmodel``,
written to RUNS_DIR/costmodel.json). A budget axis (``budgets``) is forecast point by
point (``<method>-b<budget>``, with its ``token_budget``); every interval carries the
machine's run-to-run drift measured in RUNS_DIR (``analysis.drift``), stated in one line
and as ``drift`` in the JSON."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from distillmeter.errors import UserError
from distillmeter.storage.atomic import write_atomic

FORECAST_FILE = "forecast.json"
COSTMODEL_FILE = "costmodel.json"
FORECAST_SCHEMA = "distillmeter.forecast/1"


def this_hardware() -> dict[str, Any]:
    """This machine as a report's ``hardware`` block names it (CPU, and GPUs NVML sees)."""
    from distillmeter.energy.sensors.hostinfo import cpu_info

    gpus: list[dict[str, Any]] = []
    try:
        from distillmeter.energy.sensors.nvml import NvmlSensor

        sensor = NvmlSensor()
        try:
            gpus = list(sensor.describe().get("gpus", []))
        finally:
            sensor.close()
    except Exception:  # no NVML, no driver, no GPU: a CPU machine
        gpus = []
    return {"cpu": cpu_info().as_dict(), "gpus": gpus}


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON, atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(data, indent=1))


def fit_from_runs(runs_dir: Path, hardware: str | None) -> tuple[Any, list[Any], list[str]]:
    """(the cost model of ``hardware``, default this machine's; the loaded runs; notes).
    UserError when RUNS_DIR holds no runs on it, naming what it does hold."""
    from distillmeter.analysis.costmodel import by_hardware, fit_cost_model
    from distillmeter.analysis.efficiency import load_floors
    from distillmeter.analysis.loading import load_runs, run_label
    from distillmeter.analysis.runs import hardware_label

    if not runs_dir.is_dir():
        raise UserError(f"--from {runs_dir}: not a directory")
    loaded, skipped = load_runs(runs_dir)
    reports = [(run_label(r.run_dir, runs_dir), r.report) for r in loaded]
    target = hardware or hardware_label(this_hardware())
    groups = by_hardware(reports)
    if target not in groups:
        held = "; ".join(f"{hw} ({len(rs)} run(s))" for hw, rs in sorted(groups.items()))
        why = f"it holds runs on: {held}" if groups else (
            "it holds no finished run" + (f" ({len(skipped)} skipped: "
                                          f"{skipped[0].reason})" if skipped else ""))
        raise UserError(f"{runs_dir}: no runs on this hardware ({target}) to fit a cost model "
                        f"on; {why}. Run something here first (e.g. `distillmeter run "
                        "--seeds 1`), or give --hardware to forecast for a machine it holds "
                        "runs of")
    model = fit_cost_model(reports, load_floors(), target)
    notes = []
    try:
        write_json(runs_dir / COSTMODEL_FILE, model.to_dict())
    except OSError as exc:
        notes.append(f"could not write {runs_dir / COSTMODEL_FILE}: {exc.strerror or exc}")
    return model, loaded, notes


def measured_keep_fraction(loaded: list[Any]) -> float | None:
    """The share of teacher answers the verifier kept in the measured runs (their
    synthetic-data manifests), or None when none made synthetic data."""
    from distillmeter.protocol import ARTIFACTS_DIR

    kept = n = 0
    for run in loaded:
        for manifest in sorted((run.run_dir / ARTIFACTS_DIR).glob("synthetic-*/manifest.json")):
            try:
                info = json.loads(manifest.read_text(encoding="utf-8")).get("info", {})
                kept += int(info["n_kept"])
                n += int(info["n_prompts"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return kept / n if n else None


def estimate(config: Path, runs_dir: Path, *, hardware: str | None = None
             ) -> dict[str, Any]:
    """The forecast document (``--json`` prints it; ``--save`` writes it)."""
    from distillmeter.analysis.forecast import forecast_plan
    from distillmeter.pipelines.artifact_plan import plan_students
    from distillmeter.pipelines.config_file import load_config
    from distillmeter.pipelines.work import plan_work

    cfg = load_config(config)
    model, loaded, notes = fit_from_runs(runs_dir, hardware)
    keep = measured_keep_fraction(loaded) if cfg.generation.verify else None
    plan = plan_work(cfg, keep_fraction=keep)
    doc = forecast_plan(model, plan.as_dict())
    budgets = {s.name: s.training.token_budget for s in plan_students(cfg)}
    for rec in doc["methods"].values():  # each student point's token budget (additive)
        if rec["role"] == "student" and rec["runs"][0] in budgets:
            rec["token_budget"] = budgets[rec["runs"][0]]
    fit = model.time
    doc["basis"] = {
        "hardware": model.hardware, "runs_dir": str(runs_dir), "runs": len(model.runs),
        "model_file": str(runs_dir / COSTMODEL_FILE),
        "time_fit": {"stages": fit.n, "coefficients": len(fit.names), "dof": fit.dof,
                     "rel_sd": fit.rel_sd},
        "estimated_devices": model.estimated_devices,
        "energy": ("energy follows time on " + ", ".join(model.estimated_devices) +
                   " (the meter's estimate: utilisation x TDP, DRAM W x time)")
        if model.estimated_devices else "energy from the devices' counters",
        "floor": model.floor, "keep_fraction": keep}
    doc["notes"] = doc["notes"] + notes
    doc.update({"schema": FORECAST_SCHEMA, "config": str(config),
                "created": datetime.now(timezone.utc).isoformat(),
                "plan": plan.as_dict()})
    return doc


@click.command("estimate")
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--from", "runs_dir", required=True, type=click.Path(path_type=Path),
              metavar="RUNS_DIR", help="Runs measured on this hardware to fit the model on.")
@click.option("--hardware", default=None, metavar="LABEL",
              help="Forecast for the runs of another machine in RUNS_DIR (its label as "
                   "`distillmeter report` groups it, e.g. '1x NVIDIA H100 80GB HBM3').")
@click.option("--save", "save_dir", default=None, type=click.Path(file_okay=False,
                                                                  path_type=Path),
              metavar="OUT", help="Also write OUT/forecast.json: `distillmeter run CONFIG "
                                  "--out OUT` then reports forecast vs measured.")
@click.option("--json", "as_json", is_flag=True, help="Print the forecast as JSON.")
def command(config: Path, runs_dir: Path, hardware: str | None, save_dir: Path | None,
            as_json: bool) -> None:
    """Forecast each stage's energy, time and 95% interval for the runs CONFIG would make,
    from the runs measured on this hardware (nothing is run, no model loaded)."""
    doc = estimate(config, runs_dir, hardware=hardware)
    if save_dir is not None:
        write_json(save_dir / FORECAST_FILE, doc)
    if as_json:
        out = {k: v for k, v in doc.items() if k != "plan"}
        click.echo(json.dumps(out, indent=1))
        return
    from distillmeter.render.forecast_tables import print_forecast

    print_forecast(doc)
    from distillmeter.analysis.drift import drift_line
    from distillmeter.terminal import get_console, printable

    get_console().print(printable(drift_line(doc.get("drift"))), markup=False,
                        highlight=False, soft_wrap=True)
    if save_dir is not None:
        click.echo(f"wrote {save_dir / FORECAST_FILE}")
