"""What a config asks for, worked out before any work: the teacher-side artifacts (each with
the hash of what produces it and the stage that measures it), the run directories, and
which teacher stages each method uses.

Fair accounting of shared teacher work (documented in docs/pipelines.md): a student that
learns from the teacher counts, in full, the teacher stages its learning needed:
``teacher.train`` (when the teacher is trained here) and ``eval.teacher`` (nobody distils
from a teacher they have not checked), plus ``teacher.generate`` for synthetic data and
``teacher.logits`` for cached KD. An onpolicy student counts the same shared stages
(``teacher.train``, ``eval.teacher``, and ``teacher.generate`` when its off-policy data
includes synthetic answers); its own ``teacher.score`` windows run in its own run directory,
per student, and are never shared. The baseline learns from labels alone and counts none;
it reads the teacher's score only to report Q. The analysis can amortise the shared
(upstream) teacher stages over N students, never a run's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from distillmeter.errors import UserError
from distillmeter.pipelines import methods
from distillmeter.pipelines.config import (
    MethodConfig,
    RunConfig,
    TrainingConfig,
    content_hash,
    logits_key,
    student_config_id,
    synthetic_key,
    teacher_key,
)

# Artifact kinds (folder names artifacts/<kind>-<hash>/)
TEACHER_CKPT = "teacher"
TEACHER_EVAL = "eval-teacher"
SYNTHETIC = "synthetic"
LOGITS = "logits"


@dataclass(frozen=True)
class ArtifactSpec:
    """One teacher-side artifact: its kind, the hash of what produces it, its stage."""

    kind: str
    hash: str
    stage: str


@dataclass
class TeacherPlan:
    """The teacher run: the artifacts it must provide."""

    teacher_hash: str
    checkpoint: ArtifactSpec | None  # None when the teacher is a given checkpoint
    eval: ArtifactSpec
    synthetic: ArtifactSpec | None
    caches: dict[str, ArtifactSpec] = field(default_factory=dict)  # method name -> cache

    @property
    def run_name(self) -> str:
        """``teacher-<hash>``: the hash covers every artifact the run provides."""
        parts = [self.teacher_hash, self.synthetic.hash if self.synthetic else None,
                 sorted({c.hash for c in self.caches.values()})]
        return f"teacher-{content_hash(parts, 10)}"

    def artifacts(self) -> list[ArtifactSpec]:
        """Every artifact, in the order the stages make them."""
        out = [a for a in (self.checkpoint, self.eval, self.synthetic) if a is not None]
        seen = set()
        for spec in self.caches.values():
            if spec.hash not in seen:
                seen.add(spec.hash)
                out.append(spec)
        return out

    def used_by(self, method: MethodConfig) -> list[ArtifactSpec]:
        """The teacher-side artifacts whose stages a method's student counts (see above):
        its method says (``Method.teacher_artifacts``)."""
        return methods.get(method).teacher_artifacts(self)


def plan_teacher(cfg: RunConfig) -> TeacherPlan:
    """Work out the teacher-side artifacts the config's methods need."""
    t_hash = content_hash(teacher_key(cfg))
    checkpoint = ArtifactSpec(TEACHER_CKPT, t_hash, "teacher.train") if cfg.teacher.train \
        else None
    eval_spec = ArtifactSpec(TEACHER_EVAL, content_hash({"teacher": t_hash,
                                                         "eval": cfg.eval.model_dump()}),
                             "eval.teacher")
    synthetic = (ArtifactSpec(SYNTHETIC, content_hash(synthetic_key(cfg)), "teacher.generate")
                 if cfg.needs_synthetic() else None)
    cache_hashes = {m.name: content_hash(logits_key(cfg, m)) for m in cfg.methods
                    if methods.get(m).uses_cache}
    distinct = sorted(set(cache_hashes.values()))
    caches = {}
    for name, h in cache_hashes.items():
        # one cache: the standard stage name; several: one stage each, so a student
        # counts only the cache it uses
        stage = "teacher.logits" if len(distinct) == 1 else f"teacher.logits.{h[:8]}"
        caches[name] = ArtifactSpec(LOGITS, h, stage)
    return TeacherPlan(t_hash, checkpoint, eval_spec, synthetic, caches)


@dataclass(frozen=True)
class StudentRun:
    """One student run directory: ``<method>-s<seed>``, or ``<method>-b<budget>-s<seed>``
    on a budget axis (``budgets``), e.g. ``kd-b240k-s0``."""

    method: MethodConfig
    seed: int
    config_id: str
    training: TrainingConfig  # the loop's settings for this run (its token budget)
    budget: int | None = None  # its point on the budget axis (None: no axis)

    @property
    def name(self) -> str:
        if self.budget is None:
            return f"{self.method.name}-s{self.seed}"
        return f"{self.method.name}-b{budget_label(self.budget)}-s{self.seed}"


def budget_label(tokens: int) -> str:
    """A token budget as run names show it: 240000 -> ``240k``, 1500000 -> ``1500k``."""
    return f"{tokens // 1000}k" if tokens % 1000 == 0 else str(tokens)


def plan_students(cfg: RunConfig) -> list[StudentRun]:
    """Every (method, budget, seed) run, method-major (a method's points together, each
    point's seeds together)."""
    runs = [StudentRun(m, seed, student_config_id(cfg, m, b), cfg.student_training(b), b)
            for m in cfg.methods for b in cfg.budget_points() for seed in range(cfg.seeds)]
    # a student that starts from another method's comes after it (stable otherwise)
    return sorted(runs, key=lambda r: methods.get(r.method).starts_from() is not None)


def starting_run(run: StudentRun, runs: list[StudentRun]) -> StudentRun | None:
    """The run whose trained student ``run``'s starts from (``Method.starts_from``): the
    named method's at the same seed and budget point; None for a fresh student."""
    name = methods.get(run.method).starts_from()
    if name is None:
        return None
    for r in runs:
        if r.method.name == name and r.seed == run.seed and r.budget == run.budget:
            return r
    raise UserError(f"method {run.method.name} starts from method {name}'s student, which "
                    "this campaign does not train")
