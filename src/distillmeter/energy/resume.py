"""Resuming a run directory: what a new meter session continues from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from distillmeter.energy.runfiles import last_trace_energy, last_trace_t, trim_partial_line
from distillmeter.errors import UserError
from distillmeter.protocol import LEDGER_FILE, TRACE_FILE, Ledger, read_ledger


@dataclass
class PriorRun:
    """The run a resumed session continues: its ledger, its run_id, where its clock got
    to (the last event or trace row), each device's last recorded counter value, and notes
    for the ledger."""

    ledger: Ledger
    run_id: str
    t_offset: float
    last_readings: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    open_stages: list[str] = field(default_factory=list)  # stages a crash left open

    def closing_events(self) -> list[dict]:
        """A ``stage_end`` for each stage the crashed session left open, at the crash
        point (the last event or trace row before the resume) with status ``incomplete``.
        Without it the accounting would close the stage at the resumed run's end, over
        every later stage, and count their energy twice. Its readings are left empty: the
        crashed process took none, so the accounting integrates the trace up to there."""
        return [{"event": "stage_end", "t": self.t_offset, "stage": name, "readings": {},
                 "tokens": 0, "samples": 0, "status": "incomplete",
                 "error": "the run stopped inside this stage (a crash?); closed at the last "
                          f"reading before the resume (t={self.t_offset:.3f}); its tokens "
                          "are unknown"}
                for name in self.open_stages]


def previous_run(run_dir: Path, *, resume: bool, run_id: str | None) -> PriorRun | None:
    """The run already in ``run_dir``, or None when it holds none. A run there without
    ``resume``, or under another ``run_id`` than the one given, is a UserError."""
    ledger_path = run_dir / LEDGER_FILE
    if not (ledger_path.exists() and ledger_path.stat().st_size > 0):
        return None
    if not resume:
        raise UserError(f"{run_dir} already holds a run ({ledger_path}): use "
                        "another directory, or resume=True to continue that run")
    notes = []
    if trim_partial_line(ledger_path):
        notes.append("resume: cut the ledger's last line, which a crash had left incomplete")
    ledger = read_ledger(ledger_path)
    if run_id is not None and run_id != ledger.run_start.run_id:
        raise UserError(f"{ledger_path} holds run {ledger.run_start.run_id}, not "
                        f"{run_id}: cannot resume it under another run_id")
    last: dict[str, float | None] = {}
    for ev in ledger.events:
        last.update({d: v for d, v in (getattr(ev, "readings", None) or {}).items()
                     if v is not None})
    # The trace's counter values are later than the ledger's last boundary (a crash
    # inside a stage): modelled counters continue from the larger, or they would run
    # backwards and the run's total would miss what the trace recorded.
    for d, v in last_trace_energy(run_dir / TRACE_FILE).items():
        if last.get(d) is None or v > last[d]:
            last[d] = v
    t_offset = max(max(e.t for e in ledger.events), last_trace_t(run_dir / TRACE_FILE))
    return PriorRun(ledger, ledger.run_start.run_id, t_offset, last, notes,
                    _open_stages(ledger))


def _open_stages(ledger: Ledger) -> list[str]:
    """Stages started and never ended, paired by name as the accounting pairs them."""
    depth: dict[str, int] = {}
    for ev in ledger.events:
        if ev.event == "stage_start":
            depth[ev.stage] = depth.get(ev.stage, 0) + 1
        elif ev.event == "stage_end" and depth.get(ev.stage):
            depth[ev.stage] -= 1
    return [name for name, n in depth.items() for _ in range(n)]
