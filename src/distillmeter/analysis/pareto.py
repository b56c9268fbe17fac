"""Energy-quality Pareto frontier (pure functions).

Energy is better lower, quality better higher, both compared on the means. A point is
dominated only by another that is at least as good on both axes and strictly better on
one. Means hide noise, so a point whose 95% intervals overlap a frontier point's on *both*
axes is marked "not separable" from it: the measurements cannot tell them apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Interval = tuple[float, float] | None


@dataclass(frozen=True)
class Point:
    """One configuration on the energy-quality plane; intervals None when unknown
    (one seed), which counts as overlapping anything."""

    id: str
    energy: float
    quality: float
    energy_ci: Interval = None
    quality_ci: Interval = None


def dominates(a: Point, b: Point) -> bool:
    """True when ``a`` is at least as good as ``b`` on both axes and better on one."""
    at_least = a.energy <= b.energy and a.quality >= b.quality
    better = a.energy < b.energy or a.quality > b.quality
    return at_least and better


def frontier(points: Iterable[Point]) -> list[Point]:
    """The non-dominated points, by increasing energy."""
    pts = list(points)
    front = [p for p in pts if not any(dominates(o, p) for o in pts if o is not p)]
    return sorted(front, key=lambda p: (p.energy, -p.quality, p.id))


def dominator(p: Point, front: list[Point]) -> Point | None:
    """The frontier point that dominates ``p`` with the least energy (None if none does)."""
    for f in front:  # front is sorted by energy
        if f.id != p.id and dominates(f, p):
            return f
    return None


def intervals_overlap(a: Interval, b: Interval) -> bool:
    """True when two intervals share a point; an unknown interval overlaps anything."""
    if a is None or b is None:
        return True
    return a[0] <= b[1] and b[0] <= a[1]


def not_separable(p: Point, front: list[Point]) -> list[str]:
    """Frontier points (other than ``p``) whose intervals overlap ``p``'s on both axes."""
    return [f.id for f in front if f.id != p.id
            and intervals_overlap(p.energy_ci, f.energy_ci)
            and intervals_overlap(p.quality_ci, f.quality_ci)]


@dataclass(frozen=True)
class ParetoResult:
    frontier: list[str]  # ids by increasing energy
    dominated_by: dict[str, str]
    not_separable_from: dict[str, list[str]]


def analyse(points: Iterable[Point]) -> ParetoResult:
    """Frontier, each dominated point's dominator, and the overlap marks."""
    pts = list(points)
    front = frontier(pts)
    dom: dict[str, str] = {}
    for p in pts:
        d = dominator(p, front)
        if d is not None:
            dom[p.id] = d.id
    sep = {p.id: not_separable(p, front) for p in pts}
    return ParetoResult([f.id for f in front], dom, {k: v for k, v in sep.items() if v})
