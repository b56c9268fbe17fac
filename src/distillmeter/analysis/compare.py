"""Comparing two configurations: each difference with the range both intervals allow, and
whether it is separable (pure functions).

A difference between configurations A and B is *separable* when their 95% intervals do
not overlap. The range given with a difference is interval arithmetic on the two
intervals, [lo_A - hi_B, hi_A - lo_B]: every difference both intervals allow. It excludes
zero exactly when the intervals do not overlap, so "separable" means the same thing in
every sentence, table mark and plot (and it is conservative: two 95% intervals that just
touch leave the difference's own test at about 99%). A configuration with one seed has no
interval and is never separable from anything.

Energy is compared on the configurations' comparison intervals (``SeedStats.comparison``):
they were measured on one machine, so the error every configuration there shares is left
out (``analysis/energy_interval.py``). Quality is compared on the quality intervals (Wilson on
effective items for rates, ``analysis/quality.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from distillmeter.analysis.stats import SeedStats

Interval = tuple[float, float] | None


@dataclass(frozen=True)
class Difference:
    """``mean`` = A - B on the means; ``lo``/``hi`` the range both intervals allow (None
    when either has no interval)."""

    mean: float | None
    lo: float | None = None
    hi: float | None = None

    @property
    def known(self) -> bool:
        return self.lo is not None and self.hi is not None

    @property
    def separable(self) -> bool:
        """True when the two intervals do not overlap: the range excludes zero."""
        return self.known and (self.lo > 0 or self.hi < 0)

    def to_dict(self) -> dict[str, float | bool | None]:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi,
                "separable": self.separable}


def difference(a_mean: float | None, a_ci: Interval, b_mean: float | None,
               b_ci: Interval) -> Difference:
    """A - B with the range of differences both intervals allow."""
    if a_mean is None or b_mean is None:
        return Difference(None)
    if a_ci is None or b_ci is None:
        return Difference(a_mean - b_mean)
    return Difference(a_mean - b_mean, a_ci[0] - b_ci[1], a_ci[1] - b_ci[0])


def energy_difference(a: SeedStats, b: SeedStats) -> Difference:
    """Energy of A minus energy of B, on the comparison intervals (one machine)."""
    return difference(a.mean, a.comparison, b.mean, b.comparison)


def _ci(s: SeedStats) -> Interval:
    return None if s.lo is None or s.hi is None else (s.lo, s.hi)


def quality_difference(a: SeedStats, b: SeedStats) -> Difference:
    """Quality of A minus quality of B, on the quality intervals."""
    return difference(a.mean, _ci(a), b.mean, _ci(b))


def ratio_range(a: SeedStats, b: SeedStats) -> tuple[float, float] | None:
    """The range of A / B both comparison intervals allow (None without intervals or
    where B's interval reaches zero)."""
    ca, cb = a.comparison, b.comparison
    if ca is None or cb is None or cb[0] <= 0 or ca[0] < 0:
        return None
    return (ca[0] / cb[1], ca[1] / cb[0])


def dominance_separable(a: Any, b: Any) -> bool:
    """True when configuration ``a`` (a ConfigStats) dominates ``b`` on both axes with
    both differences separable: less energy and more quality, intervals apart on each.
    Only then is "a dominates b" said."""
    de = energy_difference(b.energy_j, a.energy_j)
    dq = quality_difference(a.quality, b.quality)
    return bool(de.separable and dq.separable and (de.mean or 0) > 0 and (dq.mean or 0) > 0)
