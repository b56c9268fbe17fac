"""Each method's quality-energy curve along the student's token budget (pure functions).

A run config's ``budgets`` trains every method at several token budgets; each budget point
is a configuration of its method (its own config id, a ``token_budget`` label). Here the
configurations of one method that differ in that budget are read as the method's curve:
its points by increasing budget, each with quality and energy per student (the teacher's
work in full and divided among ``--amortize`` students) and their 95% intervals over the
seeds. The frontier across every point is the group's Pareto frontier (``pareto.py``),
which already takes every configuration of the group.

With a curve, comparing every pair of points would say the same thing many times over
(nine points: 36 pairs), so the rules compare two points only where the comparison answers
a design question (:func:`comparable`): two methods at one budget, or one method at two
neighbouring budgets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from distillmeter.analysis.energy_interval import combine
from distillmeter.analysis.grouping import ConfigStats, budget_axis, budget_of, fmt_budget
from distillmeter.analysis.stats import SeedStats

if TYPE_CHECKING:
    from distillmeter.analysis.result import Analysis


@dataclass
class CurvePoint:
    """One budget point of a method's curve."""

    config: ConfigStats
    budget: int
    energy_full_j: SeedStats  # the teacher's (upstream) work counted in full per student
    energy_j: SeedStats  # as the analysis counts it: upstream work divided by --amortize

    @property
    def label(self) -> str:
        return self.config.label or self.config.config


@dataclass
class Curve:
    """A method's points by increasing token budget, in one group of comparable runs."""

    group: str
    method: str
    points: list[CurvePoint]

    def at(self, budget: int) -> CurvePoint | None:
        return next((p for p in self.points if p.budget == budget), None)


def curves_of_group(a: Analysis, group_id: str) -> list[Curve]:
    """The curves of one group (methods in the analysis's order; baseline first when the
    group has one). Incomplete configurations are left out: their energy is a bound."""
    cs = [c for c in a.configs if c.group == group_id and not c.incomplete]
    out = []
    for method, members in budget_axis(cs).items():
        pts = [CurvePoint(c, budget_of(c) or 0,
                          combine([r.measured_total(1.0) for r in c.runs]), c.energy_j)
               for c in members]
        out.append(Curve(group_id, method, pts))
    base = a.break_even.get(group_id, {}).get("baseline")
    base_method = next((c.method for c in cs if c.config == base), None)
    out.sort(key=lambda cv: (cv.method != base_method, cv.method))
    return out


def curves(a: Analysis) -> list[Curve]:
    """Every group's curves."""
    return [cv for g in a.grouping.groups for cv in curves_of_group(a, g.id)]


def comparable(x: ConfigStats, y: ConfigStats, cvs: list[Curve]) -> bool:
    """Whether a rule compares points ``x`` and ``y`` of a group with curves: two at one
    budget, or neighbours along one method's curve. Without curves every pair is."""
    if not cvs:
        return True
    bx, by = budget_of(x), budget_of(y)
    if bx is not None and bx == by:
        return True
    for cv in cvs:
        ids = [p.config.config for p in cv.points]
        if x.config in ids and y.config in ids:
            return abs(ids.index(x.config) - ids.index(y.config)) == 1
    return False


def _ci(s: SeedStats) -> list[float] | None:
    return None if s.lo is None or s.hi is None else [s.lo, s.hi]


def _cmp(s: SeedStats) -> list[float] | None:
    c = s.comparison
    return None if c is None else [c[0], c[1]]


def point_record(p: CurvePoint, min_q: float) -> dict[str, Any]:
    """One point of a curve as summary.json carries it."""
    c = p.config
    return {
        "config": c.config, "label": p.label, "token_budget": p.budget,
        "budget_label": fmt_budget(p.budget), "n_seeds": c.n_seeds, "seeds": c.seeds,
        "run_dirs": [r.run_dir for r in c.runs],
        "energy_j_mean": p.energy_j.mean, "energy_j_ci95": _ci(p.energy_j),
        "energy_j_ci95_within_group": _cmp(p.energy_j),
        "energy_full_j_mean": p.energy_full_j.mean,
        "energy_full_j_ci95": _ci(p.energy_full_j),
        "energy_full_j_ci95_within_group": _cmp(p.energy_full_j),
        "quality_metric": c.metric, "quality_mean": c.quality.mean,
        "quality_ci95": _ci(c.quality), "q_mean": c.q.mean, "q_ci95": _ci(c.q),
        "reaches_min_q": None if c.q.mean is None else c.q.mean >= min_q,
        "pareto": c.pareto, "estimated": c.estimated,
    }


def curve_records(a: Analysis) -> list[dict[str, Any]]:
    """``summary.json``'s ``curves``: per group and method, the points by budget. Energies
    are per student: ``energy_j`` with the teacher's work divided among ``amortize``
    students, ``energy_full_j`` with it in full."""
    return [{"group": cv.group, "method": cv.method, "amortize": a.amortize,
             "points": [point_record(p, a.min_q) for p in cv.points]} for cv in curves(a)]


def budget_label_of(c: ConfigStats) -> str | None:
    """``240k`` for a configuration on a budget axis, else None."""
    b = budget_of(c)
    return None if b is None else fmt_budget(b)
