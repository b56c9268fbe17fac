"""Idle power per device: measured before work starts, or given by the user."""

from __future__ import annotations

import math
from collections.abc import Mapping

from distillmeter.errors import UserError
from distillmeter.protocol import Ledger, is_device

IdleOverride = float | int | Mapping[str, float] | None


def measured_idle_w(ledger: Ledger) -> dict[str, float]:
    """Idle power from the ledger's ``idle_baseline`` events; several for one device are
    averaged weighted by how long each was measured."""
    acc: dict[str, list[float]] = {}
    for ev in ledger.of("idle_baseline"):
        if not math.isfinite(ev.power_w):
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
    ledger: Ledger, devices: list[str], override: IdleOverride = None
) -> dict[str, float]:
    """Idle watts per device: the measured baseline, replaced by ``override`` where given.

    ``override`` is one number (applied to every device) or ``{device: watts}`` (applied to
    those devices; the others keep their measured baseline).
    """
    idle = measured_idle_w(ledger)
    if override is None:
        return idle
    if isinstance(override, Mapping):
        for dev, w in override.items():
            if not is_device(dev):
                raise UserError(f"idle power given for {dev!r}, which is not a device name "
                                "(gpu:N, cpu:N or dram:N)")
            idle[dev] = _check_w(w, dev)
        return idle
    w = _check_w(override, "every device")
    return {d: w for d in devices}


def _check_w(w: object, what: str) -> float:
    try:
        x = float(w)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(f"idle power for {what} must be a number of watts, got {w!r}") from None
    if not math.isfinite(x) or x < 0:
        raise UserError(f"idle power for {what} must be a non-negative number of watts, got {w!r}")
    return x
