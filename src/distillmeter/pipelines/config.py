"""The run config: plain data, validated by pydantic before any work starts.

A config is YAML read with ``yaml.safe_load`` (``config_file.py``); every section forbids
unknown keys, so a typo stops the run at once with a message naming the key path, the YAML
line and, where one is close, the key that was meant::

    my.yaml:14: methods[1]: unknown key 'divergance' (did you mean 'divergence'?)

Each section lives with the code that reads it: ``models.config`` (a model),
``tasks.config`` (``task.files``), ``engines.lm_eval`` (``eval.lm_eval``); this module
assembles them into ``RunConfig``. The resolved config (every default written out) goes
to each run directory's config.yaml. Content hashes of the parts that produce each
artifact identify it (``teacher_key``, ``logits_key``, ...), so a resumed run finds the
teacher's work by what produced it, not by where it lies.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from distillmeter.configbase import (
    MAX_BATCH,
    MAX_COUNT,
    MAX_SEED,
    MAX_TEMPERATURE,
    MAX_TOKENS,
    error_at,
)
from distillmeter.configbase import StrictModel as _Strict
from distillmeter.engines.lm_eval import LmEvalConfig
from distillmeter.models.config import ArchConfig, ModelConfig
from distillmeter.pipelines.config_checks import check_task, check_task_fits, where
from distillmeter.pipelines.config_machine import (
    CarbonConfig,
    DistributedConfig,
    MeterConfig,
)
from distillmeter.pipelines.config_method import MethodConfig
from distillmeter.pipelines.methods import registry
from distillmeter.tasks.config import FilesConfig


class TaskConfig(_Strict):
    """The task and its disjoint splits. Labelled data is scarce for the student
    (``n_labelled``) and unlabelled prompts plentiful (``n_pool``). The teacher stands for a
    model trained on far more data than the student may see, so when it is trained here it
    gets its own, larger privileged labelled set (``n_teacher``), disjoint from the others.
    ``params`` go to the task (arithmetic: ``width``, ``min_digits``)."""

    name: str = Field("arithmetic", min_length=1)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    n_labelled: int = Field(128, ge=1, le=MAX_COUNT)
    n_pool: int = Field(4000, ge=0, le=MAX_COUNT)
    n_test: int = Field(256, ge=1, le=MAX_COUNT)
    n_teacher: int = Field(20000, ge=0, le=MAX_COUNT)
    # checked by the task's own schema (tasks.TASK_PARAMS) and written out in full
    params: dict[str, Any] = Field(default_factory=lambda: {"width": 3, "min_digits": 2})
    # local files instead of the built-in task (then ``name`` is a label and the n_* cap
    # each split): see tasks.config.FilesConfig
    files: FilesConfig | None = None

    @model_validator(mode="after")
    def _files_or_builtin(self) -> TaskConfig:
        default_params = type(self).model_fields["params"].default_factory()
        if self.files is not None and self.params != default_params:
            raise error_at(("params",), "params are for a built-in task; with files they do "
                           "not apply", self.params)
        if self.files is None:
            sizes = {k: getattr(self, k) for k in ("n_labelled", "n_pool", "n_test",
                                                   "n_teacher")}
            self.params = check_task(self.name, self.params, sizes)
        return self


class TrainingConfig(_Strict):
    """One training loop for every method: AdamW, warmup then cosine (or constant) decay over
    a token budget, gradient clipping. The stopping rule is the budget: training stops once
    ``token_budget`` non-padding tokens have gone through the model."""

    # Defaults: models.DEFAULT_STUDENT_TRAINING (600 steps of 64 sequences of ~17 tokens);
    # the teacher's (TeacherConfig.training) are models.DEFAULT_TEACHER_TRAINING
    # AdamW moves each weight by about lr a step: past 1 no weight keeps its scale
    lr: float = Field(1e-2, gt=0, le=1)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_frac: float = Field(0.07, ge=0, lt=1)
    schedule: Literal["cosine", "constant"] = "cosine"
    weight_decay: float = Field(0.01, ge=0)
    # Adam's moment decay rates: a rate of 1 never forgets (and divides by zero in the
    # bias correction); a YAML list is taken for the pair
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = \
        (0.9, 0.98)
    grad_clip: float | None = Field(1.0, gt=0)
    batch_size: int = Field(64, ge=1, le=MAX_BATCH)  # sequences per forward/backward pass
    grad_accum: int = Field(1, ge=1, le=MAX_BATCH)   # micro-batches per optimizer step
    # 10^14: several times the largest published pretraining run (15T tokens, Llama 3, 2024)
    token_budget: int = Field(660_000, ge=1, le=10**14)

    @field_validator("betas", mode="before")
    @classmethod
    def _pair(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return tuple(value)
        raise ValueError("should be a pair [beta1, beta2], each in [0, 1)")

    @model_validator(mode="after")
    def _decay_below_one(self) -> TrainingConfig:
        # decoupled weight decay multiplies each weight by (1 - lr x weight_decay) a step
        if self.lr * self.weight_decay >= 1:
            raise error_at(("weight_decay",), f"lr x weight_decay ({self.lr:g} x "
                           f"{self.weight_decay:g}) must be below 1: each step would remove "
                           "every weight's whole value", self.weight_decay)
        return self


class TeacherConfig(_Strict):
    """The teacher. ``train: true`` trains it here (stage ``teacher.train``) on the
    privileged labelled set; ``train: false`` uses the checkpoint (``model.path`` or
    ``model.hub_id``) as it is."""

    # the same shape as models.DEFAULT_TEACHER_SPEC (a test keeps them equal; importing
    # models here would pull in torch just to validate a config)
    model: ModelConfig = ModelConfig(arch=ArchConfig(d_model=128, n_layers=2, n_heads=4,
                                                     d_ff=512, max_len=32))
    train: bool = True
    seed: int = Field(0, ge=0, le=MAX_SEED)
    # models.DEFAULT_TEACHER_TRAINING: 300 steps of 64 sequences
    training: TrainingConfig = TrainingConfig(lr=5e-3, token_budget=330_000)

    @model_validator(mode="after")
    def _can_train(self) -> TeacherConfig:
        if not self.train and not self.model.is_checkpoint:
            raise error_at(("train",), "train: false needs model.path or model.hub_id (a "
                           "trained teacher checkpoint)", self.train)
        return self


class StudentConfig(_Strict):
    """The student, built from ``model`` with each run's seed."""

    model: ModelConfig = ModelConfig(arch=ArchConfig(d_model=48, n_layers=2, n_heads=4,
                                                     d_ff=192, max_len=32))


