"""The HTML report: one self-contained page (inline CSS and SVG, no scripts, no network)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from distillmeter.analysis.compare import dominance_separable
from distillmeter.analysis.grouping import ConfigStats
from distillmeter.analysis.quality import is_proportion
from distillmeter.analysis.result import Analysis
from distillmeter.analysis.rules import fmt_ci, fmt_j, fmt_j_pm, fmt_pm
from distillmeter.analysis.runs import SIDE_ORDER
from distillmeter.render import svg
from distillmeter.render.curve_plots import curves_html
from distillmeter.render.verdict_text import verdict_html

Series = dict[str, tuple[list[float], list[float]]]

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;
color:#222;max-width:1200px}
.verdict{background:#eef5fb;border-left:5px solid #2b7bb9;padding:4px 16px 8px;margin:12px 0}
.verdict h2{margin-top:8px;border:none}.verdict li{margin:6px 0;line-height:1.4}
.small{font-size:12px;color:#555}.scroll{overflow-x:auto;max-width:100%}
svg.plot{max-width:100%;height:auto}
h1{font-size:1.5em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
h3{font-size:1.05em}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}
.note{background:#fff8e1;border-left:4px solid #e0b000;padding:6px 10px;margin:6px 0}
.skip{background:#fdecea;border-left:4px solid #c44a3a;padding:6px 10px;margin:6px 0}
.est{color:#b00;font-weight:bold}.front{font-weight:bold;color:#2b7bb9}
.plots{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
figure{margin:0;display:table}figcaption{font-size:12px;color:#555;display:table-caption;
caption-side:bottom;padding-top:4px}
td.num,code{white-space:nowrap}
ul.rules li{margin:4px 0}
"""


def _empty(v: Any) -> bool:
    return v is None or v == ""


