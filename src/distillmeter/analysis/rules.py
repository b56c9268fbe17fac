"""Plain-words rules that the measured frontier supports, each with its numbers.

Every rule that compares two configurations says whether the difference is separable
(``analysis/compare.py``: their 95% intervals do not overlap) and gives the range both
intervals allow; a difference that is not separable is said to be one that cannot be told
apart, never claimed. Energies that came from an estimate are marked with ``~``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from distillmeter.analysis.compare import (
    Difference,
    energy_difference,
    quality_difference,
)
from distillmeter.analysis.curves import comparable, curves_of_group
from distillmeter.analysis.grouping import ConfigStats

if TYPE_CHECKING:
    from distillmeter.analysis.result import Analysis


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
    return f"{value} ± {sig2(half / scale)} {unit}"


def sig2(x: float) -> str:
    """``x`` to 2 significant digits, without an exponent for everyday sizes: 150, 3.6,
    0.027."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    digits = 1 - math.floor(math.log10(abs(x)))
    r = round(x, digits)
    if abs(r) >= 1e6 or abs(r) < 1e-4:
        return f"{x:.2g}"
    return f"{r:.{max(digits, 0)}f}"


def fmt_ci(s: Any, fmt=None) -> str:
    """A summary as ``mean (lo-hi)`` (its interval need not be symmetric), or the mean
    alone without an interval. With an interval the mean gets 2 significant digits, as
    the bounds do, so that the cell fits a table 80 columns wide."""
    if s.mean is None:
        return "n/a"
    if s.lo is None or s.hi is None:
        return (fmt or fmt_q)(s.mean)
    mean = fmt(s.mean) if fmt else sig2(s.mean)
    return f"{mean} ({sig2(s.lo)}-{sig2(s.hi)})"


