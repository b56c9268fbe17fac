"""Break-even figures (pure functions).

- Students: a distillation method pays its shareable teacher-side energy T once (the
  upstream stages: teacher work run in its own run directory and named by every student
  that uses it) and then spends M per student (everything else, teacher-side work done
  inside the student's own run included: a teacher scoring each student's samples cannot
  be shared like a cache). The baseline spends B per student. With T shared by N students
  a distilled student costs M + T/N, which is below B once N > N* = T / (B - M). Where
  M >= B the method saves no energy per student and no amount of sharing brings it below
  the baseline: it buys quality, not energy.
- Served tokens: a student that serves tokens instead of the teacher saves
  (J/token of eval.teacher - J/token of eval.student) per token; its distillation energy
  D (teacher-side work for distillation + student training + setup, with upstream work
  divided as asked; teacher *training* left out, since serving the teacher presupposes a
  trained teacher) is repaid after D / saving tokens.

Both are stated only for a *candidate*: a student whose Q (its quality over the
teacher's) reaches ``min_q`` (default 0.9): a student far below its teacher would not be
served in its place, so what it "saves" means nothing. And both compare measurements, so
each is stated only when the difference it rests on is separable (``analysis/compare``):
the baseline's energy per student against the student's M, the teacher's J/token against
the student's. Otherwise the entry says why nothing is stated.
"""

from __future__ import annotations

import math
from typing import Any

from distillmeter.analysis.compare import difference, energy_difference
from distillmeter.analysis.grouping import ConfigStats
from distillmeter.analysis.runs import RunFigures
from distillmeter.analysis.stats import SeedStats

BASELINE_HINTS = ("baseline",)
DEFAULT_MIN_Q = 0.9  # a student below 90% of its teacher's quality is not a candidate


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


def stage_j_per_token_ci(runs: list[RunFigures], stage: str) -> SeedStats:
    """A stage's pooled J/token with the interval of its measurement uncertainty for a
    comparison on one machine (analysis/energy_interval.py): the runs' random terms in
    quadrature and their systematic terms added, over the tokens (the machine term, common
    to both sides of the comparison, left out). Mean None without tokens."""
    used = [r for r in runs if r.stage_tokens.get(stage)]
    tok = sum(r.stage_tokens[stage] for r in used)
    if tok <= 0:
        return SeedStats(0, None, None, None, None)
    jpt = math.fsum(r.stage_j.get(stage, 0.0) for r in used) / tok
    parts = [r.stage_unc.get(stage, (0.0, 0.0, 0.0)) for r in used]
    unc = (math.sqrt(math.fsum(p[0] ** 2 for p in parts)) + math.fsum(p[1] for p in parts)
           ) / tok
    return SeedStats(len(used), jpt, None, jpt - unc, jpt + unc, "measurement uncertainty")


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


def _name(c: ConfigStats) -> str:
    return c.label or c.config


def not_candidate_reason(c: ConfigStats, min_q: float) -> str | None:
    """Why no break-even or payback is stated for ``c`` (None when it is a candidate)."""
    q = c.q.mean
    if q is None:
        return (f"no break-even or payback stated for {_name(c)}: its Q is unknown (no "
                "teacher quality recorded), so it cannot be judged a candidate to serve in "
                "the teacher's place")
    if q < min_q:
        return (f"no break-even or payback stated for {_name(c)}: its Q = {q:.3g} is below "
                f"the {min_q:g} threshold (--min-q), so it is not a candidate to serve in "
                "the teacher's place")
    return None


def _students(c: ConfigStats, base: ConfigStats, teacher_j: float, b: float,
              marginal: float, entry: dict[str, Any]) -> None:
    """N* against the baseline, stated only when the saving is separable."""
    d = energy_difference(base.energy_j, c.marginal_j)  # B - M
    entry["saving"] = d.to_dict()
    m_txt, b_txt = _fmt_kj(marginal), _fmt_kj(b)
    if d.separable and d.mean is not None and d.mean > 0:
        ns = n_star(teacher_j, b, marginal)
        lo_n, hi_n = teacher_j / d.hi, teacher_j / d.lo
        entry.update(saved_per_student_j=d.mean, n_star=ns, n_star_range=[lo_n, hi_n],
                     students_needed=math.floor(ns) + 1)
        entry["statement"] = (
            f"{_name(c)} uses {_fmt_kj(d.mean)} less than {_name(base)} per student once "
            f"its shared teacher-side work ({_fmt_kj(teacher_j)}) exists (separable: "
            f"{_fmt_kj(d.lo)} to {_fmt_kj(d.hi)}); shared by more than N* = {ns:.3g} "
            f"students (range {lo_n:.3g}-{hi_n:.3g}; {entry['students_needed']} or more) "
            "it costs less energy per student than the baseline")
    elif d.separable:
        entry.update(saved_per_student_j=d.mean, n_star=None, students_needed=None)
        entry["statement"] = (
            f"{_name(c)} saves no energy per student against the baseline ({m_txt} per "
            f"student without its shared teacher-side work vs {b_txt} for {_name(base)}, "
            "separable): sharing its teacher-side work "
            f"({_fmt_kj(teacher_j)}) never brings it below the baseline")
    else:
        entry.update(saved_per_student_j=d.mean, n_star=None, students_needed=None)
        entry["statement"] = (
            f"{_name(c)}'s energy per student without its shared teacher-side work ({m_txt}) "
            f"cannot be told apart from {_name(base)}'s ({b_txt}; 95% intervals overlap): "
            "no break-even is stated")


