"""The analysis across runs, assembled: configurations, Pareto, break-even, efficiency,
sensitivity and rules, as one object and as ``summary.json`` / ``summary.csv`` data.

Everything here is pure: the caller loads the reports (``loading``), re-accounts for the
sensitivity analysis and hands the results in.
"""

from __future__ import annotations

import csv
import io
import math
import re
from typing import Any

from distillmeter.analysis import breakeven, pareto
from distillmeter.analysis.breakeven import DEFAULT_MIN_Q
from distillmeter.analysis.compare import dominance_separable
from distillmeter.analysis.efficiency import efficiency
from distillmeter.analysis.grouping import ConfigStats, budget_of, group_runs
from distillmeter.analysis.result import Analysis
from distillmeter.analysis.rules import rules_for_group
from distillmeter.analysis.runs import campaign_total_j, figures, hardware_label
from distillmeter.analysis.stats import SeedStats
from distillmeter.analysis.verdict import verdict, without_teacher_answers
from distillmeter.protocol import Report
from distillmeter.terminal import printable

SUMMARY_SCHEMA = "distillmeter.summary/1"
J_PER_KWH = 3.6e6


def _ci(s: SeedStats) -> tuple[float, float] | None:
    return None if s.lo is None or s.hi is None else (s.lo, s.hi)


def _check_min_q(min_q: float) -> None:
    if not math.isfinite(min_q) or min_q < 0:
        raise ValueError(f"min_q must be a Q (student / teacher quality) >= 0, got {min_q!r}")


def analyse(
    reports: list[tuple[str, Report]],
    *,
    amortize: float = 1.0,
    grid: float | None = None,
    pue: float | None = None,
    baseline_method: str | None = None,
    floors: list[dict[str, Any]] | None = None,
    sensitivity: dict[str, Any] | None = None,
    skipped: list[dict[str, str]] | None = None,
    min_q: float = DEFAULT_MIN_Q,
) -> Analysis:
    """Analyse reports given as (run directory label, report) pairs. ``min_q``: the Q a
    student needs for break-even and payback to be stated (analysis/breakeven.py)."""
    _check_min_q(min_q)
    if amortize < 1:
        raise ValueError("amortize must be at least 1 (the number of students sharing "
                         "the teacher-side work)")
    runs = [figures(rep, label) for label, rep in reports]
    grouping = group_runs(runs, amortize=amortize, grid=grid, pue=pue)
    pareto_by_group: dict[str, pareto.ParetoResult] = {}
    be_by_group: dict[str, dict[str, Any]] = {}
    for g in grouping.groups:
        cs = [c for c in grouping.configs if c.group == g.id]
        # one machine: energies compare on their comparison intervals (analysis/compare)
        # an incomplete configuration's energy is a lower bound: no frontier claim on it
        pts = [pareto.Point(c.config, c.energy_j.mean, c.quality.mean, c.energy_j.comparison,
                            _ci(c.quality))
               for c in cs if c.energy_j.mean is not None and c.quality.mean is not None
               and not c.incomplete]
        res = pareto.analyse(pts)
        pareto_by_group[g.id] = res
        for c in cs:
            c.pareto = c.config in res.frontier
            c.dominated_by = res.dominated_by.get(c.config)
            c.not_separable_from = res.not_separable_from.get(c.config, [])
        by_id = {c.config: c for c in cs}
        for c in cs:  # dominance on the means; said only when both axes separate
            c.dominated_separably = bool(c.dominated_by) and dominance_separable(
                by_id[c.dominated_by], c)
        teachers = [t for t in grouping.teacher_runs if t.run_id in g.teacher_runs]
        be_by_group[g.id] = breakeven.break_even([c for c in cs if not c.incomplete],
                                                 teachers, amortize=amortize,
                                                 baseline_method=baseline_method, min_q=min_q)
    owner = {r.run_id: c.label or c.config for c in grouping.configs for r in c.runs}
    for t in grouping.teacher_runs:
        owner[t.run_id] = f"teacher run {t.run_dir or t.run_id}"
    eff = efficiency([(owner[rep.run_id], rep) for _, rep in reports], floors or [])
    analysis = Analysis(runs=runs, reports={rep.run_id: rep for _, rep in reports},
                        grouping=grouping, pareto=pareto_by_group, break_even=be_by_group,
                        efficiency=eff, sensitivity=sensitivity, skipped=list(skipped or []),
                        amortize=amortize, grid=grid, pue=pue, notes=list(grouping.notes),
                        min_q=min_q)
    if any(c.n_seeds == 1 for c in grouping.configs):
        analysis.notes.append("configurations with one seed have no interval: they are "
                              "never separable from a frontier point")
    for c in grouping.configs:
        if c.incomplete:
            analysis.notes.append(f"{c.label or c.config} is incomplete: "
                                  f"{'; '.join(c.incomplete)}")
    overhead = [r.meter_overhead_j for r in runs if r.meter_overhead_j > 0]
    if overhead:
        analysis.notes.append(
            f"meter overhead: {len(overhead)} run(s) measured their idle baseline in the "
            f"meter's own setup.idle stage (mean {sum(overhead) / len(overhead):.3g} J a run); "
            "it is the meter's cost, left out of every energy figure here (docs/accounting.md)")
    if any(r.estimated for r in runs):
        analysis.notes.append("some energies are estimates (no counter or sensor on a device)"
                              ": see the sources table")
    from distillmeter.analysis.curverules import curve_rules

    for c in grouping.configs:
        if without_teacher_answers(c):
            analysis.notes.append(f"{c.label or c.config}: trained on 0 of the teacher's "
                                  "answers (synthetic_examples 0): no teacher data")

    for g in grouping.groups:  # a group with curves: their design rules first
        analysis.rules[g.id] = curve_rules(analysis, g.id) + rules_for_group(analysis, g.id)
    analysis.verdict = verdict(analysis)
    return analysis


