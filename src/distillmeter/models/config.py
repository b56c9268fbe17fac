"""The run config's model sections (plain pydantic data; see ``pipelines/config.py``): a
built-in tiny Llama (``arch``) or a Hugging Face checkpoint (``path`` / ``hub_id``). Nothing
here touches the file system or imports torch: a config validates anywhere."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from distillmeter.configbase import StrictModel as _Strict


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