def _table_or_note(headers: Sequence[str], rows: Sequence[Sequence[Any]], left: int,
                   why: str) -> str:
    """A table without its columns that hold only dashes; one line saying ``why`` when no
    column past the first ``left`` holds anything."""
    keep = [i for i in range(len(headers))
            if i < left or any(not _empty(r[i]) for r in rows)]
    if not rows or len(keep) <= left:
        return f'<p class="note">{escape(why)}</p>'
    return _table([headers[i] for i in keep], [[r[i] for i in keep] for r in rows], left)


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1,
           cls: str = "") -> str:
    """An HTML table; the first ``left`` columns left-aligned. Cells are escaped text."""
    out = [f'<div class="scroll"><table class="{escape(cls)}"><thead><tr>']
    out += [f'<th class="{"l" if i < left else ""}">{escape(h)}</th>'
            for i, h in enumerate(headers)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            # prose cells read better left-aligned, numbers right-aligned
            is_text = isinstance(cell, str) and len(cell) > 24
            cls = "l" if i < left or is_text else "num"
            out.append(f'<td class="{cls}">{escape(_cell(cell))}</td>')
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _cell(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _half(s: Any) -> float | None:
    return s.half_width


def _pareto_mark(c: ConfigStats, names: dict[str, str],
                 by_id: dict[str, ConfigStats] | None = None) -> str:
    d = (by_id or {}).get(c.dominated_by or "")
    if c.pareto:
        mark = "frontier"
    elif d is not None and not dominance_separable(d, c):
        # on the means only: no claim of dominance the intervals do not support
        mark = "" if d.config in c.not_separable_from else \
            f"below the frontier on the means only (vs {names.get(d.config, d.config)})"
    elif c.dominated_by:
        mark = f"dominated by {names.get(c.dominated_by, c.dominated_by)}"
    elif c.quality.mean is None:
        mark = "no quality"
    else:
        mark = ""
    if c.not_separable_from:
        mark += ("; " if mark else "") + "not separable from " + ", ".join(
            names.get(x, x) for x in c.not_separable_from)
    return mark


def config_table(cs: list[ConfigStats]) -> str:
    """The configurations of one group with their statistics."""
    names = {c.config: c.label or c.config for c in cs}
    by_id = {c.config: c for c in cs}
    headers = ["configuration", "seeds", "energy per student (± 95%)",
               "± within group", "above idle", "teacher side", "student side",
               "eval", "CO2e (g)", "quality (95% CI)", "Q (student/teacher)", "Pareto"]
    rows = []
    for c in cs:
        est = "~" if c.estimated else ""
        label = (c.label or c.config) + (" *" if c.estimated else "") + (
            " (INCOMPLETE)" if c.incomplete else "")
        low = "≥ " if c.incomplete else ""  # its teacher's energy is missing: a lower bound
        cmp = c.energy_j.comparison_half_width
        active = c.active_j
        rows.append([
            label, c.n_seeds, low + est + fmt_j_pm(c.energy_j.mean, _half(c.energy_j)),
            None if cmp is None else f"± {fmt_j(cmp)}",
            None if active is None else low + est + fmt_j_pm(active.mean, _half(active)),
            "missing" if c.incomplete else est + fmt_j(c.side_mean("teacher")),
            est + fmt_j(c.side_mean("student")),
            est + fmt_j(c.side_mean("eval")), fmt_pm(c.co2e_g.mean, _half(c.co2e_g)),
            fmt_ci(c.quality), fmt_ci(c.q), _pareto_mark(c, names, by_id)])
    methods = sorted({c.quality.method for c in cs if c.quality.lo is not None})
    ids = "; ".join(f"{c.label or c.config} = {c.config}" for c in cs
                    if (c.label or c.config) != c.config)
    note = (f'<p class="small">Config ids (summary.json): {escape(ids)}.</p>' if ids else "")
    note += ('<p class="small">Energy ± : the 95% interval of the mean over seeds with the '
            'runs\' own measurement uncertainty (analysis.md, "Statistics"). "± within '
            'group" leaves out the error every configuration measured on this machine '
            'shares (an estimate\'s idle part); configurations here are compared on it. '
            '"Above idle" subtracts the idle baseline and carries its error. Quality '
            f'interval: {escape("; ".join(methods) or "none (one seed)")}.</p>')
    if any(c.estimated for c in cs):
        note += ('<p class="note">* ~: some energy in this configuration is estimated (no '
                 'counter or sensor); see the sources below.</p>')
    for c in cs:
        if c.incomplete:
            note += (f'<p class="skip">{escape(c.label or c.config)} is INCOMPLETE: '
                     f'{escape("; ".join(c.incomplete))}. Its energies are lower bounds '
                     '(≥), and it is kept off the frontier, the rules and the break-even.</p>')
    overhead = [c.meter_overhead_j.mean for c in cs
                if c.meter_overhead_j is not None and c.meter_overhead_j.mean]
    if overhead:
        note += ('<p class="small">Meter overhead: the meter measured its idle baseline in a '
                 'setup.idle stage of each run (mean '
                 f'{escape(fmt_j(sum(overhead) / len(overhead)))} a run); that is the '
                 "meter's own cost, left out of every figure above (per run in the sources "
                 'table).</p>')
    return _table(headers, rows, left=1) + note


def _pareto_point(c: ConfigStats) -> svg.ParetoPoint:
    e = c.energy_j
    cmp = e.comparison if e.parts else None
    k = 1e-3
    return svg.ParetoPoint(
        c.label or c.config, e.mean * k, c.quality.mean,
        None if e.lo is None else e.lo * k, None if e.hi is None else e.hi * k,
        c.quality.lo, c.quality.hi, c.pareto,
        None if cmp is None else cmp[0] * k, None if cmp is None else cmp[1] * k)


def _pareto_plot(a: Analysis, gid: str, cs: list[ConfigStats]) -> str:
    pts = [_pareto_point(c) for c in cs  # an incomplete one's energy is only a bound
           if c.energy_j.mean is not None and c.quality.mean is not None and not c.incomplete]
    if not pts:
        return '<p class="note">No configuration reports a quality: no Pareto plot.</p>'
    metric = next((c.metric for c in cs if c.metric), "quality")
    amort = "" if a.amortize == 1 else f", teacher side / {a.amortize:g}"
    bounded = is_proportion(metric, [c.quality.mean for c in cs])
    body = svg.pareto_svg(pts, xlabel=f"energy per student (kJ{amort})",
                          ylabel=f"{metric} (higher is better)",
                          title=f"Pareto frontier, group {gid}",
                          y_bounds=(0.0, 1.0) if bounded else None)
    return (f"<figure>{body}<figcaption>Means with 95% intervals: thin energy bars are the "
            "absolute interval, thick ones the interval configurations are compared on "
            "within this group; quality bars "
            + ("stay inside the metric's range [0, 1]" if bounded else "are t-intervals")
            + ". Filled squares are on the frontier (dashed). Lower energy and higher "
            "quality are better.</figcaption></figure>")


def _bar_label(c: ConfigStats) -> str:
    return (c.label or c.config) + (" (incomplete)" if c.incomplete else "")


def _side_bars(cs: list[ConfigStats]) -> str:
    bars = [(_bar_label(c), [(s, c.side_mean(s) / 1e3) for s in SIDE_ORDER]) for c in cs]
    body = svg.stacked_bars_svg(bars, ylabel="energy per student (kJ)",
                                colours=svg.SIDE_COLOURS, title="energy by side")
    return f"<figure>{body}<figcaption>Mean energy by side per configuration.</figcaption>" \
           "</figure>"


def stage_colours(names: Iterable[str]) -> dict[str, str]:
    """A colour per stage: its side's hue, lighter for each further stage of that side."""
    out: dict[str, str] = {"unattributed": svg.SIDE_COLOURS["unattributed"]}
    seen: dict[str, int] = {}
    for name in sorted(names):
        side = name.split(".", 1)[0]
        k = seen.get(side, 0)
        seen[side] = k + 1
        out[name] = svg.shade(svg.SIDE_COLOURS.get(side, "#888888"), 0.28 * k)
    return out


def _stage_bars(cs: list[ConfigStats]) -> str:
    bars = [(_bar_label(c), [(n, (s.mean or 0.0) / 1e3)
                                   for n, s in sorted(c.stage_j.items())]
             + [("unattributed", c.side_mean("unattributed") / 1e3)]) for c in cs]
    colours = stage_colours({n for c in cs for n in c.stage_j})
    body = svg.stacked_bars_svg(bars, ylabel="energy per student (kJ)", colours=colours,
                                title="energy by stage")
    return f"<figure>{body}<figcaption>Mean energy by stage (upstream stages included)." \
           "</figcaption></figure>"


def _break_even(be: dict[str, Any], names: dict[str, str]) -> str:
    rows = []
    below = [e for e in be.get("configs", []) if not e.get("candidate")]
    if below and len(below) == len(be.get("configs", [])):
        qs = ", ".join(f"{names.get(e['config'], e['config'])} (Q "
                       f"{'unknown' if e.get('q') is None else format(e['q'], '.3g')})"
                       for e in below)
        return (f'<p class="note">No break-even or payback stated: no student here reaches '
                f'Q = {escape(format(be.get("min_q", 0.9), "g"))} ({escape(qs)}), so none is '
                "a candidate to serve in the teacher's place (<code>--min-q</code> sets the "
                "threshold)."
                "</p>")
    for e in be.get("configs", []):
        rows.append([names.get(e["config"], e["config"]), fmt_j(e.get("teacher_side_j")),
                     fmt_j(e.get("marginal_j")),
                     fmt_j(e.get("saved_per_student_j")) if "saved_per_student_j" in e else None,
                     e.get("n_star"), e.get("statement") or "",
                     e.get("payback_tokens"),
                     "" if e.get("payback") == e.get("statement") else e.get("payback") or ""])
    base = be.get("baseline")
    head = (f"<p>Baseline: {escape(names.get(base, base) if base else 'none found')} "
            f"({escape(fmt_j(be.get('baseline_j_per_student')))} per student).</p>")
    return head + _table_or_note(
        ["config", "shared teacher side", "per student without it", "saved per student",
         "N*", "break-even", "payback tokens", "served-token payback"], rows, 1,
        "no break-even figures in this group")


def _reasons(rows: list[dict[str, Any]]) -> str:
    """Why no stage has a floor ratio, each reason with the stages it holds for (named
    when they are few) so that a reason true of two setup stages does not read as true
    of all of them."""
    stages: dict[str, set[str]] = {}
    for r in rows:
        stages.setdefault(r.get("note") or "no floor", set()).add(str(r.get("stage")))
    return "; ".join(f"{note}: {', '.join(sorted(names))}" if len(names) <= 8
                     else f"{note}: {len(names)} stage kinds"
                     for note, names in sorted(stages.items()))


def _efficiency(rows: list[dict[str, Any]]) -> str:
    if not any(r.get("x_floor") for r in rows):
        why = _reasons(rows) or "no stages"
        return (f'<p class="note">No stage can be held against a hardware floor here '
                f'({escape(why)}). Each stage\'s J/token is in summary.json '
                '("efficiency").</p>')
    out = [[r["owner"], r["stage"], r.get("hardware"), r.get("params"), r.get("tokens"),
            r.get("j_per_token"), r.get("floor_j_per_token"),
            None if r.get("x_floor") is None else f"{r['x_floor']:.3g}x",
            r.get("basis"), r.get("note") or ""] for r in rows]
    return _table_or_note(["owner", "stage", "hardware", "params", "tokens", "J/token",
                           "floor J/token", "x floor", "floor basis", "note"], out, 3,
                          "no efficiency figures")


def _sensitivity(sens: dict[str, Any] | None, labels: dict[str, str]) -> str:
    if not sens:
        return '<p class="note">Sensitivity analysis not run.</p>'
    pct = lambda v: None if v is None else f"{100 * v:.2f}%"  # noqa: E731
    rows = [[r["run_dir"], labels.get(r["config"], r["config"]), pct(r.get("teacher")),
             pct(r.get("student")), pct(r.get("eval")), pct(r.get("total"))]
            for r in sens.get("runs", [])]
    mx = sens.get("max", {})
    rows.append(["largest", "", *(pct(mx.get(k, {}).get("max_rel_change"))
                                  for k in ("teacher", "student", "eval", "total"))])
    out = (f"<p>Each run re-accounted with every stage boundary moved by ±"
           f"{100 * sens.get('shift', 0.05):.0f}% of the stage's length; the largest relative "
           "change of each total:</p>")
    out += _table(["run", "config", "teacher side", "student side", "eval", "total"], rows, 2)
    for f in sens.get("failed", []):
        out += f'<p class="skip">{escape(f["run_dir"])}: not re-accounted: ' \
               f'{escape(f["reason"])}</p>'
    return out


def _sources(a: Analysis) -> str:
    rows = []
    for r in a.runs:
        rep = a.reports[r.run_id]
        srcs = ", ".join(f"{d}: {s}" + (" (ESTIMATED)" if s == "estimate" else "")
                         for d, s in sorted(rep.sources.items()))
        rows.append([r.run_dir or r.run_id, r.hardware, ", ".join(rep.devices), srcs or "—",
                     "yes" if rep.estimated else "no", rep.status,
                     "; ".join(f.message for f in rep.flags) or None,
                     fmt_j(r.meter_overhead_j) if r.meter_overhead_j else None,
                     len(rep.warnings)])
    return _table(["run", "hardware", "devices", "sources", "estimated", "status", "flags",
                   "meter overhead (not counted)", "warnings"], rows, left=4)


def _floors(floors: list[dict[str, Any]]) -> str:
    rows = [[f["name"], f["kind"], f["pj_per_flop"], f.get("pj_per_byte"), f["precision"],
             f["basis"], f["source"]] for f in floors]
    return _table(["device", "kind", "pJ/FLOP", "pJ/byte", "precision", "basis", "source"],
                  rows, left=2)


def _timelines(a: Analysis, timelines: dict[str, Series], limit: int) -> str:
    names = {r.run_id: c.label or c.config for c in a.configs for r in c.runs}
    out = ['<div class="plots">']
    shown = 0
    for r in a.runs:
        series = timelines.get(r.run_id)
        if not series:
            continue
        if shown >= limit:
            break
        rep = a.reports[r.run_id]
        stages = [(s.name, s.t_start, s.t_end, s.side) for s in rep.stages]
        label = r.run_dir or r.run_id
        plot = svg.timeline_svg(series, stages, title=label, idle_w=dict(rep.idle_power_w),
                                sources=dict(rep.sources))
        est = (" Estimated devices' power is the model's, not a reading."
               if any(s == "estimate" for s in rep.sources.values()) else "")
        out.append(f"<figure>{plot}"
                   f"<figcaption>{escape(label)} ({escape(names.get(r.run_id, 'teacher run'))})"
                   ": power per device (legend: device and how it is measured), stages "
                   "shaded by side; dashed: each device's idle baseline."
                   f"{escape(est)}</figcaption></figure>")
        shown += 1
    out.append("</div>")
    missing = [r.run_dir or r.run_id for r in a.runs if not timelines.get(r.run_id)]
    if missing:
        out.append(f'<p class="note">No trace to plot for: {escape(", ".join(missing))}</p>')
    hidden = sum(1 for r in a.runs if timelines.get(r.run_id)) - shown
    if hidden > 0:
        out.append(f'<p class="note">{hidden} more runs not plotted (limit {limit}).</p>')
    return "".join(out)


def _forecast_check(check: dict[str, Any] | None) -> str:
    """Forecast (made before the runs, ``estimate --save``) vs measured, per stage."""
    if not check or not check.get("rows"):
        return ""

    def ci(r: dict[str, Any]) -> str:
        return f"{fmt_j(r['ci95'][0])} - {fmt_j(r['ci95'][1])}"

    rows = [[r["run"], r["stage"], fmt_j(r["forecast_j"]), ci(r), fmt_j(r["measured_j"]),
             f"{r['error']:+.0%}", r["inside"]] for r in check["rows"]]
    s = check["summary"]
    return (f"<h2>Forecast vs measured</h2><p>The forecast made before these runs "
            f"({escape(str(check.get('forecast_file')))}, {escape(str(check.get('created')))})"
            "; forecast figures are predicted, not measured.</p>" +
            _table(["run", "stage", "forecast (predicted)", "95% interval", "measured",
                    "error", "inside"], rows, left=2) +
            f"<p>{s['inside']}/{s['n']} measured stages inside their forecast interval; "
            f"median |error| {s['median_abs_error']:.0%}.</p>")


def render_html(a: Analysis, *, timelines: dict[str, Series] | None = None,
                floors: list[dict[str, Any]] | None = None, runs_dir: str = "",
                max_timelines: int = 40, forecast_check: dict[str, Any] | None = None
                ) -> str:
    """The whole report page as a string (with forecast vs measured when given)."""
    p: list[str] = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
                    '<meta name="viewport" content="width=device-width, initial-scale=1">',
                    f"<title>distillmeter report: {escape(runs_dir)}</title>",
                    f"<style>{CSS}</style></head><body>",
                    f"<h1>distillmeter report: {escape(runs_dir)}</h1>", verdict_html(a)]
    opts = [f"{len(a.runs)} runs", f"{len(a.configs)} configurations",
            f"{len(a.grouping.teacher_runs)} teacher run(s)"]
    if a.amortize != 1:
        opts.append(f"teacher-side work divided among {a.amortize:g} students")
    if a.grid is not None:
        opts.append(f"grid {a.grid:g} gCO2e/kWh")
    if a.pue is not None:
        opts.append(f"PUE {a.pue:g}")
    p.append(f"<p>{escape('; '.join(opts))}.</p>")
    p += [f'<p class="note">{escape(n)}</p>' for n in a.notes]
    p += [f'<p class="skip">skipped {escape(s["run_dir"])}: {escape(s["reason"])}</p>'
          for s in a.skipped]
    for g in a.grouping.groups:
        cs = [c for c in a.configs if c.group == g.id]
        p.append(f"<h2>Group {escape(g.id)}: {escape(g.describe())}</h2>")
        if not cs:
            p.append('<p class="note">No student configurations in this group.</p>')
            continue
        p.append(curves_html(a, g.id))  # a budget axis: the curves first
        p.append(config_table(cs))
        p.append('<div class="plots">' + _pareto_plot(a, g.id, cs) + _side_bars(cs) +
                 _stage_bars(cs) + "</div>")
        p.append("<h3>Rules the measurements support</h3><ul class=\"rules\">")
        p += [f"<li>{escape(r)}</li>" for r in a.rules.get(g.id, [])]
        p.append("</ul><h3>Break-even</h3>")
        p.append(_break_even(a.break_even.get(g.id, {}),
                             {c.config: c.label or c.config for c in cs}))
    if a.grouping.teacher_runs:
        p.append("<h2>Teacher runs</h2>")
        p.append(_table(["run", "task", "hardware", "energy", "stages"],
                        [[t.run_dir or t.run_id, t.task, t.hardware, fmt_j(t.own_j),
                          ", ".join(sorted(t.stage_j))] for t in a.grouping.teacher_runs]))
    p.append(_forecast_check(forecast_check))
    p.append("<h2>Efficiency: energy per token against the hardware floor</h2>")
    p.append(_efficiency(a.efficiency))
    p.append("<h2>Sensitivity to stage boundaries</h2>")
    p.append(_sensitivity(a.sensitivity, {c.config: c.label for c in a.configs if c.label}))
    p.append("<h2>Power timelines</h2>")
    p.append(_timelines(a, timelines or {}, max_timelines))
    p.append("<h2>Hardware and measurement sources</h2>")
    p.append(_sources(a))
    if floors:
        p.append("<h3>Floors table</h3>" + _floors(floors))
    p.append("<p>Generated by distillmeter.</p></body></html>")
    return "".join(p)
