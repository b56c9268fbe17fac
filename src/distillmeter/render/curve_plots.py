"""Each method's quality-energy curve along the student's budget: the plot and table of
report.html and the terminal table (``analysis/curves.py`` makes the curves).

The plot draws every method's points joined in budget order, with 95% error bars on both
axes (energy: the thin bar is the absolute interval, the thick one the interval points
are compared on within the group), the frontier across every point (dashed), and, when
the teacher's work is shared (``--amortize N``), the same curves with it in full as faint
dotted lines, so both readings of the energy show.
"""

from __future__ import annotations

from html import escape

from rich import box
from rich.console import Console
from rich.table import Table

from distillmeter.analysis.curves import Curve, CurvePoint, curves_of_group
from distillmeter.analysis.quality import is_proportion
from distillmeter.analysis.result import Analysis
from distillmeter.analysis.rules import fmt_ci, fmt_j, fmt_j_pm
from distillmeter.analysis.stats import SeedStats
from distillmeter.render import svg
from distillmeter.tables import fit
from distillmeter.terminal import printable

K = 1e-3  # the plot's energies in kJ


def _bars(s: SeedStats) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    ci = None if s.lo is None or s.hi is None else (s.lo * K, s.hi * K)
    cmp = s.comparison if s.parts else None
    return ci, None if cmp is None else (cmp[0] * K, cmp[1] * K)


def _point_marks(f: svg._Frame, p: CurvePoint, colour: str, e: SeedStats) -> list[str]:
    c = p.config
    cx, cy = f.x((e.mean or 0.0) * K), f.y(c.quality.mean or 0.0)
    ci, cmp = _bars(e)
    out = []
    if ci is not None:
        out.append(f'<line class="ci-abs" x1="{f.x(ci[0]):.1f}" y1="{cy:.1f}" '
                   f'x2="{f.x(ci[1]):.1f}" y2="{cy:.1f}" stroke="{colour}" '
                   'stroke-opacity="0.55"/>')
    if cmp is not None:
        out.append(f'<line class="ci-cmp" x1="{f.x(cmp[0]):.1f}" y1="{cy:.1f}" '
                   f'x2="{f.x(cmp[1]):.1f}" y2="{cy:.1f}" stroke="{colour}" '
                   'stroke-width="4"/>')
    if c.quality.lo is not None and c.quality.hi is not None:
        out.append(f'<line class="ci-q" x1="{cx:.1f}" y1="{f.y(c.quality.lo):.1f}" '
                   f'x2="{cx:.1f}" y2="{f.y(c.quality.hi):.1f}" stroke="{colour}"/>')
    shape = (f'<rect x="{cx - 5:.1f}" y="{cy - 5:.1f}" width="10" height="10" '
             f'fill="{colour}" stroke="#222"/>' if c.pareto else
             f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="#fff" stroke="{colour}" '
             'stroke-width="2"/>')
    out.append(f'<g class="point"><title>{escape(p.label)}</title>{shape}</g>')
    return out


def curves_svg(cvs: list[Curve], *, xlabel: str, ylabel: str, title: str,
               y_bounds: tuple[float, float] | None, show_full: bool) -> str:
    """Every curve of a group on one energy-quality plane (energies in J; see the module
    docstring for what is drawn)."""
    sums = [p.energy_j for cv in cvs for p in cv.points]
    if show_full:
        sums += [p.energy_full_j for cv in cvs for p in cv.points]
    xs = [v * K for s in sums for v in (s.mean, s.lo, s.hi) if v is not None]
    qs = [p.config.quality for cv in cvs for p in cv.points]
    ys = [v for s in qs for v in (s.mean, s.lo, s.hi) if v is not None]
    x0, x1 = svg._range(xs)
    y0, y1 = svg._range(ys)
    if y_bounds is not None:
        y0, y1 = max(y0, y_bounds[0]), min(y1, y_bounds[1])
        if y1 <= y0:
            y0, y1 = y_bounds
    x0 = max(x0, 0.0) if min(xs or [0]) >= 0 else x0
    f = svg._Frame(x0, x1, y0, y1, width=760, height=460, top=20 + 16 * len(cvs))
    out = [svg._svg_open(f.width, f.height, title)]
    out += svg._axes(f, xlabel, ylabel, svg.nice_ticks(x0, x1), svg.nice_ticks(y0, y1))
    front = sorted((p for cv in cvs for p in cv.points if p.config.pareto),
                   key=lambda p: p.energy_j.mean or 0.0)
    if len(front) > 1:
        path = " ".join(f"{f.x((p.energy_j.mean or 0.0) * K):.1f},"
                        f"{f.y(p.config.quality.mean or 0.0):.1f}" for p in front)
        out.append(f'<polyline class="frontier" points="{path}" fill="none" '
                   'stroke="#c44a3a" stroke-width="2.5" stroke-dasharray="6 3"/>')
    placed: list[tuple[float, float, float, float]] = []
    for i, cv in enumerate(cvs):
        colour = svg.PALETTE[i % len(svg.PALETTE)]
        pts = [p for p in cv.points if p.energy_j.mean is not None
               and p.config.quality.mean is not None]
        if show_full:
            line = " ".join(f"{f.x((p.energy_full_j.mean or 0.0) * K):.1f},"
                            f"{f.y(p.config.quality.mean or 0.0):.1f}" for p in pts)
            out.append(f'<polyline class="curve-full" points="{line}" fill="none" '
                       f'stroke="{colour}" stroke-opacity="0.4" stroke-dasharray="2 3"/>')
            out += [f'<circle cx="{f.x((p.energy_full_j.mean or 0.0) * K):.1f}" '
                    f'cy="{f.y(p.config.quality.mean or 0.0):.1f}" r="2.5" fill="{colour}" '
                    'fill-opacity="0.4"/>' for p in pts]
        line = " ".join(f"{f.x((p.energy_j.mean or 0.0) * K):.1f},"
                        f"{f.y(p.config.quality.mean or 0.0):.1f}" for p in pts)
        out.append(f'<polyline class="curve" points="{line}" fill="none" '
                   f'stroke="{colour}" stroke-width="1.5"/>')
        for p in pts:
            out += _point_marks(f, p, colour, p.energy_j)
            cx, cy = f.x((p.energy_j.mean or 0.0) * K), f.y(p.config.quality.mean or 0.0)
            text = p.label.rsplit("@", 1)[-1]
            lx, ly, anchor = svg._label_spot(cx, cy, text, placed)
            out.append(f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="{anchor}" '
                       f'font-family="sans-serif" font-size="11" fill="{colour}">'
                       f'{escape(text)}</text>')
        ly = 16 + 16 * i
        out.append(f'<g class="legend" font-family="sans-serif" font-size="12">'
                   f'<line x1="{f.left + 8}" y1="{ly - 4}" x2="{f.left + 30}" y2="{ly - 4}" '
                   f'stroke="{colour}" stroke-width="2"/><text x="{f.left + 36}" y="{ly}" '
                   f'fill="{colour}">{escape(cv.method)}</text></g>')
    out.append("</svg>")
    return "".join(out)


