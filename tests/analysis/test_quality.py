"""Quality intervals over seeds that stay inside a rate's bounds [0, 1]."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reportfactory import report

from distillmeter.analysis.quality import (
    WILSON_METHOD,
    is_proportion,
    proportion_summary,
    wilson,
)
from distillmeter.analysis.stats import T_METHOD, summarize
from distillmeter.analysis.summary import analyse


def test_the_issue_example_stays_inside_the_bounds() -> None:
    seeds = [0.88, 0.96, 0.59]  # kd's three seeds on the 2-vCPU Xeon (issue 10)
    t = summarize(seeds)
    assert t.hi > 1.0  # the t-interval ran to 1.28 there
    s = proportion_summary(seeds, [256] * 3)
    assert 0.0 <= s.lo < s.mean < s.hi <= 1.0
    assert s.method == WILSON_METHOD
    assert (s.lo, s.hi) == (pytest.approx(0.2656, abs=1e-3), pytest.approx(0.9805, abs=1e-3))


def test_agreeing_seeds_keep_the_items_uncertainty() -> None:
    s = proportion_summary([1.0, 1.0, 1.0], [256] * 3)
    assert s.hi == 1.0 and s.lo < 1.0  # 768 items all right still leaves a lower bound
    zero = proportion_summary([0.0, 0.0, 0.0], [256] * 3)
    assert zero.lo == 0.0 and 0.0 < zero.hi < 0.05
    # more items, a narrower interval
    more = proportion_summary([0.9, 0.9, 0.9], [2560] * 3)
    fewer = proportion_summary([0.9, 0.9, 0.9], [256] * 3)
    assert more.half_width < fewer.half_width


def test_wilson_against_a_known_value() -> None:
    # Wilson (1927) score interval, 95%, 8 of 10: 0.4902-0.9433 (a textbook case)
    lo, hi = wilson(0.8, 10, 1.959963985)
    assert (lo, hi) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=8),
       st.integers(1, 5000))
def test_always_inside_the_bounds_and_around_the_mean(values: list[float], n: int) -> None:
    s = proportion_summary(values, [n] * len(values))
    assert 0.0 <= s.lo <= s.mean <= s.hi <= 1.0


@pytest.mark.parametrize("mu,conc,k", [(0.9, 50, 3), (0.5, 20, 3), (0.97, 200, 3),
                                        (0.8, 10, 5), (0.05, 200, 3)])
def test_coverage(mu: float, conc: float, k: int) -> None:
    """Seeds whose true rates scatter (beta around mu), each scored on 256 items: the
    interval holds the true mean rate at least 93% of the time (target 95%)."""
    rng = random.Random(20261129)
    hits, trials = 0, 300
    for _ in range(trials):
        rates = [rng.betavariate(mu * conc, (1 - mu) * conc) for _ in range(k)]
        vals = [sum(rng.random() < p for _ in range(256)) / 256 for p in rates]
        s = proportion_summary(vals, [256] * k)
        hits += s.lo <= mu <= s.hi
    assert hits / trials >= 0.93


def test_which_metrics_are_rates() -> None:
    assert is_proportion("exact_match", [0.2, 0.9])
    assert is_proportion("acc_norm,none", [0.5])  # lm-eval names carry a filter
    assert is_proportion("pass@10", [0.3])
    assert not is_proportion("exact_match", [0.2, 1.5])  # values say otherwise
    assert not is_proportion("loss", [0.2])
    assert not is_proportion("bleu", [0.3])
    assert not is_proportion(None, [0.3])


def test_configurations_use_the_bounded_interval_for_rates_only() -> None:
    def reps(metric: str | None):
        out = []
        for seed, q in enumerate([0.88, 0.96, 0.59]):
            r = report(f"kd-{seed}", method="kd", seed=seed, config_id="kd",
                       stages={"student.train": 100.0}, quality=q, teacher_quality=0.99)
            if metric:
                r.quality.metric = metric
            out.append((r.run_id, r))
        return out

    c = analyse(reps(None)).config("kd")  # exact_match
    assert c.quality.method == WILSON_METHOD and 0 <= c.quality.lo and c.quality.hi <= 1
    # Q's interval is the quality's over the one teacher figure
    assert c.q.hi == pytest.approx(c.quality.hi / 0.99)
    other = analyse(reps("reward")).config("kd")  # unknown metric: the t-interval
    assert other.quality.method == T_METHOD and other.quality.hi > 1
