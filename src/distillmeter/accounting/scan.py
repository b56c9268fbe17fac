"""One streamed pass over a trace: every figure a ``Probes`` plan asks for, per device,
with memory bounded by a chunk of the file and the plan (never the whole trace).

Each device's samples arrive in chunks in time order. The pass carries the last sample
(and the integral so far) from one chunk to the next, so a figure at time x is computed
from the two samples around x exactly as on the whole arrays: the trapezoid integral's
running sum continues in the same order, and np.interp sees the same bracketing pair. A
device whose samples go back in time (the reader notices) is read again on its own,
sorted (two passes in that rare case).

Scans are kept per file (path, size, modification time), so one command that accounts a
run, re-accounts it with moved boundaries and plots it reads its trace once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from distillmeter.accounting.plotseries import PlotBuckets
from distillmeter.accounting.series import DeviceSeries, Probes
from distillmeter.protocol.trace import Trace, TraceChunk, TraceReader, no_trace_warning

SPREAD_CAP = 1 << 20  # samples kept for one spread window before it is reduced to moments
CACHE_SIZE = 64


class _Spread:
    """The samples of one closed window, or their moments once there are many."""

    def __init__(self) -> None:
        self.pieces: list[np.ndarray] = []
        self.kept = 0
        self.moments: tuple[int, float, float] | None = None  # n, mean, M2

    def add(self, x: np.ndarray) -> None:
        self.pieces.append(x.copy())
        self.kept += x.size
        if self.kept > SPREAD_CAP:
            self._fold()

    def _fold(self) -> None:
        x = np.concatenate(self.pieces)
        self.pieces, self.kept = [], 0
        n, mean, m2 = x.size, float(x.mean()), float(((x - x.mean()) ** 2).sum())
        if self.moments is not None:  # Chan et al.'s pairwise update
            n0, mean0, m20 = self.moments
            delta = mean - mean0
            tot = n0 + n
            mean, m2 = mean0 + delta * n / tot, m20 + m2 + delta * delta * n0 * n / tot
            n = tot
        self.moments = (n, mean, m2)

    def result(self) -> tuple[int, float | None]:
        if self.moments is None:
            x = np.concatenate(self.pieces) if self.pieces else np.empty(0)
            return x.size, (float(x.std()) if x.size >= 2 else None)
        if self.pieces:
            self._fold()
        n, _, m2 = self.moments
        return n, (float(np.sqrt(m2 / n)) if n >= 2 else None)


class _DeviceScan:
    """The running state of one device over a pass (see the module docstring)."""

    def __init__(self, device: str, probes: Probes) -> None:
        self.device, self.pr = device, probes
        npts, nedge = probes.points.size, probes.edges.size
        # power: first and last sample, the integral up to the last, the figures so far
        self.n = 0
        self.t0 = self.p0 = self.tl = self.pl = self.cum_last = 0.0
        self.pmax = -np.inf
        self.pmin = np.inf
        self.cum = np.full(npts, np.nan)
        self.cum_done = np.zeros(npts, dtype=bool)
        self.lo_edge = {q: probes.edges - q for q in probes.quanta}
        self.hi_edge = {q: probes.edges + q for q in probes.quanta}
        self.mid = {q: (self.lo_edge[q] + self.hi_edge[q]) / 2 for q in probes.quanta}
        self.mid_p = {q: np.full(nedge, np.nan) for q in probes.quanta}
        self.mid_done = {q: np.zeros(nedge, dtype=bool) for q in probes.quanta}
        self.mean = {q: np.full(nedge, np.nan) for q in probes.quanta}
        self.count = {q: np.zeros(nedge, dtype=np.int64) for q in probes.quanta}
        self.pending: dict[float, dict[int, list[np.ndarray]]] = {q: {} for q in probes.quanta}
        self.spreads = {w: _Spread() for w in probes.spreads}
        self.gap_state: dict[tuple[float, float], list] = {w: [None, 0.0] for w in probes.spans}
        # counter: first value, last raw value, running sum of its non-negative steps
        self.nc = 0
        self.tc0 = self.c0 = self.tcl = self.ecl = self.steps_sum = 0.0
        self.resets = 0
        self.raw = np.full(npts, np.nan)
        self.fixed = np.full(npts, np.nan)
        self.cnt_done = np.zeros(npts, dtype=bool)
        span = probes.plot_span
        self.plot_power = PlotBuckets(probes.plot_points, span)
        self.plot_counter = PlotBuckets(probes.plot_points, span, last=True)

    # ------------------------------------------------------------------ power
    def add(self, t: np.ndarray, e: np.ndarray, p: np.ndarray) -> None:
        pm = np.isfinite(p)
        if pm.any():
            self._power(t[pm], p[pm])
        em = np.isfinite(e)
        if em.any():
            self._counter(t[em], e[em])

    def _power(self, tp: np.ndarray, pp: np.ndarray) -> None:
        first = self.n == 0
        if first:
            self.t0, self.p0 = float(tp[0]), float(pp[0])
            tt, qq = tp, pp
        else:
            tt, qq = np.concatenate(([self.tl], tp)), np.concatenate(([self.pl], pp))
        inc = np.diff(tt) * (qq[1:] + qq[:-1]) / 2
        cum = np.cumsum(np.concatenate(([0.0 if first else self.cum_last], inc)))
        x_all = self.pr.points
        i0, i1 = np.searchsorted(x_all, [tt[0], tt[-1]], side="left")
        idx = np.arange(i0, i1)
        idx = idx[x_all[idx] > self.t0]
        if idx.size:
            x = x_all[idx]
            j = np.searchsorted(tt, x, side="right") - 1
            px = qq[j] + (qq[j + 1] - qq[j]) * (x - tt[j]) / (tt[j + 1] - tt[j])
            self.cum[idx] = cum[j] + (x - tt[j]) * (qq[j] + px) / 2
            self.cum_done[idx] = True
        for q in self.pr.quanta:
            _interp_into(self.mid[q], tt, qq, self.mid_p[q], self.mid_done[q])
            self._edge_means(q, tp, pp)
        for (a, b), sp in self.spreads.items():
            lo, hi = np.searchsorted(tp, a, side="left"), np.searchsorted(tp, b, side="right")
            if hi > lo:
                sp.add(pp[lo:hi])
        for (a, b), st in self.gap_state.items():
            lo, hi = np.searchsorted(tp, a, side="left"), np.searchsorted(tp, b, side="right")
            if hi > lo:
                inside = tp[lo:hi]
                prev = a if st[0] is None else st[0]
                st[1] = max(st[1], float(np.diff(np.concatenate(([prev], inside))).max()))
                st[0] = float(inside[-1])
        self.pmax = max(self.pmax, float(pp.max()))
        self.pmin = min(self.pmin, float(pp.min()))
        self.plot_power.add(tp, pp)
        self.n += tp.size
        self.tl, self.pl, self.cum_last = float(tp[-1]), float(pp[-1]), float(cum[-1])

    def _edge_means(self, q: float, tp: np.ndarray, pp: np.ndarray) -> None:
        """Means of the samples within +-q of each edge, each over exactly its samples: a
        stretch that may go on in the next chunk waits with its pieces."""
        a_all, b_all = self.lo_edge[q], self.hi_edge[q]
        k0 = int(np.searchsorted(b_all, tp[0], side="left"))
        k1 = int(np.searchsorted(a_all, tp[-1], side="right"))
        pending, count, mean = self.pending[q], self.count[q], self.mean[q]
        if k1 > k0:
            lo = np.searchsorted(tp, a_all[k0:k1], side="left")
            hi = np.searchsorted(tp, b_all[k0:k1], side="right")
            last = tp[-1]
            for r in np.flatnonzero(hi > lo).tolist():
                k = k0 + r
                piece = pp[lo[r]:hi[r]]
                count[k] += piece.size
                if k in pending or b_all[k] >= last:
                    pending.setdefault(k, []).append(piece.copy())
                else:
                    mean[k] = piece.mean()
        for k in [k for k in pending if b_all[k] < tp[-1]]:
            mean[k] = np.concatenate(pending.pop(k)).mean()

    # ------------------------------------------------------------------ counter
    def _counter(self, tc: np.ndarray, ec: np.ndarray) -> None:
        first = self.nc == 0
        if first:
            self.tc0, self.c0 = float(tc[0]), float(ec[0])
            tt, raw = tc, ec
        else:
            tt, raw = np.concatenate(([self.tcl], tc)), np.concatenate(([self.ecl], ec))
        steps = np.diff(raw)
        self.resets += int((steps < 0).sum())
        sums = np.cumsum(np.concatenate(([self.steps_sum], np.maximum(steps, 0.0))))
        fixed = self.c0 + sums
        x_all = self.pr.points
        i0, i1 = np.searchsorted(x_all, [tt[0], tt[-1]], side="left")
        if i1 > i0:
            x = x_all[i0:i1]
            self.raw[i0:i1] = np.interp(x, tt, raw)
            self.fixed[i0:i1] = np.interp(x, tt, fixed)
            self.cnt_done[i0:i1] = True
        self.plot_counter.add(tc, ec)
        self.nc += tc.size
        self.tcl, self.ecl, self.steps_sum = float(tc[-1]), float(ec[-1]), float(sums[-1])

    # ------------------------------------------------------------------ the end
    def result(self) -> DeviceSeries:
        pr, x = self.pr, self.pr.points
        out = DeviceSeries(device=self.device, probes=pr, n_power=self.n, n_counter=self.nc,
                           counter_resets=self.resets)
        if self.n:
            left = ~self.cum_done
            if self.n == 1:
                self.cum[:] = self.p0 * (x - self.t0)
            else:
                before = left & (x <= self.t0)
                after = left & ~before & (x >= self.tl)
                self.cum[before] = self.p0 * (x[before] - self.t0)
                self.cum[after] = self.cum_last + self.pl * (x[after] - self.tl)
            for q in pr.quanta:
                for k, pieces in self.pending[q].items():
                    self.mean[q][k] = np.concatenate(pieces).mean()
                mid, done = self.mid[q], self.mid_done[q]
                p = self.mid_p[q]
                p[~done & (mid < self.t0)] = self.p0
                p[~done & (mid >= self.t0)] = self.pl  # only those past the last sample
                means = np.where(self.count[q] > 0, self.mean[q], p)
                out.edge_means[q] = means
            out.spread = {w: sp.result() for w, sp in self.spreads.items()}
            for (a, b), (last, gap) in self.gap_state.items():
                out.gaps[(a, b)] = (b - a) if last is None else max(gap, b - last)
            out.first_power_t, out.last_power_t = self.t0, self.tl
            out.power_max = self.pmax
            out.power_min = self.pmin
            out.plot = self.plot_power.mean_series()
        if self.nc:
            left = ~self.cnt_done
            before = left & (x < self.tc0)
            after = left & ~before
            for arr, last in ((self.raw, self.ecl), (self.fixed, self.c0 + self.steps_sum)):
                arr[before] = self.c0
                arr[after] = last
            out.first_counter_t, out.last_counter_t = self.tc0, self.tcl
            if not self.n:
                out.plot = self.plot_counter.counter_power_series()
        out.cumulative = self.cum
        out.counter = self.fixed if self.resets else self.raw
        return out


def _interp_into(x_all: np.ndarray, tt: np.ndarray, vv: np.ndarray, out: np.ndarray,
                 done: np.ndarray) -> None:
    """np.interp(x, t, v) for the sorted ``x_all`` that fall in [tt[0], tt[-1])."""
    i0, i1 = np.searchsorted(x_all, [tt[0], tt[-1]], side="left")
    if i1 > i0:
        out[i0:i1] = np.interp(x_all[i0:i1], tt, vv)
        done[i0:i1] = True


@dataclass
class TraceScan:
    """A pass over one trace: each device's figures (``series``), the reader's warnings
    and each device's first and last ``t`` in the file (``t_range``)."""

    path: Path
    probes: Probes
    devices: dict[str, DeviceSeries] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    t_range: dict[str, tuple[float, float]] = field(default_factory=dict)

    def series(self, device: str) -> DeviceSeries:
        """The device's figures (empty ones when the trace has no samples of it)."""
        return self.devices.get(device) or DeviceSeries(device=device, probes=self.probes)

    def plot(self) -> dict[str, tuple[list[float], list[float]]]:
        """Each device's downsampled power for plots (devices with nothing to plot left
        out)."""
        return {d: s.plot for d, s in self.devices.items() if s.plot[0]}


