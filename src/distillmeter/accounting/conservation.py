"""An independent check of a run's total: the counter against the trace.

Within a report, energy is conserved by construction: ``unattributed = total - stages``,
so the stages and the total always add up, whatever the total is. What can go wrong is
the total itself (a boundary reading that was wrong, a counter that wrapped between
readings). Where a device has both a counter read at the boundaries and a power trace from
another register (NVML's energy counter and its POWER_INSTANT field), the two are
independent measurements of the same energy, so this module compares them over the whole
run:

- ``counter_j``: the run's energy on the device as accounted (counter deltas from the
  first to the last boundary reading);
- ``trace_j``: the trapezoid integral of the trace's ``power_w`` over the same stretch;
- ``tolerance_j``: the two figures' stated uncertainties added: the counter's boundary
  term, and the integral's boundary term plus its +-3% integration term
  (``accounting/uncertainty.py``). On the recorded H100 run they agree to 0.13%
  (11,475 J against 11,490 J, tolerance 384 J).

A difference beyond the tolerance is a warning in the report. Devices are checked only
where the check is independent: not for an estimate (its trace power is derived from its
own modelled counter), not for a trace that has no power column, and not where the power
samples leave part of the run uncovered (a gap longer than ``MAX_GAP_S``, or more than
that before the first or after the last sample), which the entry says.
"""

from __future__ import annotations

from typing import Any

from distillmeter.accounting.energy import DeviceEnergy
from distillmeter.accounting.uncertainty import device_uncertainty_parts
from distillmeter.protocol import ESTIMATED_SOURCES

MAX_GAP_S = 1.0  # a longer stretch without power samples: the integral would guess it


def check_device(device: str, e: DeviceEnergy, series: Any, source: str,
                 begin: float, end: float) -> dict[str, Any]:
    """The check for one device: a dict with ``device``, ``checked`` and, when checked,
    ``counter_j``, ``trace_j``, ``difference_j``, ``tolerance_j`` and ``agrees``; when not,
    ``reason``."""
    out: dict[str, Any] = {"device": device, "source": source, "checked": False}
    if source in ESTIMATED_SOURCES:
        out["reason"] = "an estimate: its trace is derived from its own modelled counter"
        return out
    if e.method != "counter" or e.counted_j <= 0:
        out["reason"] = "no counter total over the run to check"
        return out
    if not series.has_power:
        out["reason"] = "the trace has no power samples for it"
        return out
    gap = series.coverage_gap(begin, end)
    if gap > MAX_GAP_S:
        out["reason"] = (f"the trace leaves {gap:.1f} s of the run without a power sample "
                         f"(more than {MAX_GAP_S:g} s)")
        return out
    trace_j = series.power_cumulative(end) - series.power_cumulative(begin)
    counter_unc = device_uncertainty_parts(e, series, begin, end).total
    integral = DeviceEnergy(device=device, integrated_j=trace_j, source="nvml_instant",
                            method="integral")
    trace_unc = device_uncertainty_parts(integral, series, begin, end).total
    tolerance = counter_unc + trace_unc
    diff = trace_j - e.joules
    out.update(checked=True, counter_j=e.joules, trace_j=trace_j, difference_j=diff,
               relative=diff / e.joules if e.joules else None, tolerance_j=tolerance,
               agrees=bool(abs(diff) <= tolerance))
    return out


def check_conservation(inputs: Any, by_dev: dict[str, DeviceEnergy]
                       ) -> tuple[list[dict[str, Any]], list[str]]:
    """Check every device of a run (``core.RunInputs``) whose total came from a counter
    against its trace integral. Returns the entries for ``report.conservation`` and the
    warnings for the disagreements."""
    entries: list[dict[str, Any]] = []
    warnings: list[str] = []
    for d, e in by_dev.items():
        entry = check_device(d, e, inputs.series[d], inputs.sources.get(d, ""),
                             inputs.t_begin, inputs.t_end)
        entries.append(entry)
        if entry["checked"] and not entry["agrees"]:
            warnings.append(
                f"conservation check: {d}'s counter says {entry['counter_j']:,.1f} J over the "
                f"run but its power trace integrates to {entry['trace_j']:,.1f} J "
                f"({100 * entry['relative']:+.1f}%), beyond the stated uncertainty "
                f"(+-{entry['tolerance_j']:,.1f} J): a boundary reading or the trace is wrong"
            )
    return entries, warnings
