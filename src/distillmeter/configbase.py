"""The base of every config section (plain pydantic data): unknown keys are errors, defaults
are validated, types are strict and floats finite, so a typo or an impossible value stops a
run before any work.

The bounds shared by the sections are here, each with the reason for its value: a config
value past them is a mistake (a digit too many, a unit mixed up), never a setting anyone
runs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import InitErrorDetails

MAX_SEED = 2**32 - 1
"""Seeds are 32-bit: numpy's generator takes no more, and every seed a run derives from a
config's seed stays within torch's 64-bit range."""

MAX_COUNT = 10**9
"""Records, prompts, examples or sequences a run may ask for: a billion is beyond any data
set a run holds in memory (the built-in task's counts are also bounded by how many distinct
prompts it has)."""

MAX_BATCH = 2**30
"""Sequences per batch, micro-batches per step, sequences per cache shard: a billion
sequences' activations, at one token each, outgrow any machine's memory; below this bound
the memory estimate before any work checks the real fit."""

MAX_TOKENS = 2**20
"""Tokens to generate, a context length, a top-k: a million is past every model's context
window and every vocabulary (Gemma's, among the largest, has 262,144 ids)."""

MAX_TEMPERATURE = 100.0
"""A softmax temperature (sampling or KD): past ~10 the distribution is already flat, and
T^2 x KL at T = 1e30 overflows the loss."""


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, defaults are validated, values keep their
    type (``seeds: true`` or ``lr: "0.01"`` is refused, not converted) and floats are
    finite (``.inf`` and ``.nan`` are refused everywhere)."""

    model_config = ConfigDict(extra="forbid", validate_default=True, strict=True,
                              allow_inf_nan=False)


def error_at(loc: tuple[str | int, ...], message: str, value: Any) -> ValidationError:
    """A validation error at ``loc``, for a validator to raise when the mistake is one key's:
    ``loc`` is relative to the model whose validator raises it, and pydantic puts the
    enclosing sections' keys in front, so the message names (and a YAML file's line
    points at) that key rather than its section."""
    detail = InitErrorDetails(type="value_error", loc=loc, input=value,
                              ctx={"error": ValueError(message)})
    return ValidationError.from_exception_data("config", [detail])