def _payback(c: ConfigStats, runs_t: list[RunFigures], amortize: float,
             entry: dict[str, Any]) -> None:
    """Served-token payback, stated only when the per-token saving is separable."""
    student = stage_j_per_token_ci(c.runs, "eval.student")
    teacher = stage_j_per_token_ci(c.runs, "eval.teacher")
    if teacher.mean is None:
        teacher = stage_j_per_token_ci(runs_t, "eval.teacher")
    d = math.fsum(distillation_j(r, amortize) for r in c.runs) / len(c.runs)
    entry.update(distillation_j=d, student_eval_j_per_token=student.mean,
                 teacher_eval_j_per_token=teacher.mean, payback_tokens=None,
                 payback_status="unknown")
    if student.mean is None or teacher.mean is None:
        entry["payback"] = ("served-token payback unknown: no measured J/token for "
                            + ("eval.student" if student.mean is None else "eval.teacher"))
        return
    saving = difference(teacher.mean, (teacher.lo, teacher.hi), student.mean,
                        (student.lo, student.hi))
    entry["per_token_saving"] = saving.to_dict()
    per = f"{student.mean:.3g} vs {teacher.mean:.3g} J/token"
    entry["payback_status"] = ("not_separable" if not saving.separable else
                               "not_cheaper" if saving.mean <= 0 else "stated")
    if not saving.separable:
        entry["payback"] = (f"the student's energy per served token cannot be told apart "
                            f"from the teacher's ({per}; intervals overlap): no payback is "
                            "stated")
    elif saving.mean <= 0:
        entry["payback"] = (f"the student is not cheaper per token than the teacher ({per}, "
                            "separable): serving it never repays its distillation energy")
    else:
        tokens = payback_tokens(d, teacher.mean, student.mean)
        rel = (c.energy_j.comparison_half_width or 0.0) / c.energy_j.mean \
            if c.energy_j.mean else 0.0
        lo, hi = d * (1 - rel) / saving.hi, d * (1 + rel) / saving.lo
        entry.update(payback_tokens=tokens, payback_range=[lo, hi])
        entry["payback"] = (f"serving {tokens:.3g} tokens (range {lo:.3g}-{hi:.3g}) with the "
                            f"student instead of the teacher ({per}, separable) repays its "
                            f"{_fmt_kj(d)} of distillation energy")


def break_even(configs: list[ConfigStats], teacher_runs: list[RunFigures], *,
               amortize: float = 1.0, baseline_method: str | None = None,
               min_q: float = DEFAULT_MIN_Q) -> dict[str, Any]:
    """Break-even figures for one group's configurations (see the module docstring)."""
    base = find_baseline(configs, baseline_method)
    teacher_jpt = stage_j_per_token([r for c in configs for r in c.runs] + teacher_runs,
                                    "eval.teacher")
    out: dict[str, Any] = {
        "baseline": base.config if base else None,
        "baseline_j_per_student": base.energy_j.mean if base else None,
        "teacher_eval_j_per_token": teacher_jpt,
        "min_q": min_q,
        "configs": [],
    }
    for c in configs:
        teacher_j = math.fsum(r.shared_teacher_j() for r in c.runs) / len(c.runs)
        marginal = c.marginal_j.mean or 0.0
        entry: dict[str, Any] = {
            "config": c.config, "method": c.method, "teacher_side_j": teacher_j,
            "per_student_teacher_j": c.side_mean("teacher") - teacher_j / amortize,
            "marginal_j": marginal, "q": c.q.mean,
            "candidate": not_candidate_reason(c, min_q) is None,
            "n_star": None, "students_needed": None, "payback_tokens": None}
        reason = not_candidate_reason(c, min_q)
        if reason is not None:
            entry["statement"] = entry["payback"] = reason
            out["configs"].append(entry)
            continue
        if base is not None and c is not base and teacher_j > 0:
            _students(c, base, teacher_j, out["baseline_j_per_student"], marginal, entry)
        elif base is None and teacher_j > 0:
            entry["statement"] = "no baseline configuration in this group: N* not computed"
        _payback(c, teacher_runs, amortize, entry)
        out["configs"].append(entry)
    return out
