"""The run config's model sections (plain pydantic data; see ``pipelines/config.py``): a
built-in tiny Llama (``arch``) or a Hugging Face checkpoint (``path`` / ``hub_id``). Nothing
here touches the file system or imports torch: a config validates anywhere."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from distillmeter.configbase import MAX_TOKENS, error_at
from distillmeter.configbase import StrictModel as _Strict

# Past the widest and deepest published models (Llama 3.1 405B: d_model 16,384, 126 layers,
# 128 heads, d_ff 53,248): a tiny model built here is far below these.
MAX_WIDTH = 2**16
MAX_LAYERS = 1024


class ArchConfig(_Strict):
    """A small Llama-shaped transformer built locally (``models.TinyModelSpec``)."""

    d_model: int = Field(ge=8, le=MAX_WIDTH)
    n_layers: int = Field(ge=1, le=MAX_LAYERS)
    n_heads: int = Field(ge=1, le=MAX_WIDTH)
    d_ff: int = Field(ge=8, le=16 * MAX_WIDTH)
    max_len: int = Field(32, ge=8, le=MAX_TOKENS)
    tie_embeddings: bool = True

    @model_validator(mode="after")
    def _heads_divide(self) -> ArchConfig:
        if self.d_model % self.n_heads:
            raise error_at(("n_heads",), f"d_model ({self.d_model}) must be divisible by "
                           f"n_heads ({self.n_heads})", self.n_heads)
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
    path: str | None = Field(None, min_length=1)
    hub_id: str | None = Field(None, min_length=1)
    revision: str | None = Field(None, min_length=1)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device_map: str | None = Field(None, min_length=1)
    max_len: int | None = Field(None, ge=8, le=MAX_TOKENS)
    gradient_checkpointing: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        given = [k for k in ("arch", "path", "hub_id") if getattr(self, k) is not None]
        if len(given) != 1:
            # named at the second source given (or at arch, when none is)
            key = given[1] if given else "arch"
            raise error_at((key,), "give exactly one of 'arch' (a built-in tiny model), "
                           "'path' (a local Hugging Face checkpoint directory) or 'hub_id' "
                           "(a model in the local Hugging Face cache)"
                           + (f"; got {', '.join(given)}" if given else ""),
                           getattr(self, key))
        if self.revision is not None and self.hub_id is None:
            raise error_at(("revision",), "revision only applies with hub_id", self.revision)
        if self.arch is not None:
            stray = [k for k in _CHECKPOINT_ONLY if getattr(self, k) is not None]
            if stray:
                raise error_at((stray[0],), f"{', '.join(stray)} only appl"
                               f"{'ies' if len(stray) == 1 else 'y'} to checkpoints (a "
                               "built-in model gives max_len in arch)",
                               getattr(self, stray[0]))
        return self

    @property
    def is_checkpoint(self) -> bool:
        return self.arch is None
