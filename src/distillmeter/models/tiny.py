"""Small Llama models built locally: the built-in default's teacher and student.

They are ``transformers.LlamaForCausalLM``, the class of real Llama checkpoints, so the
pipelines have one code path for the default and for real models.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase


class TinyModelSpec(BaseModel):
    """Shape of a small Llama. ``d_model`` must be divisible by ``n_heads``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    d_model: int = Field(64, ge=8, description="hidden size")
    n_layers: int = Field(2, ge=1)
    n_heads: int = Field(4, ge=1)
    d_ff: int = Field(256, ge=8, description="MLP intermediate size")
    max_len: int = Field(64, ge=8, description="max positions (prompt + completion)")
    tie_embeddings: bool = True

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyModelSpec:
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        return self


def llama_config(spec: TinyModelSpec, tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    """The ``LlamaConfig`` for ``spec`` with the tokenizer's vocabulary and special ids."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.d_model,
        intermediate_size=spec.d_ff,
        num_hidden_layers=spec.n_layers,
        num_attention_heads=spec.n_heads,
        num_key_value_heads=spec.n_heads,
        max_position_embeddings=spec.max_len,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=spec.tie_embeddings,
    )


def build_llama(
    spec: TinyModelSpec, tokenizer: PreTrainedTokenizerBase, *, seed: int
) -> LlamaForCausalLM:
    """A freshly initialised ``LlamaForCausalLM`` of shape ``spec``, float32, on CPU.

    Initialisation is a function of ``seed`` alone; the global torch RNG is left as it was."""
    config = llama_config(spec, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model


# The built-in default's models (chosen with benchmarks/teacher_feasibility.py; figures
# in docs/components.md).
# Teacher 528k parameters, student 75k (7x smaller). On the arithmetic task with a 2-core
# CPU the teacher reaches ~99% exact match in 300 steps (~40 s). The student, from ~4000
# teacher-answered prompts, sits at a learning transition around 300 steps (40-99% by seed),
# so it trains for 600 (~12 s on an idle core): every seed then reaches the teacher's score
# (synthetic SFT and KD alike; benchmarks/seed_stability.py), but only ~2-10% from the 128
# labelled examples.
# Figures and how they were measured: docs/components.md.
DEFAULT_TEACHER_SPEC = TinyModelSpec(d_model=128, n_layers=2, n_heads=4, d_ff=512, max_len=32)
DEFAULT_STUDENT_SPEC = TinyModelSpec(d_model=48, n_layers=2, n_heads=4, d_ff=192, max_len=32)

# Recommended training settings for these two (plain data, for the pipelines' config):
# AdamW(betas=(0.9, 0.98), weight_decay=0.01), linear warmup then cosine decay to 10% of
# lr, gradient clipping at 1.0, batches of 64 sequences, loss on the completion tokens.
DEFAULT_TEACHER_TRAINING: dict = {
    "steps": 300, "batch_size": 64, "lr": 5e-3, "warmup_steps": 20, "min_lr_ratio": 0.1,
    "weight_decay": 0.01, "betas": (0.9, 0.98), "grad_clip": 1.0,
}
# The student trains twice as long: at 300 steps, whether it had learned the task was up
# to the seed.
DEFAULT_STUDENT_TRAINING: dict = {**DEFAULT_TEACHER_TRAINING, "lr": 1e-2, "steps": 600,
                                  "warmup_steps": 42}
# Prompts are 9 tokens with BOS; targets at most 8 characters + EOS.
DEFAULT_GENERATION: dict = {"max_new_tokens": 12, "batch_size": 256}
