"""Statistics over seeds: the t quantile against published table values, and summaries."""

from __future__ import annotations

import statistics

import pytest

from distillmeter.analysis.stats import summarize, t_quantile

# two-sided 95% critical values t_{0.975, df} (standard t table, e.g. NIST/SEMATECH
# e-Handbook of Statistical Methods, table 1.3.6.7.2)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000, 100: 1.984}


@pytest.mark.parametrize("df,expected", sorted(T975.items()))
def test_t_quantile_matches_the_table(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=6e-4)


def test_t_quantile_other_levels() -> None:
    # t_{0.95, 4} = 2.132, t_{0.995, 9} = 3.250, t_{0.9, 1} = 3.078 (same table)
    assert t_quantile(0.95, 4) == pytest.approx(2.132, abs=6e-4)
    assert t_quantile(0.995, 9) == pytest.approx(3.250, abs=6e-4)
    assert t_quantile(0.9, 1) == pytest.approx(3.078, abs=6e-4)


def test_t_tends_to_the_normal_quantile() -> None:
    assert t_quantile(0.975, 100000) == pytest.approx(1.959964, abs=1e-4)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        t_quantile(0.4, 3)
    with pytest.raises(ValueError):
        t_quantile(0.975, 0)


def test_summarize_matches_statistics_module() -> None:
    xs = [1010.0, 980.5, 1040.25, 995.0]
    s = summarize(xs)
    assert s.n == 4
    assert s.mean == pytest.approx(statistics.mean(xs))
    assert s.std == pytest.approx(statistics.stdev(xs))  # ddof = 1
    half = 3.182446305 * statistics.stdev(xs) / 2.0
    assert (s.lo, s.hi) == (pytest.approx(s.mean - half), pytest.approx(s.mean + half))
    assert s.half_width == pytest.approx(half)


def test_summarize_edge_cases() -> None:
    assert summarize([]).mean is None
    one = summarize([5.0, None, float("nan")])
    assert (one.n, one.mean, one.std, one.lo, one.hi) == (1, 5.0, None, None, None)
    same = summarize([2.0, 2.0, 2.0])
    assert (same.std, same.lo, same.hi) == (0.0, 2.0, 2.0)


def test_scaled_keeps_interval_order() -> None:
    s = summarize([1.0, 2.0, 3.0])
    k = s.scaled(1e-3)
    assert k.mean == pytest.approx(2e-3) and k.lo < k.mean < k.hi
    neg = s.scaled(-1.0)
    assert neg.lo == pytest.approx(-s.hi) and neg.std == pytest.approx(s.std)
