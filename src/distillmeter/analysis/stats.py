"""Statistics over seeds: mean, sample standard deviation and a Student-t interval.

Seeds are few (2-10), so the degrees of freedom are small integers, where a normal
approximation would be badly wrong (t_0.975 at 1 df is 12.7): the quantile is scipy's
(``scipy.stats.t``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scipy import stats


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (0.5 < p < 1) of Student's t with ``df`` degrees of freedom: the
    t with P(T <= t) = p."""
    if not 0.5 < p < 1.0:
        raise ValueError(f"p must lie in (0.5, 1), got {p!r}")
    if df < 1 or int(df) != df:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df!r}")
    return float(stats.t.ppf(p, df))


T_METHOD = "t-interval over seeds"


@dataclass(frozen=True)
class SeedStats:
    """n, mean, sample std (ddof=1) and a two-sided 95% interval of the mean (by default
    the t-interval over seeds). With one value the std and the interval are None: one seed
    gives no spread.

    ``method`` names how the interval was made. An energy interval that carries the
    measurements' own uncertainty (``analysis/energy_interval.py``) also has ``cmp_lo`` /
    ``cmp_hi``, the interval for comparisons within one machine (without the error every
    configuration on the machine shares), and ``parts``, its components' half-widths."""

    n: int
    mean: float | None
    std: float | None
    lo: float | None
    hi: float | None
    method: str = T_METHOD
    cmp_lo: float | None = None
    cmp_hi: float | None = None
    parts: tuple[tuple[str, float], ...] = ()

    @property
    def half_width(self) -> float | None:
        return None if self.lo is None or self.hi is None else (self.hi - self.lo) / 2.0

    @property
    def comparison(self) -> tuple[float, float] | None:
        """The interval to compare configurations measured on one machine with."""
        if self.cmp_lo is not None and self.cmp_hi is not None:
            return (self.cmp_lo, self.cmp_hi)
        return None if self.lo is None or self.hi is None else (self.lo, self.hi)

    @property
    def comparison_half_width(self) -> float | None:
        c = self.comparison
        return None if c is None else (c[1] - c[0]) / 2.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["parts"] = dict(self.parts)
        return d

    def scaled(self, factor: float) -> SeedStats:
        """The same summary in other units (J -> kWh, g -> kg)."""

        def f(x: float | None) -> float | None:
            return None if x is None else x * factor

        std = None if self.std is None else self.std * abs(factor)
        lo, hi = (f(self.lo), f(self.hi)) if factor >= 0 else (f(self.hi), f(self.lo))
        clo, chi = ((f(self.cmp_lo), f(self.cmp_hi)) if factor >= 0
                    else (f(self.cmp_hi), f(self.cmp_lo)))
        parts = tuple((k, v * abs(factor)) for k, v in self.parts)
        return SeedStats(self.n, f(self.mean), std, lo, hi, self.method, clo, chi, parts)

def summarize(values: Sequence[float | None], confidence: float = 0.95) -> SeedStats:
    """Summarise the finite values of ``values`` (None and NaN are left out)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return SeedStats(0, None, None, None, None)
    mean = math.fsum(xs) / n
    if n == 1:
        return SeedStats(1, mean, None, None, None)
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1)
    std = math.sqrt(var)
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
    return SeedStats(n, mean, std, mean - half, mean + half)
