"""Finding and loading the run directories below a directory (the side-effecting edge).

A run directory is a directory holding ``ledger.jsonl``. Its ``report.json`` is used when it
is valid and at least as new as the ledger; a run directory without one is accounted here
(and its report written). A run directory that cannot be read, a broken report or ledger,
is listed as skipped with the reason: never silently dropped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from distillmeter.errors import UserError
from distillmeter.protocol import (
    ARTIFACTS_DIR,
    LEDGER_FILE,
    REPORT_FILE,
    ProtocolError,
    Report,
    load_report,
)
from distillmeter.protocol.merge import RANKS_DIR, has_ranks

# Runs counted in the statistics: finished ("ok") or finished with a measurement problem
# the report names ("degraded"); a crashed or interrupted run would bias the means.
COUNTED_STATUSES = frozenset({"ok", "degraded"})


@dataclass
class LoadedRun:
    """A run directory and its report. ``accounted`` is True when the report was made here."""

    run_dir: Path
    report: Report
    accounted: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Skipped:
    """A run directory left out of the analysis, and why."""

    run_dir: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"run_dir": self.run_dir, "reason": self.reason}


def find_run_dirs(runs_dir: Path | str) -> list[Path]:
    """Every directory at or below ``runs_dir`` that holds a ledger, sorted by path. Hidden
    directories and run directories' ``artifacts/`` are not searched."""
    root = Path(runs_dir)
    if not root.exists():
        raise UserError(f"{root}: no such directory")
    if not root.is_dir():
        raise UserError(f"{root}: not a directory (give the directory that holds the runs)")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=None):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        # a multi-process run: its ranks/rank<k>/ are parts of it, not runs of their own
        # (merged or, after a crash, merged in memory by accounting; docs/scale.md)
        if LEDGER_FILE in filenames or (RANKS_DIR in dirnames and has_ranks(dirpath)):
            found.append(Path(dirpath))
            dirnames[:] = [d for d in dirnames if d not in (ARTIFACTS_DIR, RANKS_DIR)]
    return sorted(found)


def _default_account(run_dir: Path) -> Report:
    from distillmeter.accounting import account, write_report

    report = account(run_dir)
    write_report(run_dir, report)
    return report


def _report_is_stale(run_dir: Path) -> bool:
    try:
        return (run_dir / LEDGER_FILE).stat().st_mtime > (run_dir / REPORT_FILE).stat().st_mtime
    except OSError:
        return False


def load_run(run_dir: Path, account_fn: Callable[[Path], Report] | None = None) -> LoadedRun:
    """Load one run directory's report, accounting it when it has none (or an older one
    than its ledger). Raises ProtocolError (or another exception) when it cannot."""
    account_fn = account_fn or _default_account
    report_path = run_dir / REPORT_FILE
    if report_path.exists() and not _report_is_stale(run_dir):
        report = load_report(report_path)
        if report.totals.uncertainty_parts:
            return LoadedRun(run_dir, report)
        # written before reports split their uncertainty (analysis/uncertainty.py):
        # re-account from the raw files if they can be; else use it as it is
        try:
            return LoadedRun(run_dir, account_fn(run_dir), accounted=True, notes=[
                "report.json had no uncertainty_parts (an older distillmeter): re-accounted"])
        except (ProtocolError, UserError, OSError):
            return LoadedRun(run_dir, report)
    note = ("report.json was older than ledger.jsonl: re-accounted"
            if report_path.exists() else "no report.json: accounted now")
    return LoadedRun(run_dir, account_fn(run_dir), accounted=True, notes=[note])


def load_runs(
    runs_dir: Path | str,
    account_fn: Callable[[Path], Report] | None = None,
) -> tuple[list[LoadedRun], list[Skipped]]:
    """Load every run directory below ``runs_dir``. Returns the loaded runs and the skipped
    ones with their reasons. Two directories reporting the same run_id: the second is
    skipped (a copied run would otherwise count twice)."""
    root = Path(runs_dir)
    loaded: list[LoadedRun] = []
    skipped: list[Skipped] = []
    seen: dict[str, Path] = {}
    for run_dir in find_run_dirs(root):
        rel = _rel(run_dir, root)
        try:
            run = load_run(run_dir, account_fn)
        except (ProtocolError, UserError) as exc:
            skipped.append(Skipped(rel, str(exc)))
            continue
        except Exception as exc:  # a bug or an unexpected file: report it, keep going
            skipped.append(Skipped(rel, f"cannot account: {type(exc).__name__}: {exc}"))
            continue
        if run.report.status not in COUNTED_STATUSES:
            skipped.append(Skipped(
                rel, f"run status is {run.report.status!r} (it did not finish cleanly): "
                "left out of the statistics; see its report.json"))
            continue
        if run.report.run_id in seen:
            skipped.append(Skipped(
                rel, f"same run_id {run.report.run_id} as {_rel(seen[run.report.run_id], root)}"
                " (a copy?); counted once"))
            continue
        seen[run.report.run_id] = run_dir
        loaded.append(run)
    return loaded, skipped


def run_label(run_dir: Path, root: Path) -> str:
    """How the commands name a run of ``root``: its path relative to ``root`` (the
    directory's own name when it is ``root`` itself; the full path when outside it)."""
    try:
        rel = str(run_dir.relative_to(root))
    except ValueError:
        return str(run_dir)
    return rel if rel != "." else run_dir.name


def _rel(path: Path, root: Path) -> str:
    try:
        rel = path.relative_to(root)
    except ValueError:
        return str(path)
    return str(rel) if str(rel) != "." else str(path)
