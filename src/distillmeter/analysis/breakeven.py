"""Break-even figures (pure functions).

- Students: a distillation method pays its teacher-side energy T once and then spends M
  per student (everything but teacher-side work). The baseline spends B per student. With
  the teacher-side work shared by N students a distilled student costs M + T/N, which is
  below B once N > N* = T / (B - M). Where M >= B the method saves no energy per student
  and no amount of sharing brings it below the baseline: it buys quality, not energy.
- Served tokens: a student that serves tokens instead of the teacher saves
  (J/token of eval.teacher - J/token of eval.student) per token; its distillation energy
  D (teacher-side work for distillation + student training + setup, with upstream work
  divided as asked; teacher *training* left out, since serving the teacher presupposes a
  trained teacher) is repaid after D / saving tokens.
"""

from __future__ import annotations

import math
from typing import Any

from distillmeter.analysis.configs import ConfigStats
from distillmeter.analysis.pareto import intervals_overlap
from distillmeter.analysis.runs import RunFigures

BASELINE_HINTS = ("baseline",)


def is_baseline(method: str | None, baseline_method: str | None = None) -> bool:
    """True for the baseline method: the one named, else any method called *baseline*."""
    if method is None:
        return False
    if baseline_method is not None:
        return method == baseline_method
    return any(h in method.lower() for h in BASELINE_HINTS)


def find_baseline(configs: list[ConfigStats],
                  baseline_method: str | None = None) -> ConfigStats | None:
    """The baseline configuration of a group: the cheapest (mean energy) of the baseline
    method's configurations."""
    cands = [c for c in configs if is_baseline(c.method, baseline_method)
             and c.energy_j.mean is not None]
    return min(cands, key=lambda c: (c.energy_j.mean, c.config)) if cands else None


def n_star(teacher_j: float, baseline_j: float, marginal_j: float) -> float | None:
    """Students over which the teacher-side work must be shared for a distilled student to
    cost no more than a baseline one; None when the method saves nothing per student."""
    saved = baseline_j - marginal_j
    if saved <= 0:
        return None
    return teacher_j / saved


def payback_tokens(distill_j: float, teacher_j_per_token: float | None,
                   student_j_per_token: float | None) -> float | None:
    """Tokens the student must serve instead of the teacher to repay ``distill_j``; None
    when either J/token is unknown or the student is not cheaper per token."""
    if teacher_j_per_token is None or student_j_per_token is None:
        return None
    saving = teacher_j_per_token - student_j_per_token
    if saving <= 0:
        return None
    return distill_j / saving


def stage_j_per_token(runs: list[RunFigures], stage: str) -> float | None:
    """Measured energy per token of a stage over runs: total energy / total tokens."""
    e = math.fsum(r.stage_j.get(stage, 0.0) for r in runs if r.stage_tokens.get(stage))
    tok = sum(r.stage_tokens.get(stage, 0) for r in runs)
    return e / tok if tok > 0 else None


def distillation_j(run: RunFigures, amortize: float = 1.0) -> float:
    """Energy spent making one student: its total less every evaluation stage (its own and
    upstream ones such as eval.teacher) and less teacher training."""
    left_out = 0.0
    for name, e in run.stage_j.items():
        if name == "teacher.train" or name.startswith("eval."):
            up = sum(x for (_, s), x in run.upstream_stages.items() if s == name)
            left_out += e - up + up / amortize
    return run.total_j(amortize) - left_out


def _fmt_kj(j: float) -> str:
    return f"{j / 1e3:.3g} kJ" if abs(j) >= 100 else f"{j:.3g} J"


def break_even(configs: list[ConfigStats], teacher_runs: list[RunFigures], *,
               amortize: float = 1.0, baseline_method: str | None = None) -> dict[str, Any]:
    """Break-even figures for one group's configurations."""
    base = find_baseline(configs, baseline_method)
    teacher_jpt = stage_j_per_token([r for c in configs for r in c.runs] + teacher_runs,
                                    "eval.teacher")
    out: dict[str, Any] = {
        "baseline": base.config if base else None,
        "baseline_j_per_student": None,
        "teacher_eval_j_per_token": teacher_jpt,
        "configs": [],
    }
    if base is not None:
        base_total = math.fsum(r.total_j() for r in base.runs) / len(base.runs)
        out["baseline_j_per_student"] = base_total
    for c in configs:
        teacher_j = math.fsum(r.side_j("teacher") for r in c.runs) / len(c.runs)
        marginal = c.marginal_j.mean or 0.0
        entry: dict[str, Any] = {"config": c.config, "method": c.method,
                                 "teacher_side_j": teacher_j, "marginal_j": marginal}
        if base is not None and c is not base and teacher_j > 0:
            b = out["baseline_j_per_student"]
            ns = n_star(teacher_j, b, marginal)
            entry.update(saved_per_student_j=b - marginal, n_star=ns,
                         students_needed=None if ns is None else math.floor(ns) + 1)
            uncertain = intervals_overlap(_ci(c.marginal_j), _ci(base.energy_j))
            if ns is None:
                entry["statement"] = (
                    f"{c.label or c.config} saves no energy per student against the baseline "
                    f"({_fmt_kj(marginal)} per student without teacher-side work vs "
                    f"{_fmt_kj(b)} for {base.label or base.config}): sharing its teacher-side work "
                    f"({_fmt_kj(teacher_j)}) never brings it below the baseline")
            else:
                entry["statement"] = (
                    f"{c.label or c.config} uses {_fmt_kj(b - marginal)} less than "
                    f"{base.label or base.config} per "
                    f"student once the teacher-side work ({_fmt_kj(teacher_j)}) exists; "
                    f"shared by more than N* = {ns:.3g} students ({entry['students_needed']} or "
                    "more) it costs less energy per student than the baseline")
            if uncertain:
                entry["statement"] += (" (the per-student energies' intervals overlap: the "
                                       "saving is within measurement noise)")
        elif base is None and teacher_j > 0:
            entry["statement"] = "no baseline configuration in this group: N* not computed"
        # served-token payback
        student_jpt = stage_j_per_token(c.runs, "eval.student")
        own_teacher_jpt = stage_j_per_token(c.runs, "eval.teacher") or teacher_jpt
        d = math.fsum(distillation_j(r, amortize) for r in c.runs) / len(c.runs)
        tokens = payback_tokens(d, own_teacher_jpt, student_jpt)
        entry.update(distillation_j=d, student_eval_j_per_token=student_jpt,
                     teacher_eval_j_per_token=own_teacher_jpt, payback_tokens=tokens)
        if student_jpt is None or own_teacher_jpt is None:
            entry["payback"] = ("served-token payback unknown: no measured J/token for "
                                + ("eval.student" if student_jpt is None else "eval.teacher"))
        elif tokens is None:
            entry["payback"] = (f"the student is not cheaper per token than the teacher "
                                f"({student_jpt:.3g} vs {own_teacher_jpt:.3g} J/token): "
                                "serving it never repays its distillation energy")
        else:
            entry["payback"] = (f"serving {tokens:.3g} tokens with the student instead of the "
                                f"teacher ({student_jpt:.3g} vs {own_teacher_jpt:.3g} J/token)"
                                f" repays its {_fmt_kj(d)} of distillation energy")
        out["configs"].append(entry)
    return out


def _ci(s: Any) -> tuple[float, float] | None:
    return None if s.lo is None else (s.lo, s.hi)