def _stat(prefix: str, s: SeedStats, scale: float = 1.0) -> dict[str, Any]:
    s = s.scaled(scale) if scale != 1.0 else s
    out = {f"{prefix}_mean": s.mean, f"{prefix}_std": s.std,
           f"{prefix}_ci95": None if s.lo is None else [s.lo, s.hi]}
    if s.parts:  # an energy interval: the comparison interval and its components
        cmp = s.comparison
        out[f"{prefix}_ci95_within_group"] = None if cmp is None else [cmp[0], cmp[1]]
        out[f"{prefix}_ci95_parts"] = dict(s.parts)
    if s.lo is not None:
        out[f"{prefix}_ci95_method"] = s.method
    return out


def config_record(c: ConfigStats) -> dict[str, Any]:
    """One configuration as a summary.json record."""
    rec: dict[str, Any] = {
        "config": c.config, "label": c.label, "group": c.group, "method": c.method,
        "task": c.task,
        "hardware": c.hardware, "n_seeds": c.n_seeds, "seeds": c.seeds,
        "run_ids": [r.run_id for r in c.runs], "run_dirs": [r.run_dir for r in c.runs],
    }
    rec.update(_stat("energy_j", c.energy_j))
    rec.update(_stat("energy_kwh", c.energy_j, 1 / J_PER_KWH))
    rec["teacher_side_j_mean"] = c.side_mean("teacher")
    rec["student_side_j_mean"] = c.side_mean("student")
    rec["eval_j_mean"] = c.side_mean("eval")
    rec["setup_j_mean"] = c.side_mean("setup")
    rec["unattributed_j_mean"] = c.side_mean("unattributed")
    rec["by_side"] = {k: v.to_dict() for k, v in c.by_side.items()}
    rec["by_stage_j_mean"] = {k: v.mean for k, v in c.stage_j.items()}
    rec.update(_stat("marginal_j", c.marginal_j))
    if c.active_j is not None:
        rec.update(_stat("active_j", c.active_j))
    rec["per_student_teacher_stages"] = c.per_student_teacher_stages
    rec.update(_stat("co2e_g", c.co2e_g))
    rec["quality_metric"] = c.metric
    rec.update(_stat("quality", c.quality))
    rec.update(_stat("q", c.q))
    rec["token_budget"] = budget_of(c)  # its point on a budget axis (None: none)
    rec["dominated_separably"] = c.dominated_separably
    rec["incomplete"] = list(c.incomplete)  # non-empty: the energies are lower bounds
    rec["meter_overhead_j_mean"] = None if c.meter_overhead_j is None else \
        c.meter_overhead_j.mean
    rec.update(pareto=c.pareto, dominated_by=c.dominated_by,
               not_separable_from=c.not_separable_from, estimated=c.estimated,
               upstream_stages=c.upstream_stages)
    return rec