def fmt_q(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def fmt_e(c: ConfigStats, j: float | None) -> str:
    """An energy of configuration ``c``, marked ``~`` when it is (partly) an estimate."""
    return ("~" if c.estimated else "") + fmt_j(j)


def fmt_d(d: float | None, fmt=fmt_j) -> str:
    """A signed difference: ``+3.2 kJ``, ``-0.05``."""
    if d is None:
        return "n/a"
    return ("+" if d >= 0 else "-") + fmt(abs(d))


def fmt_pm(mean: float | None, half: float | None, fmt=fmt_q) -> str:
    """``mean ± half`` (the half-width to 2 significant digits), or the mean alone when
    there is no interval."""
    if mean is None:
        return "n/a"
    return fmt(mean) if half is None else f"{fmt(mean)} ± {sig2(half)}"


def _label(c: ConfigStats) -> str:
    return c.label or c.config


def _range(d: Difference, fmt=fmt_j) -> str:
    return "" if not d.known else f"range {fmt_d(d.lo, fmt)} to {fmt_d(d.hi, fmt)}"


def _sep(d: Difference, fmt=fmt_j) -> str:
    if not d.known:
        return "one seed: no interval"
    return ("separable" if d.separable else "cannot be told apart") + f", {_range(d, fmt)}"


def compare_sentence(a: ConfigStats, b: ConfigStats) -> str:
    """One sentence comparing two configurations of a group (``a`` the cheaper on the
    means), saying on each axis whether the difference is separable."""
    if (b.energy_j.mean or 0.0) < (a.energy_j.mean or 0.0):
        a, b = b, a
    de = energy_difference(b.energy_j, a.energy_j)
    dq = quality_difference(b.quality, a.quality)
    la, lb = _label(a), _label(b)
    metric = b.metric or a.metric or "quality"
    tilde = "~" if a.estimated or b.estimated else ""
    e_pct = f"{100 * de.mean / a.energy_j.mean:+.0f}%" if a.energy_j.mean else "n/a"
    e_vals = f"{fmt_e(b, b.energy_j.mean)} vs {fmt_e(a, a.energy_j.mean)}"
    q_vals = f"{fmt_q(b.quality.mean)} vs {fmt_q(a.quality.mean)}"
    if de.separable and dq.separable:
        if (dq.mean or 0.0) > 0:
            return (f"going from {la} to {lb} costs {tilde}{fmt_j(de.mean)} more per student "
                    f"({e_pct}, {e_vals}; {_sep(de)}) for {fmt_d(dq.mean, fmt_q)} {metric} "
                    f"({_sep(dq, fmt_q)})")
        return (f"{la} dominates {lb}: {lb} costs {tilde}{fmt_j(de.mean)} more per student "
                f"({e_pct}, {e_vals}; {_sep(de)}) for {fmt_d(dq.mean, fmt_q)} {metric} "
                f"({_sep(dq, fmt_q)})")
    if de.separable:
        return (f"{lb} costs {tilde}{fmt_j(de.mean)} more per student than {la} ({e_pct}, "
                f"{e_vals}; {_sep(de)}), and their {metric} cannot be told apart ({q_vals}; "
                f"{_range(dq, fmt_q)}): the extra energy buys no measurable {metric}")
    if dq.separable:
        better, worse = (lb, la) if (dq.mean or 0.0) > 0 else (la, lb)
        return (f"{better} gives {fmt_d(abs(dq.mean), fmt_q)} {metric} over {worse} "
                f"({q_vals}; {_sep(dq, fmt_q)}) at an energy per student that cannot be "
                f"told apart ({e_vals}; {_range(de)})")
    why = "one of them has one seed" if not (de.known and dq.known) else \
        "their 95% intervals overlap on both"
    # the figures in the order the sentence names the two
    return (f"{la} and {lb} cannot be told apart ({why}): energy per student "
            f"{fmt_e(a, a.energy_j.mean)} vs {fmt_e(b, b.energy_j.mean)}, {metric} "
            f"{fmt_q(a.quality.mean)} vs {fmt_q(b.quality.mean)}")


def _frontier_rules(front: list[ConfigStats], amort: str, said: set[tuple[str, str]],
                    cvs: list | None = None) -> list[str]:
    out: list[str] = []
    if front:
        steps = " -> ".join(
            f"{_label(c)} ({fmt_q(c.quality.mean)} {c.metric or 'quality'}, "
            f"{fmt_e(c, c.energy_j.mean)})" for c in front)
        out.append(f"measured frontier (on the means), cheapest first{amort}: {steps}")
        for lo, hi in zip(front, front[1:], strict=False):
            said.add(tuple(sorted((lo.config, hi.config))))
            if comparable(lo, hi, cvs or []):  # across curves the energy bands say it
                out.append(compare_sentence(lo, hi))
    return out


def _teacher_rules(cs: list[ConfigStats], amort: str) -> list[str]:
    out: list[str] = []
    for c in cs:
        t = c.side_mean("teacher")
        total = c.energy_j.mean or 0.0
        if t > 0 and total > 0:
            own = f"; done per student, not shareable: {', '.join(c.per_student_teacher_stages)}" \
                if c.per_student_teacher_stages else ""
            out.append(f"teacher-side energy is {100 * t / total:.0f}% of the {_label(c)} "
                       f"total ({fmt_e(c, t)} of {fmt_e(c, total)} per student{amort}{own})")
            if c.per_student_teacher_stages:
                out.append(per_student_teacher_sentence(c))
    return out


def _starting_student_rules(cs: list[ConfigStats]) -> list[str]:
    """A configuration whose student starts from another method's trained student
    (``starts_from`` in its labels): that training is counted in its total, in full."""
    out: list[str] = []
    for c in cs:
        start = next((r.labels.get("starts_from") for r in c.runs
                      if r.labels.get("starts_from")), None)
        if start is None:
            continue
        carried = sum(r.carried_j for r in c.runs) / len(c.runs)
        total = c.energy_j.mean or 0.0
        if carried > 0 and total > 0:
            out.append(f"{_label(c)} starts from {start}'s trained student (same seed and "
                       f"budget): that training, {fmt_e(c, carried)} per student "
                       f"({100 * carried / total:.0f}% of {fmt_e(c, total)}), is counted in "
                       f"full, never divided by --amortize")
    return out


def per_student_teacher_j(c: ConfigStats) -> float:
    """The mean energy of the teacher stages a student ran in its own run (on-policy's
    teacher.score): paid again by every student, never divided by --amortize."""
    return sum(c.stage_j[n].mean or 0.0 for n in c.per_student_teacher_stages
               if n in c.stage_j)


def per_student_teacher_sentence(c: ConfigStats) -> str:
    """What sharing the teacher can and cannot save for a method whose teacher works inside
    each student's training (on-policy distillation)."""
    own = per_student_teacher_j(c)
    shared = max(0.0, c.side_mean("teacher") - own)
    return (f"{_label(c)}'s teacher runs inside each student's training "
            f"({', '.join(c.per_student_teacher_stages)}: {fmt_e(c, own)} per student): unlike "
            f"a logit cache or synthetic data, that cost is paid again by every student and "
            f"cannot be amortised; sharing the teacher among N students (--amortize N) "
            f"divides only its upstream part ({fmt_e(c, shared)})")


def _baseline_rules(a: Analysis, group_id: str, by_id: dict[str, ConfigStats]) -> list[str]:
    out: list[str] = []
    be = a.break_even.get(group_id, {})
    base = by_id.get(be.get("baseline") or "")
    below = [by_id[e["config"]] for e in be.get("configs", []) if not e.get("candidate")]
    if below:
        names = ", ".join(f"{_label(c)} (Q {fmt_q(c.q.mean)})" for c in below)
        out.append(f"no break-even or payback stated for {names}: a student below Q = "
                   f"{a.min_q:g} (--min-q), or of unknown Q, is not a candidate to serve in "
                   "the teacher's place")
    for e in be.get("configs", []):
        c = by_id[e["config"]]
        if e.get("statement") and e.get("candidate"):
            gain = ""
            if base is not None and c is not base and e.get("candidate"):
                dq = quality_difference(c.quality, base.quality)
                if dq.mean is not None:
                    gain = (f"; it buys {fmt_d(dq.mean, fmt_q)} {c.metric or 'quality'} over "
                            f"{_label(base)} ({_sep(dq, fmt_q)})")
            out.append(e["statement"] + gain)
    return out


def rules_for_group(a: Analysis, group_id: str) -> list[str]:
    """The rules for one group of comparable runs, most useful first."""
    every = [c for c in a.configs if c.group == group_id]
    if not every:
        return ["no student configurations in this group"]
    # an incomplete configuration's totals are lower bounds: no rule rests on them
    cs = [c for c in every if not c.incomplete]
    by_id = {c.config: c for c in cs}
    res = a.pareto[group_id]
    amort = "" if a.amortize == 1 else f" (teacher-side work shared by {a.amortize:g} students)"
    said: set[tuple[str, str]] = set()
    out = [f"{_label(c)} is left out of these rules: its totals are lower bounds "
           f"({'; '.join(c.incomplete)})" for c in every if c.incomplete]
    cvs = curves_of_group(a, group_id)  # their design rules: analysis/curverules.py
    out += _frontier_rules([by_id[i] for i in res.frontier], amort, said, cvs)
    out += _teacher_rules([c for c in cs if not any(  # a curve's teacher share: one line
        c is p.config for cv in cvs for p in cv.points)], amort)
    out += _starting_student_rules(cs)
    out += _baseline_rules(a, group_id, by_id)
    pairs = [(by_id[c.dominated_by], c) for c in cs if c.dominated_by]
    pairs += [(c, by_id[f]) for c in cs for f in c.not_separable_from]
    for x, y in pairs:
        key = tuple(sorted((x.config, y.config)))
        # along curves only two points at one budget or neighbours on one curve
        if key not in said and comparable(x, y, cvs):
            said.add(key)
            out.append(compare_sentence(x, y))
    be = a.break_even.get(group_id, {})
    for e in be.get("configs", []):
        if e.get("candidate") and e.get("payback"):
            out.append(f"{_label(by_id[e['config']])}: {e['payback']}")
    out += _sensitivity_rule(a)
    out += _efficiency_rule(a, group_id, cs)
    return out


def _sensitivity_rule(a: Analysis) -> list[str]:
    sens = a.sensitivity or {}
    mx = sens.get("max") or {}
    moves = [(k, v["max_rel_change"]) for k, v in mx.items()
             if v.get("max_rel_change") is not None]
    if not moves:
        return []
    k, v = max(moves, key=lambda kv: kv[1])
    verdict = "robust" if v < 0.05 else "sensitive: read stage splits with care"
    return [f"moving every stage boundary by {100 * sens.get('shift', 0.05):.0f}% of "
            f"its length changes the {k} total by at most {100 * v:.1f}% (run "
            f"{mx[k].get('run_dir') or mx[k]['run_id']}; {verdict})"]


def _efficiency_rule(a: Analysis, group_id: str, cs: list[ConfigStats]) -> list[str]:
    owners = {_label(c) for c in cs} | {f"teacher run {t.run_dir or t.run_id}"
                                       for t in a.grouping.teacher_runs
                                       if t.run_id in _group_teachers(a, group_id)}
    eff = [r for r in a.efficiency if r.get("x_floor") and r.get("owner") in owners]
    if not eff:
        return []
    worst = max(eff, key=lambda r: r["x_floor"])
    return [f"{worst['stage']} ({worst['owner']}) runs at {worst['x_floor']:.3g}x its "
            f"floor on {worst.get('floor_device') or worst.get('hardware')} "
            f"({worst['j_per_token']:.3g} J/token vs {worst['floor_j_per_token']:.3g})"
            ": the stage furthest from its intrinsic cost"]


def _group_teachers(a: Analysis, group_id: str) -> list[str]:
    for g in a.grouping.groups:
        if g.id == group_id:
            return g.teacher_runs
    return []
