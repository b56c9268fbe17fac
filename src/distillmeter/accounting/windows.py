"""Stage windows: which stretch of the run's clock each stage covers, read from the ledger.

A window keeps two pairs of times: ``t_start``/``t_end``, where the boundary readings were
taken (the ledger's ``t``), and ``start``/``end``, the stretch being accounted. They are the
same unless the window was shifted (:func:`shift_windows`) for a sensitivity analysis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from distillmeter.errors import UserError
from distillmeter.protocol import SIDES, Ledger, stage_side


@dataclass(frozen=True)
class StageWindow:
    """One stage as the ledger recorded it."""

    name: str
    side: str
    t_start: float
    t_end: float
    start_readings: dict[str, float | None]
    end_readings: dict[str, float | None]
    tokens: int = 0
    samples: int = 0
    status: str = "ok"  # ok | failed | incomplete (no stage_end: the run stopped inside it)
    error: str | None = None
    start_line: int | None = None
    end_line: int | None = None
    notes: tuple[str, ...] = ()
    info: dict = field(default_factory=dict)
    start: float = math.nan  # the accounted stretch; NaN means "same as t_start/t_end"
    end: float = math.nan

    def __post_init__(self) -> None:
        if math.isnan(self.start):
            object.__setattr__(self, "start", self.t_start)
        if math.isnan(self.end):
            object.__setattr__(self, "end", self.t_end)

    @property
    def seconds(self) -> float:
        """Length of the accounted stretch."""
        return self.end - self.start

    @property
    def shifted(self) -> bool:
        """True when the accounted stretch is not the one between the boundary readings."""
        return self.start != self.t_start or self.end != self.t_end


@dataclass
class WindowsResult:
    windows: list[StageWindow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dropped: int = 0  # stage_end events that could not be paired and were left out


def _side_of(name: str) -> str | None:
    try:
        return stage_side(name)
    except ValueError:
        return None


def stage_windows(ledger: Ledger, run_end_t: float) -> WindowsResult:
    """Pair every ``stage_start`` with its ``stage_end``, in the order stages started.

    Nested stages and repeated names are paired innermost-first per name. A stage that never
    ended (the run stopped inside it) is closed at ``run_end_t`` with status ``incomplete``.
    A ``stage_end`` without a start, or one that ends before it starts, is left out with a
    warning: there is no stretch of time to give it.
    """
    out = WindowsResult()
    path = ledger.path
    lines = ledger.lines if len(ledger.lines) == len(ledger.events) else [None] * len(ledger.events)
    open_stages: dict[str, list[tuple[int, object, int | None]]] = {}
    done: list[tuple[int, StageWindow]] = []
    for order, (ev, line) in enumerate(zip(ledger.events, lines, strict=True)):
        if ev.event == "stage_start":
            open_stages.setdefault(ev.stage, []).append((order, ev, line))
        elif ev.event == "stage_end":
            stack = open_stages.get(ev.stage)
            if not stack:
                out.warnings.append(
                    f"{path}:{line}: stage_end for {ev.stage!r} without a stage_start; left out"
                )
                out.dropped += 1
                continue
            order0, st, line0 = stack.pop()
            if ev.t < st.t:
                out.warnings.append(
                    f"{path}:{line}: stage {ev.stage!r} ends (t={ev.t:.6f}) before it starts "
                    f"(line {line0}, t={st.t:.6f}); left out"
                )
                out.dropped += 1
                continue
            w = StageWindow(
                name=ev.stage, side=_side_of(ev.stage) or "other",
                t_start=st.t, t_end=ev.t,
                start_readings=dict(st.readings), end_readings=dict(ev.readings),
                tokens=ev.tokens, samples=ev.samples, status=ev.status, error=ev.error,
                start_line=line0, end_line=line, info=dict(ev.info),
            )
            done.append((order0, w))
    for name, stack in open_stages.items():
        for order0, st, line0 in stack:
            end_t = max(run_end_t, st.t)
            note = (
                f"stage never ended (the run stopped inside it?); counted from its start to "
                f"the last sample at t={end_t:.3f}"
            )
            out.warnings.append(f"{path}:{line0}: stage {name!r} has no stage_end; {note}")
            done.append((order0, StageWindow(
                name=name, side=_side_of(name) or "other", t_start=st.t, t_end=end_t,
                start_readings=dict(st.readings), end_readings={}, status="incomplete",
                start_line=line0, notes=(note,),
            )))
    done.sort(key=lambda x: x[0])
    out.windows = [w for _, w in done]
    bad = sorted({w.name for w in out.windows if w.side == "other"})
    for name in bad:
        out.warnings.append(
            f"stage {name!r} is not <side>.<what> with side one of {', '.join(SIDES)}; "
            "it is counted under side 'other'"
        )
    return out


def shift_windows(
    windows: list[StageWindow], shift: float = 0.0, widen: float = 0.0
) -> list[StageWindow]:
    """Move each window's accounted stretch by a fraction of its own length.

    ``shift`` moves both edges the same way (positive: later), modelling a boundary that was
    recorded early or late; ``widen`` moves the start earlier and the end later (negative
    narrows). Both are fractions of the stage's length, e.g. ``shift=0.05`` moves a 6 s
    stage 0.3 s later. The boundary readings stay where they were taken; the energy of the
    moved edges comes from the trace (see ``energy.device_window_energy``).
    """
    for name, f in (("boundary shift", shift), ("boundary widen", widen)):
        if not math.isfinite(f) or abs(f) > 1.0:
            raise UserError(f"{name} must be a fraction between -1 and 1, got {f!r}")
    if shift == 0.0 and widen == 0.0:
        return list(windows)
    out = []
    for w in windows:
        length = w.t_end - w.t_start
        start = w.t_start + (shift - widen) * length
        end = w.t_end + (shift + widen) * length
        if end < start:  # narrowed past zero: an empty stretch at the midpoint
            start = end = (start + end) / 2
        out.append(replace(w, start=start, end=end))
    return out