def _feed(chunks: Iterable[TraceChunk], probes: Probes, only: set[str] | None = None,
          sort: bool = False) -> dict[str, _DeviceScan]:
    state: dict[str, _DeviceScan] = {}
    if sort:  # the devices that went back in time: gathered, sorted, fed as one chunk
        cols: dict[str, list[list[np.ndarray]]] = {}
        for chunk in chunks:
            for d, arrays in chunk.devices.items():
                if only is None or d in only:
                    for k, c in enumerate(cols.setdefault(d, [[], [], []])):
                        c.append(arrays[k])
        for d, c in cols.items():
            t, e, p = (np.concatenate(x) for x in c)
            order = np.argsort(t, kind="stable")
            state[d] = _DeviceScan(d, probes)
            state[d].add(t[order], e[order], p[order])
        return state
    reader = chunks if isinstance(chunks, TraceReader) else None
    with np.errstate(over="ignore", invalid="ignore"):  # absurd values: refused in account
        for chunk in chunks:
            for d, (t, e, p) in chunk.devices.items():
                if reader is not None and d in reader.unsorted:
                    state.pop(d, None)  # out of time order: read again, sorted
                    continue
                s = state.get(d)
                if s is None:
                    s = state[d] = _DeviceScan(d, probes)
                s.add(t, e, p)
    return state


