"""The work of one stage, counted as the pipelines count it: the pieces that both a stage
recording its work (``stage_end.info``) and the forecast planning it (``work.py``) use, so
the two cannot drift apart. A method's own work (``methods/``) is built from them.

Each counts: ``train_work`` the loop's steps and micro-batches (``training.train``'s
stopping rule), ``generate_work`` a generation pass's batches and decode steps,
``score_work`` teacher-forced passes; ``model_info`` / ``shape_info`` the model's
``params``, ``layers`` and ``attn_width`` from a loaded model or from its shape alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from distillmeter.errors import UserError
from distillmeter.models.params import ModelShape
from distillmeter.pipelines.config import TrainingConfig


@dataclass
class PlannedStage:
    """One stage's work: tokens and samples as the stage would count them, ``info`` as the
    pipelines would record it; ``cannot`` says why its work is unknown before it runs."""

    name: str
    tokens: int = 0
    samples: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    cannot: str | None = None


@dataclass
class Split:
    """A split's token lengths: ``prompt`` (BOS + prompt) and ``answer`` (target, no EOS)."""

    prompt: list[int]
    answer: list[int]

    def seqs(self) -> list[int]:
        """Training sequence lengths: BOS + prompt + target + EOS."""
        return [p + a + 1 for p, a in zip(self.prompt, self.answer, strict=True)]


def attention_info(model: Any, prefix: str = "") -> dict[str, int]:
    """``layers`` and ``attn_width`` of a loaded transformers model, for the stage's info."""
    cfg = getattr(model, "config", None)
    if cfg is None:
        return {}
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    try:
        layers = int(text.num_hidden_layers)
        heads = int(text.num_attention_heads)
        head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
    except (AttributeError, TypeError, ValueError):
        return {}
    return {f"{prefix}layers": layers, f"{prefix}attn_width": heads * head_dim}


def model_info(model: Any, prefix: str = "") -> dict[str, int]:
    """``params``, ``layers`` and ``attn_width`` of a loaded model, keyed as
    :func:`shape_info` keys a planned one's."""
    from distillmeter.models import count_params

    return {f"{prefix}params": count_params(model), **attention_info(model, prefix)}


def shape_info(shape: ModelShape, prefix: str = "") -> dict[str, int]:
    """``params``, ``layers`` and ``attn_width`` of a model's shape (planned work)."""
    return {f"{prefix}params": shape.params, f"{prefix}layers": shape.layers,
            f"{prefix}attn_width": shape.attn_width}


def train_work(seq_lens: list[int], t: TrainingConfig) -> dict[str, int]:
    """Steps, micro-batches, tokens and sequences of the training loop: micro-batches of
    ``batch_size`` sequences (the last of each epoch partial), ``grad_accum`` per step,
    until ``token_budget`` tokens have gone through (``training.train``'s stopping rule).
    Tokens per micro-batch are taken at the data's mean sequence length."""
    if not seq_lens:
        raise UserError("a training stage has no sequences (is its data empty?)")
    n, mean = len(seq_lens), sum(seq_lens) / len(seq_lens)
    sizes = [t.batch_size] * (n // t.batch_size) + ([n % t.batch_size] if n % t.batch_size
                                                     else [])
    per_epoch = len(sizes)
    tokens = samples = steps = micro = 0.0
    while tokens < t.token_budget:
        for _ in range(t.grad_accum):
            size = sizes[int(micro) % per_epoch]
            tokens += size * mean
            samples += size
            micro += 1
        steps += 1
        if steps > 10_000_000:
            raise UserError("training.token_budget implies over 10 million steps")
    return {"steps": int(steps), "micro_batches": int(micro), "tokens": round(tokens),
            "samples": int(samples)}


def generate_work(prompt_lens: list[int], answer_lens: list[int], batch_size: int,
                  max_new_tokens: int) -> tuple[dict[str, Any], int, int]:
    """A generation pass's work: prompts grouped by length into batches (as the backend
    does); each answer is taken at its reference length + EOS (capped at
    ``max_new_tokens``), and a batch decodes until its longest answer ends. ``work_range``
    spans that up to every answer running to ``max_new_tokens``. Returns (info, tokens,
    samples)."""
    order = sorted(range(len(prompt_lens)), key=lambda i: prompt_lens[i])
    batches = decode = 0
    new = [min(max_new_tokens, a + 1) for a in answer_lens]
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batches += 1
        decode += max(new[i] for i in idx)
    info = {"gen_batches": batches, "decode_steps": decode, "prompt_tokens": sum(prompt_lens),
            "new_tokens": sum(new), "work_range": {
                "decode_steps": [decode, batches * max_new_tokens],
                "new_tokens": [sum(new), len(new) * max_new_tokens]}}
    return info, sum(prompt_lens) + sum(new), len(prompt_lens)


def score_work(seq_lens: list[int], batch_size: int, shard: int | None = None
               ) -> dict[str, int]:
    """Teacher-forced forward passes over whole sequences, ``batch_size`` at a time (within
    shards of ``shard`` sequences, as the logit cache goes)."""
    n = len(seq_lens)
    shard = shard or max(n, 1)
    batches = sum(math.ceil(min(shard, n - s) / batch_size) for s in range(0, n, shard))
    return {"score_batches": batches, "scored_tokens": sum(seq_lens)}
