"""The interface every distillation method answers (``Method``), and the parts its answers
are built from.

A method says, for one ``MethodConfig``:

- which data it trains on (``train_on``: the labelled set and/or the teacher's answers), one
  function for the run's (prompt, target) pairs and the forecast's sequence lengths alike;
- which teacher artifacts it needs (``needs_synthetic``, ``uses_cache``) and which of the
  teacher's stages its student counts (``teacher_artifacts``);
- its loss, built from the run's parts (``loss_fn``);
- its training stages: their windows (``windows``), the batches they train on
  (``train_source``) and the work they do: ``train_info`` is what the stage records and
  what the forecast plans alike, and ``planned_stages`` plans the stages from the same
  counting functions (``pipelines/stagework.py``) that the recorded work follows.

The runner, the planner (``artifact_plan.py``), the config's checks and the forecast (``work.py``)
ask these, and nothing outside ``methods/`` branches on a method's kind. A new method is a
module with a ``Method`` subclass registered by name (``registry.register``): see
docs/DESIGN.md, "Adding a method".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from distillmeter.models.params import ModelShape
from distillmeter.pipelines.config import (
    GenerationConfig,
    LogitsConfig,
    MethodConfig,
    TrainingConfig,
)
from distillmeter.pipelines.stagework import PlannedStage, Split, shape_info, train_work


@dataclass
class TrainParts:
    """What a student's run has loaded when its method builds the loss and the batches:
    the tokenizer, the student and (for a method with ``live_teacher``) the teacher as
    ``LoadedModel``s, the method's encoded training sequences, the task data, its logit
    cache's folder (``uses_cache``), the vocabulary the logits are compared on, and the
    config parts a method's stages read."""

    tokenizer: Any
    student: Any
    teacher: Any | None
    sequences: Any
    data: Any
    cache_folder: Any | None
    vocab: int | None
    device: str
    seed: int
    training: TrainingConfig
    generation: GenerationConfig
    logits: LogitsConfig
    world_size: int = 1


@dataclass
class TrainSource:
    """What ``training.train`` pulls batches from, the per-step callback, and ``finish``:
    called with the loop's result, it annotates the window and returns what goes to the
    run's train.json besides the loop's own figures."""

    batches: Iterator
    on_step: Callable[[int, int, float], None] | None
    finish: Callable[[Any], dict]


@dataclass
class StudentWork:
    """What the forecast plans a student's stages from, without loading anything: the
    method's training sequence lengths (``train_on``), the prompt pool, the loop's
    settings, the models' shapes and the config parts the stages read."""

    sequences: list[int]
    pool: Split
    training: TrainingConfig
    student: ModelShape
    teacher: ModelShape
    generation: GenerationConfig
    logits: LogitsConfig
    notes: list[str] = field(default_factory=list)


