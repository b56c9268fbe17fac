"""``account``: a run directory's raw files -> ``report.json`` (protocol.Report).

A pure function of ledger.jsonl, trace.csv and environment.json: accounting never touches
a sensor, so any finished run can be re-accounted with another idle baseline, grid,
PUE, price or shifted stage boundaries. The pieces it is built from (stage windows,
per-device energy, uncertainty, idle, carbon, upstream) live in their own modules for reuse.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distillmeter.accounting.carbon import J_PER_KWH, carbon, cost
from distillmeter.accounting.conservation import check_conservation
from distillmeter.accounting.energy import (
    DeviceEnergy,
    ReadingPoint,
    declared_source,
    device_run_energy,
    device_window_energy,
)
from distillmeter.accounting.faults import apply_faults, stage_faults, unknown_energy_bound
from distillmeter.accounting.hardware import read_hardware, replay_speeds
from distillmeter.accounting.idle import (
    IdleOverride,
    cached_idle_notes,
    idle_power,
    idle_uncertainty_w,
)
from distillmeter.accounting.plausibility import (
    apply_flags,
    ledger_flags,
    merge_flags,
    refuse_impossible_ledger,
    report_flags,
    trace_flags,
)
from distillmeter.accounting.probes import incomplete_end, trace_for_run
from distillmeter.accounting.rank_figures import rank_detail
from distillmeter.accounting.reportfile import write_report
from distillmeter.accounting.series import DeviceSeries
from distillmeter.accounting.uncertainty import (
    UncertaintyParts,
    device_uncertainty_parts,
    short_stage_note,
)
from distillmeter.accounting.upstream import resolve_upstream
from distillmeter.accounting.windows import StageWindow, shift_windows, stage_windows
from distillmeter.energy.merge import merged_inputs
from distillmeter.protocol import (
    ESTIMATED_SOURCES,
    LEDGER_FILE,
    METER_STAGES,
    SIDES,
    TRACE_FILE,
    Flag,
    Ledger,
    ProtocolError,
    Quality,
    Report,
    StageReport,
    Totals,
    has_ranks,
    is_device,
    read_ledger,
)

_READING_EVENTS = ("run_start", "stage_start", "stage_end", "run_end")
__all__ = ["RunInputs", "account", "load_inputs", "run_energy", "stage_report", "write_report"]


@dataclass
class RunInputs:
    """What accounting reads from a run directory, parsed and checked."""

    run_dir: Path
    ledger: Ledger
    devices: list[str]
    series: dict[str, DeviceSeries]
    sources: dict[str, str]
    t_begin: float
    t_end: float
    complete: bool
    warnings: list[str]


def load_inputs(run_dir: Path | str, variants: Iterable[tuple[float, float]] = ()) -> RunInputs:
    """Read and check a run directory's ledger and trace (raises ProtocolError when they
    cannot be accounted at all; otherwise problems become warnings). One streamed pass over
    the trace also answers each ``(boundary_shift, boundary_widen)`` of ``variants``."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise ProtocolError(f"{run_dir}: no such run directory")
    if not run_dir.is_dir():
        raise ProtocolError(f"{run_dir}: not a directory (expected a run directory)")
    if not (run_dir / LEDGER_FILE).exists() and has_ranks(run_dir):
        # a multi-process run whose ranks were never merged (a crash): merge in memory
        ledger, source = merged_inputs(run_dir)
    else:
        ledger, source = read_ledger(run_dir / LEDGER_FILE), run_dir / TRACE_FILE
    rs = ledger.run_start
    listed = [d for d in dict.fromkeys(rs.devices) if is_device(d)]
    trace = trace_for_run(source, ledger, listed, variants)
    warnings = list(ledger.warnings) + list(trace.warnings)
    line1 = ledger.lines[0] if ledger.lines else 1
    for d in rs.devices:
        if not is_device(d):
            raise ProtocolError(
                f"{ledger.path}:{line1}: run_start lists unknown device {d!r} "
                "(expected gpu:N, cpu:N or dram:N)"
            )
    devices = list(dict.fromkeys(rs.devices))
    if not devices:
        warnings.append(f"{ledger.path}:{line1}: run_start lists no devices; nothing was metered")
    for d in sorted(set(trace.devices) - set(devices)):
        warnings.append(
            f"{trace.path}: samples for {d}, which run_start does not list; ignored"
        )
    stray: dict[str, int | None] = {}
    for ev, line in zip(ledger.events, ledger.lines, strict=False):
        for d in getattr(ev, "readings", {}) or {}:
            if d not in devices and d not in stray:
                stray[d] = line
    for d, line in stray.items():
        warnings.append(
            f"{ledger.path}:{line}: reading for {d!r}, which run_start does not list; ignored"
        )
    series = {d: trace.series(d) for d in devices}
    has_readings = {
        d: any(_finite(getattr(ev, "readings", {}).get(d)) for ev in ledger.events)
        for d in devices
    }
    sources = {d: declared_source(d, rs.sources, has_readings[d]) for d in devices}
    end = ledger.run_end
    if end is not None:
        t_end, complete = end.t, True
    else:
        t_end = incomplete_end(ledger, series)
        complete = False
        warnings.append(
            f"{ledger.path}: no run_end (the run crashed or is still running); accounted up "
            f"to the last reading or sample, t={t_end:.3f}"
        )
    return RunInputs(run_dir, ledger, devices, series, sources, rs.t, t_end, complete, warnings)


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def stage_report(
    w: StageWindow, inputs: RunInputs, idle_w: dict[str, float],
    run_w: dict[str, float] | None = None,
) -> tuple[StageReport, list[DeviceEnergy]]:
    """Account one stage window on every device. ``run_w`` (each device's mean power over
    the run) bounds the energy of a device nothing measured during the stage."""
    per_dev: list[DeviceEnergy] = []
    energy: dict[str, float] = {}
    source: dict[str, str] = {}
    parts = UncertaintyParts()
    notes = list(w.notes)
    path = str(inputs.ledger.path)
    for d in inputs.devices:
        e = device_window_energy(w, d, inputs.series[d], inputs.sources[d], path)
        per_dev.append(e)
        energy[d] = e.joules
        source[d] = e.source
        parts += device_uncertainty_parts(e, inputs.series[d], w.start, w.end, idle_w.get(d))
        if e.method == "missing":  # unknown, not zero: as much as it drew elsewhere
            parts += UncertaintyParts(random=unknown_energy_bound(
                inputs.series[d], w.seconds, (run_w or {}).get(d), idle_w.get(d)))
        notes.extend(e.notes)
    unc = parts.total
    total = math.fsum(energy.values())
    energy["total"] = total
    seconds = w.seconds
    active = total - math.fsum(idle_w.get(d, 0.0) * seconds for d in inputs.devices)
    if w.status == "failed":
        notes.insert(0, f"stage failed{': ' + w.error if w.error else ''}; its energy is kept")
    short = short_stage_note(seconds, total, unc)
    if short:
        notes.append(short)
    if w.shifted:
        notes.append(
            f"boundaries moved: accounted {w.start:.3f}-{w.end:.3f} s "
            f"(readings at {w.t_start:.3f}-{w.t_end:.3f} s)"
        )
    status = w.status
    if status == "ok" and any(e.degraded for e in per_dev):
        status = "degraded"
    report = StageReport(
        name=w.name, side=w.side, t_start=w.start, t_end=w.end, seconds=seconds,
        energy_j=energy, active_energy_j=active, uncertainty_j=unc,
        uncertainty_parts=parts.as_dict(), tokens=w.tokens,
        samples=w.samples, j_per_token=(total / w.tokens) if w.tokens > 0 else None,
        source=source, status=status, notes=notes, info=dict(w.info),
    )
    return report, per_dev