class LogitsConfig(_Strict):
    """The teacher's top-k logit cache (stage ``teacher.logits``). ``top_k`` is capped at the
    vocabulary size; the tail mass is recomputed from the stored values by the loss."""

    top_k: int = Field(64, ge=1, le=MAX_TOKENS)
    dtype: Literal["float16", "bfloat16"] = "float16"
    batch_size: int = Field(64, ge=1, le=MAX_BATCH)
    shard_sequences: int = Field(1024, ge=1, le=MAX_BATCH)


class GenerationConfig(_Strict):
    """The teacher answering the prompt pool (stage ``teacher.generate``). ``backend: vllm``
    (extra ``[vllm]``) generates in vLLM when it is installed, a CUDA GPU is visible and the
    teacher was loaded from a checkpoint directory; otherwise transformers runs, with a
    warning, and the synthetic-data manifest names the backend that ran."""

    backend: Literal["transformers", "vllm"] = "transformers"
    temperature: float = Field(0.0, ge=0, le=MAX_TEMPERATURE)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(12, ge=1, le=MAX_TOKENS)
    batch_size: int = Field(256, ge=1, le=MAX_BATCH)
    n_prompts: int | None = Field(None, ge=1, le=MAX_COUNT)
    verify: bool = True


class EvalConfig(_Strict):
    """``eval.teacher``, ``eval.student``. ``backend: builtin``: batched greedy decoding on
    the task's test set, exact match by the task's verifier. ``backend: lm_eval``: the
    lm-evaluation-harness tasks in ``lm_eval`` (extra ``[eval]``), on the model's
    checkpoint directory; the chosen score is the run's quality."""

    backend: Literal["builtin", "lm_eval"] = "builtin"
    batch_size: int = Field(256, ge=1, le=MAX_BATCH)
    max_new_tokens: int = Field(12, ge=1, le=MAX_TOKENS)
    lm_eval: LmEvalConfig = LmEvalConfig()


def _default_methods() -> list[MethodConfig]:
    # Each pair differs in one thing: baseline -> synthetic adds the teacher's answers;
    # synthetic -> kd adds the teacher's logits on the same sequences.
    return [
        MethodConfig(name="baseline", data=["labelled"]),
        MethodConfig(name="synthetic", data=["labelled", "synthetic"]),
        MethodConfig(name="kd", data=["labelled", "synthetic"], loss="kd"),
    ]


def _methods(names: list[str]) -> str:
    return ("method " if len(names) == 1 else "methods ") + ", ".join(names)


