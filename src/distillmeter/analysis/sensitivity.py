"""Sensitivity of the totals to where the stage boundaries lie.

Every run is re-accounted with each stage boundary moved by +5% and -5% of the stage's
length (``account(..., boundary_shift=...)``), and the largest relative change of each
total (teacher side, student side, evaluation, total) is reported. The run's own total
comes from its first and last readings, so it should not move; the sides do, as energy
shifts between neighbouring stages and the unattributed remainder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from distillmeter.accounting.probes import SENSITIVITY_SHIFT
from distillmeter.analysis.runs import RunFigures, figures
from distillmeter.protocol import Report

TOTALS = ("teacher", "student", "eval", "total")
# accounting plans these moved boundaries in the pass that accounts a run, so the
# re-accountings here read no trace again
DEFAULT_SHIFT = SENSITIVITY_SHIFT


def _totals(r: RunFigures) -> dict[str, float]:
    return {"teacher": r.side_j("teacher"), "student": r.side_j("student"),
            "eval": r.side_j("eval"), "total": r.total_j()}


def relative_changes(base: RunFigures, shifted: list[RunFigures]) -> dict[str, float | None]:
    """Largest |shifted - base| / base of each total over the shifted accountings; None
    where the base total is zero (nothing to move)."""
    b = _totals(base)
    out: dict[str, float | None] = {}
    for k in TOTALS:
        if b[k] <= 0:
            out[k] = None
            continue
        out[k] = max((abs(_totals(s)[k] - b[k]) / b[k] for s in shifted), default=0.0)
    return out


def summarise(per_run: list[dict[str, Any]]) -> dict[str, Any]:
    """The largest change of each total over all runs, and the run it came from."""
    worst: dict[str, Any] = {}
    for k in TOTALS:
        vals = [r for r in per_run if r.get(k) is not None]
        if vals:
            r = max(vals, key=lambda x: x[k])
            worst[k] = {"max_rel_change": r[k], "run_id": r["run_id"],
                        "run_dir": r.get("run_dir")}
        else:
            worst[k] = {"max_rel_change": None, "run_id": None, "run_dir": None}
    return worst


def sensitivity(
    runs: list[tuple[Path, RunFigures, str]],
    account_shifted: Callable[[Path, float], Report],
    shift: float = DEFAULT_SHIFT,
) -> dict[str, Any]:
    """Re-account each (run_dir, figures, label) at +shift and -shift. A run that cannot
    be re-accounted (no trace, say) is listed under ``failed`` with the reason."""
    per_run: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    for run_dir, base, label in runs:
        try:
            shifted = [figures(account_shifted(run_dir, s), str(run_dir))
                       for s in (shift, -shift)]
        except Exception as exc:  # any failure is reported per run, never fatal
            failed.append({"run_id": base.run_id, "run_dir": label,
                           "reason": f"{type(exc).__name__}: {exc}"})
            continue
        entry: dict[str, Any] = {"run_id": base.run_id, "run_dir": label,
                                 "config": base.config}
        entry.update(relative_changes(base, shifted))
        per_run.append(entry)
    return {"shift": shift, "runs": per_run, "max": summarise(per_run), "failed": failed}


def default_account_shifted(run_dir: Path, shift: float) -> Report:
    """The real accounting with moved boundaries (nothing is written)."""
    from distillmeter.accounting import account

    return account(run_dir, boundary_shift=shift)
