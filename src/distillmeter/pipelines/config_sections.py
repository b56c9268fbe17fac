"""Run-config sections for models and real data: a model (built here, or a Hugging Face
checkpoint), task data from local files (``task.files``) and the lm-evaluation-harness
settings (``eval.lm_eval``).

Plain pydantic data like the rest of the config (see ``config.py``); nothing here touches
the file system: paths are resolved when the run loads its data, so a config validates on
a machine that does not hold the files.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class FieldsConfig(_Strict):
    """Which record fields hold what. ``prompt``/``answer`` name text fields; ``messages``
    (instead) names a chat list ``[{role, content}, ...]``: the last assistant turn is the
    answer, the turns before it the prompt."""

    prompt: str = "prompt"
    answer: str = "answer"
    messages: str | None = None


class DataSourceConfig(_Strict):
    """One local data file or saved dataset. ``format: auto`` goes by the name: ``.jsonl``
    / ``.json`` (one JSON object a line), ``.parquet`` (needs pyarrow), a directory written
    by ``datasets``' ``save_to_disk`` (needs datasets; ``split`` picks one of a
    DatasetDict). Relative paths are relative to the directory the run starts in; ``~`` and
    ``$VARS`` are expanded."""

    path: str = Field(min_length=1)
    format: Literal["auto", "jsonl", "parquet", "hf_disk"] = "auto"
    split: str | None = None
    fields: FieldsConfig | None = None  # None: task.files.fields


class ArchConfig(_Strict):
    """A small Llama-shaped transformer built locally (``models.TinyModelSpec``)."""

    d_model: int = Field(ge=8)
    n_layers: int = Field(ge=1)
    n_heads: int = Field(ge=1)
    d_ff: int = Field(ge=8)
    max_len: int = Field(32, ge=8)
    tie_embeddings: bool = True

    @model_validator(mode="after")
    def _heads_divide(self) -> ArchConfig:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads "
                             f"({self.n_heads})")
        return self


_CHECKPOINT_ONLY = ("revision", "max_len", "device_map")


class ModelConfig(_Strict):
    """A built-in tiny model (``arch``) or a Hugging Face checkpoint: ``path`` (a local
    directory) or ``hub_id`` (found in the local Hugging Face cache only; nothing is ever
    downloaded at run time, see docs/real-models.md).

    ``dtype``: the compute dtype. ``auto`` is bfloat16 on a GPU and float32 on a CPU for a
    checkpoint, float32 for a built-in tiny model. A model that is only run (a given
    teacher) is loaded in it; a model that is trained keeps float32 weights and runs its
    forward passes under autocast to it (mixed precision). ``device_map`` (checkpoints;
    e.g. ``auto``, needs accelerate) spreads a model over the visible GPUs; otherwise the
    whole model goes to the run's ``device``. ``max_len``: the longest sequence (prompt +
    answer) allowed, default the checkpoint's ``max_position_embeddings`` (built-in models
    give it in ``arch``). ``gradient_checkpointing`` trades compute for activation memory
    when this model is trained."""

    arch: ArchConfig | None = None
    path: str | None = None
    hub_id: str | None = None
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device_map: str | None = None
    max_len: int | None = Field(None, ge=8)
    gradient_checkpointing: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        given = [k for k in ("arch", "path", "hub_id") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'arch' (a built-in tiny model), 'path' "
                             "(a local Hugging Face checkpoint directory) or 'hub_id' (a "
                             "model in the local Hugging Face cache)"
                             + (f"; got {', '.join(given)}" if given else ""))
        if self.revision is not None and self.hub_id is None:
            raise ValueError("revision only applies with hub_id")
        if self.arch is not None:
            stray = [k for k in _CHECKPOINT_ONLY if getattr(self, k) is not None]
            if stray:
                raise ValueError(f"{', '.join(stray)} only appl{'ies' if len(stray) == 1 else 'y'}"
                                 " to checkpoints (a built-in model gives max_len in arch)")
        return self

    @property
    def is_checkpoint(self) -> bool:
        return self.arch is None


def _source(value: Any) -> Any:
    # a bare string is the path: `labelled: data/train.jsonl`
    return {"path": value} if isinstance(value, str) else value


class FilesConfig(_Strict):
    """The task's data from local files instead of a built-in task.

    ``labelled`` (the student's labelled set), ``test`` and, for synthetic-data methods,
    ``pool`` (prompts the teacher answers; their answers, if present, are used only by the
    verifier); ``teacher`` when the teacher is trained here. ``task.n_labelled`` /
    ``n_pool`` / ``n_test`` / ``n_teacher`` cap how many records each split takes (in file
    order, or shuffled with ``task.seed`` when ``shuffle``). Splits are kept disjoint by
    prompt: a prompt of the test set is dropped from the others, and a pool drawn from the
    labelled file skips the labelled prompts.

    ``verifier``: ``numeric_final_answer`` (the number after the last ``####``, else the
    last number, compared as numbers: GSM8K style) or ``exact`` (the whole answer, spaces
    normalised). It scores exact match and filters the teacher's synthetic answers.
    ``prompt_format`` (optional) wraps each text prompt, ``{prompt}`` standing for it (for
    example ``"Question: {prompt}\nAnswer: "`` for a base model without a template).
    ``chat_template``: ``auto`` applies the tokenizer's chat template when it has one
    (``on``: required; ``off``: never); ``system_prompt`` goes first when it is applied."""

    labelled: DataSourceConfig
    test: DataSourceConfig
    pool: DataSourceConfig | None = None
    teacher: DataSourceConfig | None = None
    fields: FieldsConfig = FieldsConfig()
    verifier: Literal["numeric_final_answer", "exact"] = "exact"
    chat_template: Literal["auto", "on", "off"] = "auto"
    prompt_format: str | None = None
    system_prompt: str | None = None
    shuffle: bool = False

    @field_validator("prompt_format")
    @classmethod
    def _has_placeholder(cls, value: str | None) -> str | None:
        if value is not None and "{prompt}" not in value:
            raise ValueError("prompt_format must contain {prompt}")
        return value

    @field_validator("labelled", "test", "pool", "teacher", mode="before")
    @classmethod
    def _as_source(cls, value: Any) -> Any:
        return _source(value)


class LmEvalConfig(_Strict):
    """``eval.backend: lm_eval``: lm-evaluation-harness tasks (extra ``[eval]``). The model
    under test is passed as its checkpoint directory. ``task``/``metric`` pick the score
    that becomes the run's quality (default: the first task's preferred metric); every
    score is kept in its details. ``include_path``: a folder of task YAML files (your own
    benchmarks, e.g. on local data files), searched besides the harness's own tasks."""

    tasks: list[str] = Field(default_factory=lambda: ["gsm8k"], min_length=1)
    num_fewshot: int | None = Field(None, ge=0)
    limit: float | None = Field(None, gt=0)
    apply_chat_template: bool = False
    task: str | None = None
    metric: str | None = None
    model_args: dict[str, str | int | float | bool] = Field(default_factory=dict)
    include_path: str | None = None

    @model_validator(mode="after")
    def _task_listed(self) -> LmEvalConfig:
        if self.task is not None and self.task not in self.tasks:
            raise ValueError(f"task {self.task!r} is not among tasks ({', '.join(self.tasks)})")
        return self
