"""Idle power per device: measured before work starts, or given by the user; and how far
off that baseline can be (``idle_uncertainty_w``).

The idle baseline is one short measurement (``idle_baseline``: ``power_w`` over
``seconds``) taken before the work. Its error, in watts, is the largest of:

- the counter's quantisation over the window: two edges of the sensor's update period
  (0.1 s for NVML and the estimate, 1 ms for RAPL) x the power, over the window's seconds
  (3 s of NVML: +-6.7%);
- the spread of the trace's power samples inside the window (their standard deviation):
  how much the device wandered while idle;
- a floor of ``IDLE_DRIFT_REL`` (10%) of the idle power, because idle power drifts with
  what ran before: the H100 readout study's four idle windows of one session drew 121.9,
  141.9, 126.7 and 135.1 W (``tests/data/h100-nvml-probe.json``, 2026), +-8% around their
  mean, so one baseline stands for the run's idle only to about 10%.

An estimated device is the exception: its idle power is the model's own constant read from
an exact (modelled) counter, so only the spread term applies; the model's error is the
estimate's, carried by its energy (``accounting/uncertainty.py``).

A baseline reused from the meter's cache (``idle_baseline.cached``) was measured in another
session, so this run's trace holds no samples of it: it gets the quantisation term and the
floor. A baseline given by the user (``--idle-w``) gets the floor alone. The error reaches every
figure that subtracts idle power (active energy, energy above idle); the energy totals are
counter deltas with idle included, and do not depend on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from distillmeter.accounting.limits import limit_phrase, max_power_w
from distillmeter.accounting.series import DeviceSeries
from distillmeter.accounting.uncertainty import BOUNDARY_QUANTUM_S
from distillmeter.errors import UserError
from distillmeter.protocol import ESTIMATED_SOURCES, Ledger, is_device

IdleOverride = float | int | Mapping[str, float] | None


def plausible_idle(device: str, power_w: float, speed: float = 1.0) -> bool:
    """A finite idle power in [0, the device's maximum] (limits.py; ``speed``: a replayed
    trace's); an impossible one is flagged (plausibility.py) and not used."""
    if not math.isfinite(power_w):
        return False
    return not is_device(device) or 0.0 <= power_w <= max_power_w(device, speed)


def measured_idle_w(ledger: Ledger, speeds: Mapping[str, float] | None = None
                    ) -> dict[str, float]:
    """Idle power from the ledger's ``idle_baseline`` events; several for one device are
    averaged weighted by how long each was measured. Impossible ones are left out."""
    acc: dict[str, list[float]] = {}
    for ev in ledger.of("idle_baseline"):
        if not plausible_idle(ev.device, ev.power_w, (speeds or {}).get(ev.device, 1.0)):
            continue
        wsum = acc.setdefault(ev.device, [0.0, 0.0, 0.0])
        weight = ev.seconds if math.isfinite(ev.seconds) and ev.seconds > 0 else 1.0
        wsum[0] += ev.power_w * weight
        wsum[1] += weight
        wsum[2] += 1
    return {d: v[0] / v[1] for d, v in acc.items() if v[1] > 0}


def cached_idle_notes(ledger: Ledger) -> list[str]:
    """A note when the idle baseline came from the meter's cache rather than from this
    run: it then describes the host as it was when measured. Only active energy depends
    on it (energy and its uncertainty do not), so nothing is widened; the note says how
    old it is, and ``account(idle_w=...)`` re-accounts with another."""
    cached = [ev for ev in ledger.of("idle_baseline") if ev.cached]
    if not cached:
        return []
    info = cached[0].cached
    age_h = float(info.get("age_s") or 0.0) / 3600
    devices = ", ".join(ev.device for ev in cached)
    return [f"idle baseline of {devices} reused from the meter's cache (measured "
            f"{info.get('measured_at')}, {age_h:.1f} h before this run); active energy "
            "depends on it (--idle-w re-accounts with another)"]


def idle_power(
    ledger: Ledger, devices: list[str], override: IdleOverride = None,
    speeds: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Idle watts per device: the measured baseline, replaced by ``override`` where given.

    ``override`` is one number (applied to every device) or ``{device: watts}`` (applied to
    those devices; the others keep their measured baseline).
    """
    idle = measured_idle_w(ledger, speeds)
    if override is None:
        return idle
    if isinstance(override, Mapping):
        for dev, w in override.items():
            if not is_device(dev):
                raise UserError(f"idle power given for {dev!r}, which is not a device name "
                                "(gpu:N, cpu:N or dram:N)")
            idle[dev] = _check_w(w, dev, [dev])
        return idle
    w = _check_w(override, "every device", devices)
    return {d: w for d in devices}


def _check_w(w: object, what: str, devices: list[str]) -> float:
    try:
        x = float(w)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(f"idle power for {what} must be a number of watts, got {w!r}") from None
    if not math.isfinite(x) or x < 0:
        raise UserError(f"idle power for {what} must be a non-negative number of watts, got {w!r}")
    for d in devices:
        if is_device(d) and x > max_power_w(d):
            raise UserError(f"idle power for {d} must be at most {limit_phrase(d)}, "
                            f"got {w!r}")
    return x


IDLE_DRIFT_REL = 0.10  # the floor: idle power drifts with what ran before (module docstring)


def _event_error_w(power_w: float, seconds: float, t_end: float, source: str,
                   series: DeviceSeries | None) -> float:
    p = abs(power_w)
    spread = 0.0
    if series is not None and series.has_power and math.isfinite(seconds) and seconds > 0:
        n, std = series.power_spread(t_end - seconds, t_end)
        if n >= 2 and std is not None:
            spread = std
    if source in ESTIMATED_SOURCES:
        # the model's idle is its own constant, read from an exact counter: only what this
        # process did while idle moves it (the model's error is the estimate's, elsewhere)
        return spread
    q = BOUNDARY_QUANTUM_S.get(source, 0.1)
    quant = 2.0 * q * p / seconds if math.isfinite(seconds) and seconds > 0 else p
    return max(quant, spread, IDLE_DRIFT_REL * p)


def idle_uncertainty_w(ledger: Ledger, series: Mapping[str, DeviceSeries],
                       sources: Mapping[str, str], idle: Mapping[str, float],
                       speeds: Mapping[str, float] | None = None) -> dict[str, float]:
    """+- watts of each device's idle power in ``idle`` (see the module docstring). Several
    baselines of one device: their errors weighted by seconds, as the power is."""
    measured = measured_idle_w(ledger, speeds)
    acc: dict[str, list[float]] = {}
    for ev in ledger.of("idle_baseline"):
        if not plausible_idle(ev.device, ev.power_w, (speeds or {}).get(ev.device, 1.0)):
            continue
        # a baseline reused from the meter's cache was measured in another session: this
        # run's trace does not hold its window, so it gets no spread term
        err = _event_error_w(ev.power_w, ev.seconds, ev.t, sources.get(ev.device, ""),
                             None if ev.cached else series.get(ev.device))
        weight = ev.seconds if math.isfinite(ev.seconds) and ev.seconds > 0 else 1.0
        a = acc.setdefault(ev.device, [0.0, 0.0])
        a[0] += err * weight
        a[1] += weight
    out: dict[str, float] = {}
    for d, w in idle.items():
        if d in acc and d in measured and math.isclose(measured[d], w, rel_tol=1e-12):
            out[d] = acc[d][0] / acc[d][1]
        else:  # the user's figure (or none measured): the drift floor alone
            out[d] = IDLE_DRIFT_REL * abs(w)
    return out
