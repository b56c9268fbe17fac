"""A configuration's energy interval: the spread between seeds combined with the runs' own
measurement uncertainty and the idle baseline's error (pure functions).

Each run's report splits its measurement uncertainty (``uncertainty_parts``, see
``accounting/uncertainty.py``) by how it behaves across runs, and the three parts enter
the interval of the configuration's mean energy differently:

- ``seeds``: the t-interval half-width over the seeds, t(0.975, k-1) x s / sqrt(k);
- ``random``: each run's boundary quantisation (and fault) term r_i, independent from run
  to run, so it averages down: sqrt(sum r_i^2) / k;
- ``systematic``: each run's model error for its work (an estimate's +-50% of what the
  work added above idle, an integral's +-3%) and the whole uncertainty of its upstream
  (shared teacher) stages, which every seed reuses: the same error in every repeat, so
  it does not shrink with more seeds: the mean of the runs' terms;
- ``machine``: the part of an estimate that is a machine constant x time (its idle
  floor, a DRAM W/GiB figure): shared by every run on the machine, the mean of the runs'
  terms;
- ``idle`` (energy above idle only): each run's idle baseline error (W) x its seconds,
  independent between runs (each measured its own baseline: sqrt(sum^2) / k), plus the
  upstream stages' share, common to the seeds.

Every term is read as a 95% half-width (the measurement terms are stated bounds) and
independent terms add in quadrature:

    absolute   = sqrt(seeds^2 + random^2 + (systematic + machine)^2 + idle^2)
    comparison = sqrt(seeds^2 + random^2 + systematic^2 + idle^2)

The absolute interval is the one to quote and to hold against a budget. Configurations of
one group were measured on one kind of machine with the same sensors: the machine term
moves all of them together (it scales a difference, it cannot reverse it), so comparisons
within a group use the comparison interval. Systematic and machine terms add linearly
before the square: both come from one model, so they are not taken as independent. The
energy totals are counter deltas with idle power included, so the idle baseline's error
enters only the energy above idle. One seed gives no interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from distillmeter.accounting.idle import IDLE_DRIFT_REL
from distillmeter.accounting.uncertainty import ESTIMATE_REL, INTEGRATION_REL
from distillmeter.analysis.stats import SeedStats, summarize

ENERGY_METHOD = "t-interval over seeds combined with the runs' measurement uncertainty"
__all__ = ["ENERGY_METHOD", "IDLE_DRIFT_REL", "Measured", "combine", "parts_of"]


@dataclass(frozen=True)
class Measured:
    """One run's figure and its measurement uncertainty, by how it behaves across runs
    (half-widths in the figure's unit)."""

    value: float
    random: float = 0.0
    systematic: float = 0.0
    machine: float = 0.0
    idle: float = 0.0  # this run's own idle baseline error (independent between runs)
    idle_shared: float = 0.0  # the upstream stages' idle error (common to the seeds)

    def scaled(self, k: float) -> Measured:
        a = abs(k)
        return Measured(self.value * k, self.random * a, self.systematic * a,
                        self.machine * a, self.idle * a, self.idle_shared * a)


def parts_of(parts: Mapping[str, float] | None, uncertainty: float,
             energy_j: Mapping[str, float], source: Mapping[str, str]) -> tuple[float, ...]:
    """(random, systematic, machine) of a stage or a run total: its ``uncertainty_parts``,
    or for an older report, the systematic term recomputed from its sources (an estimate's
    +-50%, an integral's +-3%) and the rest taken as random."""
    if parts:
        sys_ = float(parts.get("systematic", 0.0))
        mach = float(parts.get("machine", 0.0))
        return (max(float(uncertainty) - sys_ - mach, 0.0), sys_, mach)
    sys_ = 0.0
    for d, e in energy_j.items():
        if d == "total":
            continue
        src = source.get(d)
        rel = ESTIMATE_REL if src == "estimate" else (
            INTEGRATION_REL if src == "nvml_instant" else 0.0)
        sys_ += rel * abs(float(e))
    sys_ = min(sys_, float(uncertainty))
    return (float(uncertainty) - sys_, sys_, 0.0)


def _quad(*xs: float) -> float:
    return math.sqrt(math.fsum(x * x for x in xs))


def combine(runs: Sequence[Measured], confidence: float = 0.95) -> SeedStats:
    """The mean over runs (seeds) with the module's absolute and comparison intervals."""
    seeds = summarize([r.value for r in runs], confidence)
    k = seeds.n
    if k < 2 or seeds.mean is None or seeds.half_width is None:
        return seeds
    random = _quad(*(r.random for r in runs)) / k
    systematic = math.fsum(r.systematic for r in runs) / k
    machine = math.fsum(r.machine for r in runs) / k
    idle = _quad(*(r.idle for r in runs)) / k + math.fsum(r.idle_shared for r in runs) / k
    half = _quad(seeds.half_width, random, systematic + machine, idle)
    cmp_half = _quad(seeds.half_width, random, systematic, idle)
    parts = (("seeds", seeds.half_width), ("random", random), ("systematic", systematic),
             ("machine", machine), ("idle", idle))
    m = seeds.mean
    return SeedStats(k, m, seeds.std, m - half, m + half, ENERGY_METHOD, m - cmp_half,
                   m + cmp_half, parts)
