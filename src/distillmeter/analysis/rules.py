"""Plain-words rules that the measured frontier supports, each with its numbers."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from distillmeter.analysis.configs import ConfigStats

if TYPE_CHECKING:
    from distillmeter.analysis.summary import Analysis


def fmt_j(j: float | None) -> str:
    """Energy in readable units: J, kJ, MJ (and kWh beyond 10 MJ)."""
    if j is None or not math.isfinite(j):
        return "n/a"
    a = abs(j)
    if a >= 1e7:
        return f"{j / 3.6e6:.3g} kWh"
    if a >= 1e6:
        return f"{j / 1e6:.3g} MJ"
    if a >= 1e3:
        return f"{j / 1e3:.3g} kJ"
    return f"{j:.3g} J"


def fmt_j_pm(mean: float | None, half: float | None) -> str:
    """Energy ``mean ± half`` in the mean's unit: ``7.03 ± 0.67 kJ``."""
    if mean is None or not math.isfinite(mean):
        return "n/a"
    text = fmt_j(mean)
    if half is None:
        return text
    value, unit = text.split(" ", 1)
    scale = {"J": 1.0, "kJ": 1e3, "MJ": 1e6, "kWh": 3.6e6}[unit]
    return f"{value} ± {half / scale:.2g} {unit}"


def fmt_q(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def fmt_pm(mean: float | None, half: float | None, fmt=fmt_q) -> str:
    """``mean ± half`` (the half-width to 2 significant digits), or the mean alone when
    there is no interval."""
    if mean is None:
        return "n/a"
    return fmt(mean) if half is None else f"{fmt(mean)} ± {half:.2g}"


def _label(c: ConfigStats) -> str:
    return c.label or c.config


def rules_for_group(a: Analysis, group_id: str) -> list[str]:
    """The rules for one group of comparable runs, most useful first."""
    cs = [c for c in a.configs if c.group == group_id]
    if not cs:
        return ["no student configurations in this group"]
    out: list[str] = []
    by_id = {c.config: c for c in cs}
    res = a.pareto[group_id]
    amort = "" if a.amortize == 1 else f" (teacher-side work shared by {a.amortize:g} students)"
    front = [by_id[i] for i in res.frontier]
    if front:
        steps = " -> ".join(
            f"{_label(c)} ({fmt_q(c.quality.mean)} {c.metric or 'quality'}, "
            f"{fmt_j(c.energy_j.mean)})" for c in front)
        out.append(f"measured frontier, cheapest first{amort}: {steps}")
        for lo, hi in zip(front, front[1:], strict=False):
            de = hi.energy_j.mean - lo.energy_j.mean
            dq = hi.quality.mean - lo.quality.mean
            out.append(f"going from {_label(lo)} to {_label(hi)} costs {fmt_j(de)} more per "
                       f"student (+{100 * de / lo.energy_j.mean:.0f}%) for "
                       f"{dq:+.3g} {hi.metric or 'quality'}")
    for c in cs:
        t = c.side_mean("teacher")
        total = c.energy_j.mean or 0.0
        if t > 0 and total > 0:
            out.append(f"teacher-side energy is {100 * t / total:.0f}% of the {_label(c)} "
                       f"total ({fmt_j(t)} of {fmt_j(total)} per student{amort})")
    be = a.break_even.get(group_id, {})
    base = by_id.get(be.get("baseline") or "")
    for e in be.get("configs", []):
        c = by_id[e["config"]]
        if e.get("students_needed") and base is not None:
            n = e["students_needed"]
            per = e["marginal_j"] + e["teacher_side_j"] / n
            out.append(f"caching the teacher-side work once and training {n} students brings "
                       f"{_label(c)} below the baseline's energy per student ({fmt_j(per)} vs "
                       f"{fmt_j(be['baseline_j_per_student'])}; N* = {e['n_star']:.3g})")
        elif e.get("statement") and "saves no energy" in e["statement"]:
            gain = ""
            if base is not None and c.quality.mean is not None and base.quality.mean is not None:
                gain = (f"; it buys {c.quality.mean - base.quality.mean:+.3g} "
                        f"{c.metric or 'quality'} over {_label(base)}")
            out.append(e["statement"] + gain)
    for c in cs:
        if c.dominated_by:
            d = by_id[c.dominated_by]
            saving = 100 * (1 - d.energy_j.mean / c.energy_j.mean) if c.energy_j.mean else 0
            out.append(f"{_label(c)} is dominated by {_label(d)}: {_label(d)} uses "
                       f"{saving:.0f}% less energy for {d.quality.mean - c.quality.mean:+.3g} "
                       f"{c.metric or 'quality'}")
    pairs = set()
    for c in cs:
        for f in c.not_separable_from:
            pair = tuple(sorted((_label(c), _label(by_id[f]))))
            if pair in pairs:
                continue
            pairs.add(pair)
            out.append(f"{pair[0]} and {pair[1]} cannot be told apart with these seeds: their "
                       "95% intervals overlap on both energy and quality")
    for e in be.get("configs", []):
        if e.get("payback_tokens"):
            out.append(f"{_label(by_id[e['config']])}: {e['payback']}")
    sens = a.sensitivity or {}
    mx = sens.get("max") or {}
    moves = [(k, v["max_rel_change"]) for k, v in mx.items()
             if v.get("max_rel_change") is not None]
    if moves:
        k, v = max(moves, key=lambda kv: kv[1])
        verdict = "robust" if v < 0.05 else "sensitive: read stage splits with care"
        out.append(f"moving every stage boundary by {100 * sens.get('shift', 0.05):.0f}% of "
                   f"its length changes the {k} total by at most {100 * v:.1f}% (run "
                   f"{mx[k].get('run_dir') or mx[k]['run_id']}; {verdict})")
    owners = {_label(c) for c in cs} | {f"teacher run {t.run_dir or t.run_id}"
                                       for t in a.grouping.teacher_runs
                                       if t.run_id in _group_teachers(a, group_id)}
    eff = [r for r in a.efficiency if r.get("x_floor") and r.get("owner") in owners]
    if eff:
        worst = max(eff, key=lambda r: r["x_floor"])
        out.append(f"{worst['stage']} ({worst['owner']}) runs at {worst['x_floor']:.3g}x its "
                   f"floor on {worst.get('floor_device') or worst.get('hardware')} "
                   f"({worst['j_per_token']:.3g} J/token vs {worst['floor_j_per_token']:.3g})"
                   ": the stage furthest from its intrinsic cost")
    return out


def _group_teachers(a: Analysis, group_id: str) -> list[str]:
    for g in a.grouping.groups:
        if g.id == group_id:
            return g.teacher_runs
    return []
