"""The summary table and the plan, printed in the terminal (rich). Labels, paths, notes and
rules quote user-controlled names: they are printed inert (distillmeter.terminal)."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from distillmeter.analysis.result import Analysis
from distillmeter.analysis.rules import fmt_ci, fmt_j_pm, fmt_pm
from distillmeter.render.curve_plots import print_curves
from distillmeter.tables import fit
from distillmeter.terminal import get_console, literal, printable


def print_summary(a: Analysis, console: Console | None = None) -> None:
    """One table per group of comparable runs, then notes, skipped runs and rules."""
    console = console or get_console()
    for s in a.skipped:
        kind = f" ({s['kind']})" if s.get("kind") else ""
        console.print(f"[red]skipped[/red]{literal(kind)} {literal(s['run_dir'])}: "
                      f"{literal(s['reason'])}", markup=True, highlight=False, soft_wrap=True)
    for n in a.notes:
        console.print(f"[yellow]note:[/yellow] {literal(n)}", highlight=False)
    amort = "" if a.amortize == 1 else f", teacher side / {a.amortize:g}"
    for g in a.grouping.groups:
        cs = [c for c in a.configs if c.group == g.id]
        table = Table(title=printable(f"group {g.id}: {g.describe()}{amort}"),
                      title_justify="left", box=box.SIMPLE_HEAD)
        names = {c.config: c.label or c.config for c in cs}
        width = max([len(names[c.config]) + (2 if c.estimated else 0) for c in cs] + [6])
        table.add_column("config", min_width=min(width, 24), overflow="fold")
        table.add_column("n", justify="right")
        table.add_column("energy/student", justify="right", no_wrap=True)
        table.add_column("teacher", justify="right")
        table.add_column("quality", justify="right", no_wrap=True)
        table.add_column("Q", justify="right", no_wrap=True)
        table.add_column("Pareto", overflow="fold")
        for c in cs:
            mark = "yes" if c.pareto else "no" if c.quality.mean is not None else "n/a"
            if c.not_separable_from:
                mark += " ~" + ",".join(names.get(x, x) for x in c.not_separable_from)
            total = c.energy_j.mean or 0.0
            share = f"{100 * c.side_mean('teacher') / total:.0f}%" if total > 0 else "n/a"
            energy = fmt_j_pm(c.energy_j.mean, c.energy_j.half_width)
            if c.incomplete:  # a lower bound: its teacher's energy is missing
                energy, share, mark = f">= {energy}", "missing", "n/a (incomplete)"
            table.add_row(
                names[c.config] + (" *" if c.estimated else "") + (" !" if c.incomplete
                                                                   else ""), str(c.n_seeds),
                energy, share,
                fmt_ci(c.quality),
                fmt_pm(c.q.mean, None), mark)
        console.print(fit(table))
        print_curves(a, g.id, console)
        if any(c.estimated for c in cs):
            console.print("* some energy estimated (no counter or sensor on a device)")
        if any(c.incomplete for c in cs):
            console.print("! incomplete: its teacher's energy is missing (an upstream run "
                          "cannot be read), so its energy is a lower bound; see the notes",
                          highlight=False)
        shared = ("; energies compared without the error the machine's estimate shares"
                  if any(c.estimated for c in cs) else "")
        console.print("Pareto: yes = on the energy-quality frontier; ~X = not separable from "
                      f"frontier point X (95% intervals overlap on both axes{shared})",
                      highlight=False)
        for r in a.rules.get(g.id, []):
            console.print(f"  - {printable(r)}", markup=False, highlight=False, soft_wrap=True)


def print_plan(plan: dict[str, Any], console: Console | None = None) -> None:
    """The planner's choice per group and the rules behind it."""
    console = console or get_console()

    def say(text: str) -> None:
        console.print(printable(text), markup=False, highlight=False, soft_wrap=True)

    for s in plan.get("skipped", []):
        console.print(f"[red]left out[/red] {literal(s['run_dir'])}: {literal(s['reason'])}",
                      highlight=False, soft_wrap=True)
    for n in plan.get("notes", []):
        console.print(f"[yellow]note:[/yellow] {literal(n)}", highlight=False, soft_wrap=True)
    say(plan["criterion"])
    for g in plan["groups"]:
        console.print()
        console.print(f"[bold]group {literal(g['group'])}: {literal(g['describe'])}[/bold]",
                      highlight=False)
        say(g["verdict"])
        if g.get("why"):
            say("why:")
            for line in g["why"]:
                say(f"  - {line}")
        if g.get("estimated"):
            say(g["estimated"])
        if g.get("rules"):
            say("what the measured frontier says:")
            for line in g["rules"]:
                say(f"  - {line}")