def scan_trace(source: TraceReader | Trace, probes: Probes) -> TraceScan:
    """One pass over a trace (a reader over trace.csv, or a ``Trace`` already in memory)
    computing what ``probes`` asks, per device."""
    if isinstance(source, Trace):
        chunks = [TraceChunk({d: tuple(np.asarray(s[k], dtype=float)
                                      for k in ("t", "energy_j", "power_w"))
                              for d, s in source.devices.items()})]
        state = _feed(chunks, probes)
        t_range = {d: (min(s["t"]), max(s["t"])) for d, s in source.devices.items() if s["t"]}
        warnings = list(source.warnings)
    else:
        state = _feed(source, probes)
        if source.unsorted:
            with np.errstate(over="ignore", invalid="ignore"):
                state.update(_feed(TraceReader(source.path, fast=source.fast), probes,
                                   set(source.unsorted), sort=True))
        t_range = dict(source.t_range)
        warnings = list(source.warnings) + source.unsorted_warnings()
    with np.errstate(over="ignore", invalid="ignore"):
        devices = {d: s.result() for d, s in state.items()}
    return TraceScan(source.path, probes, devices, warnings, t_range)


_CACHE: OrderedDict[tuple, TraceScan] = OrderedDict()


def run_trace(path: Path, probes: Probes) -> TraceScan:
    """The scan of the trace at ``path`` (a missing one is empty, with a warning), read
    once per file for as long as the file does not change: a later plan that asks for
    nothing new is answered from the last scan; one that does reads the file again for
    both plans."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return TraceScan(path, probes, warnings=[no_trace_warning(path)])
    except OSError:
        st = None
    key = None
    if st is not None:
        key = (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        hit = _CACHE.get(key)
        if hit is not None and hit.probes.covers(probes):
            _CACHE.move_to_end(key)
            return hit
        if hit is not None:
            probes = hit.probes.union(probes)
    scan = scan_trace(TraceReader(path), probes)
    if key is not None:
        _CACHE[key] = scan
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return scan


def clear_cache() -> None:
    """Forget every kept scan."""
    _CACHE.clear()
