"""Resuming a run directory: what a new meter session continues from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from distillmeter.energy.runfiles import last_trace_t, trim_partial_line
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
    t_offset = max(max(e.t for e in ledger.events), last_trace_t(run_dir / TRACE_FILE))
    return PriorRun(ledger, ledger.run_start.run_id, t_offset, last, notes)