class RunConfig(_Strict):
    """Everything `distillmeter run` does. ``RunConfig()`` is the built-in default."""

    task: TaskConfig = TaskConfig()
    teacher: TeacherConfig = TeacherConfig()
    student: StudentConfig = StudentConfig()
    methods: list[MethodConfig] = Field(default_factory=_default_methods, min_length=1)
    training: TrainingConfig = TrainingConfig()
    logits: LogitsConfig = LogitsConfig()
    generation: GenerationConfig = GenerationConfig()
    eval: EvalConfig = EvalConfig()
    meter: MeterConfig = MeterConfig()
    carbon: CarbonConfig = CarbonConfig()
    distributed: DistributedConfig = DistributedConfig()
    # each seed is a full run of every method: 1000 is past what any interval needs
    seeds: int = Field(3, ge=1, le=1000)
    # the student's budget axis: each method is trained at each of these token budgets
    # (``training.token_budget`` replaced), one run per (method, budget, seed); a budget
    # point is a configuration of a method, not a method. null: training.token_budget only
    budgets: list[Annotated[int, Field(ge=1, le=MAX_TOKENS)]] | None = Field(
        None, min_length=1, max_length=16)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # 1024: more than any machine's hardware threads (two 192-core CPUs with SMT: 768)
    threads: int | None = Field(None, ge=1, le=1024)
    # where each value came from (file and line), for checks made after loading
    _origin: dict[str, Any] = PrivateAttr(default_factory=dict)

    @field_validator("budgets")
    @classmethod
    def _distinct_budgets(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"budgets must be distinct token budgets; got {v}")
        return v

    @model_validator(mode="after")
    def _unique_methods(self) -> RunConfig:
        names = [m.name for m in self.methods]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"method names must be unique; repeated: {', '.join(dup)}")
        if "teacher" in names:
            raise ValueError("'teacher' is reserved for the teacher's run directory")
        files = self.task.files
        if files is not None:
            if self.teacher.train and files.teacher is None:
                raise ValueError("teacher.train: true with task.files needs "
                                 "task.files.teacher (the teacher's own labelled data), or "
                                 "teacher.train: false with a trained checkpoint")
            if self.needs_synthetic() and files.pool is None:
                raise ValueError("a method uses synthetic data: task.files.pool must name "
                                 "the prompts the teacher answers")
            sampling = [m.name for m in self.methods if registry.get(m).samples_pool]
            if sampling and files.pool is None:
                raise ValueError(f"{_methods(sampling)} sample{'s' if len(sampling) == 1 else ''}"
                                 " from the prompt pool: task.files.pool must name the "
                                 "prompts")
        for i, m in enumerate(self.methods):
            start = registry.get(m).starts_from()
            if start is None:
                continue
            if start == m.name or start not in names:
                raise error_at(("methods", i, "starts_from"), f"method {m.name} starts from "
                               f"the student of method {start!r}, which is not another "
                               f"method of this config (methods: {', '.join(names)})", start)
            if registry.get(self.method(start)).starts_from() is not None:
                raise error_at(("methods", i, "starts_from"), f"method {m.name} starts from "
                               f"{start}, which starts from another method itself: a "
                               "starting student must be trained from the seed", start)
        needs_pool = [m.name for m in self.methods if registry.get(m).needs_pool]
        if needs_pool and self.task.n_pool == 0:
            # a synthetic student would train on the labelled set alone and pass for a
            # distillation result: refused here, at the key's line (config_file.py)
            one = len(needs_pool) == 1
            what = ((f"sample{'s' if one else ''} from")
                    if all(registry.get(self.method(n)).samples_pool for n in needs_pool)
                    else f"learn{'s' if one else ''} from the teacher's answers to")
            raise error_at(("task", "n_pool"), (
                f"{_methods(needs_pool)} {what} the prompt pool, which is empty: no "
                "teacher data; set task.n_pool to at least 1, or drop "
                f"{'that method' if one else 'those methods'}"), 0)
        return self

    @model_validator(mode="after")
    def _task_fits_the_run(self) -> RunConfig:
        task = self.task
        if task.files is None and self.teacher.train and task.n_teacher == 0:
            raise error_at(("task", "n_teacher"), "teacher.train: true trains the teacher on "
                           "task.n_teacher examples: give at least 1 (or teacher.train: false "
                           "with a trained checkpoint)", task.n_teacher)
        archs = {"teacher": self.teacher.model.arch, "student": self.student.model.arch}
        if task.files is None and all(a is not None for a in archs.values()):
            check_task_fits(task.name, task.params,
                            {role: a.max_len for role, a in archs.items() if a is not None})
        return self

    def __eq__(self, other: object) -> bool:
        # the same settings are the same config, wherever they were read from
        if not isinstance(other, RunConfig):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # mutable, as every pydantic model

    def where(self, *loc: str | int) -> str:
        """``file:line: key`` of a config key for a message (``key`` alone for a config
        not read from a file), e.g. ``cfg.where("meter", "devices")``."""
        return where(self._origin, loc)

    def student_training(self, budget: int | None = None) -> TrainingConfig:
        """The students' training settings at ``budget`` tokens (None: as configured)."""
        if budget is None:
            return self.training
        return self.training.model_copy(update={"token_budget": budget})

    def budget_points(self) -> list[int | None]:
        """The budget axis (``budgets``), or ``[None]``: the configured budget alone."""
        return list(self.budgets) if self.budgets else [None]

    def method(self, name: str) -> MethodConfig:
        """The method called ``name``."""
        for m in self.methods:
            if m.name == name:
                return m
        raise KeyError(name)

    def resolved(self) -> dict[str, Any]:
        """Plain data with every default written out (what goes to config.yaml)."""
        return self.model_dump(mode="json")

    def needs_synthetic(self) -> bool:
        """A method trains on the teacher's answers (``teacher.generate``)."""
        return any(registry.get(m).needs_synthetic for m in self.methods)

    def needs_cache(self) -> bool:
        """A method learns from a logit cache (``teacher.logits``)."""
        return any(registry.get(m).uses_cache for m in self.methods)


