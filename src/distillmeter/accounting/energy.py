"""Per-device energy of a stage window and of the whole run.

The rule (DESIGN, "Measuring"): stage energy is the counter delta between the synchronized
boundary readings. Where a device has no boundary reading, it is the trapezoid integral of
its ``power_w`` trace over the window. Edges moved away from the readings (sensitivity
analysis) are corrected with the trace: ``delta + E(end') - E(end) - (E(start') - E(start))``,
so the bulk still comes from the counter and only the moved slivers from the trace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from distillmeter.accounting.series import DeviceSeries
from distillmeter.accounting.windows import StageWindow
from distillmeter.protocol import ESTIMATED_SOURCES, ProtocolError, parse_device

_EPS_T = 1e-9
# Sources read from a counter at every boundary: a missing boundary reading is a fault.
_COUNTER_SOURCES = frozenset({"nvml_counter", "rapl", "estimate"})


@dataclass
class DeviceEnergy:
    """Energy of one device over one stretch. ``counted_j`` came from counter deltas,
    ``integrated_j`` from the trace; ``joules`` is their sum."""

    device: str
    counted_j: float = 0.0
    integrated_j: float = 0.0
    source: str = "nvml_counter"
    method: str = "counter"  # counter | integral | counter_column | missing
    notes: list[str] = field(default_factory=list)
    degraded: bool = False

    @property
    def joules(self) -> float:
        return self.counted_j + self.integrated_j

    @property
    def estimated(self) -> bool:
        return self.source in ESTIMATED_SOURCES


def declared_source(device: str, sources: dict[str, str], has_readings: bool) -> str:
    """How a device is read, from ``run_start.sources``, else a default by device kind."""
    if device in sources:
        return sources[device]
    kind, _ = parse_device(device)
    if kind == "gpu":
        return "nvml_counter" if has_readings else "nvml_instant"
    return "rapl" if has_readings else "estimate"


def integral_source(device: str, declared: str) -> str:
    """The source label of energy integrated from the trace's power column."""
    if declared in ESTIMATED_SOURCES:
        return declared
    kind, _ = parse_device(device)
    return "nvml_instant" if kind == "gpu" else declared


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _trace_piece(series: DeviceSeries, a: float, b: float) -> tuple[float, str] | None:
    if abs(b - a) <= _EPS_T:
        return 0.0, "power" if series.has_power else "counter_column"
    return series.energy_between(a, b)


def device_window_energy(
    w: StageWindow, device: str, series: DeviceSeries, declared: str, ledger_path: str = ""
) -> DeviceEnergy:
    """Energy of ``device`` over window ``w`` (see the module docstring for the rule)."""
    r0 = w.start_readings.get(device)
    r1 = w.end_readings.get(device)
    out = DeviceEnergy(device=device, source=declared)
    if _finite(r0) and _finite(r1) and r1 >= r0:
        out.counted_j = r1 - r0
        if w.shifted:
            head = _trace_piece(series, w.t_start, w.start)
            tail = _trace_piece(series, w.t_end, w.end)
            if head is None or tail is None:
                # An unshifted figure would pass for "insensitive to the boundaries".
                raise ProtocolError(
                    f"cannot move the boundaries of stage {w.name!r}: {device} has no "
                    "samples in the trace to account the moved edges with"
                )
            out.integrated_j = tail[0] - head[0]
        return out
    piece = _trace_piece(series, w.start, w.end)
    then = "; integrated the trace instead" if piece is not None else ""
    if declared in _COUNTER_SOURCES and w.status != "incomplete":
        # a device with a counter lost a boundary reading: a sensor error at that moment
        lost = [f"{edge} reading ({ledger_path}:{line})" for edge, r, line in
                (("start", r0, w.start_line), ("end", r1, w.end_line)) if not _finite(r)]
        if lost:
            out.notes.append(f"{device}: no {' or '.join(lost)}, a sensor error?{then}")
            out.degraded = True
    if _finite(r0) and _finite(r1):
        out.notes.append(
            f"{device}: counter went backwards ({r0:.3f} J at {ledger_path}:{w.start_line} -> "
            f"{r1:.3f} J at {ledger_path}:{w.end_line}; a reset?){then}"
        )
        out.degraded = True
    if piece is None:
        out.method = "missing"
        out.degraded = True
        out.notes.append(
            f"{device}: no usable boundary readings and no trace samples; its energy here is "
            "unknown (counted as 0 J)"
        )
        return out
    out.integrated_j, how = piece
    if how == "power":
        out.method = "integral"
        out.source = integral_source(device, declared)
    else:
        out.method = "counter_column"
    return out


