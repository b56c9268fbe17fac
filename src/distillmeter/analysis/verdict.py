"""The verdict: one sentence per method against the baseline, with its numbers (pure).

Each sentence answers the question distillmeter exists for, for one configuration of a
group against that group's baseline: how many times the baseline's energy per student it
costs (with the range both comparison intervals allow, and whether that is separable),
what share of it is teacher-side work, the quality it gains with the range both quality
intervals allow (separable or not), and, for a candidate (Q >= ``min_q``), the
break-even N* and the served-token payback where the break-even analysis states them.

Nothing here names a method: the teacher-side stages are read from each run's stages
(their side) and upstream, so a new method (a teacher scoring every student's samples
inside its own run, say) shows up with its own teacher share and its per-student teacher
stages named, without a change here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from distillmeter.analysis.compare import energy_difference, quality_difference, ratio_range
from distillmeter.analysis.curves import curves_of_group
from distillmeter.analysis.curveverdict import curve_verdict
from distillmeter.analysis.grouping import ConfigStats
from distillmeter.analysis.rules import fmt_d, fmt_j, fmt_q

if TYPE_CHECKING:
    from distillmeter.analysis.result import Analysis


def _ci(s: Any) -> list[float] | None:
    return None if s.lo is None or s.hi is None else [s.lo, s.hi]


def _est(c: ConfigStats, j: float | None) -> str:
    return f"~{fmt_j(j)} est." if c.estimated else fmt_j(j)


def _name(c: ConfigStats) -> str:
    return c.label or c.config


def _word(known: bool, separable: bool) -> str:
    if not known:
        return "one seed: cannot be told apart"
    return "separable" if separable else "cannot be told apart"


def _students_phrase(e: dict[str, Any]) -> str:
    if e.get("n_star"):
        lo, hi = e.get("n_star_range") or (None, None)
        rng = f", range {lo:.3g}-{hi:.3g}" if lo is not None else ""
        return (f"shared by more than N* = {e['n_star']:.3g} students{rng} its teacher work "
                "makes it cheaper per student than the baseline")
    saving = e.get("saving") or {}
    if not saving:
        return "no shared teacher-side work to divide: no break-even"
    if saving.get("separable"):
        return "it never costs less per student than the baseline, however many share its " \
               "teacher work"
    return "its energy per student without shared teacher work cannot be told apart from " \
           "the baseline's: no break-even stated"


def _payback_phrase(e: dict[str, Any]) -> str:
    status = e.get("payback_status")
    if status == "stated" and e.get("payback_tokens"):
        lo, hi = e.get("payback_range") or (None, None)
        rng = f" (range {lo:.3g}-{hi:.3g})" if lo is not None else ""
        return (f"serving {e['payback_tokens']:.3g} tokens{rng} with it instead of the teacher "
                "repays its distillation energy")
    if status == "not_cheaper":
        return "serving it never repays its distillation energy (not cheaper per token)"
    if status == "not_separable":
        return ("no payback stated (its energy per served token cannot be told apart from "
                "the teacher's)")
    return "payback unknown (no energy per served token measured)"


def incomplete_entry(c: ConfigStats, base: ConfigStats | None, prefix: str = ""
                     ) -> dict[str, Any]:
    """The verdict on a configuration whose totals are lower bounds (a run's upstream
    teacher work cannot be read): what is known, said as a bound, and nothing that rests
    on the missing energy."""
    total = c.energy_j.mean
    rec: dict[str, Any] = {
        "group": c.group, "config": c.config, "label": _name(c), "method": c.method,
        "baseline": base.config if base else None, "estimated": c.estimated,
        "incomplete": list(c.incomplete), "energy_j": total, "energy_j_is_lower_bound": True,
        "quality_metric": c.metric, "quality": c.quality.mean, "candidate": False,
    }
    why = "; ".join(r.removeprefix("teacher energy missing: ") for r in c.incomplete)
    parts = [f"INCOMPLETE: its teacher's energy is missing ({why})",
             f"at least {_est(c, total)} per student"
             + (f", at least {total / base.energy_j.mean:.3g}x the baseline's "
                f"{_est(base, base.energy_j.mean)}"
                if base is not None and total is not None and base.energy_j.mean else "")]
    if c.quality.mean is not None:
        parts.append(f"{c.metric or 'quality'} {fmt_q(c.quality.mean)}")
    parts.append("no teacher-side share, break-even or payback stated until its teacher "
                 "run can be read")
    rec["text"] = f"{prefix}{_name(c)}: " + "; ".join(parts) + "."
    return rec


def verdict_entry(c: ConfigStats, base: ConfigStats, be: dict[str, Any], min_q: float,
                  prefix: str = "") -> dict[str, Any]:
    """The verdict on configuration ``c`` against the baseline ``base``."""
    if c.incomplete:
        return incomplete_entry(c, base, prefix)
    de = energy_difference(c.energy_j, base.energy_j)
    dq = quality_difference(c.quality, base.quality)
    total, base_e = c.energy_j.mean, base.energy_j.mean
    multiple = total / base_e if total is not None and base_e else None
    mrange = ratio_range(c.energy_j, base.energy_j)
    teacher = c.side_mean("teacher")
    share = teacher / total if total else None
    metric = c.metric or "quality"
    rec: dict[str, Any] = {
        "group": c.group, "config": c.config, "label": _name(c), "method": c.method,
        "baseline": base.config, "baseline_label": _name(base), "estimated": c.estimated,
        "energy_j": total, "energy_j_ci95": _ci(c.energy_j),
        "baseline_energy_j": base_e, "baseline_energy_j_ci95": _ci(base.energy_j),
        "energy_multiple": multiple, "energy_multiple_range": list(mrange) if mrange else None,
        "energy_separable": de.separable,
        "teacher_side_j": teacher, "teacher_share": share,
        "per_student_teacher_stages": c.per_student_teacher_stages,
        "quality_metric": c.metric, "quality": c.quality.mean, "quality_ci95": _ci(c.quality),
        "baseline_quality": base.quality.mean, "baseline_quality_ci95": _ci(base.quality),
        "quality_gain": dq.mean, "quality_gain_range": [dq.lo, dq.hi] if dq.known else None,
        "quality_separable": dq.separable, "q": c.q.mean, "min_q": min_q,
        "candidate": bool(be.get("candidate")), "n_star": be.get("n_star"),
        "n_star_range": be.get("n_star_range"), "students_needed": be.get("students_needed"),
        "payback_tokens": be.get("payback_tokens"), "payback_range": be.get("payback_range"),
    }
    parts = []
    if multiple is not None:
        rng = f", range {mrange[0]:.3g}-{mrange[1]:.3g}x" if mrange else ""
        parts.append(f"{multiple:.3g}x the baseline's energy per student ({_est(c, total)} vs "
                     f"{_est(base, base_e)}{rng}; {_word(de.known, de.separable)})")
    if share is not None:
        own = (f", {', '.join(c.per_student_teacher_stages)} done per student"
               if c.per_student_teacher_stages else "")
        parts.append(f"{100 * share:.0f}% of it teacher-side{own}")
    if dq.mean is not None:
        rng = f", range {fmt_d(dq.lo, fmt_q)} to {fmt_d(dq.hi, fmt_q)}" if dq.known else ""
        parts.append(f"{metric} {fmt_d(dq.mean, fmt_q)} over {_name(base)} "
                     f"({fmt_q(c.quality.mean)} vs {fmt_q(base.quality.mean)}{rng}; "
                     f"{_word(dq.known, dq.separable)})")
    if not be.get("candidate"):
        q = "unknown" if c.q.mean is None else f"{c.q.mean:.3g}"
        parts.append(f"Q {q} is below the {min_q:g} threshold: no break-even "
                     "or payback stated")
    else:
        parts.append(f"Q {c.q.mean:.3g} (>= {min_q:g}): "
                     f"{_students_phrase(be)}; {_payback_phrase(be)}")
    rec["text"] = f"{prefix}{_name(c)}: " + "; ".join(parts) + "."
    return rec


def verdict(a: Analysis) -> list[dict[str, Any]]:
    """The verdict of an analysis: per group, one entry per configuration other than the
    baseline (a group without a baseline gets one entry saying so)."""
    out: list[dict[str, Any]] = []
    groups = [g for g in a.grouping.groups if any(c.group == g.id for c in a.configs)]
    for g in groups:
        prefix = f"[group {g.id}] " if len(groups) > 1 else ""
        cs = [c for c in a.configs if c.group == g.id]
        be = a.break_even.get(g.id, {})
        by_id = {c.config: c for c in cs}
        base = by_id.get(be.get("baseline") or "")
        if base is None:
            out.append({"group": g.id, "config": None, "text": (
                f"{prefix}no baseline configuration in {g.describe()}: nothing to measure the "
                "methods against (name one with --baseline METHOD)")})
            out += [incomplete_entry(c, None, prefix) for c in cs if c.incomplete]
            continue
        entries = {e["config"]: e for e in be.get("configs", [])}
        # a budget axis: one entry a method (analysis/curveverdict.py)
        on_curve = curve_verdict(a, g.id, verdict_entry, prefix)
        out += on_curve
        curved = {c.config for cv in curves_of_group(a, g.id) for p in cv.points
                  for c in [p.config]} if on_curve else set()
        for c in cs:
            if c.config in curved:
                continue
            if c is base:
                continue
            if without_teacher_answers(c):
                out.append({"group": c.group, "config": c.config, "label": _name(c),
                            "method": c.method, "baseline": base.config,
                            "no_teacher_data": True, "text": (
                                f"{prefix}{_name(c)}: its students trained on 0 of the "
                                "teacher's answers (the teacher kept none): not a "
                                "distillation result, not compared with the baseline.")})
                continue
            out.append(verdict_entry(c, base, entries.get(c.config, {}), a.min_q, prefix))
    return _left_out(a, out)


def _left_out(a: Analysis, out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each verdict says which of its configuration's runs were left out for impossible
    figures; a configuration all of whose runs were gets a sentence of its own."""
    flagged: dict[str, list[dict[str, Any]]] = {}
    for s in a.skipped:
        if s.get("kind") == "impossible" and s.get("config"):
            flagged.setdefault(str(s["config"]), []).append(s)
    if not flagged:
        return out
    named = {c.config: _name(c) for c in a.configs}
    for rec in out:
        runs = flagged.pop(str(rec.get("config")), None) if rec.get("config") else None
        if runs:
            rec["left_out"] = [r["run_dir"] for r in runs]
            rec["text"] = rec["text"].rstrip(".") + (
                f" ({len(runs)} run(s) left out for impossible figures: "
                f"{', '.join(rec['left_out'])}; `distillmeter show` says why).")
    for config, runs in flagged.items():  # the baseline, or a configuration with no run left
        dirs = [r["run_dir"] for r in runs]
        name = named.get(config, config)
        text = (f"{name}: {len(runs)} run(s) left out for impossible figures: "
                f"{', '.join(dirs)}; its figures above are over its other runs "
                "(`distillmeter show` says why)." if config in named else
                f"{name}: no figure stated: every run of it has impossible figures "
                f"({', '.join(dirs)}: {runs[0]['reason']}).")
        out.append({"group": None, "config": config, "label": name, "left_out": dirs,
                    "text": text})
    return out


def without_teacher_answers(c: ConfigStats) -> bool:
    """A configuration meant to learn from the teacher's answers whose students got none
    (the ``synthetic_examples`` label the pipeline records is 0)."""
    return any(r.labels.get("synthetic_examples") == 0 for r in c.runs)
