"""One device's trace as arrays, and the cumulative energy functions built from it.

Two views of a device's energy over time come from the trace:
- the integral of ``power_w`` (POWER_INSTANT on NVIDIA GPUs): a piecewise-linear power
  curve through the samples, held flat before the first and after the last sample
  ("edges held at the nearest sample"), integrated exactly by the trapezoid rule;
- the ``energy_j`` column (the cumulative counter as sampled), linearly interpolated.

Both are cumulative functions E(t) on the run's clock, so the energy between any two times
is E(b) - E(a), and energies of adjacent windows add up exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distillmeter.protocol import Trace


@dataclass
class DeviceSeries:
    """A device's samples: ``t``/``power`` where power was read, ``ct``/``counter`` where
    the energy counter was read (each sorted by time). ``counter`` is made monotonic:
    a step down (a counter reset) contributes nothing instead of a large negative."""

    device: str
    t: np.ndarray
    power: np.ndarray
    ct: np.ndarray
    counter: np.ndarray
    counter_resets: int = 0
    _cum: np.ndarray | None = None

    @property
    def has_power(self) -> bool:
        return self.t.size > 0

    @property
    def has_counter(self) -> bool:
        return self.ct.size > 0

    @property
    def has_any(self) -> bool:
        return self.has_power or self.has_counter

    def power_cumulative(self, x: float) -> float:
        """Integral of power from the first power sample to ``x`` (negative before it)."""
        t, p = self.t, self.power
        if t.size == 1:
            return float(p[0] * (x - t[0]))
        if self._cum is None:
            self._cum = np.concatenate(([0.0], np.cumsum(np.diff(t) * (p[1:] + p[:-1]) / 2)))
        if x <= t[0]:
            return float(p[0] * (x - t[0]))
        if x >= t[-1]:
            return float(self._cum[-1] + p[-1] * (x - t[-1]))
        i = int(np.searchsorted(t, x, side="right")) - 1
        px = p[i] + (p[i + 1] - p[i]) * (x - t[i]) / (t[i + 1] - t[i])
        return float(self._cum[i] + (x - t[i]) * (p[i] + px) / 2)

    def counter_at(self, x: float) -> float:
        """The (monotonic) counter column interpolated at ``x``, held beyond its ends."""
        return float(np.interp(x, self.ct, self.counter))

    def energy_between(self, a: float, b: float) -> tuple[float, str] | None:
        """Energy from ``a`` to ``b`` and how it was found: ``"power"`` (integral of
        power_w, preferred: it follows the load within a few ms) or ``"counter_column"``
        (the sampled counter, when no power was recorded); None when neither exists."""
        if self.has_power:
            return self.power_cumulative(b) - self.power_cumulative(a), "power"
        if self.has_counter:
            return self.counter_at(b) - self.counter_at(a), "counter_column"
        return None

    def mean_power(self, a: float, b: float) -> float | None:
        """Mean of the power samples in [a, b]; the nearest sample's value if none fall in
        it; None without power samples."""
        if not self.has_power:
            return None
        lo = int(np.searchsorted(self.t, a, side="left"))
        hi = int(np.searchsorted(self.t, b, side="right"))
        if hi > lo:
            return float(self.power[lo:hi].mean())
        return float(np.interp((a + b) / 2, self.t, self.power))


def _monotonic(counter: np.ndarray) -> tuple[np.ndarray, int]:
    """Cumulative sum of the non-negative steps: a reset (step down) adds zero."""
    if counter.size < 2:
        return counter.copy(), 0
    steps = np.diff(counter)
    resets = int((steps < 0).sum())
    if resets == 0:
        return counter.copy(), 0
    fixed = np.concatenate(([counter[0]], counter[0] + np.cumsum(np.maximum(steps, 0.0))))
    return fixed, resets


def device_series(trace: Trace, device: str) -> DeviceSeries:
    """Arrays for one device from a parsed trace (empty arrays when it has no samples)."""
    s = trace.series(device)
    t = np.asarray(s["t"], dtype=float)
    e = np.asarray(s["energy_j"], dtype=float)
    p = np.asarray(s["power_w"], dtype=float)
    pm = np.isfinite(p)
    em = np.isfinite(e)
    counter, resets = _monotonic(e[em])
    return DeviceSeries(
        device=device, t=t[pm], power=p[pm], ct=t[em], counter=counter, counter_resets=resets
    )
