"""The run config's ``task.files`` section: a task's data from local files (plain pydantic
data; see ``pipelines/config.py``). Nothing here touches the file system: paths are
resolved when the run loads its data, so a config validates on a machine that does not
hold the files."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from distillmeter.configbase import StrictModel as _Strict


class FieldsConfig(_Strict):
    """Which record fields hold what. ``prompt``/``answer`` name text fields; ``messages``
    (instead) names a chat list ``[{role, content}, ...]``: the last assistant turn is the
    answer, the turns before it the prompt."""

    prompt: str = Field("prompt", min_length=1)
    answer: str = Field("answer", min_length=1)
    messages: str | None = Field(None, min_length=1)


class DataSourceConfig(_Strict):
    """One local data file or saved dataset. ``format: auto`` goes by the name: ``.jsonl``
    / ``.json`` (one JSON object a line), ``.parquet`` (needs pyarrow), a directory written
    by ``datasets``' ``save_to_disk`` (needs datasets; ``split`` picks one of a
    DatasetDict). Relative paths are relative to the directory the run starts in; ``~`` and
    ``$VARS`` are expanded."""

    path: str = Field(min_length=1)
    format: Literal["auto", "jsonl", "parquet", "hf_disk"] = "auto"
    split: str | None = Field(None, min_length=1)
    fields: FieldsConfig | None = None  # None: task.files.fields


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
