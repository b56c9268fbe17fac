"""The ``methods:`` entries of the run config (``MethodConfig``), moved out of
``config.py`` (which re-exports it) to keep each file within the layout's line limit.

A method reads the fields its registered class lists as ``settings`` (the others given
are refused); the methods' own checks on their values (``Method.check``) run here, so a
bad setting stops the run at its key's line before any work starts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from distillmeter.configbase import MAX_COUNT, MAX_TEMPERATURE, MAX_TOKENS, error_at
from distillmeter.configbase import StrictModel as _Strict
from distillmeter.pipelines.methods import registry

NAME_RE = r"^[a-z0-9][a-z0-9_\-]*$"


class MethodConfig(_Strict):
    """A distillation method: which data the student trains on and with which loss.

    ``data``: ``labelled`` (the student's ground-truth set) and/or ``synthetic`` (the
    teacher's filtered answers to the prompt pool). ``loss: kd`` adds the teacher's logits:
    ``alpha * CE + (1 - alpha) * T^2 * D(teacher || student)``, from the top-k cache
    (``teacher_mode: cached``, stage ``teacher.logits``) or a live teacher (``online``).

    ``loss: onpolicy`` is on-policy distillation (GKD): in rounds of ``block_prompts``
    prompts from the pool, the student samples completions (``student.generate``, at
    ``sample_temperature``, up to ``max_new_tokens``), the teacher scores them
    (``teacher.score``) and the student learns ``T^2 * D(teacher, student)`` on them
    (``student.train``; ``divergence`` is ``reverse_kl`` unless given). ``lmbda`` is the
    fraction of batches that are on-policy; the others come from ``data``, are scored by
    the teacher in the same ``teacher.score`` windows and learned with the same loss.

    ``loss: dpo`` is preference distillation (``methods/preference.py``): the student of
    ``starts_from`` (a method of the same campaign; ``baseline`` unless given) samples
    ``k`` answers to each of the first ``prompts`` pool prompts (unset: all) at
    ``sample_temperature`` (> 0), up to ``max_new_tokens``; the teacher judges them
    (``judge``: ``likelihood`` or ``verifier``) and the student learns by DPO (``beta``,
    0.1 unless given) on the best and worst answer of each prompt. Its fields default to
    None (unset) so that the other methods' config ids stay as they were
    (``student_config_id`` leaves None out)."""

    name: str = Field(pattern=NAME_RE)
    data: list[Literal["labelled", "synthetic"]] = Field(min_length=1)
    # a registered method's loss (methods/registry.py): ce, kd, onpolicy, and any added
    loss: str = "ce"
    alpha: float = Field(0.5, ge=0, le=1)
    temperature: float = Field(1.0, gt=0, le=MAX_TEMPERATURE)
    divergence: Literal["forward_kl", "reverse_kl", "jsd"] = "forward_kl"
    beta: float = Field(0.5, gt=0, lt=1)
    teacher_mode: Literal["cached", "online"] = "cached"
    lmbda: float = Field(0.5, gt=0, le=1)
    block_prompts: int = Field(256, ge=1, le=MAX_COUNT)
    sample_temperature: float = Field(1.0, ge=0, le=MAX_TEMPERATURE)  # 0: greedy
    max_new_tokens: int = Field(12, ge=1, le=MAX_TOKENS)
    k: int | None = Field(None, ge=2, le=64)  # candidates per prompt: a pair needs two
    prompts: int | None = Field(None, ge=1, le=MAX_COUNT)
    judge: Literal["likelihood", "verifier"] | None = None
    starts_from: str | None = Field(None, pattern=NAME_RE)

    @field_validator("loss", mode="before")
    @classmethod
    def _registered_loss(cls, value: Any) -> Any:
        known = registry.losses()
        if not isinstance(value, str) or value not in known:
            # worded as a Literal's error, so a wrong loss reads as any wrong choice
            raise PydanticCustomError("literal_error", "Input should be {expected}",
                                      {"expected": registry.one_of(known)})
        return value

    @model_validator(mode="after")
    def _settings_fit_the_loss(self) -> MethodConfig:
        # Only values that differ from the default count as given: the resolved config
        # (which writes every default out) must load again.
        by_loss = registry.settings_by_loss()
        uses = by_loss[self.loss]
        stray = [f for f in dict.fromkeys(f for fs in by_loss.values() for f in fs)
                 if f not in uses and f in self.model_fields_set
                 and getattr(self, f) != type(self).model_fields[f].default]
        if stray:
            verb = "apply" if len(stray) > 1 else "applies"
            owners = [loss for loss, fields in by_loss.items() if set(stray) & set(fields)]
            raise error_at((stray[0],), f"{', '.join(stray)} only {verb} with loss: "
                           f"{' or '.join(owners)}", getattr(self, stray[0]))
        for key, value in registry.method_class(self).defaults.items():
            if key not in self.model_fields_set:
                setattr(self, key, value)  # the method's own default for its setting
        if len(set(self.data)) != len(self.data):
            raise error_at(("data",), "data lists a source twice", self.data)
        registry.method_class(self).check(self)  # the method's own checks on its values
        return self


