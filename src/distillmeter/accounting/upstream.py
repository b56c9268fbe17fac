"""Shared teacher work: the stages a student run takes from other run directories.

``run_start.upstream`` names them as ``[{run_id, run_dir, stages}]``. Each is resolved
relative to the student's run directory (or used as is when absolute), accounted from its
raw files with the same options as the student (so a re-accounting with another idle
baseline or shifted boundaries treats both alike), or, when its raw files are gone, read
from its ``report.json``. Problems become warnings: a student's own energy is still worth
reporting when its teacher's directory is missing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from distillmeter.accounting.plausibility import IMPOSSIBLE, flag_summary, impossible, incomplete
from distillmeter.errors import USER_ERRORS
from distillmeter.protocol import (
    LEDGER_FILE,
    REPORT_FILE,
    Flag,
    Report,
    StageReport,
    UpstreamRef,
    load_report,
)


def resolve_upstream(
    run_dir: Path,
    refs: list[UpstreamRef],
    account_fn: Callable[[Path], Report],
    *,
    run_id: str | None = None,
    flags: list[Flag] | None = None,
) -> tuple[list[StageReport], list[str]]:
    """The upstream stages named by ``refs`` (each tagged with its ``run_id``) and the
    warnings met on the way. ``account_fn`` accounts one upstream run directory;
    ``run_id`` is the run's own (an entry naming it is refused); ``flags`` receives the
    missing and impossible upstream work (module docstring)."""
    stages: list[StageReport] = []
    warnings: list[str] = []
    flags = flags if flags is not None else []
    seen: set[str] = set()
    for ref in refs:
        if ref.run_id in seen:
            warnings.append(
                f"upstream run {ref.run_id} is listed twice in run_start; counted once"
            )
            continue
        seen.add(ref.run_id)
        path = Path(ref.run_dir)
        if not path.is_absolute():
            path = run_dir / path
        shown = os.path.normpath(path)  # in flags: every student names its teacher alike
        if ref.run_id == run_id or _same_dir(path, run_dir):
            flags.append(impossible("upstream_self", (
                f"run_start names this run itself as its upstream (run {ref.run_id}, "
                f"{ref.run_dir}): its stages ({', '.join(ref.stages)}) would be counted twice;"
                " not counted")))
            continue
        report = _upstream_report(path, ref, account_fn, warnings)
        if report is None:
            flags.append(incomplete("upstream_missing", (
                f"teacher energy missing: upstream run {ref.run_id} ({shown}) cannot be read, "
                f"so its stages ({', '.join(ref.stages)}) are not counted: this run's totals "
                "are lower bounds")))
            continue
        if any(f.kind == IMPOSSIBLE for f in report.flags):
            flags.append(impossible("upstream_impossible", (
                f"upstream run {ref.run_id} ({shown}) has impossible figures: "
                f"{flag_summary(report.flags, limit=1)}")))
        if report.run_id != ref.run_id:
            warnings.append(
                f"upstream {path}: its run_id is {report.run_id}, but run_start names "
                f"{ref.run_id}; using its stages anyway"
            )
        by_name: dict[str, list[StageReport]] = {}
        for st in report.stages:
            by_name.setdefault(st.name, []).append(st)
        for name in ref.stages:
            found = by_name.get(name)
            if not found:
                have = ", ".join(sorted(by_name)) or "none"
                warnings.append(
                    f"upstream {path}: no stage {name!r} (it has: {have}); not counted"
                )
                flags.append(incomplete("upstream_missing", (
                    f"teacher energy missing: upstream run {ref.run_id} ({shown}) has no stage "
                    f"{name!r} (it has: {have}), so it is not counted: this run's totals are "
                    "lower bounds"), stage=name))
                continue
            for st in found:
                stages.append(st.model_copy(update={"run_id": ref.run_id}))
    return stages, warnings


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except (OSError, ValueError):  # too long, or a NUL byte: it cannot be this directory
        return False


def _upstream_report(
    path: Path, ref: UpstreamRef, account_fn: Callable[[Path], Report], warnings: list[str]
) -> Report | None:
    try:
        found = path.is_dir()
        has_ledger = found and (path / LEDGER_FILE).exists()
        has_report = found and (path / REPORT_FILE).exists()
    except OSError as exc:  # a name too long, a directory we may not enter
        warnings.append(f"upstream run {ref.run_id}: cannot look at {path} ({exc.strerror}); "
                        f"its stages ({', '.join(ref.stages)}) are not counted")
        return None
    if not found:
        warnings.append(
            f"upstream run {ref.run_id}: directory {path} not found; its stages "
            f"({', '.join(ref.stages)}) are not counted"
        )
        return None
    try:
        if has_ledger:
            return account_fn(path)
        if has_report:
            return load_report(path)
    except USER_ERRORS as exc:
        warnings.append(f"upstream run {ref.run_id}: cannot account {path}: {exc}")
        return None
    warnings.append(
        f"upstream run {ref.run_id}: {path} has neither {LEDGER_FILE} nor {REPORT_FILE}; "
        "its stages are not counted"
    )
    return None
