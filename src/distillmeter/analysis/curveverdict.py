"""The verdict of a group with curves: per method, its cheapest point that reaches the
teacher's quality (Q >= ``min_q``, 90% by default), against the baseline at the same
budget (pure functions).

On a budget axis the question a user asks is not "kd against the baseline" but "what
does kd cost me to get within 90% of the teacher, and what would the baseline give for
the same training budget". So each method gets one entry: its cheapest point (mean energy
per student) that *reaches* ``min_q``, compared with the baseline's point at that budget
by :func:`verdict.verdict_entry` (energy multiple and range, teacher share, quality gain
and range, break-even and payback); or, when none of its points reaches it, a sentence
that says so with its best point. A point reaches ``min_q`` when its whole 95% Q interval
lies at or above it (one seed: its Q, said so): a mean above 0.9 with an interval
reaching below is not claimed. A cheaper point whose interval reaches ``min_q`` without
lying above it is named, since it may reach it too. Measured on the default (3 seeds), a
point mid-rise spreads from 0.04 to 0.95 over its seeds: on the mean alone, which budget
"reaches" changed with the seed set (benchmarks/seed_stability.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from distillmeter.analysis import breakeven
from distillmeter.analysis.curves import Curve, CurvePoint, curves_of_group
from distillmeter.analysis.grouping import ConfigStats, fmt_budget
from distillmeter.analysis.rules import fmt_j, fmt_q

if TYPE_CHECKING:
    from distillmeter.analysis.result import Analysis


def _q(c: ConfigStats) -> str:
    ci = "" if c.q.lo is None else f", 95% {fmt_q(c.q.lo)}-{fmt_q(c.q.hi)}"
    return f"Q {fmt_q(c.q.mean)}{ci}"


def _e(c: ConfigStats, j: float | None) -> str:
    return f"~{fmt_j(j)} est." if c.estimated else fmt_j(j)


def _reaches(p: CurvePoint, min_q: float) -> bool:
    """Its whole 95% Q interval at or above ``min_q`` (one seed, no interval: its Q)."""
    q = p.config.q
    if q.mean is None:
        return False
    return (q.lo if q.lo is not None else q.mean) >= min_q


def _reaching(cv: Curve, min_q: float) -> list[CurvePoint]:
    return sorted((p for p in cv.points if _reaches(p, min_q)),
                  key=lambda p: (p.energy_j.mean or 0.0, p.budget))


def _maybe_cheaper(cv: Curve, pick: CurvePoint | None, min_q: float) -> list[CurvePoint]:
    """Points not stated as reaching ``min_q`` whose Q interval reaches it, cheaper than
    the pick (or any, without one)."""
    return [p for p in cv.points if p is not pick and not _reaches(p, min_q)
            and p.config.q.hi is not None and p.config.q.hi >= min_q
            and (pick is None or (p.energy_j.mean or 0.0) < (pick.energy_j.mean or 0.0))]


def _caveats(cv: Curve, pick: CurvePoint | None, min_q: float) -> str:
    maybe = _maybe_cheaper(cv, pick, min_q)
    if not maybe:
        return ""
    names = ", ".join(f"{p.label} ({_q(p.config)})" for p in maybe)
    if pick is None:
        return (f" {names}: the interval reaches {min_q:g} without lying above it, so "
                "more seeds may show it reaching it; not stated as reaching.")
    return (f" {names}: the interval reaches {min_q:g} without lying above it, so a "
            "cheaper point may reach it too.")


def _none_entry(cv: Curve, metric: str, min_q: float, prefix: str) -> dict[str, Any]:
    best = max(cv.points, key=lambda p: (p.config.q.mean or 0.0, -(p.energy_j.mean or 0.0)))
    budgets = ", ".join(fmt_budget(p.budget) for p in cv.points)
    text = (f"{prefix}{cv.method}: none of its points ({budgets} tokens) reaches "
            f"{100 * min_q:.0f}% of the teacher's {metric}; its best is "
            f"{best.label} ({fmt_q(best.config.quality.mean)}, {_q(best.config)}, "
            f"{_e(best.config, best.energy_j.mean)} per student).") + _caveats(cv, None, min_q)
    return {"group": cv.group, "config": None, "method": cv.method, "curve": cv.method,
            "reaches_min_q": False, "best_config": best.config.config,
            "best_label": best.label, "min_q": min_q, "text": text,
            "estimated": best.config.estimated}


Entry = Callable[..., dict[str, Any]]


def curve_verdict(a: Analysis, group_id: str, verdict_entry: Entry, prefix: str = ""
                  ) -> list[dict[str, Any]]:
    """One entry per method of the group's curves (empty without curves); ``verdict_entry``
    is :func:`distillmeter.analysis.verdict.verdict_entry` (passed in: that module calls
    this one)."""
    cvs = curves_of_group(a, group_id)
    if not cvs:
        return []
    be = a.break_even.get(group_id, {})
    by_id = {c.config: c for c in a.configs if c.group == group_id}
    base = by_id.get(be.get("baseline") or "")
    base_curve = next((cv for cv in cvs if base is not None and cv.method == base.method),
                      None)
    teachers = [t for t in a.grouping.teacher_runs
                if t.run_id in next(g.teacher_runs for g in a.grouping.groups
                                    if g.id == group_id)]
    out: list[dict[str, Any]] = []
    for cv in cvs:
        metric = cv.points[0].config.metric or "quality"
        reach = _reaching(cv, a.min_q)
        if not reach:
            out.append(_none_entry(cv, metric, a.min_q, prefix))
            continue
        pick = reach[0]
        c = pick.config
        sure = c.q.lo is not None
        head = (f"{prefix}{cv.method}: its cheapest point that reaches "
                f"{100 * a.min_q:.0f}% of the teacher's {metric} is {pick.label} "
                f"({_q(c)}; " + ("its whole interval is at or above " if sure else
                                 "one seed, no interval: its Q is at or above ")
                + f"{a.min_q:g})")
        same = base_curve.at(pick.budget) if base_curve is not None else None
        if cv is base_curve or (same is None and base is None):
            out.append({"group": group_id, "config": c.config, "label": pick.label,
                        "method": cv.method, "curve": cv.method, "token_budget": pick.budget,
                        "reaches_min_q": True, "min_q": a.min_q, "estimated": c.estimated,
                        "text": head + "." + _caveats(cv, pick, a.min_q)})
            continue
        against = same.config if same is not None else base
        where = "at the same budget" if same is not None else \
            "(the baseline has no point at this budget: its cheapest)"
        pair = breakeven.break_even([against, c], teachers, amortize=a.amortize,
                                    baseline_method=against.method, min_q=a.min_q)
        entry = next((e for e in pair["configs"] if e["config"] == c.config), {})
        rec = verdict_entry(c, against, entry, a.min_q)
        body = rec["text"].removeprefix(f"{pick.label}: ")
        rec.update(curve=cv.method, token_budget=pick.budget, reaches_min_q=True,
                   q_interval_above_min_q=sure)
        rec["text"] = (f"{head}; against {against.label or against.config} {where}: {body}"
                       + _caveats(cv, pick, a.min_q))
        out.append(rec)
    return out
