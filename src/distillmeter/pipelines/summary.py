"""The per-method table `distillmeter run` prints at the end: energy by side (the teacher
stages a method used counted in full), quality mean +- std over seeds, and Q."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.table import Table

from distillmeter.pipelines.runner import RunOutcome, Summary

SIDES = ("setup", "teacher", "student", "eval")


def _mean_std(xs: list[float]) -> tuple[float, float]:
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def _j(x: float) -> str:
    """Joules in a few characters: 185, 4,106, 12.3k, 4.5M."""
    if abs(x) >= 1e6:
        return f"{x / 1e6:.1f}M"
    if abs(x) >= 1e4:
        return f"{x / 1e3:.1f}k"
    return f"{x:,.0f}"


def _pm(xs: list[float], fmt) -> str:
    """mean±std (just the mean for one value), compact enough for an 80-column terminal."""
    if not xs:
        return "-"
    m, s = _mean_std(xs)
    return f"{fmt(m)}±{fmt(s)}" if len(xs) > 1 else fmt(m)


@dataclass
class MethodRow:
    """One method's figures over its seeds (energies in joules, means over seeds)."""

    method: str
    seeds: list[int]
    by_side: dict[str, float]
    total_j: list[float]
    exact_match: list[float]
    q: list[float]
    estimated: bool


def method_rows(summary: Summary) -> list[MethodRow]:
    """Group the student runs' reports by method, in the order methods first appear."""
    groups: dict[str, list[RunOutcome]] = {}
    for r in summary.of_kind("student"):
        if r.report is not None:
            groups.setdefault(r.method or "?", []).append(r)
    rows = []
    for method, runs in groups.items():
        reports = [r.report for r in runs]
        by_side = {s: statistics.fmean(rep.totals.by_side.get(s, 0.0) for rep in reports)
                   for s in SIDES}
        em = [rep.quality.value for rep in reports if rep.quality is not None]
        q = [rep.quality.details["q"] for rep in reports
             if rep.quality is not None and rep.quality.details.get("q") is not None]
        rows.append(MethodRow(method, sorted(r.seed for r in runs if r.seed is not None),
                              by_side, [rep.totals.with_upstream_j for rep in reports],
                              em, q, any(rep.estimated for rep in reports)))
    return rows


def method_table(summary: Summary) -> Table:
    """The per-method table (rich), narrow enough for an 80-column terminal."""
    rows = method_rows(summary)
    seeds = sorted({len(r.seeds) for r in rows})
    over = f"{seeds[0]} seeds" if len(seeds) == 1 else "seeds"
    table = Table(title=f"energy (J) and quality by method, mean ± std over {over}",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("method", no_wrap=True)
    for side in SIDES:
        table.add_column(side, justify="right", no_wrap=True)
    table.add_column("total", justify="right", no_wrap=True)
    table.add_column("exact match", justify="right", no_wrap=True)
    table.add_column("Q", justify="right", no_wrap=True)
    for row in rows:
        name = row.method if len(seeds) == 1 else f"{row.method} (n={len(row.seeds)})"
        table.add_row(name, *[_j(row.by_side[s]) for s in SIDES],
                      _pm(row.total_j, _j), _pm(row.exact_match, lambda x: f"{x:.3f}"),
                      f"{statistics.fmean(row.q):.2f}" if row.q else "-")
    return table


def print_summary(summary: Summary, console: Console | None = None) -> None:
    """The teacher line, the per-method table, interrupted attempts, and the notes."""
    console = console or Console()
    for t in summary.of_kind("teacher"):
        rep = t.report
        if rep is None:
            console.print(f"teacher {t.name}: not accounted")
            continue
        em = f"exact match {rep.quality.value:.3f}" if rep.quality else "no quality"
        console.print(f"teacher [bold]{t.name}[/] ({t.status}): {rep.totals.energy_j:,.0f} J "
                      f"in {rep.totals.seconds:.1f} s, {em}")
    console.print(method_table(summary))
    for f in summary.of_kind("failed"):
        energy = f"{f.report.totals.energy_j:,.0f} J" if f.report else "not accounted"
        console.print(f"interrupted attempt {f.name}: {energy} (kept, accounted)")
    if any(r.estimated for r in method_rows(summary)):
        console.print("[yellow]energy partly estimated from a model (no hardware counter "
                      "here for some devices); see each report's sources[/]")
    console.print("teacher: the teacher stages each method used, counted in full "
                  "(baseline: none); total = the run's own energy + those stages. Q = student "
                  "/ teacher exact match. Reports: <run>/report.json", style="dim")