# --------------------------------------------------------------------------- hashes


DEFAULT_BUDGETS = (120_000, 240_000, 720_000)  # default.yaml's: far below the teacher to it


def builtin_default() -> RunConfig:
    """What `distillmeter run` runs without CONFIG: ``RunConfig()`` on its budget axis."""
    return RunConfig(budgets=list(DEFAULT_BUDGETS))


def content_hash(obj: Any, n: int = 12) -> str:
    """A short sha256 of ``obj``'s canonical JSON: the same content, the same hash."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


def teacher_key(cfg: RunConfig) -> dict[str, Any]:
    """What produces the trained teacher: the task, the teacher's model, training and seed."""
    return {"task": cfg.task.model_dump(mode="json"),
            "teacher": cfg.teacher.model_dump(mode="json"),
            "device": cfg.device}


def synthetic_key(cfg: RunConfig) -> dict[str, Any]:
    """What produces the synthetic data: the teacher and the generation settings."""
    return {"teacher": content_hash(teacher_key(cfg)),
            "generation": cfg.generation.model_dump(mode="json")}


def student_sequences_key(cfg: RunConfig, method: MethodConfig) -> dict[str, Any]:
    """What fixes a method's training sequences (and so the logit cache over them)."""
    key: dict[str, Any] = {"task": cfg.task.model_dump(mode="json"), "data": sorted(method.data)}
    if registry.get(method).needs_synthetic:
        key["synthetic"] = content_hash(synthetic_key(cfg))
    return key


def logits_key(cfg: RunConfig, method: MethodConfig) -> dict[str, Any]:
    """What produces a logit cache: the teacher, the sequences and the cache settings."""
    return {"teacher": content_hash(teacher_key(cfg)),
            "sequences": content_hash(student_sequences_key(cfg, method)),
            "logits": cfg.logits.model_dump(mode="json")}


def student_config_id(cfg: RunConfig, method: MethodConfig, budget: int | None = None) -> str:
    """Identifies a student configuration across seeds (the meter's ``config_id``): the
    teacher, the sequences, the method, the student and its training, the cache settings
    when it learns from a cache, and what its method adds (``Method.id_parts``)."""
    kind = registry.get(method)
    key: dict[str, Any] = {
        "teacher": content_hash(teacher_key(cfg)),
        "sequences": student_sequences_key(cfg, method),
        # unset fields (None: another method's settings) left out, so a field added for
        # one method leaves the others' ids as they were
        "method": method.model_dump(mode="json", exclude_none=True),
        "student": cfg.student.model_dump(mode="json"),
        "training": cfg.student_training(budget).model_dump(mode="json"),
        "logits": cfg.logits.model_dump(mode="json") if kind.uses_cache else None}
    key.update(kind.id_parts(cfg.logits, cfg.generation))  # the method's own keys, if any
    if kind.starts_from() is not None:  # the student it starts from
        key["starts_from"] = student_config_id(cfg, cfg.method(kind.starts_from()), budget)
    return content_hash(key)
