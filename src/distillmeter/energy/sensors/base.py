"""The sensor interface: one abstract class every kind of sensor answers (one module per
kind beside this one: ``nvml``, ``rapl``, ``cpu_estimate``, ``replay``; which of them this
machine can read is ``discovery.discover_sensors``).

A sensor reads one kind of hardware (NVML GPUs, RAPL zones, the CPU estimate, a replayed
trace) and names its devices with protocol names (``gpu:0``, ``cpu:0``, ``dram:0``). Every
reading is either a number or ``None``; a reading that fails is ``None`` plus a warning,
never a zero. Sensors are not thread-safe: the meter serialises all calls with one lock.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

Clock = Callable[[], float]
Reading = dict[str, "float | None"]


class Sensor(ABC):
    """The interface. Subclasses set ``devices`` and ``sources`` and implement
    :meth:`read_energy` and :meth:`read_power` (and :meth:`sample` when one read yields both).

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
        return None  # a sensor that holds none has nothing to release

    def resume_from(self, readings: dict[str, float | None]) -> None:
        """A resumed run's last recorded counter values. Modelled counters continue from
        them so they never run backwards; hardware counters keep their own values."""
        return None  # hardware counters: nothing to carry over

    # -- readings
    @abstractmethod
    def read_energy(self) -> Reading:
        """Cumulative energy per device in joules, or None where it cannot be read."""

    @abstractmethod
    def read_power(self) -> Reading:
        """Instantaneous power per device in watts, or None where there is none."""

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
