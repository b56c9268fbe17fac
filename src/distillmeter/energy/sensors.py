"""The sensor interface (device discovery is in ``discovery.py``).

A sensor reads one kind of hardware (NVML GPUs, RAPL zones, the CPU estimate, a replayed
trace) and names its devices with protocol names (``gpu:0``, ``cpu:0``, ``dram:0``). Every
reading is either a number or ``None``; a reading that fails is ``None`` plus a warning,
never a zero. Sensors are not thread-safe: the meter serialises all calls with one lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

Clock = Callable[[], float]
Reading = dict[str, "float | None"]


class Sensor:
    """Base class. Subclasses set ``devices`` and ``sources`` and override
    :meth:`read_energy` and :meth:`read_power` (or :meth:`sample` when one read yields both).

    ``counter_every``: in the trace, the sampler reads the energy counter only every N-th
    sample (NVML's counter costs ~4 ms a call; its instant power field ~10 us)."""

    kind = "sensor"
    counter_every = 1

    def __init__(self) -> None:
        self.devices: list[str] = []
        self.sources: dict[str, str] = {}
        self._warnings: list[tuple[str, str | None]] = []
        self._clock: Clock = time.monotonic

    # -- lifecycle
    def start(self, clock: Clock) -> None:
        """Called by the meter before the first reading, with the meter's clock (seconds
        since the run started). Sensors that replay time use it; others may ignore it."""
        self._clock = clock

    def close(self) -> None:
        """Release handles (NVML shutdown, open files)."""

    def resume_from(self, readings: dict[str, float | None]) -> None:
        """A resumed run's last recorded counter values. Modelled counters continue from
        them so they never run backwards; hardware counters keep their own values."""

    # -- readings
    def read_energy(self) -> Reading:
        """Cumulative energy per device in joules, or None where it cannot be read."""
        return {d: None for d in self.devices}

    def read_power(self) -> Reading:
        """Instantaneous power per device in watts, or None where there is none."""
        return {d: None for d in self.devices}

    def sample(self, read_counter: bool) -> dict[str, tuple[float | None, float | None]]:
        """One trace sample: ``{device: (energy_j or None, power_w or None)}``. The energy
        counter is read only when ``read_counter``."""
        power = self.read_power()
        energy = self.read_energy() if read_counter else {}
        return {d: (energy.get(d), power.get(d)) for d in self.devices}

    def foreign_processes(self) -> dict[str, list[int]]:
        """Processes running on each device, for the contamination check (GPUs only)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """What this sensor is and how it reads, for environment.json."""
        return {"kind": self.kind, "devices": list(self.devices), "sources": dict(self.sources)}

    # -- warnings
    def _warn(self, message: str, device: str | None = None) -> None:
        self._warnings.append((message, device))

    def pop_warnings(self) -> list[tuple[str, str | None]]:
        """Warnings raised since the last call, as ``(message, device)``."""
        out, self._warnings = self._warnings, []
        return out


def parse_device_selection(devices: str | Iterable[str] | None) -> list[str] | None:
    """``"auto"``/None -> None (everything found); ``"gpu,cpu:0"`` or a list -> selectors."""
    if devices is None or devices == "auto":
        return None
    items = devices.split(",") if isinstance(devices, str) else list(devices)
    out = [d.strip() for d in items if d and d.strip()]
    for d in out:
        kind = d.split(":", 1)[0]
        if kind not in ("gpu", "cpu", "dram") or (":" in d and not d.split(":", 1)[1].isdigit()):
            raise ValueError(
                f"unknown device selector {d!r}: use gpu, cpu, dram or a device name "
                "such as gpu:0 (or 'auto')"
            )
    return out


def contamination_warnings(found: dict[str, list[int]], seen: dict[str, set[int]]
                           ) -> list[tuple[str, str]]:
    """Warnings for processes on a metered device that are not this process or its
    descendants (their work would be counted in this run's energy). ``seen`` remembers
    pids already reported, so each is named once."""
    if not any(found.values()):
        return []
    import psutil

    me = psutil.Process()
    ours = {me.pid, *(c.pid for c in me.children(recursive=True))}
    out = []
    for d, pids in found.items():
        new = [p for p in pids if p not in ours and p not in seen.get(d, set())]
        if not new:
            continue
        seen.setdefault(d, set()).update(new)
        hidden = [p for p in new if not psutil.pid_exists(p)]
        note = (" (some are not visible here: from inside a container NVML reports host "
                "pids, this run's own included)") if hidden else ""
        out.append((f"other processes on {d} (pids {', '.join(map(str, new))}){note}: "
                    f"possible contamination, their work is counted in {d}'s energy", d))
    return out


def backwards_counters(last: dict[str, float], t: float, readings: dict[str, Any]
                       ) -> list[tuple[str, str]]:
    """Warnings ``(message, device)`` for counters that went backwards since ``last``
    (the last value seen per device, updated in place): a reset or a driver reload."""
    out = []
    for d, v in readings.items():
        if v is None:
            continue
        prev = last.get(d)
        if prev is not None and v < prev - 1e-6:
            out.append((f"energy counter of {d} went backwards at t={t:.3f} ({prev:.3f} J "
                        f"-> {v:.3f} J): the counter was reset; energy across this point "
                        "is unreliable", d))
        last[d] = v
    return out
