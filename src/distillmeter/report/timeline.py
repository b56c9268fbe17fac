"""A run's power over time, downsampled for plotting (pure functions on a parsed trace)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from distillmeter.protocol import Trace


def power_from_counter(ts: Sequence[float], es: Sequence[float]) -> tuple[list[float],
                                                                         list[float]]:
    """Average power between successive changes of a cumulative energy counter, for
    devices whose trace has no power column."""
    pts = [(t, e) for t, e in zip(ts, es, strict=True) if math.isfinite(e)]
    out_t: list[float] = []
    out_p: list[float] = []
    last_t, last_e = (pts[0] if pts else (None, None))
    for t, e in pts[1:]:
        if e != last_e and t > last_t:
            out_t.append((t + last_t) / 2)
            out_p.append((e - last_e) / (t - last_t))
            last_t, last_e = t, e
    return out_t, out_p


def downsample(ts: Sequence[float], ps: Sequence[float], max_points: int = 300
               ) -> tuple[list[float], list[float]]:
    """At most ``max_points`` points: the mean time and power of equal-time buckets
    (empty buckets skipped), so a short burst is kept as its bucket's average."""
    pts = [(t, p) for t, p in zip(ts, ps, strict=True) if math.isfinite(t) and math.isfinite(p)]
    if len(pts) <= max_points:
        return [t for t, _ in pts], [p for _, p in pts]
    t0, t1 = pts[0][0], pts[-1][0]
    width = (t1 - t0) / max_points or 1.0
    sums: dict[int, list[float]] = {}
    for t, p in pts:
        k = min(int((t - t0) / width), max_points - 1)
        acc = sums.setdefault(k, [0.0, 0.0, 0.0])
        acc[0] += t
        acc[1] += p
        acc[2] += 1
    keys = sorted(sums)
    return [sums[k][0] / sums[k][2] for k in keys], [sums[k][1] / sums[k][2] for k in keys]


def power_series(trace: Trace, max_points: int = 300) -> dict[str, tuple[list[float],
                                                                          list[float]]]:
    """Each device's downsampled power: its power column, else power from its counter."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for dev, s in trace.devices.items():
        ts, ps = s["t"], s["power_w"]
        if not any(math.isfinite(p) for p in ps):
            ts, ps = power_from_counter(s["t"], s["energy_j"])
        if ts:
            out[dev] = downsample(ts, ps, max_points)
    return out
