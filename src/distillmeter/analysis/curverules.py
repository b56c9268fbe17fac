"""Design rules read off the methods' curves along the student's budget (pure functions).

Each rule is stated only as far as the 95% intervals support it (``analysis/compare.py``:
separable = the intervals do not overlap):

- energy bands: "up to ~X J per student the best measured choice is A": A is the frontier
  point with the most quality among those that cost no more than X, X the next frontier
  point's energy; the rule says whether A is separable from the best other point in that
  band, or that the two cannot be told apart;
- where distillation stops paying: "past ~Y J per student no method buys separable
  quality": Y is the cheapest frontier point that no costlier point beats separably;
- methods at each budget, and pairs of methods across every budget ("at every budget, kd
  and synthetic cannot be told apart");
- each curve step by step: what more budget buys that method.

Energies are per student as the analysis counts them (``--amortize`` divides the
teacher's upstream work); ``~`` before a figure marks an approximate threshold, and an
estimated energy (no counter) is marked as the other rules mark it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from distillmeter.analysis.compare import Difference, energy_difference, quality_difference
from distillmeter.analysis.curves import Curve, curves_of_group
from distillmeter.analysis.grouping import ConfigStats, fmt_budget
from distillmeter.analysis.rules import fmt_d, fmt_e, fmt_j, fmt_j_pm, fmt_q

if TYPE_CHECKING:
    from distillmeter.analysis.result import Analysis


def _about(c: ConfigStats, j: float | None) -> str:
    """An approximate threshold: ``~150 J`` (an estimate is marked ``~`` already)."""
    return fmt_e(c, j) if c.estimated else "~" + fmt_j(j)


def _name(c: ConfigStats) -> str:
    return c.label or c.config


def _qrange(d: Difference) -> str:
    return "" if not d.known else f"range {fmt_d(d.lo, fmt_q)} to {fmt_d(d.hi, fmt_q)}"


def _vs(better: ConfigStats, worse: ConfigStats) -> str:
    """``better`` against ``worse`` on quality: separable with its gain, or not."""
    d = quality_difference(better.quality, worse.quality)
    if not d.known:
        return f"cannot be told apart from {_name(worse)} (one seed: no interval)"
    if d.separable:
        return (f"separable from {_name(worse)} ({fmt_q(worse.quality.mean)}; "
                f"{fmt_d(d.mean, fmt_q)}, {_qrange(d)})")
    return (f"it cannot be told apart from {_name(worse)} ({fmt_q(worse.quality.mean)}; "
            f"{_qrange(d)}): either is as good as measured")


def _points(a: Analysis, group_id: str) -> list[ConfigStats]:
    return [c for c in a.configs if c.group == group_id and not c.incomplete
            and c.energy_j.mean is not None and c.quality.mean is not None]


def band_rules(a: Analysis, group_id: str) -> list[str]:
    """The energy bands of the frontier, each with its best measured choice."""
    pts = _points(a, group_id)
    by_id = {c.config: c for c in pts}
    front = [by_id[i] for i in a.pareto[group_id].frontier if i in by_id]
    out = []
    for i, f in enumerate(front):
        nxt = front[i + 1] if i + 1 < len(front) else None
        upper = nxt.energy_j.mean if nxt is not None else None
        band = [c for c in pts if c is not f and (upper is None or
                                                   (c.energy_j.mean or 0.0) < upper)]
        rival = max(band, key=lambda c: (c.quality.mean or 0.0, -(c.energy_j.mean or 0.0)),
                    default=None)
        where = (f"up to {_about(nxt, upper)} per student" if i == 0 and nxt is not None
                 else f"from {_about(f, f.energy_j.mean)} to {_about(nxt, upper)} per "
                 "student" if nxt is not None else
                 f"from {_about(f, f.energy_j.mean)} per student up")
        text = (f"{where} the best measured choice is {_name(f)} "
                f"({fmt_q(f.quality.mean)} {f.metric or 'quality'}, "
                f"{fmt_j_pm(f.energy_j.mean, f.energy_j.half_width)})")
        if rival is not None:
            text += "; " + _vs(f, rival).replace("it cannot", "but it cannot")
        out.append(text)
    return out


def saturation_rule(a: Analysis, group_id: str) -> list[str]:
    """Where more energy stops buying separable quality, as far as the points show it."""
    pts = _points(a, group_id)
    by_id = {c.config: c for c in pts}
    front = [by_id[i] for i in a.pareto[group_id].frontier if i in by_id]
    metric = next((c.metric for c in pts if c.metric), "quality")
    for f in front:
        costlier = [c for c in pts if (c.energy_j.mean or 0.0) > (f.energy_j.mean or 0.0)]
        if not costlier:
            return [f"the measured points do not show where more energy stops buying "
                    f"{metric}: {_name(f)}, the costliest on the frontier, is separably "
                    "better than every cheaper point"] if len(front) > 1 else []
        beats = [c for c in costlier if quality_difference(c.quality, f.quality).separable
                 and (c.quality.mean or 0.0) > (f.quality.mean or 0.0)]
        if beats:
            continue
        best = max(costlier, key=lambda c: c.quality.mean or 0.0)
        d = quality_difference(best.quality, f.quality)
        return [f"past {_about(f, f.energy_j.mean)} per student ({_name(f)}, "
                f"{fmt_q(f.quality.mean)} {metric}) no method buys separable {metric}: the "
                f"best costlier point, {_name(best)} ({fmt_q(best.quality.mean)}), cannot be "
                f"told apart from it" + (f" ({_qrange(d)})" if d.known else " (one seed)")]
    return []


def _budget_sentence(b: int, cs: list[ConfigStats]) -> str:
    cs = sorted(cs, key=lambda c: -(c.quality.mean or 0.0))
    metric = next((c.metric for c in cs if c.metric), "quality")
    vals = ", ".join(f"{c.method} {fmt_q(c.quality.mean)}" for c in cs)
    steps = []
    for hi, lo in zip(cs, cs[1:], strict=False):
        d = quality_difference(hi.quality, lo.quality)
        if d.separable:
            steps.append(f"{hi.method} is separably above {lo.method} "
                         f"({fmt_d(d.mean, fmt_q)}, {_qrange(d)})")
        else:
            steps.append(f"{hi.method} and {lo.method} cannot be told apart"
                         + (f" ({_qrange(d)})" if d.known else " (one seed)"))
    return f"at {fmt_budget(b)} tokens per student: {vals} {metric}; " + "; ".join(steps)


def budget_rules(cvs: list[Curve]) -> list[str]:
    """At each budget, the methods by quality, neighbours compared."""
    budgets = sorted({p.budget for cv in cvs for p in cv.points})
    out = []
    for b in budgets:
        at = [p.config for cv in cvs if (p := cv.at(b)) is not None]
        if len(at) > 1:
            out.append(_budget_sentence(b, at))
    return out


def every_budget_rules(cvs: list[Curve]) -> list[str]:
    """Pairs of methods whose order (or lack of one) holds at every budget both have."""
    out = []
    for i, x in enumerate(cvs):
        for y in cvs[i + 1:]:
            shared = [p.budget for p in x.points if y.at(p.budget) is not None]
            if len(shared) < 2:
                continue
            ds = [quality_difference(x.at(b).config.quality, y.at(b).config.quality)
                  for b in shared]
            es = [energy_difference(x.at(b).config.energy_j, y.at(b).config.energy_j)
                  for b in shared]
            where = f"at every budget ({', '.join(fmt_budget(b) for b in shared)})"
            metric = x.points[0].config.metric or "quality"
            if all(d.known and not d.separable for d in ds):
                text = f"{where}, {x.method} and {y.method} cannot be told apart in {metric}"
            elif all(d.separable and (d.mean or 0) > 0 for d in ds):
                text = f"{where}, {x.method} is separably above {y.method} in {metric}"
            elif all(d.separable and (d.mean or 0) < 0 for d in ds):
                text = f"{where}, {y.method} is separably above {x.method} in {metric}"
            else:
                continue
            if all(e.separable and (e.mean or 0) > 0 for e in es):
                text += f"; {x.method} costs separably more energy per student at each"
            elif all(e.separable and (e.mean or 0) < 0 for e in es):
                text += f"; {y.method} costs separably more energy per student at each"
            else:
                text += "; their energies per student are not separable at every budget"
            out.append(text)
    return out


def along_rules(cvs: list[Curve]) -> list[str]:
    """Each curve step by step: quality and energy per student as the budget grows."""
    out = []
    for cv in cvs:
        steps = [f"{fmt_budget(p.budget)} {fmt_q(p.config.quality.mean)} "
                 f"({fmt_e(p.config, p.energy_j.mean)})" for p in cv.points[:1]]
        for lo, hi in zip(cv.points, cv.points[1:], strict=False):
            d = quality_difference(hi.config.quality, lo.config.quality)
            word = ("separable" if d.separable else "cannot be told apart") if d.known \
                else "one seed"
            steps.append(f"{fmt_budget(hi.budget)} {fmt_q(hi.config.quality.mean)} "
                         f"({fmt_e(hi.config, hi.energy_j.mean)}; {fmt_d(d.mean, fmt_q)}, "
                         f"{word})")
        # the first point that no larger budget beats separably (each step alone may not
        # separate while two steps do: 0.03 -> 0.74 -> 0.99)
        flat_from = next((p for i, p in enumerate(cv.points[:-1]) if all(
            (d := quality_difference(q.config.quality, p.config.quality)).known
            and not (d.separable and (d.mean or 0) > 0) for q in cv.points[i + 1:])), None)
        metric = cv.points[0].config.metric or "quality"
        text = f"{cv.method} along its budget: " + " -> ".join(steps)
        if flat_from is not None:
            text += (f"; past {fmt_budget(flat_from.budget)} more budget buys {cv.method} "
                     f"no separable {metric}")
        out.append(text)
    return out


def teacher_share_rules(cvs: list[Curve]) -> list[str]:
    """The teacher's share of each distilled method's energy along its curve, one line
    a method (one line a point would repeat it)."""
    out = []
    for cv in cvs:
        shares = [(p, p.config.side_mean("teacher") / p.energy_j.mean)
                  for p in cv.points if (p.energy_j.mean or 0) > 0]
        if not shares or max(s for _, s in shares) <= 0:
            continue
        parts = ", ".join(f"{100 * s:.0f}% at {fmt_budget(p.budget)}" for p, s in shares)
        out.append(f"{cv.method}'s teacher-side share of its energy per student: {parts}")
    return out


def curve_rules(a: Analysis, group_id: str) -> list[str]:
    """The design rules of one group with curves (empty without)."""
    cvs = curves_of_group(a, group_id)
    if not cvs:
        return []
    return (band_rules(a, group_id) + saturation_rule(a, group_id) + every_budget_rules(cvs)
            + budget_rules(cvs) + along_rules(cvs) + teacher_share_rules(cvs))