@dataclass
class ReadingPoint:
    t: float
    value: float | None
    line: int | None


def device_run_energy(
    device: str,
    points: list[ReadingPoint],
    series: DeviceSeries,
    declared: str,
    t_begin: float,
    t_end: float,
    ledger_path: str = "",
) -> DeviceEnergy:
    """Energy of ``device`` over the whole run, [t_begin, t_end].

    It is the sum over consecutive boundary readings of their deltas, which telescopes to
    ``last - first`` when the counter behaves, so stage deltas and the run total come from
    the same numbers. A step where the counter went backwards (a reset) is integrated from
    the trace instead; stretches before the first and after the last reading (a crash
    without run_end) likewise.
    """
    out = DeviceEnergy(device=device, source=declared)
    good = _drop_glitches([p for p in points if _finite(p.value)], out, ledger_path)
    if not good:
        piece = _trace_piece(series, t_begin, t_end)
        if piece is None:
            out.method, out.degraded = "missing", True
            out.notes.append(
                f"{device} could not be read: no readings in the ledger and no samples in "
                "the trace; its energy is unknown (counted as 0 J)"
            )
            return out
        out.integrated_j, how = piece
        out.method = "integral" if how == "power" else "counter_column"
        if how == "power":
            out.source = integral_source(device, declared)
        return out

    def trace_or_note(a: float, b: float, why: str) -> float:
        piece = _trace_piece(series, a, b)
        if piece is None:
            out.degraded = True
            out.notes.append(f"{device}: {why}, and no trace to fill it; {b - a:.3f} s missing")
            return 0.0
        return piece[0]

    if good[0].t > t_begin + _EPS_T:
        out.integrated_j += trace_or_note(t_begin, good[0].t, "no reading at run start")
    for p, q in zip(good, good[1:], strict=False):
        if q.value >= p.value:
            out.counted_j += q.value - p.value
        else:
            out.degraded = True
            out.notes.append(
                f"{device}: counter went backwards between {ledger_path}:{p.line} "
                f"({p.value:.3f} J) and {ledger_path}:{q.line} ({q.value:.3f} J), a reset?; "
                "that stretch is integrated from the trace"
            )
            out.integrated_j += trace_or_note(p.t, q.t, "counter reset")
    if good[-1].t < t_end - _EPS_T:
        out.integrated_j += trace_or_note(good[-1].t, t_end, "no reading at run end")
    return out


def _drop_glitches(
    points: list[ReadingPoint], out: DeviceEnergy, ledger_path: str
) -> list[ReadingPoint]:
    """Leave out single readings that dip below both neighbours' range (the one before is
    higher, the one after is higher again): a misread, not a reset. A reset is a step down
    that stays down; the caller integrates across it."""
    keep: list[ReadingPoint] = []
    for i, p in enumerate(points):
        if 0 < i < len(points) - 1:
            prev, nxt = keep[-1] if keep else points[i - 1], points[i + 1]
            if p.value < prev.value and nxt.value >= prev.value:
                out.degraded = True
                out.notes.append(
                    f"{out.device}: reading at {ledger_path}:{p.line} ({p.value:.3f} J) is "
                    f"below the readings around it ({prev.value:.3f}, {nxt.value:.3f} J); "
                    "left out of the run total"
                )
                continue
        keep.append(p)
    return keep

