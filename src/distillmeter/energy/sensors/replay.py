"""Play a recorded ``trace.csv`` back as a live sensor, on the meter's clock.

At meter time ``t`` the sensor stands at trace time ``start + t * speed`` and returns, per
device, the last counter value and the last power recorded at or before that time (None
before the first). Past the end of the trace it holds the last values. Tests use it to run
the real meter against real H100 readings; experiments use it to re-meter a recorded run
with other stage boundaries.
"""

from __future__ import annotations

import bisect
import math
import os
from typing import Any

from distillmeter.energy.sensors.base import Sensor
from distillmeter.protocol import SOURCES, read_trace


class ReplaySensor(Sensor):
    """Replay ``trace`` (a trace.csv or run directory). ``speed`` > 1 plays faster;
    ``start`` is the trace time that meter time 0 maps to (default: the first sample);
    ``sources`` labels the devices (default: ``nvml_counter`` where the trace has counter
    values, else ``nvml_instant`` for GPUs and ``estimate`` otherwise)."""

    kind = "replay"

    def __init__(self, trace: str | os.PathLike[str], *, speed: float = 1.0,
                 start: float | None = None, devices: list[str] | None = None,
                 sources: dict[str, str] | None = None) -> None:
        super().__init__()
        if not speed > 0:
            raise ValueError(f"replay speed must be positive, got {speed}")
        parsed = read_trace(trace)
        self.path = str(parsed.path)
        self.speed = float(speed)
        self._series: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
        for dev, s in parsed.devices.items():
            if devices is not None and dev not in devices:
                continue
            cols = {}
            for col in ("energy_j", "power_w"):
                pts = [(t, v) for t, v in zip(s["t"], s[col], strict=True) if not math.isnan(v)]
                cols[col] = ([p[0] for p in pts], [p[1] for p in pts])
            self._series[dev] = cols
        if not self._series:
            raise ValueError(f"{self.path}: no samples to replay")
        firsts = [s["t"][0] for s in parsed.devices.values() if s["t"]]
        self.start_at = float(start) if start is not None else min(firsts)
        self.end_at = max(s["t"][-1] for s in parsed.devices.values() if s["t"])
        self.devices = sorted(self._series)
        for d in self.devices:
            has_counter = bool(self._series[d]["energy_j"][0])
            default = "nvml_counter" if has_counter else (
                "nvml_instant" if d.startswith("gpu") else "estimate")
            src = (sources or {}).get(d, default)
            if src not in SOURCES:
                raise ValueError(f"unknown source {src!r} for {d}: one of {', '.join(SOURCES)}")
            self.sources[d] = src

    def trace_time(self) -> float:
        """The trace time the sensor stands at now."""
        return self.start_at + self._clock() * self.speed

    def _at(self, device: str, col: str, t: float) -> float | None:
        ts, vs = self._series[device][col]
        i = bisect.bisect_right(ts, t)
        return vs[i - 1] if i else None

    def read_energy(self) -> dict[str, float | None]:
        t = self.trace_time()
        return {d: self._at(d, "energy_j", t) for d in self.devices}

    def read_power(self) -> dict[str, float | None]:
        t = self.trace_time()
        return {d: self._at(d, "power_w", t) for d in self.devices}

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(trace=self.path, speed=self.speed, start=self.start_at, end=self.end_at)
        return info
