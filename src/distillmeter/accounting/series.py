"""What accounting knows of one device's trace: the answers to the questions it asks,
found in one streamed pass over trace.csv (``accounting/scan.py``) instead of the samples
held in memory.

Two views of a device's energy over time come from the trace:
- the integral of ``power_w`` (POWER_INSTANT on NVIDIA GPUs): a piecewise-linear power
  curve through the samples, held flat before the first and after the last sample
  ("edges held at the nearest sample"), integrated exactly by the trapezoid rule;
- the ``energy_j`` column (the cumulative counter as sampled), linearly interpolated and
  made monotonic: a step down (a counter reset) contributes nothing instead of a large
  negative.

Both are cumulative functions E(t) on the run's clock, so the energy between any two times
is E(b) - E(a), and energies of adjacent windows add up exactly. Accounting asks for them
only at times it knows from the ledger before reading the trace (boundaries, moved
boundaries, readings), so the pass computes them at exactly those times (``Probes``), with
the same arithmetic as on the whole arrays: the figures are those of an in-memory reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_EMPTY = np.empty(0)


class UnplannedProbe(LookupError):
    """Accounting asked the trace for a figure its plan did not name: a bug, not a user
    mistake (``accounting/probes.py`` lists what accounting asks)."""


@dataclass(frozen=True)
class Probes:
    """What one pass over a trace computes, for every device:

    - ``points``: times where the cumulative power integral and the counter are wanted;
    - ``edges`` x ``quanta``: the mean power of the samples within +-q of each edge (the
      boundary-uncertainty term), with the power interpolated at the midpoint of that
      stretch where no sample falls inside;
    - ``spreads``: closed stretches [a, b] whose samples' count and standard deviation are
      wanted (the idle baseline's windows);
    - ``spans``: stretches whose longest run without a power sample is wanted (coverage);
    - ``plot_points``: the size of the downsampled power series for plots.
    """

    points: np.ndarray = field(default_factory=lambda: _EMPTY)
    edges: np.ndarray = field(default_factory=lambda: _EMPTY)
    quanta: tuple[float, ...] = ()
    spreads: tuple[tuple[float, float], ...] = ()
    spans: tuple[tuple[float, float], ...] = ()
    plot_points: int = 300
    plot_span: float = 0.0  # the run's expected length (s): the plot buckets' first width

    @classmethod
    def build(cls, points: set[float], edges: set[float], quanta: set[float],
              spreads: set[tuple[float, float]], spans: set[tuple[float, float]],
              plot_points: int = 300, plot_span: float = 0.0) -> Probes:
        return cls(np.array(sorted(points), dtype=float), np.array(sorted(edges), dtype=float),
                   tuple(sorted(quanta)), tuple(sorted(spreads)), tuple(sorted(spans)),
                   plot_points, plot_span)

    def covers(self, other: Probes) -> bool:
        """True when every figure ``other`` asks for is among ours."""
        return (bool(np.isin(other.points, self.points).all())
                and bool(np.isin(other.edges, self.edges).all())
                and set(other.quanta) <= set(self.quanta)
                and set(other.spreads) <= set(self.spreads)
                and set(other.spans) <= set(self.spans)
                and other.plot_points == self.plot_points)

    def union(self, other: Probes) -> Probes:
        return Probes.build(set(self.points.tolist()) | set(other.points.tolist()),
                            set(self.edges.tolist()) | set(other.edges.tolist()),
                            set(self.quanta) | set(other.quanta),
                            set(self.spreads) | set(other.spreads),
                            set(self.spans) | set(other.spans),
                            other.plot_points, max(self.plot_span, other.plot_span))


def _find(sorted_values: np.ndarray, x: float, what: str) -> int:
    i = int(np.searchsorted(sorted_values, x))
    if i >= sorted_values.size or sorted_values[i] != x:
        raise UnplannedProbe(f"the trace pass was not asked for {what} at t={x!r}")
    return i


@dataclass
class DeviceSeries:
    """One device's figures from a pass (see the module docstring). ``n_power`` and
    ``n_counter`` count its samples with a power and with a counter value; the ``*_t``
    times are its first and last of each (None without); ``counter_resets`` the steps
    down its counter took; ``plot`` its downsampled power ``(t, p)`` for plots."""

    device: str
    probes: Probes = field(default_factory=Probes)
    n_power: int = 0
    n_counter: int = 0
    first_power_t: float | None = None
    last_power_t: float | None = None
    first_counter_t: float | None = None
    last_counter_t: float | None = None
    power_max: float | None = None
    power_min: float | None = None
    counter_resets: int = 0
    cumulative: np.ndarray = field(default_factory=lambda: _EMPTY)  # at probes.points
    counter: np.ndarray = field(default_factory=lambda: _EMPTY)  # at probes.points
    edge_means: dict[float, np.ndarray] = field(default_factory=dict)  # q -> at edges
    spread: dict[tuple[float, float], tuple[int, float | None]] = field(default_factory=dict)
    gaps: dict[tuple[float, float], float] = field(default_factory=dict)
    plot: tuple[list[float], list[float]] = ([], [])

    @property
    def has_power(self) -> bool:
        return self.n_power > 0

    @property
    def has_counter(self) -> bool:
        return self.n_counter > 0

    @property
    def t_first(self) -> float | None:
        """The first sample's time (power or counter), for checking the trace's clock."""
        ts = [t for t in (self.first_power_t, self.first_counter_t) if t is not None]
        return min(ts) if ts else None

    @property
    def t_last(self) -> float | None:
        """The last sample's time (power or counter)."""
        ts = [t for t in (self.last_power_t, self.last_counter_t) if t is not None]
        return max(ts) if ts else None

    def power_cumulative(self, x: float) -> float:
        """Integral of power from the first power sample to ``x`` (negative before it)."""
        return float(self.cumulative[_find(self.probes.points, x, "the power integral")])

    def counter_at(self, x: float) -> float:
        """The (monotonic) counter column interpolated at ``x``, held beyond its ends."""
        return float(self.counter[_find(self.probes.points, x, "the counter")])

    def energy_between(self, a: float, b: float) -> tuple[float, str] | None:
        """Energy from ``a`` to ``b`` and how it was found: ``"power"`` (integral of
        power_w, preferred: it follows the load within a few ms) or ``"counter_column"``
        (the sampled counter, when no power was recorded); None when neither exists."""
        if self.has_power:
            return self.power_cumulative(b) - self.power_cumulative(a), "power"
        if self.has_counter:
            return self.counter_at(b) - self.counter_at(a), "counter_column"
        return None

    def edge_power(self, t: float, quantum: float) -> float | None:
        """Mean of the power samples in [t - quantum, t + quantum]; the power interpolated
        at that stretch's midpoint if none fall in it; None without power samples."""
        if not self.has_power:
            return None
        means = self.edge_means.get(quantum)
        if means is None:
            raise UnplannedProbe(f"the trace pass was not asked for +-{quantum} s means")
        return float(means[_find(self.probes.edges, t, "the power near an edge")])

    def power_spread(self, a: float, b: float) -> tuple[int, float | None]:
        """How many power samples fall in [a, b], and their standard deviation (None for
        fewer than two)."""
        if (a, b) not in self.spread:
            if not self.has_power:
                return 0, None
            raise UnplannedProbe(f"the trace pass was not asked for the spread in [{a}, {b}]")
        return self.spread[(a, b)]

    def coverage_gap(self, a: float, b: float) -> float:
        """The longest stretch of [a, b] without a power sample."""
        if (a, b) not in self.gaps:
            if not self.has_power:
                return b - a
            raise UnplannedProbe(f"the trace pass was not asked for the gaps in [{a}, {b}]")
        return self.gaps[(a, b)]
