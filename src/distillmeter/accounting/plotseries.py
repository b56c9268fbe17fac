"""A device's power over time, downsampled for plots while the trace streams by.

``PlotBuckets`` keeps at most ``cap`` equal-time buckets: the mean time and power of the
samples in each (a short burst is kept as its bucket's average), or for a counter the last
reading in each, from which the mean power between buckets follows. The buckets start at
the run's expected length / ``cap`` wide and double (neighbours merged) whenever the trace
runs past the last one, so a plot has between ``cap / 2`` and ``cap`` points, whatever the
trace's length. A series short enough to plot whole is kept whole.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


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


class PlotBuckets:
    """Equal-time buckets over samples that arrive in time order (see the module
    docstring). ``last``: keep each bucket's last sample (a counter) instead of sums."""

    def __init__(self, cap: int, span: float = 0.0, *, last: bool = False) -> None:
        self.cap = cap
        self.slots = max(2, cap - cap % 2)  # pairs merge when the buckets double
        self.span, self.last = span, last
        self.total = 0
        self.raw: list[tuple[np.ndarray, np.ndarray]] = []
        self.raw_n = 0
        self.t0: float | None = None
        self.width = 1.0
        self.n = np.zeros(self.slots, dtype=np.int64)
        self.sum_t = np.zeros(self.slots)
        self.sum_v = np.zeros(self.slots)
        self.has = np.zeros(self.slots, dtype=bool)

    def add(self, t: np.ndarray, v: np.ndarray) -> None:
        if self.raw_n <= self.cap + 1:  # enough to give a short series whole
            take = min(t.size, self.cap + 2 - self.raw_n)
            self.raw.append((t[:take].copy(), v[:take].copy()))
            self.raw_n += take
        self.total += t.size
        if self.t0 is None:
            self.t0 = float(t[0])
            span = self.span if self.span > 0 else float(t[-1] - t[0])
            self.width = max(span * 1.05 / self.slots, 1e-9)
        with np.errstate(over="ignore", invalid="ignore"):
            kf = np.floor((t - self.t0) / self.width)
        # absurd times (a fuzzed trace) would overflow an integer index: clip them first
        kf = np.where(np.isfinite(kf), np.maximum(kf, 0.0), 0.0)
        top = float(kf.max()) if kf.size else 0.0
        while top >= self.slots:
            self._double()
            kf, top = np.floor(kf / 2), math.floor(top / 2)
        k = kf.astype(np.int64)
        if self.last:
            ends = np.flatnonzero(np.append(k[1:] != k[:-1], True))
            self.sum_t[k[ends]] = t[ends]
            self.sum_v[k[ends]] = v[ends]
            self.has[k[ends]] = True
        else:
            self.n += np.bincount(k, minlength=self.slots)
            self.sum_t += np.bincount(k, weights=t, minlength=self.slots)
            self.sum_v += np.bincount(k, weights=v, minlength=self.slots)

    def _double(self) -> None:
        half = self.slots // 2

        def pad(x: np.ndarray) -> np.ndarray:
            return np.concatenate((x, np.zeros(half, dtype=x.dtype)))

        if self.last:
            odd = self.has[1::2]
            self.sum_t = pad(np.where(odd, self.sum_t[1::2], self.sum_t[0::2]))
            self.sum_v = pad(np.where(odd, self.sum_v[1::2], self.sum_v[0::2]))
            self.has = pad(self.has[0::2] | odd)
        else:
            self.n = pad(self.n.reshape(half, 2).sum(axis=1))
            self.sum_t = pad(self.sum_t.reshape(half, 2).sum(axis=1))
            self.sum_v = pad(self.sum_v.reshape(half, 2).sum(axis=1))
        self.width *= 2

    def _raw(self) -> tuple[list[float], list[float]]:
        if not self.raw:
            return [], []
        return (np.concatenate([t for t, _ in self.raw]).tolist(),
                np.concatenate([v for _, v in self.raw]).tolist())

    def mean_series(self) -> tuple[list[float], list[float]]:
        """The buckets' mean time and value (the samples themselves when few)."""
        if self.total <= self.cap:
            return downsample(*self._raw(), self.cap)
        m = self.n > 0
        return (self.sum_t[m] / self.n[m]).tolist(), (self.sum_v[m] / self.n[m]).tolist()

    def counter_power_series(self) -> tuple[list[float], list[float]]:
        """Mean power between the buckets' last counter readings, at the midpoints."""
        if self.total <= self.cap + 1:
            return downsample(*power_from_counter(*self._raw()), self.cap)
        ts, es = self.sum_t[self.has], self.sum_v[self.has]
        dt = np.diff(ts)
        ok = dt > 0
        mids = ((ts[1:] + ts[:-1]) / 2)[ok]
        return mids.tolist(), (np.diff(es)[ok] / dt[ok]).tolist()
