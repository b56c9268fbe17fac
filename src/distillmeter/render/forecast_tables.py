"""Forecasts in the terminal (``distillmeter estimate``, ``plan --candidates``) and forecast
vs measured (terminal and HTML). Every forecast figure is marked as predicted."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from distillmeter.analysis.candidates import UNITS
from distillmeter.analysis.rules import fmt_j
from distillmeter.protocol import METER_STAGES
from distillmeter.tables import fit
from distillmeter.terminal import get_console, literal, printable


def _say(console: Console, text: str) -> None:
    """A message quoting names and paths: inert, never wrapped inside a word."""
    console.print(printable(text), markup=False, highlight=False, soft_wrap=True)


def _ci(ci: list[float] | None, fmt=fmt_j) -> str:
    return "n/a" if not ci else f"{fmt(ci[0])} - {fmt(ci[1])}"


def _s(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g} s"


def print_forecast(doc: dict[str, Any], console: Console | None = None) -> None:
    """Each run's stages (predicted energy, 95% interval, time, basis), the totals per
    student with the teacher share and N*, then what could not be forecast and warnings."""
    console = console or get_console()
    b = doc.get("basis", {})
    tf = b.get("time_fit", {})
    spread = tf.get("rel_sd")
    _say(console,
         f"forecast (predicted, nothing run) for {doc.get('config', 'the config')} on "
         f"{b.get('hardware')}, from {b.get('runs')} run(s) in {b.get('runs_dir')}; time fit: "
         f"{tf.get('stages')} stages, {tf.get('coefficients')} coefficients, residual "
         f"spread {'n/a' if spread is None else f'{spread:.0%}'}")
    _say(console, f"{b.get('energy')}")
    for key, rec in doc["methods"].items():
        runs = rec.get("runs", [])
        title = f"{key}: " + (", ".join(runs[:3]) + (" ..." if len(runs) > 3 else ""))
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
        for col, just in (("stage", "left"), ("predicted", "right"),
                          ("95% interval", "right"), ("time", "right"), ("basis", "left")):
            table.add_column(col, justify=just, no_wrap=True)
        for name, st in rec["stages"].items():
            if st.get("cannot"):
                table.add_row(name, "not forecast", "", "", "see below")
                continue
            table.add_row(name, fmt_j(st["energy_j"]), _ci(st["ci95"]), _s(st["seconds"]),
                          st["basis"] + (" (meter overhead: not in the total)"
                                         if name in METER_STAGES else ""))
        console.print(fit(table, ["basis"]))
    table = Table(title="per student (teacher stages counted in full), predicted",
                  title_justify="left", box=box.SIMPLE_HEAD)
    est = any(rec.get("estimate_rel") for rec in doc["methods"].values())
    for col in ("method", "total", "95% interval",
                *(["with estimate error"] if est else []), "teacher share", "N*"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for key, rec in doc["methods"].items():
        share = rec.get("teacher_share")
        ns = rec.get("n_star")
        mark = "~" if rec.get("estimate_rel") else ""
        table.add_row(key + ("" if rec.get("complete", True) else " (incomplete)"),
                      mark + fmt_j(rec["total_j"]), _ci(rec["ci95"]),
                      *([_ci(rec.get("energy_ci95"))] if est else []),
                      "" if rec["role"] == "teacher" else
                      "n/a" if share is None else f"{share:.0%}",
                      "" if rec["role"] == "teacher" else
                      ("never" if ns is None and rec["teacher_j"] > 0 else
                       "" if ns is None else f"{ns:.3g}"))
    console.print(fit(table))
    if est:
        console.print("~: energy the meter estimates (no counter): '95% interval' is of what "
                      "the meter will report; 'with estimate error' adds the estimate's own "
                      "error against the true energy, as every report does", highlight=False,
                      soft_wrap=True)
    for n in doc.get("notes", []):
        _say(console, f"note: {n}")
    for c in doc.get("not_forecast", []):
        console.print(f"[yellow]not forecast:[/] {literal(c['run'])} {literal(c['stage'])}: "
                      f"{literal(c['reason'])}", highlight=False, soft_wrap=True)
    for w in doc.get("warnings", []):
        console.print(f"[yellow]warning:[/] {literal(w)}", highlight=False, soft_wrap=True)


def print_check(check: dict[str, Any], console: Console | None = None) -> None:
    """Forecast vs measured, per stage, in the terminal."""
    console = console or get_console()
    table = Table(title=f"forecast vs measured ({check.get('forecast_file')})",
                  title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("run", "stage", "forecast", "95% interval", "measured", "error", "inside"):
        table.add_column(col, justify="left" if col in ("run", "stage") else "right")
    for r in check["rows"]:
        table.add_row(r["run"], r["stage"], fmt_j(r["forecast_j"]), _ci(r["ci95"]),
                      fmt_j(r["measured_j"]), f"{r['error']:+.0%}",
                      "yes" if r["inside"] else "no")
    console.print(fit(table, ["95% interval"]))
    s = check.get("summary", {})
    if s.get("n"):
        console.print(f"{s['inside']}/{s['n']} measured stages inside their forecast "
                      f"interval; median |error| {s['median_abs_error']:.0%}", highlight=False)


def print_candidates(result: dict[str, Any], console: Console | None = None) -> None:
    """``plan --candidates``: the ranking, every figure marked predicted."""
    console = console or get_console()
    b = result["basis"]
    _say(console, f"{result['points']} configuration(s) from {result['sweep']}, not yet run, "
                  f"forecast on {b['hardware']} from {b['runs']} run(s) in {b['runs_dir']}")
    _say(console, result["criterion"] + ".")
    limits = "; ".join(f"{v:.3g} {UNITS[k]}" for k, v in result["limits"].items())
    table = Table(title=f"budget per student: {limits}" + (
        "" if result["amortize"] == 1 else f", teacher side / {result['amortize']:g}"),
        title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("#", justify="right")
    table.add_column("configuration", no_wrap=True)
    table.add_column("method")
    table.add_column("predicted/student", justify="right", no_wrap=True)
    table.add_column("95% interval", justify="right", no_wrap=True)
    table.add_column("fits")
    for r in result["candidates"]:
        table.add_row(str(r["rank"]), r["point"], r["method"],
                      ("~" if r.get("estimate_rel") else "") + fmt_j(r["energy_j"]),
                      _ci(r["ci95"]), "yes" if r["fits"] else "no")
    console.print(fit(table, ["95% interval"]))
    if any(r.get("estimate_rel") for r in result["candidates"]):
        console.print("~: energy the meter estimates (no counter); its own error is in the "
                      "interval", highlight=False, soft_wrap=True)
    incomplete = [r for r in result["candidates"] if not r["complete"]]
    if incomplete:
        console.print(f"{len(incomplete)} candidate(s) with a stage not forecast: never "
                      "counted as fitting (see the warnings)", highlight=False)
    console.print(f"{result['fitting']} of {len(result['candidates'])} candidate(s) fit "
                  "(predicted).", highlight=False)
    for n in result.get("notes", []):
        _say(console, f"note: {n}")
    for w in result.get("warnings", []):
        console.print(f"[yellow]warning:[/] {literal(w)}", highlight=False, soft_wrap=True)
