"""The base of every config section (plain pydantic data): unknown keys are errors and
defaults are validated, so a typo stops a run before any work."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, defaults are validated."""

    model_config = ConfigDict(extra="forbid", validate_default=True)