def run_energy(inputs: RunInputs) -> dict[str, DeviceEnergy]:
    """Each device's energy over the whole run (first to last reading)."""
    out = {}
    path = str(inputs.ledger.path)
    events = [
        (ev, line) for ev, line in zip(inputs.ledger.events, inputs.ledger.lines, strict=False)
        if ev.event in _READING_EVENTS
    ]
    for d in inputs.devices:
        points = [
            ReadingPoint(ev.t, ev.readings.get(d), line) for ev, line in events
            if inputs.t_begin <= ev.t <= inputs.t_end
        ]
        out[d] = device_run_energy(
            d, points, inputs.series[d], inputs.sources[d], inputs.t_begin, inputs.t_end, path
        )
    return out


def account(
    run_dir: Path | str,
    *,
    idle_w: IdleOverride = None,
    grid_gco2_per_kwh: float | None = None,
    country: str | None = None,
    pue: float | None = None,
    price_per_kwh: float | None = None,
    currency: str | None = None,
    boundary_shift: float = 0.0,
    boundary_widen: float = 0.0,
    include_upstream: bool = True,
) -> Report:
    """Account a run directory: per-stage and run energy, uncertainty, idle-corrected active
    energy, carbon, cost, quality and the upstream (shared teacher) stages it names.

    ``idle_w``: idle watts for every device (a number) or per device (a dict), replacing the
    measured baseline. ``boundary_shift``/``boundary_widen``: move every stage's edges by
    that fraction of its length (later / outwards; see ``windows.shift_windows``).
    """
    options = dict(idle_w=idle_w, grid_gco2_per_kwh=grid_gco2_per_kwh, country=country,
                   pue=pue, price_per_kwh=price_per_kwh, currency=currency,
                   boundary_shift=boundary_shift, boundary_widen=boundary_widen,
                   include_upstream=include_upstream)
    inputs = load_inputs(run_dir, [(boundary_shift, boundary_widen)])
    refuse_impossible_ledger(inputs.ledger)  # no figure of such a run could be trusted
    try:
        report = _account(inputs, **options)
    except OverflowError:  # sums of readings too large to be real (math.fsum raises)
        report = None
    bad = ["(a sum)"] if report is None else _non_finite(report.model_dump())
    if bad:
        raise ProtocolError(
            f"{inputs.run_dir}: the report would hold numbers that are not finite "
            f"({', '.join(bad[:3])}): {inputs.ledger.path.name} or {TRACE_FILE} holds NaN "
            "or values too large to be real readings"
        )
    return report


