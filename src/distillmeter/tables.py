"""Terminal tables for a run's report (rich). ``account``, ``show``, ``measure`` and ``run``
all print a report the same way through :func:`print_report`.

:func:`fit` keeps any table readable in a narrow console: a training log, a Slurm ``.out``
file or a CI log is 80 columns wide (rich's width when output is piped), where rich would
cut headers and cells to ``ene…``. The table is printed as it is when it fits; else without
the columns the caller marked optional; else stacked, one block per row of ``header value``
pairs wrapped to the width. No header is ever cut, nor any cell up to
``terminal.MAX_CELL`` characters.

Every table printed through :func:`fit` is made inert first (:func:`inert`): cells and
titles are plain text (a name's ``[red]`` is shown, not obeyed), control characters show as
escapes (``\x1b``, ``\n``: no escape sequence reaches the terminal, no newline forges a
row), and a cell longer than ``MAX_CELL`` is cut in the middle with a marker
(``…[+99,950 chars]…``), which keeps the cost of a table linear in its cells' lengths.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterable, Iterator, Sequence

from rich.console import Console, ConsoleOptions, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from distillmeter.protocol import ESTIMATED_SOURCES, Report, StageReport
from distillmeter.terminal import MAX_CELL, get_console, plain_text, printable, safe_cell

_SHORT_SOURCE = {"nvml_counter": "counter", "nvml_instant": "instant", "rapl": "rapl",
                 "estimate": "estimate*"}


class Fit:
    """``table``, readable at any width: as it is when it fits, else without the columns
    whose headers are in ``optional`` (dropped in that order, as few as needed), else
    stacked (see the module docstring). Print it like any renderable:
    ``console.print(fit(table))``."""

    def __init__(self, table: Table, optional: Sequence[str] = ()) -> None:
        self.table = inert(table)
        self.optional = list(optional)

    def _fits(self, table: Table, console: Console, options: ConsoleOptions) -> bool:
        wide = options.update_width(1_000_000)
        return Measurement.get(console, wide, table).maximum <= options.max_width

    def _without(self, drop: set[str]) -> Table:
        table = copy.copy(self.table)
        table.columns = [c for c in self.table.columns if _plain(c.header) not in drop]
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions
                         ) -> Iterator[RenderableType]:
        if self._fits(self.table, console, options):
            yield self.table
            return
        for k in range(1, len(self.optional) + 1):
            reduced = self._without(set(self.optional[:k]))
            if self._fits(reduced, console, options):
                yield reduced
                return
        yield from stacked(self.table, console, options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        natural = Measurement.get(console, options.update_width(1_000_000), self.table)
        return Measurement(min(natural.minimum, options.max_width),
                           min(natural.maximum, options.max_width))


def fit(table: Table, optional: Iterable[str] = ()) -> Fit:
    """``table`` made readable at any console width (see :class:`Fit`), and inert."""
    return Fit(table, list(optional))


def inert(table: Table, limit: int = MAX_CELL) -> Table:
    """A copy of ``table`` whose title, headers and cells are inert (see the module
    docstring): strings become plain ``Text``, control characters escapes, and cells
    longer than ``limit`` characters are cut with a marker."""
    out = copy.copy(table)
    if isinstance(table.title, (str, Text)):
        out.title = safe_cell(table.title, limit=2 * limit)
    out.columns = [dataclasses.replace(
        c, header=safe_cell(c.header, limit) if isinstance(c.header, (str, Text)) else c.header,
        _cells=[safe_cell(x, limit) for x in c._cells]) for c in table.columns]
    return out


def _plain(x: object) -> str:
    return x.plain if isinstance(x, Text) else str(x)


def stacked(table: Table, console: Console, width: int) -> Iterator[Text]:
    """``table`` as blocks: each row's first cell on a line of its own, then the other
    cells as ``header value`` pairs, packed into lines of at most ``width`` characters
    (a pair longer than a line wraps; nothing is cut). Empty cells are left out."""
    if table.title:
        yield Text(_plain(table.title), style="bold")
    headers = [_plain(c.header) if table.show_header else "" for c in table.columns]
    columns = [[_cell(console, x) for x in c.cells] for c in table.columns]
    for i in range(table.row_count):
        cells = [col[i] if i < len(col) else Text() for col in columns]
        yield Text.assemble(cells[0], style="bold") if cells else Text()
        pairs = [Text.assemble((h, "dim"), " " if h else "", v) if h else v
                 for h, v in zip(headers[1:], cells[1:], strict=False) if v.plain.strip()]
        line = Text("  ")
        for pair in pairs:
            if line.plain.strip() and len(line.plain) + 3 + len(pair.plain) > width:
                yield line
                line = Text("  ")
            line.append_text(Text("   ") if line.plain.strip() else Text())
            line.append_text(pair)
        if line.plain.strip():
            yield line


def _cell(console: Console, x: object) -> Text:
    if isinstance(x, Text):
        return x
    return plain_text(x, limit=MAX_CELL)  # never markup, never highlighted (quadratic)


def _j(x: float) -> str:
    return f"{x:,.1f}"


def _small(x: float) -> str:
    """Three significant digits for small amounts (grams, currency), grouped above 1000."""
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def _source_text(st: StageReport) -> Text:
    """One label per distinct source; estimates in yellow with a star."""
    text = Text()
    labels: dict[str, list[str]] = {}
    for dev, src in st.source.items():
        labels.setdefault(src, []).append(dev)
    for i, (src, devs) in enumerate(labels.items()):
        if i:
            text.append(", ")
        label = _SHORT_SOURCE.get(src, src)
        if len(labels) > 1:
            label = f"{'/'.join(devs)} {label}"
        text.append(label, style="yellow" if src in ESTIMATED_SOURCES else "")
    return text


def _status_text(status: str) -> Text:
    style = {"ok": "green", "failed": "red", "incomplete": "red", "degraded": "yellow",
             "impossible": "bold red"}
    return Text(status, style=style.get(status, ""))


_STATUS_RANK = {"ok": 0, "degraded": 1, "incomplete": 2, "failed": 3, "impossible": 4}


def merge_windows(stages: list[StageReport]) -> list[tuple[str, StageReport]]:
    """``(row label, stage)`` with one row per stage name: a name with several windows (an
    on-policy run's rounds) becomes one row ``name xN`` at its first window's place, its
    seconds, energies, uncertainties, tokens and samples summed (uncertainties add: the
    conservative bound), J/token recomputed, the worst status kept."""
    counts: dict[str, int] = {}
    for st in stages:
        counts[st.name] = counts.get(st.name, 0) + 1
    rows: list[tuple[str, StageReport]] = []
    for name in counts:
        group = [st for st in stages if st.name == name]
        if len(group) == 1:
            rows.append((name, group[0]))
            continue
        devices = list(dict.fromkeys(d for st in group for d in st.energy_j))
        energy = {d: math.fsum(st.energy_j.get(d, 0.0) for st in group) for d in devices}
        tokens = sum(st.tokens for st in group)
        merged = group[0].model_copy(update={
            "t_end": group[-1].t_end, "seconds": math.fsum(st.seconds for st in group),
            "energy_j": energy,
            "active_energy_j": math.fsum(st.active_energy_j for st in group),
            "uncertainty_j": math.fsum(st.uncertainty_j for st in group),
            "tokens": tokens, "samples": sum(st.samples for st in group),
            "j_per_token": energy.get("total", 0.0) / tokens if tokens > 0 else None,
            "source": {d: src for st in group for d, src in st.source.items()},
            "status": max((st.status for st in group),
                          key=lambda x: _STATUS_RANK.get(x, 1)),
            "notes": [n for st in group for n in st.notes]})
        rows.append((f"{name} x{len(group)}", merged))
    return rows


def stage_table(report: Report, *, windows: bool = False) -> Table:
    """The stage table: seconds, energy per device and total, active energy, uncertainty,
    tokens, J/token, source and status; upstream (shared teacher) stages after a rule. A
    stage name with several windows is one row ``name xN`` (``merge_windows``) unless
    ``windows`` asks for every window."""
    devices = list(report.devices)
    per_device = len(devices) > 1
    title = f"run {report.run_id}"
    if report.method:
        title += f"  method {report.method}"
    if report.seed is not None:
        title += f"  seed {report.seed}"
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("stage")
    table.add_column("s", justify="right")
    if per_device:
        for d in devices:
            table.add_column(f"{d} J", justify="right")
    table.add_column("energy J", justify="right")
    table.add_column("active J", justify="right")
    table.add_column("+- J", justify="right")
    table.add_column("tokens", justify="right")
    table.add_column("J/token", justify="right")
    table.add_column("source")
    table.add_column("status")

    def add(st: StageReport, name: str) -> None:
        row: list[str | Text] = [name, f"{st.seconds:.2f}"]
        if per_device:
            row += [_j(st.energy_j.get(d, 0.0)) for d in devices]
        row += [
            _j(st.energy_j["total"]), _j(st.active_energy_j), _j(st.uncertainty_j),
            f"{st.tokens:,}" if st.tokens else "",
            f"{st.j_per_token:.4g}" if st.j_per_token is not None else "",
            _source_text(st), _status_text(st.status),
        ]
        table.add_row(*row)

    rows = [(st.name, st) for st in report.stages] if windows else \
        merge_windows(report.stages)
    for label, st in rows:
        add(st, label)
    if report.upstream:
        table.add_section()
        for st in report.upstream:
            add(st, f"{st.name} (upstream {str(st.run_id)[:8]})")
    return table


def totals_table(report: Report) -> Table:
    """Run totals: energy, unattributed, by side, upstream, carbon, cost."""
    t = report.totals
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column()
    table.add_row("run energy", f"{_j(t.energy_j)} J",
                  f"{t.kwh:.4g} kWh over {t.seconds:.1f} s (+-{_j(t.uncertainty_j)} J)")
    table.add_row("in stages", f"{_j(t.stages_j)} J", "")
    share = f"{t.unattributed_j / t.energy_j:.1%} of the run" if t.energy_j > 0 else ""
    table.add_row("unattributed", f"{_j(t.unattributed_j)} J", share)
    overhead = t.meter_overhead_j or 0.0
    for side, joules in t.by_side.items():
        table.add_row(f"  {side}", f"{_j(joules)} J",
                      f"{_j(overhead)} J of it the meter's overhead" if side == "setup"
                      and overhead else "")
    if len(t.by_device) > 1:
        for dev, joules in t.by_device.items():
            table.add_row(f"  {dev}", f"{_j(joules)} J", "")
    if overhead:  # the meter's own idle measurement: not the workload's (accounting.md)
        table.add_row("meter overhead", f"{_j(overhead)} J",
                      f"setup.idle ({t.meter_overhead_s:.1f} s): not counted in energy per "
                      "student")
        workload = t.workload_j if t.workload_j is not None else t.energy_j - overhead
        table.add_row("workload", f"{_j(workload)} J", "the run less the meter's overhead")
    if report.upstream:
        table.add_row("upstream", f"{_j(t.upstream_j)} J", "shared teacher work, counted in full")
        table.add_row("with upstream", f"{_j(t.with_upstream_j)} J", "")
    c = report.carbon
    where = c.country or "user grid"
    co2 = f"{_small(c.co2e_g)} g"
    extra = f"{c.grid_gco2_per_kwh:.0f} gCO2e/kWh ({where}), PUE {c.pue:.2f}"
    if c.co2e_g_with_upstream is not None:
        extra += f"; {_small(c.co2e_g_with_upstream)} g with upstream"
    table.add_row("CO2e", co2, extra)
    k = report.cost
    if k.total is None:
        table.add_row("cost", "-", "no price given (--price-per-kwh)")
    else:
        extra = f"at {k.price_per_kwh:g} {k.currency}/kWh, PUE {c.pue:.2f}"
        if k.total_with_upstream is not None:
            extra += f"; {_small(k.total_with_upstream)} with upstream"
        table.add_row("cost", f"{_small(k.total)} {k.currency}", extra)
    if report.quality is not None:
        q = report.quality
        table.add_row("quality", f"{q.value:.4g}", f"{q.metric} (n={q.n})")
    return table


# Columns of the stage table dropped first when it does not fit (the per-device figures
# are in the totals below it), before the table is stacked.
def _optional_columns(report: Report) -> list[str]:
    return [f"{d} J" for d in report.devices] + ["active J"]


def _fold_notes(notes: list[tuple[str, str]], repeated: set[str]) -> list[tuple[str, str]]:
    """For a stage with several windows: its first note and a count of the rest."""
    out: list[tuple[str, str]] = []
    folded: dict[str, int] = {}
    for name, note in notes:
        if name not in repeated:
            out.append((name, note))
        elif name in folded:
            folded[name] += 1
        else:
            folded[name] = 0
            out.append((name, note))
    return [(name, note + (f" (and {folded[name]} more notes on its windows: --windows)"
                           if folded.get(name) else "")) for name, note in out]


def print_report(report: Report, console: Console | None = None, *,
                 windows: bool = False) -> None:
    """Print the stage table, totals, stage notes and warnings, readable at any width.
    Repeated windows of a stage are one row, and their notes one line with a count,
    unless ``windows``."""
    console = console or get_console()
    console.print(fit(stage_table(report, windows=windows), _optional_columns(report)))
    console.print(fit(totals_table(report)))
    if report.estimated:
        console.print(Text("* estimated: some energy comes from a model (utilisation x TDP), "
                           "not a counter; see the +- column", style="yellow"))
    notes = [(st.name, n) for st in [*report.stages, *report.upstream] for n in st.notes]
    if not windows:
        names = [st.name for st in report.stages]
        notes = _fold_notes(notes, {n for n in names if names.count(n) > 1})
    if notes:
        console.print(Text("notes", style="bold"))
        for name, note in notes:
            console.print(Text.assemble("  ", plain_text(name, limit=MAX_CELL), ": ",
                                        plain_text(note)))
    if report.flags:  # impossible figures and missing upstream work (accounting.md)
        console.print(Text(f"flags ({len(report.flags)})", style="bold red"))
        for f in report.flags:
            console.print(Text(f"  {f.kind}: {printable(f.message)}", style="red"))
    if report.warnings:
        console.print(Text(f"warnings ({len(report.warnings)})", style="bold yellow"))
        for w in report.warnings:
            console.print(Text(f"  {printable(w)}", style="yellow"))
    if report.status != "ok":
        console.print(_status_text(f"status: {printable(report.status)}"))
