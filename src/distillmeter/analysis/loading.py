"""Finding and loading the run directories below a directory (the side-effecting edge).

A run directory is a directory holding ``ledger.jsonl``. Its ``report.json`` is used when it
is valid and at least as new as the ledger; a run directory without one is accounted here
(and its report written) with the carbon settings its ``config.yaml`` names (the ones the
pipeline would have used), unless the caller gives its own. A run directory that cannot
be read or accounted is listed as skipped (``kind`` ``unaccounted``) with the reason: never
silently dropped, and never accounted with a default grid in place of the one it asked
for. Every report read is checked for impossible figures again (a report.json edited by
hand, or written before the checks, is caught too: ``accounting.plausibility``); a run
with one is skipped too (``kind`` ``impossible``), so no mean, verdict or plan uses it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from distillmeter.accounting.plausibility import (
    IMPOSSIBLE,
    apply_flags,
    flag_summary,
    merge_flags,
    report_flags,
)
from distillmeter.analysis.runs import config_key
from distillmeter.errors import UserError
from distillmeter.protocol import (
    ARTIFACTS_DIR,
    CONFIG_FILE,
    LEDGER_FILE,
    REPORT_FILE,
    ProtocolError,
    Report,
    load_report,
)
from distillmeter.protocol.names import RANKS_DIR, has_ranks

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
    """A run directory left out of the analysis, and why. ``kind``: ``unaccounted`` (it
    could not be read or accounted), ``impossible`` (its report holds impossible figures),
    ``unfinished`` (it did not finish cleanly) or ``duplicate``; ``config`` and ``label``
    name its configuration where its report could be read."""

    run_dir: str
    reason: str
    kind: str = "unaccounted"
    config: str | None = None
    method: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {"run_dir": self.run_dir, "reason": self.reason,
                                      "kind": self.kind}
        if self.config is not None:
            out.update(config=self.config, method=self.method)
        return out


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


CARBON_KEYS = ("grid_gco2_per_kwh", "country", "pue", "price_per_kwh")


def run_carbon(run_dir: Path) -> dict[str, object]:
    """The carbon settings the run's ``config.yaml`` names (``carbon:`` section, the
    pipeline's), as accounting's keyword arguments; {} when it names none."""
    import yaml

    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    section = data.get("carbon") if isinstance(data, dict) else None
    if not isinstance(section, dict):
        return {}
    return {k: section[k] for k in CARBON_KEYS if section.get(k) is not None}


def default_account(run_dir: Path, carbon: dict[str, object] | None = None) -> Report:
    """Account a run directory and write its report.json: with ``carbon`` (accounting's
    grid/country/pue/price keywords) when given, else with the settings its config.yaml
    names. A setting accounting refuses (an unknown country) is a UserError naming it."""
    from distillmeter.accounting import account, write_report

    named = run_carbon(run_dir)
    settings = dict(named)
    if carbon:
        if carbon.get("grid_gco2_per_kwh") is not None or carbon.get("country"):
            settings.pop("grid_gco2_per_kwh", None)
            settings.pop("country", None)
        settings.update({k: v for k, v in carbon.items() if v is not None})
    try:
        report = account(run_dir, **settings)  # type: ignore[arg-type]
    except UserError as exc:
        where = f" (from its {CONFIG_FILE}: carbon {named})" if named else ""
        raise UserError(f"not accounted: {exc}{where}") from None
    write_report(run_dir, report)
    return report


def _default_account(run_dir: Path) -> Report:
    return default_account(run_dir)


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
        # written before reports split their uncertainty (analysis/energy_interval.py):
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
        rep = run.report
        flags = merge_flags(list(rep.flags), report_flags(rep))
        if len(flags) != len(rep.flags):
            run.report = rep = apply_flags(rep, flags)
        who = {"config": config_key(rep), "method": rep.method}
        if any(f.kind == IMPOSSIBLE for f in flags):
            skipped.append(Skipped(
                rel, f"impossible figures: {flag_summary(flags)}; left out of the statistics "
                "(see its report.json)", IMPOSSIBLE, **who))
            continue
        if rep.status not in COUNTED_STATUSES:
            skipped.append(Skipped(
                rel, f"run status is {rep.status!r} (it did not finish cleanly): "
                "left out of the statistics; see its report.json", "unfinished", **who))
            continue
        if rep.run_id in seen:
            skipped.append(Skipped(
                rel, f"same run_id {rep.run_id} as {_rel(seen[rep.run_id], root)}"
                " (a copy?); counted once", "duplicate", **who))
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