def _non_finite(data: object, path: str = "") -> list[str]:
    """Paths of the non-finite numbers in a report's data (JSON has no inf or NaN)."""
    if isinstance(data, float):
        return [] if math.isfinite(data) else [path or "(value)"]
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _non_finite(v, f"{path}.{k}".lstrip("."))]
    if isinstance(data, (list, tuple)):
        return [p for i, v in enumerate(data) for p in _non_finite(v, f"{path}[{i}]")]
    return []


def _account(
    inputs: RunInputs,
    *,
    idle_w: IdleOverride,
    grid_gco2_per_kwh: float | None,
    country: str | None,
    pue: float | None,
    price_per_kwh: float | None,
    currency: str | None,
    boundary_shift: float,
    boundary_widen: float,
    include_upstream: bool,
) -> Report:
    ledger, rs = inputs.ledger, inputs.ledger.run_start
    warnings = list(inputs.warnings)
    speeds = replay_speeds(inputs.run_dir)  # a faster replay's power is not a real draw
    idle = idle_power(ledger, inputs.devices, idle_w, speeds)
    for d in inputs.devices:
        if d not in idle:
            warnings.append(
                f"no idle baseline for {d}; its active energy counts all of its energy "
                "(pass --idle-w to set one)"
            )
    warnings.extend(cached_idle_notes(ledger))
    wres = stage_windows(ledger, inputs.t_end)
    warnings.extend(wres.warnings)
    windows = shift_windows(wres.windows, boundary_shift, boundary_widen)

    stages: list[StageReport] = []
    estimated = False
    degraded = wres.dropped > 0
    # Absurd readings (1e308 W) overflow to inf: caught below with a message, not numpy's.
    with np.errstate(over="ignore", invalid="ignore"):
        by_dev = run_energy(inputs)
        run_seconds = inputs.t_end - inputs.t_begin
        run_w = {d: e.joules / run_seconds for d, e in by_dev.items() if run_seconds > 0}
        for w in windows:
            st, per_dev = stage_report(w, inputs, idle, run_w)
            stages.append(st)
            estimated |= any(e.estimated for e in per_dev)
    _check_finite(inputs, by_dev, stages)
    # the meter's warnings about a stage (sensor faults, contamination) degrade it
    stages = apply_faults(stages, stage_faults(ledger, stages), idle)
    degraded |= any(st.status == "degraded" for st in stages)

    for e in by_dev.values():
        warnings.extend(e.notes)
        estimated |= e.estimated
        degraded |= e.degraded
    energy_j = math.fsum(e.joules for e in by_dev.values())
    total_parts = sum((device_uncertainty_parts(e, inputs.series[d], inputs.t_begin,
                                                inputs.t_end, idle.get(d))
                       for d, e in by_dev.items()), UncertaintyParts())
    total_unc = total_parts.total
    conservation, cons_warn = check_conservation(inputs, by_dev)
    warnings.extend(cons_warn)
    stages_j = math.fsum(s.energy_j["total"] for s in stages)
    unattributed = energy_j - stages_j
    tolerance = total_unc + math.fsum(s.uncertainty_j for s in stages)
    if unattributed < -tolerance:
        warnings.append(
            f"the stages add up to {-unattributed:.1f} J more than the run's energy, beyond "
            f"the uncertainty (+-{tolerance:.1f} J): do stages overlap?"
        )
        degraded = True

    flags: list[Flag] = ledger_flags(ledger, inputs.t_begin, inputs.t_end, inputs.complete,
                                     speeds)
    flags += trace_flags(str(inputs.run_dir / TRACE_FILE), inputs.series, inputs.t_begin,
                         inputs.t_end, ledger.events[-1].t, inputs.complete)
    upstream: list[StageReport] = []
    if include_upstream and rs.upstream:
        def account_upstream(path: Path) -> Report:
            return account(path, idle_w=idle_w, grid_gco2_per_kwh=0.0,
                           boundary_shift=boundary_shift, boundary_widen=boundary_widen,
                           include_upstream=False)

        upstream, up_warn = resolve_upstream(inputs.run_dir, rs.upstream, account_upstream,
                                             run_id=rs.run_id, flags=flags)
        warnings.extend(up_warn)
        own = {s.name for s in stages}
        for name in sorted({s.name for s in upstream} & own):
            warnings.append(
                f"stage {name!r} is both in this run and upstream; both are counted"
            )
        estimated |= any(src in ESTIMATED_SOURCES for s in upstream for src in s.source.values())
    upstream_j = math.fsum(s.energy_j["total"] for s in upstream)
    by_side = {side: 0.0 for side in SIDES}
    for s in stages:
        by_side[s.side] = by_side.get(s.side, 0.0) + s.energy_j["total"]
    for s in upstream:  # shared teacher work in full (DESIGN); a student's own training
        # carried from an interrupted attempt at its run (docs/reliability.md) is student work
        by_side["student" if s.side == "student" else "teacher"] += s.energy_j["total"]

    # the meter's own stages (its idle measurement): kept in the stages and the run's
    # total, named apart, and left out of the workload (docs/accounting.md)
    overhead_j = math.fsum(s.energy_j["total"] for s in stages if s.name in METER_STAGES)
    up_overhead_j = math.fsum(s.energy_j["total"] for s in upstream if s.name in METER_STAGES)
    totals = Totals(
        energy_j=energy_j, kwh=energy_j / J_PER_KWH, seconds=inputs.t_end - inputs.t_begin,
        stages_j=stages_j, unattributed_j=unattributed, uncertainty_j=total_unc,
        uncertainty_parts=total_parts.as_dict(),
        upstream_j=upstream_j, with_upstream_j=energy_j + upstream_j, by_side=by_side,
        by_device={d: e.joules for d, e in by_dev.items()},
        tokens=sum(s.tokens for s in stages),
        meter_overhead_j=overhead_j,
        meter_overhead_s=math.fsum(s.seconds for s in stages if s.name in METER_STAGES),
        workload_j=energy_j - overhead_j,
        workload_with_upstream_j=energy_j - overhead_j + upstream_j - up_overhead_j,
    )
    with_up = totals.with_upstream_j if upstream else None
    hardware, hw_warn = read_hardware(inputs.run_dir)
    warnings.extend(hw_warn)
    quality_events = ledger.of("quality")
    q = quality_events[-1] if quality_events else None
    end = ledger.run_end
    if not inputs.complete:
        status = "incomplete"
    elif end is not None and end.status != "ok":
        status = end.status
    else:
        status = "degraded" if degraded else "ok"
    for ev in ledger.of("warning"):
        where = ", ".join(x for x in (ev.device, ev.stage) if x)
        warnings.append(f"meter: {ev.message}" + (f" ({where})" if where else ""))
    report = Report(
        run_id=rs.run_id, run_dir=str(inputs.run_dir), wall_time=rs.wall_time,
        method=rs.method, seed=rs.seed, config_id=rs.config_id, task=rs.task,
        labels=dict(rs.labels), hardware=hardware, devices=inputs.devices,
        sources=inputs.sources, idle_power_w=idle, stages=stages, upstream=upstream,
        idle_uncertainty_w=idle_uncertainty_w(ledger, inputs.series, inputs.sources, idle,
                                              speeds),
        conservation=conservation,
        totals=totals,
        carbon=carbon(energy_j, with_up, grid_gco2_per_kwh=grid_gco2_per_kwh,
                      country=country, pue=pue),
        cost=cost(energy_j, with_up, price_per_kwh=price_per_kwh, currency=currency, pue=pue),
        quality=Quality(metric=q.metric, value=q.value, n=q.n, details=dict(q.details))
        if q else None,
        estimated=estimated, status=status, warnings=warnings,
        accounting={"boundary_shift": boundary_shift, "boundary_widen": boundary_widen,
                    "idle_override": idle_w is not None,
                    **({"replay_speed": speeds} if speeds else {})},
        **_ranks_field(inputs.run_dir, idle_w, boundary_shift, boundary_widen),
    )
    return apply_flags(report, merge_flags(flags, report_flags(report)))


