"""A configuration's energy interval carries the runs' own measurement uncertainty
(estimates included) and the idle baseline's error, not only the spread between seeds."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from runbuilder import build_campaign

from distillmeter.analysis.directory import analyse_dir
from distillmeter.analysis.energy_interval import Measured, combine
from distillmeter.analysis.stats import summarize, t_quantile


def _parts(s) -> dict[str, float]:
    return dict(s.parts)


def test_an_estimated_device_widens_the_energy_interval(tmp_path: Path) -> None:
    """The recorded H100 campaign twice: once as measured by the counter, once with the
    same readings declared an estimate. The seeds' spread is the same; the estimate's
    +-50% widens the interval, and does not shrink with seeds."""
    counter = analyse_dir(build_campaign(tmp_path / "counter"), with_sensitivity=False)
    est = analyse_dir(build_campaign(tmp_path / "estimate", source="estimate"),
                      with_sensitivity=False)
    for c in counter.configs:
        e = est.config(c.config)
        assert e.estimated and not c.estimated
        assert e.energy_j.mean == pytest.approx(c.energy_j.mean)  # same readings
        pc, pe = _parts(c.energy_j), _parts(e.energy_j)
        assert pe["seeds"] == pytest.approx(pc["seeds"])  # the same spread between seeds
        # a counter has no model error; the upstream (teacher) stages' boundary terms are
        # the same measurement for every seed, so they count as shared by the repeats
        assert pc["machine"] == 0
        assert pc["systematic"] == pytest.approx(
            sum(sum(r.upstream_unc) for r in c.runs) / len(c.runs))
        # the estimate's +-50% of every joule, own and upstream, split work / machine
        assert pe["systematic"] + pe["machine"] >= 0.5 * e.energy_j.mean * 0.999
        assert e.energy_j.half_width >= 0.5 * e.energy_j.mean * 0.999
        assert e.energy_j.half_width > 3 * c.energy_j.half_width
        # the seed-only interval (what the analysis quoted before) is much narrower
        seeds_only = summarize([r.total_j() for r in e.runs])
        assert e.energy_j.half_width > 3 * seeds_only.half_width
        # comparisons within the group leave the machine's share out, not the work's
        assert c.energy_j.comparison_half_width < e.energy_j.comparison_half_width \
            < e.energy_j.half_width
        assert e.energy_j.lo <= e.energy_j.mean <= e.energy_j.hi


def test_combination_rules() -> None:
    vals = [100.0, 104.0, 96.0]
    seeds = summarize(vals).half_width
    runs = [Measured(v, random=3.0, systematic=10.0, machine=20.0, idle=4.0) for v in vals]
    s = combine(runs)
    p = _parts(s)
    assert p["seeds"] == pytest.approx(seeds)
    assert p["random"] == pytest.approx(math.sqrt(3 * 9.0) / 3)  # averages down
    assert p["systematic"] == pytest.approx(10.0)  # shared by the repeats: does not
    assert p["machine"] == pytest.approx(20.0)
    assert p["idle"] == pytest.approx(math.sqrt(3 * 16.0) / 3)
    assert s.half_width == pytest.approx(math.sqrt(seeds ** 2 + p["random"] ** 2 + 30.0 ** 2
                                                   + p["idle"] ** 2))
    assert s.comparison_half_width == pytest.approx(
        math.sqrt(seeds ** 2 + p["random"] ** 2 + 10.0 ** 2 + p["idle"] ** 2))
    # twelve seeds: the random term shrinks, the systematic and machine terms do not
    many = combine([Measured(100.0 + (i % 3 - 1) * 4, 3.0, 10.0, 20.0) for i in range(12)])
    assert _parts(many)["random"] == pytest.approx(3.0 / math.sqrt(12))
    assert _parts(many)["systematic"] == pytest.approx(10.0)
    assert _parts(many)["seeds"] < seeds
    # no measurement uncertainty: the t-interval over seeds, as before
    bare = combine([Measured(v) for v in vals])
    assert (bare.lo, bare.hi) == (pytest.approx(100 - seeds), pytest.approx(100 + seeds))
    assert bare.half_width == pytest.approx(t_quantile(0.975, 2) * 4.0 / math.sqrt(3))
    # one seed: no interval at all
    one = combine([Measured(100.0, 3.0, 10.0, 20.0)])
    assert one.lo is None and one.comparison is None


def test_idle_error_reaches_energy_above_idle_only(campaign_dir: Path) -> None:
    a = analyse_dir(campaign_dir, with_sensitivity=False)
    for c in a.configs:
        assert _parts(c.energy_j)["idle"] == 0  # counter totals include idle power
        active = c.active_j
        assert active.mean < c.energy_j.mean
        idle_part = _parts(active)["idle"]
        # each run measured 120.5 W of idle with a 10% error, over its seconds
        runs = c.runs
        own = math.sqrt(sum((0.1 * 120.4838 * (r.own_idle_j / 120.4838)) ** 2
                            for r in runs)) / len(runs)
        assert idle_part >= own * 0.999
        # the same figure without the idle baseline's error: a narrower interval
        without = combine([Measured(r.active_j(), *r.own_unc[:2]) for r in runs])
        assert active.half_width > without.half_width