class Method:
    """One distillation method, for one ``MethodConfig`` (``self.config``).

    Class attributes declare what the config's checks and the planner read before any
    method runs: ``loss`` (the ``loss:`` value that selects it, with ``selects`` when two
    methods share one), ``settings`` (the method config's fields it reads besides name and
    data; any other one given is refused), ``defaults`` (its own defaults for them),
    ``uses_teacher`` (it learns from the teacher's outputs, besides synthetic data),
    ``uses_cache`` (a logit cache over its sequences, stage ``teacher.logits``),
    ``live_teacher`` (the teacher is loaded in its run), ``teacher_in_train_step`` (a
    teacher forward pass inside each training step: memory), ``samples_pool`` (its
    student samples from the prompt pool), ``one_process`` (it cannot run under
    torchrun) and ``retrains_on_resume`` (a student an interrupted attempt saved is
    trained again rather than evaluated)."""

    kind: ClassVar[str] = ""  # set by registry.register
    loss: ClassVar[str] = ""
    settings: ClassVar[tuple[str, ...]] = ()
    defaults: ClassVar[dict[str, Any]] = {}
    uses_teacher: ClassVar[bool] = False
    uses_cache: ClassVar[bool] = False
    live_teacher: ClassVar[bool] = False
    teacher_in_train_step: ClassVar[bool] = False
    samples_pool: ClassVar[bool] = False
    one_process: ClassVar[bool] = False
    retrains_on_resume: ClassVar[bool] = False

    def __init__(self, config: MethodConfig):
        self.config = config

    @classmethod
    def selects(cls, config: MethodConfig) -> bool:
        """Whether this class answers for ``config`` among those with its ``loss``."""
        return True

    @classmethod
    def check(cls, config: MethodConfig) -> None:
        """Refuse values of its settings it cannot run with (``configbase.error_at`` at the
        key); run when the config is validated. Nothing to refuse by default."""

    # ------------------------------------------------------------------ data
    @property
    def needs_synthetic(self) -> bool:
        """It trains on the teacher's answers to the prompt pool (``teacher.generate``)."""
        return "synthetic" in self.config.data

    @property
    def needs_pool(self) -> bool:
        """It needs prompts from the pool: the teacher's answers, or its own samples."""
        return self.needs_synthetic or self.samples_pool

    @property
    def learns_from_teacher(self) -> bool:
        return self.needs_synthetic or self.uses_teacher

    def train_on(self, labelled: list, synthetic: list | None) -> list:
        """Its training items in a canonical order (labelled, then synthetic, whatever
        order the config lists them; the logit cache depends on it): the run passes
        (prompt, target) pairs, the forecast sequence lengths."""
        out: list = []
        if "labelled" in self.config.data:
            out += labelled
        if self.needs_synthetic:
            if synthetic is None:
                raise ValueError(f"method {self.config.name!r} needs synthetic data but none "
                                 "was made")
            out += synthetic
        return out

    # ------------------------------------------------------------------ the teacher
    def teacher_artifacts(self, plan: Any) -> list:
        """The teacher-side artifacts (a ``TeacherPlan``'s ``ArtifactSpec``s) whose stages
        its student counts in full: the teacher's training and evaluation, plus what it
        learns from (docs/pipelines.md). A method that learns from labels alone counts
        none."""
        if not self.learns_from_teacher:
            return []
        used = [a for a in (plan.checkpoint, plan.eval) if a is not None]
        if self.needs_synthetic and plan.synthetic is not None:
            used.append(plan.synthetic)
        if self.config.name in plan.caches:
            used.append(plan.caches[self.config.name])
        return used

    def starts_from(self) -> str | None:
        """The config name of the method whose trained student (the same seed and budget
        point) its student starts from, or None: a fresh student from the seed. The
        campaign runs that student first; this one loads its checkpoint and names that
        run's ``student.train`` as upstream, counted in full (a preference method starts
        from the campaign's baseline). Its ``config_id`` includes the starting student's."""
        return None

    # ------------------------------------------------------------------ identity
    def labels(self) -> dict[str, Any]:
        """Its own ``run_labels`` (after role, data, loss and token budget)."""
        return {"teacher_mode": None}

    def id_parts(self, logits: LogitsConfig, generation: GenerationConfig) -> dict[str, Any]:
        """Keys it adds to ``student_config_id`` (none: the ids of the methods that add none
        stay as they were)."""
        return {}

    # ------------------------------------------------------------------ training
    def loss_fn(self, parts: TrainParts) -> Callable:
        """The loss ``training.train`` minimises, built from the run's parts."""
        from distillmeter.pipelines.training import ce_loss

        return ce_loss

    def windows(self, ui: Any, meter: Any, label: str, training: TrainingConfig):
        """The metered window(s) its training runs in: one ``student.train``."""
        return ui.metered(meter, label, "student.train", training.token_budget, "tok")

    def train_info(self, student: dict[str, int], teacher: dict[str, int] | None,
                   batch_size: int) -> dict[str, Any]:
        """What ``student.train`` records before it runs (``stage_end.info``) and what
        the forecast plans it with: the student's ``model_info``/``shape_info`` and batch
        size, and the method's own keys (``extra_train_info``)."""
        return {"params": student["params"], "batch_size": batch_size,
                **{k: v for k, v in student.items() if k != "params"},
                **self.extra_train_info(teacher)}

    def extra_train_info(self, teacher: dict[str, int] | None) -> dict[str, Any]:
        return {}

    def train_source(self, bar: Any, parts: TrainParts, loss: Callable) -> TrainSource:
        """Shuffled batches of its sequences, each step counted into the window."""
        from distillmeter.pipelines.data import batches
        from distillmeter.pipelines.stagework import model_info

        t = parts.training
        teacher = parts.teacher.model if parts.teacher is not None else None
        bar.annotate(**self.train_info(model_info(parts.student.model),
                                       model_info(teacher, "teacher_") if teacher is not None
                                       else None, t.batch_size))
        world = parts.world_size

        def on_step(n_tok: int, n_seq: int, loss_value: float) -> None:
            bar.advance(n_tok, n_seq, n_tok * world)

        def finish(result: Any) -> dict:
            bar.annotate(steps=result.steps, micro_batches=result.steps * t.grad_accum)
            return {}

        return TrainSource(batches(parts.sequences, t.batch_size,
                                   parts.tokenizer.pad_token_id, seed=parts.seed),
                           on_step, finish)

    # ------------------------------------------------------------------ the forecast
    def planned_stages(self, work: StudentWork) -> list[PlannedStage]:
        """Its training stages' planned work (between ``setup.load`` and
        ``eval.student``): one ``student.train`` counted by ``train_work``."""
        w = train_work(work.sequences, work.training)
        info = {**self.train_info(shape_info(work.student), shape_info(work.teacher,
                                                                       "teacher_"),
                                  work.training.batch_size),
                "steps": w["steps"], "micro_batches": w["micro_batches"]}
        return [PlannedStage("student.train", w["tokens"], w["samples"], info)]