def _ranks_field(run_dir: Path, idle_w: IdleOverride, shift: float, widen: float
                 ) -> dict[str, list]:
    """``{"ranks": [...]}``: per-rank figures of a multi-process run (docs/scale.md), else
    nothing. Left out of shifted re-accounts (the sensitivity analysis reads totals only)."""
    if shift or widen or not has_ranks(run_dir):
        return {}
    return {"ranks": rank_detail(run_dir, lambda p: account(p, idle_w=idle_w,
                                                             include_upstream=False))}


def _check_finite(inputs: RunInputs, by_dev: dict[str, DeviceEnergy],
                  stages: list[StageReport]) -> None:
    """Refuse figures that overflowed: readings or samples too large to be real."""
    bad = [f"{d} over the run" for d, e in by_dev.items() if not math.isfinite(e.joules)]
    bad += [f"{d} in stage {s.name!r}" for s in stages for d, v in s.energy_j.items()
            if d != "total" and not math.isfinite(v)]
    bad += [f"the uncertainty of stage {s.name!r}" for s in stages
            if not math.isfinite(s.uncertainty_j)]
    if bad:
        raise ProtocolError(
            f"{inputs.run_dir}: energy is not a finite number for {', '.join(bad[:3])}: "
            f"{inputs.ledger.path.name} or {TRACE_FILE} holds readings too large to be real"
        )
