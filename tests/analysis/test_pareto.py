"""Pareto frontier: dominance, frontier, overlap marks."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from distillmeter.analysis.pareto import (
    Point,
    analyse,
    dominates,
    frontier,
    intervals_overlap,
    not_separable,
)


def test_dominance_needs_strictly_better_on_one_axis() -> None:
    a = Point("a", energy=10, quality=0.5)
    assert not dominates(a, Point("twin", 10, 0.5))  # equal on both: neither dominates
    assert dominates(a, Point("b", 10, 0.4))  # same energy, worse quality
    assert dominates(a, Point("c", 11, 0.5))  # same quality, more energy
    assert not dominates(a, Point("d", 9, 0.4))  # cheaper but worse: a trade-off
    assert not dominates(Point("d", 9, 0.4), a)


def test_frontier_sorted_by_energy_and_keeps_ties() -> None:
    pts = [Point("kd", 7.0, 0.62), Point("base", 2.8, 0.41), Point("sft", 5.5, 0.51),
           Point("bad", 6.0, 0.45), Point("twin", 2.8, 0.41)]
    assert [p.id for p in frontier(pts)] == ["base", "twin", "sft", "kd"]
    res = analyse(pts)
    assert res.dominated_by == {"bad": "sft"}


def test_overlap_marks_need_both_axes() -> None:
    f = Point("f", 10, 0.6, (9, 11), (0.55, 0.65))
    close = Point("c", 11.5, 0.58, (10.5, 12.5), (0.5, 0.6))  # overlaps on both
    far_e = Point("e", 20, 0.59, (19, 21), (0.5, 0.66))  # overlaps on quality only
    assert not_separable(close, [f]) == ["f"]
    assert not_separable(far_e, [f]) == []
    assert not_separable(f, [f]) == []  # never from itself


def test_unknown_interval_overlaps_everything() -> None:
    assert intervals_overlap(None, (0, 1))
    assert intervals_overlap((0, 1), (1, 2))  # touching counts
    assert not intervals_overlap((0, 1), (1.01, 2))
    one_seed = Point("one", 50, 0.1)  # no intervals
    assert not_separable(one_seed, [Point("f", 1, 0.9, (0.9, 1.1), (0.89, 0.91))]) == ["f"]


points = st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=25)


@settings(max_examples=80, deadline=None)
@given(points)
def test_frontier_properties(raw: list[tuple[int, int]]) -> None:
    pts = [Point(f"p{i}", float(e), float(q)) for i, (e, q) in enumerate(raw)]
    res = analyse(pts)
    front = {p.id for p in pts if p.id in res.frontier}
    # frontier points do not dominate one another
    for a in pts:
        for b in pts:
            if a.id in front and b.id in front:
                assert not dominates(a, b)
    # every other point is dominated by a frontier point, and the one named dominates it
    for p in pts:
        if p.id not in front:
            d = next(x for x in pts if x.id == res.dominated_by[p.id])
            assert d.id in front and dominates(d, p)
