"""The budget planner: the best measured configuration that fits an energy, CO2 or money
budget per student, and why (pure functions over an Analysis).

A configuration *fits* when the upper end of the 95% interval of its cost per student is
within the budget (``on_mean=True`` uses the mean instead). The upper bound is the cautious
choice: a budget is a limit, and a mean that fits says only that about half the repeats
would. A configuration measured with one seed has no interval; its single measurement is
used and the plan says so. Among those that fit, the highest mean quality wins (ties: the
lower energy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from distillmeter.analysis.grouping import ConfigStats, budget_axis, budget_of, fmt_budget
from distillmeter.analysis.result import Analysis
from distillmeter.analysis.rules import fmt_j, fmt_q, per_student_teacher_j
from distillmeter.analysis.stats import SeedStats, summarize


@dataclass(frozen=True)
class Budget:
    """Limits per student; None where not set."""

    kwh: float | None = None
    co2_kg: float | None = None
    usd: float | None = None
    price_per_kwh: float | None = None

    def limits(self) -> list[tuple[str, float]]:
        return [(k, v) for k, v in (("kwh", self.kwh), ("co2_kg", self.co2_kg),
                                    ("usd", self.usd)) if v is not None]


UNITS = {"kwh": "kWh", "co2_kg": "kg CO2e", "usd": "USD"}


def cost_summaries(c: ConfigStats, a: Analysis, price: float | None
                   ) -> dict[str, SeedStats | None]:
    """Per-student cost of a configuration in each budget unit."""
    usd = None
    if price is not None or all(r.price_per_kwh is not None for r in c.runs):
        usd = summarize([r.cost(price, a.amortize, a.pue) for r in c.runs])
    return {"kwh": c.energy_j.scaled(1 / 3.6e6), "co2_kg": c.co2e_g.scaled(1e-3), "usd": usd}


def _bound(s: SeedStats | None, on_mean: bool) -> float | None:
    if s is None or s.mean is None:
        return None
    if on_mean or s.hi is None:
        return s.mean
    return s.hi


def _fmt(unit: str, x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g} {UNITS[unit]}"


def plan_group(a: Analysis, group_id: str, budget: Budget, *, on_mean: bool = False
               ) -> dict[str, Any]:
    """The choice for one group of comparable runs."""
    cs = [c for c in a.configs if c.group == group_id]
    cands: list[dict[str, Any]] = []
    for c in cs:
        costs = cost_summaries(c, a, budget.price_per_kwh)
        row: dict[str, Any] = {"config": c.config, "quality_mean": c.quality.mean,
                               "quality_ci95": None if c.quality.lo is None
                               else [c.quality.lo, c.quality.hi],
                               "n_seeds": c.n_seeds, "fits": True, "over": []}
        for unit, limit in budget.limits():
            s = costs[unit]
            b = _bound(s, on_mean)
            row[f"{unit}_mean"] = None if s is None else s.mean
            row[f"{unit}_bound"] = b
            if b is None or b > limit:
                row["fits"] = False
                row["over"].append(f"{_fmt(unit, b)} > {_fmt(unit, limit)}" if b is not None
                                   else f"no {UNITS[unit]} figure")
        if c.incomplete:  # its cost is a lower bound: it cannot be held against a budget
            row["fits"] = False
            row["incomplete"] = list(c.incomplete)
            row["over"].append("incomplete, its cost is only a lower bound: " + "; ".join(
                r.removeprefix("teacher energy missing: ") for r in c.incomplete))
        cands.append(row)
    g = next(x for x in a.grouping.groups if x.id == group_id)
    out: dict[str, Any] = {"group": group_id, "describe": g.describe(), "candidates": cands,
                           "choice": None, "rules": a.rules.get(group_id, [])}
    fitting = [c for c, row in zip(cs, cands, strict=True) if row["fits"]]
    what = "upper 95% bound" if not on_mean else "mean"
    if any(c.estimated for c in cs):
        out["estimated"] = ("~: estimated energy (no counter or sensor on a device); its "
                            "interval carries the estimate's error")
    if not fitting:
        complete = [c for c in cs if not c.incomplete] or cs
        cheapest = min(complete, key=lambda c: c.energy_j.mean or float("inf"))
        row = cands[cs.index(cheapest)]
        out["cheapest"] = cheapest.config
        out["verdict"] = (f"nothing fits the budget ({'; '.join(_limits(budget))} per "
                          f"student, judged on each configuration's {what}). The cheapest "
                          f"is {_name(cheapest)} at {_e(cheapest, cheapest.energy_j.mean)} per "
                          f"student ({'; '.join(row['over'])}).")
        return out
    with_q = [c for c in fitting if c.quality.mean is not None]
    pool = with_q or fitting
    pick = min(pool, key=lambda c: (-(c.quality.mean or 0.0), c.energy_j.mean or 0.0,
                                    c.config))
    out["choice"] = pick.config
    row = cands[cs.index(pick)]
    q = fmt_q(pick.quality.mean)
    ci = "" if pick.quality.lo is None else \
        f", 95% CI {pick.quality.lo:.3g}-{pick.quality.hi:.3g}"
    e_ci = "" if pick.energy_j.lo is None else \
        f", 95% CI {_e(pick, pick.energy_j.lo)}-{_e(pick, pick.energy_j.hi)}"
    out["choice_label"] = _name(pick)
    point = _point_note(pick, cs, cands, out)
    out["verdict"] = (f"pick {_name(pick)}{point or _id_note(pick)}: "
                      f"{pick.metric or 'quality'} {q}{ci}; "
                      f"{_e(pick, pick.energy_j.mean)} per student{e_ci}"
                      + (" (estimated energy)." if pick.estimated else "."))
    why = [f"fits: its {what} per student is " + "; ".join(
        ("~" if pick.estimated else "") + f"{_fmt(u, row[f'{u}_bound'])} <= {_fmt(u, lim)}"
        for u, lim in budget.limits())]
    others = [c for c in fitting if c is not pick]
    if with_q:
        why.append(f"highest mean {pick.metric or 'quality'} of the {len(fitting)} "
                   "configuration(s) that fit" + (
                       " (" + ", ".join(f"{_name(c)} {c.quality.mean:.3g}"
                                        for c in others if c.quality.mean is not None) + ")"
                       if others else ""))
    else:
        why.append("no configuration reports a quality: the cheapest that fits")
    teacher, total = pick.side_mean("teacher"), pick.energy_j.mean or 0.0
    if teacher > 0 and total > 0:
        own = per_student_teacher_j(pick)
        split = (f": {_e(pick, teacher - own)} upstream, shareable among students "
                 f"(--amortize), {_e(pick, own)} per student in "
                 f"{', '.join(pick.per_student_teacher_stages)}, not shareable"
                 if pick.per_student_teacher_stages else ", all of it upstream work that "
                 "students can share (--amortize)")
        why.append(f"{100 * teacher / total:.0f}% of its energy per student is teacher-side"
                   + split)
    if pick.n_seeds < 2:
        why.append(f"{_name(pick)} was measured with one seed: no interval, so its single "
                   "measurement is what fits")
    for c in others:
        if c.quality.mean is None or c.energy_j.mean is None or pick.energy_j.mean is None:
            continue
        if c.energy_j.mean < pick.energy_j.mean and _q_overlap(c, pick):
            why.append(f"{_name(c)} costs {_e(c, pick.energy_j.mean - c.energy_j.mean)} less "
                       f"per student and its quality interval overlaps {_name(pick)}'s: "
                       "the measurements cannot rule out that it is as good")
    for c, r in zip(cs, cands, strict=True):
        if not r["fits"]:
            why.append(f"{_name(c)} does not fit ({'; '.join(r['over'])})")
    if out.get("choice_point", {}).get("next_up"):
        why.append(out["choice_point"]["next_up"])
    out["why"] = why
    return out


def _point_note(pick: ConfigStats, cs: list[ConfigStats], cands: list[dict[str, Any]],
                out: dict[str, Any]) -> str:
    """On a budget axis the pick is one measured point of its method's curve: say which
    (its budget, its runs), record it as ``choice_point``, and what the next point up
    that curve would have given."""
    curve = budget_axis([c for c in cs if not c.incomplete]).get(pick.method or "")
    b = budget_of(pick)
    if curve is None or b is None:
        return ""
    point: dict[str, Any] = {"config": pick.config, "label": _name(pick),
                             "method": pick.method, "token_budget": b,
                             "run_dirs": [r.run_dir for r in pick.runs], "next_up": None}
    up = [c for c in curve if (budget_of(c) or 0) > b]
    if up:
        nxt = up[0]
        row = cands[cs.index(nxt)]
        point["next_up"] = (
            f"the next point up {pick.method}'s curve, {_name(nxt)}, does not fit"
            if not row["fits"] else
            f"the next point up {pick.method}'s curve, {_name(nxt)}, fits but its mean "
            f"{nxt.metric or 'quality'} is not higher ({fmt_q(nxt.quality.mean)})")
    out["choice_point"] = point
    return (f" (config {pick.config}: the measured point of {pick.method}'s curve at "
            f"{fmt_budget(b)} tokens per student, {pick.n_seeds} seed(s))")


def _name(c: ConfigStats) -> str:
    return c.label or c.config


def _e(c: ConfigStats, j: float | None) -> str:
    """An energy of ``c``, marked ``~`` when it is (partly) an estimate."""
    return f"~{fmt_j(j)}" if c.estimated else fmt_j(j)


def _id_note(c: ConfigStats) -> str:
    return "" if c.config in _name(c) else f" (config {c.config})"


def _q_overlap(a: ConfigStats, b: ConfigStats) -> bool:
    if a.quality.lo is None or b.quality.lo is None:
        return True
    return a.quality.lo <= b.quality.hi and b.quality.lo <= a.quality.hi


def _limits(budget: Budget) -> list[str]:
    return [_fmt(u, v) for u, v in budget.limits()]


def plan(a: Analysis, budget: Budget, *, on_mean: bool = False) -> dict[str, Any]:
    """The plan for every group, with the criterion stated."""
    if not budget.limits():
        raise ValueError("give at least one budget (kWh, kg CO2e or USD)")
    amort = ("" if a.amortize == 1 else
             f" Teacher-side work is divided among {a.amortize:g} students.")
    if on_mean:
        criterion = ("A configuration fits when its mean cost per student is within the "
                     "budget (--on-mean: about half the repeats would exceed it).")
    else:
        criterion = ("A configuration fits when the upper end of the 95% interval of its "
                     "cost per student (seeds and measurement uncertainty) is within the "
                     "budget; one seed gives no interval, and then its single measurement "
                     "is used.")
    return {"budget": {"kwh": budget.kwh, "co2_kg": budget.co2_kg, "usd": budget.usd,
                       "price_per_kwh": budget.price_per_kwh},
            "on_mean": on_mean, "amortize": a.amortize, "criterion": criterion + amort,
            "notes": list(a.notes), "skipped": list(a.skipped),
            "groups": [plan_group(a, g.id, budget, on_mean=on_mean)
                       for g in a.grouping.groups
                       if any(c.group == g.id for c in a.configs)]}
