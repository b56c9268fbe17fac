"""Impossible figures: what accounting refuses, and what it accounts with a flag.

Refused (``ProtocolError``: one line naming the file and line, exit 2), because no figure
of the run could be trusted:

- ``run_end`` before ``run_start``: the run has a negative length, so its total, seconds,
  carbon and cost are all meaningless;
- a second ``run_start`` of another run: two runs' events in one ledger.

Flagged (``report.flags``, kind ``impossible``): the report is written and shown with the
flag, the flagged stages and the run get status ``impossible``, and the analysis across
runs leaves the run out, naming it (so it never fits a budget):

- energy implying more power than the device class can draw (``limits.py``), in a stage,
  in the run's total, or in a trace power sample; negative energy or power;
- time running backwards among the boundary events, events before ``run_start`` or after
  ``run_end``, a run that would end after the present;
- negative tokens or samples (they are counted as 0, with a note);
- an idle baseline outside [0, the device's maximum] (not used: the device then has no
  baseline);
- a trace whose clock disagrees with the ledger's (samples well before the run started,
  or after it ended): a first/last timestamp check;
- a second ``run_start`` of the same run; an upstream entry that names the run itself
  (not counted; ``upstream.py``).

``report_flags`` checks a finished report alone, so the analysis runs it on every report
it reads (a report.json edited by hand, or written before these checks, is caught too).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from distillmeter.accounting.limits import limit_phrase, max_power_w, window_limit_j
from distillmeter.protocol import Flag, Ledger, ProtocolError, Report, StageReport, is_device

IMPOSSIBLE = "impossible"
INCOMPLETE = "incomplete"
_READING_EVENTS = ("run_start", "stage_start", "stage_end", "run_end")
TIME_TOL_S = 1e-6  # clock readings written to 6 decimals
TRACE_CLOCK_TOL_S = 2.0  # the sampler starts right after run_start and stops at run_end
FUTURE_TOL_S = 86400.0  # a day of clock skew between the metered host and this one


def impossible(code: str, message: str, **where: Any) -> Flag:
    return Flag(kind=IMPOSSIBLE, code=code, message=message, **where)


def incomplete(code: str, message: str, **where: Any) -> Flag:
    return Flag(kind=INCOMPLETE, code=code, message=message, **where)


def _at(ledger: Ledger, line: int | None) -> str:
    return f"{ledger.path}:{line}" if line is not None else str(ledger.path)


def refuse_impossible_ledger(ledger: Ledger) -> None:
    """Raise ProtocolError for a ledger no figure of which can be trusted."""
    starts = [(ev, line) for ev, line in zip(ledger.events, ledger.lines, strict=False)
              if ev.event == "run_start"]
    first, line0 = starts[0]
    for ev, line in starts[1:]:
        if ev.run_id != first.run_id:
            raise ProtocolError(
                f"{_at(ledger, line)}: a second run_start, of run {ev.run_id} (the first, at "
                f"line {line0}, is run {first.run_id}): two runs' events in one ledger "
                "(files concatenated?); split them before accounting")
    ends = [(ev, line) for ev, line in zip(ledger.events, ledger.lines, strict=False)
            if ev.event == "run_end"]
    if ends and ends[-1][0].t < first.t - TIME_TOL_S:
        end, line = ends[-1]
        raise ProtocolError(
            f"{_at(ledger, line)}: run_end at t={end.t:.6g} s is before run_start (t="
            f"{first.t:.6g} s, line {line0}): time runs backwards, so the run has no length "
            "and none of its figures can be trusted (a corrupt or edited ledger)")


def ledger_flags(ledger: Ledger, t_begin: float, t_end: float, complete: bool,
                 speeds: dict[str, float] | None = None) -> list[Flag]:
    """Impossible things in the ledger's events (see the module docstring). ``speeds``:
    devices fed by a trace replayed faster (``hardware.replay_speeds``)."""
    speeds = speeds or {}
    flags: list[Flag] = []
    rs = ledger.run_start
    pairs = list(zip(ledger.events, ledger.lines, strict=False))
    starts = [line for ev, line in pairs if ev.event == "run_start"]
    if len(starts) > 1:
        flags.append(impossible("duplicate_run_start", (
            f"{_at(ledger, starts[1])}: a second run_start of run {rs.run_id} (the meter "
            f"writes one, at line {starts[0]}); the run is accounted from the first, and the "
            "events after the second may be another session's")))
    backwards, outside = [], []
    prev = None
    for ev, line in pairs:
        if ev.event not in _READING_EVENTS:
            continue
        if prev is not None and ev.t < prev[0].t - TIME_TOL_S:
            backwards.append((ev, line, prev))
        if ev.event != "run_end" and complete and ev.t > t_end + TIME_TOL_S:
            outside.append((ev, line, "after run_end"))
        elif ev.t < t_begin - TIME_TOL_S:
            outside.append((ev, line, "before run_start"))
        prev = (ev, line)
    if backwards:
        ev, line, (pev, pline) = backwards[0]
        more = f" (and {len(backwards) - 1} more)" if len(backwards) > 1 else ""
        flags.append(impossible("time_backwards", (
            f"{_at(ledger, line)}: time runs backwards: {ev.event} at t={ev.t:.6g} s comes "
            f"after {pev.event} at t={pev.t:.6g} s (line {pline}){more}; the ledger's clock "
            "is monotonic, so its stage times cannot be trusted")))
    if outside:
        ev, line, where = outside[0]
        more = f" (and {len(outside) - 1} more)" if len(outside) > 1 else ""
        flags.append(impossible("time_outside_run", (
            f"{_at(ledger, line)}: {ev.event} at t={ev.t:.6g} s lies {where} (the run spans "
            f"t={t_begin:.6g}-{t_end:.6g} s){more}")))
    for ev, line in pairs:
        if ev.event == "stage_end" and (ev.tokens < 0 or ev.samples < 0):
            flags.append(impossible("negative_count", (
                f"{_at(ledger, line)}: stage {ev.stage!r} ends with {ev.tokens} tokens and "
                f"{ev.samples} samples: a count cannot be negative; counted as 0"),
                stage=ev.stage))
        elif ev.event == "idle_baseline" and math.isfinite(ev.power_w) and is_device(
                ev.device) and not 0.0 <= ev.power_w <= max_power_w(
                    ev.device, speeds.get(ev.device, 1.0)):
            flags.append(impossible("idle_out_of_range", (
                f"{_at(ledger, line)}: idle baseline of {ev.device} is {ev.power_w:.4g} W, "
                f"outside [0, {limit_phrase(ev.device, speeds.get(ev.device, 1.0))}]: not "
                "used, so its active energy "
                "counts all of its energy (--idle-w sets a baseline)"), device=ev.device))
    flags += _future_flags(ledger, t_begin, t_end)
    return flags


def _future_flags(ledger: Ledger, t_begin: float, t_end: float) -> list[Flag]:
    rs = ledger.run_start
    try:
        start = datetime.fromisoformat(rs.wall_time)
    except (TypeError, ValueError):
        return []
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    elapsed = (datetime.now(timezone.utc) - start).total_seconds()
    seconds = t_end - t_begin
    if seconds <= max(elapsed, 0.0) + FUTURE_TOL_S:
        return []
    return [impossible("run_in_future", (
        f"{ledger.path}: the run would last {seconds:.4g} s from its start at {rs.wall_time} "
        f"(t={t_begin:.6g} to {t_end:.6g} s), ending after the present: the ledger's clock "
        "is wrong, so the run's seconds and power are not real"))]


def trace_flags(trace_path: str, series: dict[str, Any], t_begin: float, t_end: float,
                last_event_t: float, complete: bool) -> list[Flag]:
    """The trace's clock against the ledger's (each device's first and last sample), and
    power samples outside [0, the device's maximum]."""
    flags: list[Flag] = []
    tol = TRACE_CLOCK_TOL_S + 0.01 * max(t_end - t_begin, 0.0)
    for d, s in series.items():
        first, last = s.t_first, s.t_last
        if first is not None and last is not None:
            early = t_begin - first
            late = last - t_end if complete else first - last_event_t
            if early > tol or late > tol:
                off = max(early, late)
                flags.append(impossible("trace_clock", (
                    f"{trace_path}: the samples of {d} span t={first:.6g}-{last:.6g} s but "
                    f"the ledger's run spans t={t_begin:.6g}-{t_end:.6g} s: the trace's clock "
                    f"disagrees with the ledger's by about {off:.3g} s, so energy integrated "
                    "from the trace is not to be trusted"), device=d))
        if s.has_power and is_device(d):
            lo, hi = float(s.power_min), float(s.power_max)
            if lo < 0 or hi > max_power_w(d):
                bad = lo if lo < 0 else hi
                flags.append(impossible("power_sample_out_of_range", (
                    f"{trace_path}: a power sample of {d} reads {bad:.4g} W, outside [0, "
                    f"{limit_phrase(d)}]"), device=d))
    return flags


def _stage_flags(st: StageReport, where: str, speeds: dict[str, float]) -> list[Flag]:
    flags: list[Flag] = []
    for d, e in st.energy_j.items():
        if d == "total" or not is_device(d) or not math.isfinite(e):
            continue
        k = speeds.get(d, 1.0)
        if e > window_limit_j(d, st.seconds, k):
            watts = e / st.seconds if st.seconds > 0 else math.inf
            flags.append(impossible("power_over_limit", (
                f"{where}stage {st.name!r}: {d} drew {e:.4g} J in {st.seconds:.3g} s "
                f"({watts:.3g} W), more than {limit_phrase(d, k)}: a corrupt or misread "
                "reading"), stage=st.name, device=d))
        elif e < -max(st.uncertainty_j, 1e-6):
            flags.append(impossible("negative_energy", (
                f"{where}stage {st.name!r}: {d} has {e:.4g} J: energy cannot be negative"),
                stage=st.name, device=d))
    if st.seconds < -TIME_TOL_S:
        flags.append(impossible("negative_time", (
            f"{where}stage {st.name!r} lasts {st.seconds:.4g} s: time cannot run backwards"),
            stage=st.name))
    if st.tokens < 0 or st.samples < 0:
        flags.append(impossible("negative_count", (
            f"{where}stage {st.name!r} has {st.tokens} tokens and {st.samples} samples: a "
            "count cannot be negative"), stage=st.name))
    return flags


def report_flags(report: Report) -> list[Flag]:
    """Impossible figures in a finished report, from its numbers alone (the devices a
    faster replay fed are in ``report.accounting["replay_speed"]``)."""
    flags: list[Flag] = []
    speeds = report_speeds(report)
    for st in report.stages:
        flags += _stage_flags(st, "", speeds)
    # upstream stages were checked when their own run was accounted; an impossible one
    # reaches this report as an upstream_impossible flag (upstream.py)
    t = report.totals
    for d, e in t.by_device.items():
        if not is_device(d) or not math.isfinite(e):
            continue
        k = speeds.get(d, 1.0)
        if e > window_limit_j(d, t.seconds, k):
            watts = e / t.seconds if t.seconds > 0 else math.inf
            flags.append(impossible("power_over_limit", (
                f"the run's total: {d} drew {e:.4g} J in {t.seconds:.4g} s ({watts:.3g} W), "
                f"more than {limit_phrase(d, k)}: a corrupt or misread reading"), device=d))
        elif e < -max(t.uncertainty_j, 1e-6):
            flags.append(impossible("negative_energy", (
                f"the run's total: {d} has {e:.4g} J: energy cannot be negative"), device=d))
    if t.seconds < -TIME_TOL_S:
        flags.append(impossible("negative_time", (
            f"the run lasts {t.seconds:.4g} s: time cannot run backwards")))
    for d, w in report.idle_power_w.items():
        k = speeds.get(d, 1.0)
        if is_device(d) and math.isfinite(w) and not 0.0 <= w <= max_power_w(d, k):
            flags.append(impossible("idle_out_of_range", (
                f"idle baseline of {d} is {w:.4g} W, outside [0, {limit_phrase(d, k)}]"),
                device=d))
    return flags


def report_speeds(report: Report) -> dict[str, float]:
    """The replay speeds a report was accounted with (``accounting.replay_speed``)."""
    raw = (report.accounting or {}).get("replay_speed") if isinstance(
        getattr(report, "accounting", None), dict) else None
    if not isinstance(raw, dict):
        return {}
    return {str(d): float(v) for d, v in raw.items()
            if isinstance(v, (int, float)) and math.isfinite(v) and v > 1}


def merge_flags(*groups: list[Flag]) -> list[Flag]:
    """The flags of every group, in order: one per code and place (the ledger's check and
    the report's check of one negative count are one flag; the first is kept)."""
    seen: set[tuple[str, ...]] = set()
    out: list[Flag] = []
    for group in groups:
        for f in group:
            key = (f.code, f.stage or "", f.device or "") if f.stage or f.device else (
                f.code, f.message)
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def apply_flags(report: Report, flags: list[Flag]) -> Report:
    """The report with its flags: flagged stages and the run get status ``impossible``,
    negative counts become 0 (with a note)."""
    if not flags:
        return report
    hit = {f.stage for f in flags if f.kind == IMPOSSIBLE and f.stage}
    stages = []
    for st in report.stages:
        update: dict[str, Any] = {}
        if st.name in hit:
            update["status"] = IMPOSSIBLE
            update["notes"] = [*st.notes, *(f.message for f in flags if f.stage == st.name
                                            and f.kind == IMPOSSIBLE)]
        if st.tokens < 0 or st.samples < 0:
            update.update(tokens=max(st.tokens, 0), samples=max(st.samples, 0),
                          j_per_token=None)
        stages.append(st.model_copy(update=update) if update else st)
    totals = report.totals.model_copy(update={"tokens": sum(s.tokens for s in stages)})
    status = IMPOSSIBLE if any(f.kind == IMPOSSIBLE for f in flags) else report.status
    return report.model_copy(update={"stages": stages, "totals": totals, "status": status,
                                     "flags": merge_flags(list(report.flags), flags)})


def flag_summary(flags: list[Flag], kind: str = IMPOSSIBLE, limit: int = 2) -> str:
    """The first ``limit`` messages of ``kind``, and how many more."""
    msgs = [f.message for f in flags if f.kind == kind]
    text = "; ".join(msgs[:limit])
    return text + (f" (+{len(msgs) - limit} more)" if len(msgs) > limit else "")
