"""Intervals for quality over seeds that stay inside the metric's bounds.

A t-interval over three seeds of an exact-match rate can run past 1 (0.81 +- 0.48 over
seeds 0.88, 0.96, 0.59). For a metric that is a rate of test items in [0, 1] (exact match,
accuracy, pass@k, ...) the interval here is a **Wilson score interval on an effective
sample size**, the construction survey statistics uses for a proportion estimated from
clustered samples (Korn & Graubard, "Confidence intervals for proportions with small
expected number of positive counts estimated from survey data", Survey Methodology 24(2),
1998, who use it with Clopper-Pearson; Wilson's score form needs no beta quantiles):

- the seeds are the clusters: p = mean of the seeds' rates, and the variance of p is
  estimated from the seeds, s^2 / k (k seeds). That variance holds both the test items'
  sampling and the training's seed-to-seed spread;
- the effective number of items is n_eff = p (1 - p) / (s^2 / k): the number of
  independent items that would give p that variance. It is capped at the items actually
  scored (the sum of the seeds' ``n``), so seeds that agree exactly still leave the items'
  own binomial uncertainty;
- the interval is Wilson's with n_eff items and, in place of the normal quantile, the t
  quantile on k - 1 degrees of freedom (few seeds: a wider interval, as the t-interval).
  scipy's Wilson interval (``binomtest(k, n).proportion_ci(method="wilson")``) takes whole
  items and the normal quantile, so the formula is written here; with those it gives
  scipy's figures (``tests/analysis/test_scipy_numerics.py``).

Wilson's interval always lies inside [0, 1] and always contains p. With seeds that agree
it is close to the pooled Wilson interval of all items; with a failed seed it widens like
the t-interval but stops at the bounds (0.88, 0.96, 0.59 with 256 items each: 0.27-0.98).
One seed gives no interval, as for every figure here.

The difference between two configurations' qualities is given as the range of
differences both intervals allow (``analysis/compare.py``). Metrics not known to be rates
keep the t-interval over seeds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from distillmeter.analysis.stats import SeedStats, summarize, t_quantile

WILSON_METHOD = "Wilson score interval on the effective items (seeds as clusters)"

# Metric names (lower case; lm-eval's ",filter" suffix dropped) that are rates of items in
# [0, 1]: the share of test items answered right.
PROPORTION_METRICS = frozenset({
    "exact_match", "em", "accuracy", "acc", "acc_norm", "match", "correct", "pass@1",
    "pass_at_1", "success_rate", "win_rate",
})


def is_proportion(metric: str | None, values: Sequence[float | None] = ()) -> bool:
    """True for a metric known to be a rate of test items in [0, 1] (``exact_match``,
    ``accuracy``, ``acc_norm``, ``pass@k``, ...), whose values all lie in [0, 1]."""
    if not metric:
        return False
    name = metric.split(",", 1)[0].strip().lower()
    known = name in PROPORTION_METRICS or re.fullmatch(r"pass@\d+", name) is not None
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return known and all(0.0 <= v <= 1.0 for v in vals)


def wilson(p: float, n: float, z: float) -> tuple[float, float]:
    """Wilson's score interval for a rate ``p`` over ``n`` items with quantile ``z``."""
    if n <= 0 or not math.isfinite(n):
        return (p, p)
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z / denom * math.sqrt(max(p * (1.0 - p), 0.0) / n + z2 / (4.0 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def proportion_summary(values: Sequence[float | None], items: Sequence[int | None],
                       confidence: float = 0.95) -> SeedStats:
    """Mean and interval of a rate over seeds (``values``), each measured on ``items[i]``
    test items (None or 0 where unknown): the module's Wilson interval on n_eff."""
    pairs = [(float(v), int(n) if n else 0) for v, n in zip(values, items, strict=True)
             if v is not None and math.isfinite(float(v))]
    plain = summarize([v for v, _ in pairs], confidence)
    if plain.n < 2 or plain.mean is None or plain.std is None:
        return plain
    k = plain.n
    p = min(max(plain.mean, 0.0), 1.0)
    scored = sum(n for _, n in pairs) if all(n > 0 for _, n in pairs) else math.inf
    var_mean = plain.std ** 2 / k
    n_eff = p * (1.0 - p) / var_mean if var_mean > 0 else math.inf
    n_eff = min(n_eff, scored)
    if not math.isfinite(n_eff):  # seeds agree exactly and no item counts: nothing to add
        return SeedStats(k, plain.mean, plain.std, plain.mean, plain.mean, WILSON_METHOD)
    z = t_quantile(0.5 + confidence / 2.0, k - 1)
    lo, hi = wilson(p, max(n_eff, 1e-9), z)
    return SeedStats(k, plain.mean, plain.std, min(lo, plain.mean), max(hi, plain.mean),
                   WILSON_METHOD)


def quality_summary(metric: str | None, values: Sequence[float | None],
                    items: Sequence[int | None]) -> SeedStats:
    """The quality interval: Wilson on n_eff for a known rate metric, else the t-interval
    over seeds (its method says which)."""
    if is_proportion(metric, values):
        return proportion_summary(values, items)
    return summarize(values)
