"""What accounting asks of a run's trace, known from its ledger before the trace is read.

Every figure accounting takes from a trace is at a time the ledger fixes: the stage
boundaries (and the same boundaries moved for the sensitivity analysis), the boundary
readings, the run's first and last reading, the idle baseline's window. ``plan`` lists
them all, so one streamed pass over the trace (``accounting/scan.py``) answers the
accounting, its re-accountings with moved boundaries and the plot at once.

A run without ``run_end`` (a crash) is accounted up to its last reading or sample, a time
only the trace knows: the plan takes it from the trace's last rows and, if the pass finds
the trace ends elsewhere, plans again (a second pass, only then).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from distillmeter.accounting.scan import TraceScan, run_trace, scan_trace
from distillmeter.accounting.series import DeviceSeries, Probes
from distillmeter.accounting.uncertainty import BOUNDARY_QUANTUM_S
from distillmeter.accounting.windows import shift_windows, stage_windows
from distillmeter.protocol import Ledger
from distillmeter.protocol.trace import Trace

READING_EVENTS = ("run_start", "stage_start", "stage_end", "run_end")
# The boundary shift of the sensitivity analysis (analysis/sensitivity.py): planned in
# every pass, so the analysis' re-accountings need no pass of their own.
SENSITIVITY_SHIFT = 0.05
PLANNED = ((0.0, 0.0), (SENSITIVITY_SHIFT, 0.0), (-SENSITIVITY_SHIFT, 0.0))
PLOT_POINTS = 300
TAIL_BYTES = 1 << 16


def plan(ledger: Ledger, t_begin: float, t_end: float,
         variants: Iterable[tuple[float, float]] = ()) -> Probes:
    """The figures accounting the run over [t_begin, t_end] asks for, with its stage
    windows as recorded, moved by the sensitivity shifts, and moved by each
    ``(boundary_shift, boundary_widen)`` of ``variants``."""
    windows = stage_windows(ledger, t_end).windows
    points = {t_begin, t_end}
    edges = {t_begin, t_end}
    points.update(ev.t for ev in ledger.events if ev.event in READING_EVENTS)
    for shift, widen in dict.fromkeys((*PLANNED, *variants)):
        for w in shift_windows(windows, shift, widen):
            points.update((w.start, w.end, w.t_start, w.t_end))
            edges.update((w.start, w.end))
    spreads = {(ev.t - ev.seconds, ev.t) for ev in ledger.of("idle_baseline")
               if not ev.cached and math.isfinite(ev.seconds) and ev.seconds > 0}
    quanta = set(BOUNDARY_QUANTUM_S.values()) | {0.1}
    return Probes.build(points, edges, quanta, spreads, {(t_begin, t_end)}, PLOT_POINTS,
                        max(t_end - t_begin, 0.0))


def incomplete_end(ledger: Ledger, series: Mapping[str, DeviceSeries]) -> float:
    """Where a run without run_end is accounted to: its last event, reading or sample."""
    last = [s.last_power_t for s in series.values() if s.has_power]
    last += [s.last_counter_t for s in series.values() if s.has_counter]
    return max([ledger.events[-1].t, *last])


def _tail_end(path: Path, ledger: Ledger, devices: list[str]) -> float:
    """The guess of ``incomplete_end`` from the trace's last rows (a trace is written in
    time order); the last event when they say nothing."""
    best = ledger.events[-1].t
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - TAIL_BYTES))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return best
    for rec in csv.reader(text.splitlines()[1:]):
        if len(rec) != 4 or rec[1].strip() not in devices:
            continue
        try:
            t = float(rec[0])
            if any(c.strip() and math.isfinite(float(c)) for c in rec[2:]):
                best = max(best, t)
        except ValueError:
            continue
    return best


def trace_for_run(source: Path | Trace, ledger: Ledger, devices: list[str],
                  variants: Iterable[tuple[float, float]] = ()) -> TraceScan:
    """The pass over a run's trace (a trace.csv path, or a ``Trace`` merged in memory)
    that answers every figure accounting it asks, ``variants`` included."""
    variants = list(variants)
    t_begin = ledger.run_start.t
    end = ledger.run_end

    def scan(t_end: float) -> TraceScan:
        probes = plan(ledger, t_begin, t_end, variants)
        if isinstance(source, Trace):
            return scan_trace(source, probes)
        return run_trace(source, probes)

    if end is not None:
        return scan(end.t)
    guess = ledger.events[-1].t if isinstance(source, Trace) else \
        _tail_end(source, ledger, devices)
    result = scan(guess)
    t_end = incomplete_end(ledger, {d: result.series(d) for d in devices})
    return result if t_end == guess else scan(t_end)
