"""How far off a stage's energy can be, from what the H100 study measured (DESIGN.md,
"Measuring: what the hardware does").

Two terms per device, added (worst case: at a shared boundary the errors are correlated):

1. Boundary quantisation. NVML's energy counter and its instant power both change only
   about every 100 ms, so a boundary reading can be up to 100 ms stale: each edge can
   misplace up to ``0.1 s x the power at that edge``. For RAPL the counter updates about
   every 1 ms, so the same term is a hundred times smaller. This term dominates short
   stages: a 0.15 s burst at 450 W carries +-90 J on a 68 J reading, and is flagged.
2. Integration error, for energy that came from the trace rather than a counter:
   integrating POWER_INSTANT agreed with the counter within 0.5% on windows of 3 s or more
   in the readout study and within 3% on every stage of run a that lasted 3 s or more, so
   integrated energy carries +-3%. Estimates (utilisation x TDP) cannot tell a
   launch-bound device from a compute-bound one: the study's H100 drew 128-152 W while
   "busy" with launch-bound generation against 683-687 W on full matmuls, a factor of
   4-5 at the same utilisation. An estimate therefore carries +-50% of its energy: wide
   enough to be honest, and flagged ``estimated`` in the report.

How the total splits, for the analysis across runs (``UncertaintyParts``):

- ``random``: the boundary term (and, added later, faults): it differs from one run to the
  next, so it shrinks when repeats are averaged;
- ``systematic``: the integration or estimate term for the work the device did above its
  idle power. It is the model's error for *this* work (an estimate cannot tell a
  launch-bound stage from a compute-bound one), so repeats of the same work share it;
- ``machine``: for an estimate, the share of that +-50% that falls on its idle part (idle
  watts x seconds). The estimate's idle part is a machine constant (TDP x idle fraction,
  W/GiB x RAM) times the wall time: every run on the machine carries the same relative
  error there. It moves every configuration measured on the machine together, so it
  counts in an absolute figure and cancels in a comparison within the machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from distillmeter.accounting.energy import DeviceEnergy
from distillmeter.accounting.series import DeviceSeries
from distillmeter.protocol import ESTIMATED_SOURCES

# Seconds a boundary reading can lag the work, by source (update period of the sensor).
BOUNDARY_QUANTUM_S = {"nvml_counter": 0.1, "nvml_instant": 0.1, "rapl": 0.001, "estimate": 0.1}
INTEGRATION_REL = 0.03  # trace-integrated energy (POWER_INSTANT, RAPL-derived power)
ESTIMATE_REL = 0.5  # energy from a model (utilisation x TDP)
SHORT_STAGE_S = 1.0  # below this the boundary term is a large share of the reading


def edge_power(series: DeviceSeries, t: float, quantum: float, fallback_w: float) -> float:
    """Power near a boundary: the mean of the samples within +-quantum of it, else the
    stretch's mean power."""
    p = series.edge_power(t, quantum)
    return abs(p) if p is not None else abs(fallback_w)


@dataclass(frozen=True)
class UncertaintyParts:
    """An uncertainty (J) split by how it behaves across runs (see the module docstring)."""

    random: float = 0.0
    systematic: float = 0.0
    machine: float = 0.0

    @property
    def total(self) -> float:
        return self.random + self.systematic + self.machine

    def __add__(self, other: UncertaintyParts) -> UncertaintyParts:
        return UncertaintyParts(self.random + other.random,
                                self.systematic + other.systematic,
                                self.machine + other.machine)

    def as_dict(self) -> dict[str, float]:
        return {"random": self.random, "systematic": self.systematic, "machine": self.machine}


def device_uncertainty_parts(
    e: DeviceEnergy, series: DeviceSeries, start: float, end: float,
    idle_w: float | None = None,
) -> UncertaintyParts:
    """Uncertainty (J) of one device's energy over [start, end], split: the boundary term at
    both edges (random) plus the integration or estimate term (systematic; for an estimate,
    the share on ``idle_w x seconds`` is the machine's)."""
    seconds = max(end - start, 0.0)
    mean_w = e.joules / seconds if seconds > 0 else 0.0
    q = BOUNDARY_QUANTUM_S.get(e.source, 0.1)
    boundary = q * (edge_power(series, start, q, mean_w) + edge_power(series, end, q, mean_w))
    if e.source in ESTIMATED_SOURCES:
        idle_part = min(abs(e.joules), max(idle_w or 0.0, 0.0) * seconds)
        machine = ESTIMATE_REL * idle_part
        return UncertaintyParts(boundary, ESTIMATE_REL * abs(e.joules) - machine, machine)
    return UncertaintyParts(boundary, INTEGRATION_REL * abs(e.integrated_j), 0.0)


def short_stage_note(seconds: float, energy_j: float, uncertainty_j: float) -> str | None:
    """The note a stage shorter than about a second gets (None for longer stages)."""
    if seconds >= SHORT_STAGE_S:
        return None
    share = f", {uncertainty_j / energy_j:.0%} of its energy" if energy_j > 0 else ""
    return (
        f"short stage ({seconds:.3f} s, near the sensors' 0.1 s update period): "
        f"+-{uncertainty_j:.0f} J{share}; lengthen or repeat it for a firm figure"
    )