def _fmt_e(s: SeedStats, estimated: bool) -> str:
    return ("~" if estimated else "") + fmt_j_pm(s.mean, s.half_width)


def curve_rows(a: Analysis, cvs: list[Curve]) -> tuple[list[str], list[list[str]]]:
    """The curve table: one row a point, a method's points together by budget."""
    shared = a.amortize != 1
    head = ["point", "n", "energy/student", *([f"/{a.amortize:g}"] if shared else []),
            "quality", "Q", "front"]
    rows = []
    for cv in cvs:
        for p in cv.points:
            c = p.config
            row = [p.label, str(c.n_seeds), _fmt_e(p.energy_full_j, c.estimated)]
            if shared:
                row.append(("~" if c.estimated else "") + fmt_j(p.energy_j.mean))
            q = "n/a" if c.q.mean is None else f"{c.q.mean:.2g}"
            row += [fmt_ci(c.quality), q, "yes" if c.pareto else "no"]
            rows.append(row)
    return head, rows


def print_curves(a: Analysis, group_id: str, console: Console) -> None:
    """The group's curves as a table (nothing without curves), fitted to the terminal."""
    cvs = curves_of_group(a, group_id)
    if not cvs:
        return
    head, rows = curve_rows(a, cvs)
    shared = f"; /{a.amortize:g}: shared by {a.amortize:g}" if a.amortize != 1 else ""
    table = Table(title=printable(f"curves along the student's budget, group {group_id} "
                                  f"(teacher's work in full{shared})"),
                  title_justify="left", box=box.SIMPLE_HEAD)
    for i, h in enumerate(head):
        table.add_column(h, justify="left" if i == 0 else "right", no_wrap=i > 0)
    for r in rows:
        table.add_row(*[printable(x) for x in r])
    console.print(fit(table, optional=["n", "front"]))


def curves_html(a: Analysis, group_id: str) -> str:
    """The group's curves as the report page's figure and table ("" without curves)."""
    cvs = curves_of_group(a, group_id)
    if not cvs:
        return ""
    metric = next((p.config.metric for cv in cvs for p in cv.points if p.config.metric),
                  "quality")
    shared = a.amortize != 1
    amort = f", teacher side / {a.amortize:g}" if shared else ""
    bounded = is_proportion(metric, [p.config.quality.mean for cv in cvs for p in cv.points])
    body = curves_svg(cvs, xlabel=f"energy per student (kJ{amort})",
                      ylabel=f"{metric} (higher is better)",
                      title=f"curves along the student's budget, group {group_id}",
                      y_bounds=(0.0, 1.0) if bounded else None, show_full=shared)
    head, rows = curve_rows(a, cvs)
    head = ["point", "seeds", "energy per student (teacher's work in full)",
            *([f"teacher side / {a.amortize:g}"] if shared else []), "quality (95% CI)",
            "Q (student/teacher)", "on the frontier"]
    cells = "".join(f"<th{' class=l' if i == 0 else ''}>{escape(h)}</th>"
                    for i, h in enumerate(head))
    num, left = ' class="num"', ' class="l num"'
    trs = "".join("<tr>" + "".join(f"<td{left if i == 0 else num}>{escape(x)}</td>"
                                   for i, x in enumerate(r)) + "</tr>" for r in rows)
    full = (" Faint dotted lines: the same curves with the teacher's work counted in full "
            "per student." if shared else "")
    return (f'<h3>Curves along the student\'s token budget</h3><div class="plots"><figure>'
            f'{body}<figcaption>Each method\'s points joined by increasing token budget '
            "(labels: the budget); means with 95% intervals over the seeds on both axes "
            "(thin energy bars: the absolute interval, thick: the interval points are "
            "compared on within this group). Filled squares are on the frontier across "
            f"every point (dashed red).{full}</figcaption></figure>"
            f'<div class="scroll"><table class="curves"><thead><tr>{cells}</tr></thead>'
            f"<tbody>{trs}</tbody></table></div></div>")