def _finite(x: Any) -> Any:
    """JSON has no NaN or infinity: such numbers become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def summary_dict(a: Analysis, runs_dir: str = "") -> dict[str, Any]:
    """The contents of summary.json."""
    from distillmeter.analysis.curves import curve_records

    hardware = {}
    for rep in a.reports.values():
        hardware.setdefault(_hw_key(rep), {"hardware": rep.hardware, "sources": {},
                                           "runs": 0})
        h = hardware[_hw_key(rep)]
        h["runs"] += 1
        h["sources"].update(rep.sources)
    out = {
        "schema": SUMMARY_SCHEMA,
        "verdict": a.verdict,
        "runs_dir": runs_dir,
        "amortize": a.amortize,
        "min_q": a.min_q,
        "grid_gco2_per_kwh": a.grid,
        "pue": a.pue,
        "n_runs": len(a.runs),
        "configs": [config_record(c) for c in a.configs],
        "groups": [{"id": g.id, "task": g.task, "hardware": g.hardware,
                    "configs": g.configs, "teacher_runs": g.teacher_runs,
                    "pareto_frontier": a.pareto[g.id].frontier,
                    "campaign": campaign_total_j([r for r in a.runs
                                                  if (r.task or None) == g.task
                                                  and r.hardware == g.hardware])}
                   for g in a.grouping.groups],
        "teacher_runs": [{"run_id": t.run_id, "run_dir": t.run_dir, "energy_j": t.own_j,
                          "by_side": t.own_by_side, "task": t.task, "hardware": t.hardware}
                         for t in a.grouping.teacher_runs],
        "break_even": [{"group": gid, **be} for gid, be in a.break_even.items()],
        "sensitivity": a.sensitivity,
        "efficiency": a.efficiency,
        "hardware": list(hardware.values()),
        "skipped": a.skipped,
        "notes": a.notes,
        "rules": [{"group": gid, "rules": rs} for gid, rs in a.rules.items()],
        # each method's points along the student's token budget (analysis/curves.py)
        "curves": curve_records(a),
    }
    return _finite(out)


def _hw_key(rep: Report) -> str:
    return hardware_label(rep.hardware)


CSV_COLUMNS = (
    "group", "config", "label", "method", "task", "hardware", "n_seeds", "energy_j_mean",
    "energy_j_std", "energy_j_ci95_lo", "energy_j_ci95_hi", "energy_kwh_mean",
    "teacher_side_j_mean", "student_side_j_mean", "eval_j_mean", "setup_j_mean",
    "unattributed_j_mean", "co2e_g_mean", "quality_metric", "quality_mean", "quality_std",
    "quality_ci95_lo", "quality_ci95_hi", "q_mean", "pareto", "dominated_by",
    "not_separable_from", "estimated", "incomplete",
)


# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...),
# +cmd|..., -2+3, @SUM(...)). (A tab or carriage return first, which hides the character
# after it, is written as an escape: csv_cell.)
_FORMULA_START = ("=", "+", "-", "@")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value: Any) -> Any:
    """A summary.csv cell that no spreadsheet runs: a text cell starting with ``= + - @``
    gets a leading apostrophe (the convention spreadsheets read as "this is text", and
    hide), and control characters in text are written as escapes (``\t``, ``\r``: a raw
    carriage return splits a row in many readers; summary.json keeps the text as it is).
    Numbers are written as numbers, and text that is a plain number (``-3.2``, ``+1e5``)
    is left as it is: a spreadsheet reads it as that number and runs nothing."""
    if not isinstance(value, str):
        return value
    value = printable(value)
    if value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def summary_csv(summary: dict[str, Any]) -> str:
    """One row per configuration, the scalar columns of summary.json (text cells that a
    spreadsheet would run as formulas neutralised: :func:`csv_cell`)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for rec in summary["configs"]:
        flat = dict(rec)
        for k in ("energy_j", "quality"):
            ci = rec.get(f"{k}_ci95")
            flat[f"{k}_ci95_lo"], flat[f"{k}_ci95_hi"] = (ci if ci else (None, None))
        flat["not_separable_from"] = ";".join(rec.get("not_separable_from") or [])
        flat["incomplete"] = "; ".join(rec.get("incomplete") or [])
        w.writerow(["" if flat.get(c) is None else csv_cell(flat.get(c)) for c in CSV_COLUMNS])
    return buf.getvalue()
