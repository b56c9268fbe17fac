"""Measurement faults applied to the stages they hit.

The meter writes a ``warning`` event when a sensor misbehaves during a stage (an NVML error,
a counter going backwards, the trace sampler dying) or when another process runs on a
metered GPU. The event names the stage and usually the device. This module turns those
events into what the report says about that stage:

- its status becomes ``degraded`` and the warning's text is added to its notes;
- its uncertainty widens, once per affected device (however many warnings repeat it):
  * a sensor fault on a device: the device's figure there is treated as no better than a
    trace integral, ``+ INTEGRATION_REL x |energy|`` (the study's +-3%);
  * a fault without a device (the sampler thread died): the same, on every device;
  * another process on a GPU: that process may account for any part of the stage's
    energy above idle, so ``+ active energy`` on that device.

A warning that names a stage but no device and is not one of the meter's sampler messages
(a user's ``meter.warn("dataset truncated", stage=...)``) is added to the stage's notes
without degrading it: it says nothing about the measurement.

A device whose energy in a stage is unknown (no boundary reading and no sample: "counted
as 0 J") gets an uncertainty of ``seconds x`` the most power it was seen drawing in the run
(its idle power if nothing else is known), so an unknown is never a quiet zero +- 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from distillmeter.accounting.series import DeviceSeries
from distillmeter.accounting.uncertainty import INTEGRATION_REL
from distillmeter.protocol import Ledger, StageReport

# The meter's messages (energy/meter.py) for a sampler that died: they name no device
# because every device loses its trace.
SAMPLER_MESSAGES = ("the trace sampler died", "degraded: the trace sampler died")
CONTAMINATION = "possible contamination"
_REPEATED = "repeated "


@dataclass
class StageFaults:
    """What the meter's warnings say about one stage window."""

    notes: list[str] = field(default_factory=list)
    devices: set[str] = field(default_factory=set)  # devices with a sensor fault
    all_devices: bool = False  # a fault that hit every device (the sampler died)
    contaminated: set[str] = field(default_factory=set)

    @property
    def degrades(self) -> bool:
        return bool(self.devices or self.all_devices or self.contaminated)


def _window_of(name: str, t: float, starts: list[tuple[int, str, float]]) -> int | None:
    """The window named ``name`` that started last at or before ``t`` (the meter writes a
    stage's warnings while it runs or right after its end), else the first of that name."""
    best = None
    for i, n, t0 in starts:
        if n != name:
            continue
        if best is None or t0 <= t:
            best = i
    return best


def stage_faults(ledger: Ledger, stages: list[StageReport]) -> dict[int, StageFaults]:
    """Index of each stage in ``stages`` -> what the ledger's warnings say about it."""
    starts = [(i, s.name, s.t_start) for i, s in enumerate(stages)]
    out: dict[int, StageFaults] = {}
    for ev in ledger.of("warning"):
        if not ev.stage:
            continue
        i = _window_of(ev.stage, ev.t, starts)
        if i is None:
            continue
        f = out.setdefault(i, StageFaults())
        message = ev.message
        if message.startswith(_REPEATED) and ": " in message:
            message = message.split(": ", 1)[1]  # the run_end summary of a repeated one
        note = f"meter: {message}" + (f" ({ev.device})" if ev.device else "")
        if note not in f.notes:
            f.notes.append(note)
        if CONTAMINATION in message and ev.device:
            f.contaminated.add(ev.device)
        elif ev.device:
            f.devices.add(ev.device)
        elif any(m in message for m in SAMPLER_MESSAGES):
            f.all_devices = True
    return out


def apply_faults(stages: list[StageReport], faults: dict[int, StageFaults],
                 idle_w: dict[str, float]) -> list[StageReport]:
    """The stages with their faults applied (status, notes, wider uncertainty)."""
    out = list(stages)
    for i, f in faults.items():
        s = stages[i]
        extra = 0.0
        if f.degrades:
            devices = [d for d in s.energy_j if d != "total"]
            for d in devices:
                e = s.energy_j[d]
                widen = 0.0
                if f.all_devices or d in f.devices:
                    widen = INTEGRATION_REL * abs(e)
                if d in f.contaminated:
                    widen = max(widen, e - idle_w.get(d, 0.0) * s.seconds, 0.0)
                extra += widen
        notes = list(s.notes) + [n for n in f.notes if n not in s.notes]
        if extra > 0:
            notes.append(f"meter faults in this stage widen its uncertainty by {extra:.3g} J")
        status = "degraded" if f.degrades and s.status == "ok" else s.status
        parts = dict(s.uncertainty_parts)
        if parts:  # a fault is this run's own: it does not repeat in the next run
            parts["random"] = parts.get("random", 0.0) + extra
        out[i] = s.model_copy(update={"status": status, "notes": notes,
                                      "uncertainty_j": s.uncertainty_j + extra,
                                      "uncertainty_parts": parts})
    return out


def unknown_energy_bound(series: DeviceSeries, seconds: float, run_w: float | None,
                         idle_w: float | None) -> float:
    """Joules a device could have drawn over ``seconds`` when nothing measured it then: the
    most power it was seen drawing in the run (the trace's peak, else its mean run power),
    else its idle power; 0 when nothing at all is known about it."""
    candidates = []
    if series.has_power:
        candidates.append(float(series.power_max))
    if run_w is not None and math.isfinite(run_w):
        candidates.append(run_w)
    if idle_w is not None:
        candidates.append(idle_w)
    return max(candidates, default=0.0) * max(seconds, 0.0)
