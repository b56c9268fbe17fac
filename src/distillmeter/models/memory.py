"""Will it fit? An estimate of the memory each phase of a run needs, checked against what
the device has free before any model is loaded.

This is an estimate, not a measurement: it counts the large tensors a phase keeps alive
and leaves out what is hard to predict (allocator fragmentation, library workspaces,
temporary copies inside kernels). It therefore asks for 10% headroom and says so; a phase
estimated to fit can still run out of memory, and one refused is far over.

Per phase, in bytes (P parameters, B sequences of S tokens, L layers, hidden size H,
feed-forward size F, key/value width K per layer, vocabulary V, c bytes per compute
element):

- training: weights 4P (float32 master weights) + gradients 4P + AdamW states 8P
  + activations B*S*L*(8H + 2K + 4F)*c (what a Llama block keeps for its backward pass with
  a fused attention kernel; with gradient checkpointing B*S*(L*H + 8H + 2K + 4F)*c: each
  block's input, plus one block recomputed at a time)
  + logits B*S*V*(2c + 16) (the logits, their gradient, and the float32 copies the losses
  make);
- inference (generation, evaluation, the logit cache): weights P*w (w: bytes of the
  loaded weights) + the key/value cache 2*B*S*L*K*c + one block's activations
  B*S*(H + F)*2c + logits B*S*V*(c + 4) where whole sequences are scored (the logit
  cache, the evaluation loss), B*V*(c + 4) where only the next token is (generation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from distillmeter.errors import UserError
from distillmeter.models.checkpoints import model_source
from distillmeter.models.params import ModelShape

if TYPE_CHECKING:
    from distillmeter.models.config import ModelConfig

GIB = 1024**3
HEADROOM = 0.9  # use at most 90% of the free memory


@dataclass
class PhaseEstimate:
    """One phase's estimated memory, by part (bytes)."""

    phase: str  # e.g. "student.train"
    parts: dict[str, float] = field(default_factory=dict)
    batch: int = 0
    seq: int = 0
    hint: str = ""

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def describe(self) -> str:
        parts = " + ".join(f"{k} {v / GIB:.2f}" for k, v in self.parts.items() if v)
        return (f"{self.phase}: estimated {self.total / GIB:.2f} GiB = {parts} GiB "
                f"(batch {self.batch} x {self.seq} tokens)")


def training(phase: str, shape: ModelShape, *, batch: int, seq: int, compute_bytes: int,
             gradient_checkpointing: bool = False, hint: str = "") -> PhaseEstimate:
    """A model being trained with AdamW (float32 master weights)."""
    s = shape
    block = 8 * s.hidden + 2 * s.kv_width + 4 * s.ffn
    per_token = (s.layers * s.hidden + block) if gradient_checkpointing else s.layers * block
    tokens = batch * seq
    return PhaseEstimate(phase, {
        "weights": 4.0 * s.params,
        "gradients": 4.0 * s.params,
        "optimizer": 8.0 * s.params,
        "activations": float(tokens) * per_token * compute_bytes,
        "logits": float(tokens) * s.vocab * (2 * compute_bytes + 16),
    }, batch, seq, hint)


def inference(phase: str, shape: ModelShape, *, batch: int, seq: int, weight_bytes: int,
              compute_bytes: int, all_positions: bool = True, hint: str = "") -> PhaseEstimate:
    """A model run forward only (generation with its key/value cache, scoring).
    ``all_positions``: logits for every position (scoring) or only the last (generation)."""
    s = shape
    tokens = batch * seq
    scored = tokens if all_positions else batch
    return PhaseEstimate(phase, {
        "weights": float(weight_bytes) * s.params,
        "kv_cache": 2.0 * tokens * s.layers * s.kv_width * compute_bytes,
        "activations": float(tokens) * (s.hidden + s.ffn) * 2 * compute_bytes,
        "logits": float(scored) * s.vocab * (compute_bytes + 4),
    }, batch, seq, hint)


def combine(phase: str, *estimates: PhaseEstimate, hint: str = "") -> PhaseEstimate:
    """Phases that hold memory at the same time (a student trained with a live teacher)."""
    parts: dict[str, float] = {}
    for e in estimates:
        for k, v in e.parts.items():
            name = f"{e.phase.split(':')[-1]} {k}" if len(estimates) > 1 else k
            parts[name] = parts.get(name, 0.0) + v
    first = estimates[0]
    return PhaseEstimate(phase, parts, first.batch, first.seq,
                         hint or " ".join(e.hint for e in estimates if e.hint))


def available_bytes(device: str, *, all_gpus: bool = False) -> tuple[float, str]:
    """Free memory where the run will put its models: the GPU's free memory
    (``torch.cuda.mem_get_info``; summed over the visible GPUs with ``all_gpus``, for models
    spread by a device map), or the host's available RAM (psutil) for a CPU run."""
    if device.startswith("cuda"):
        import torch

        if all_gpus:
            free = sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
            return float(free), f"{torch.cuda.device_count()} GPUs together"
        index = torch.device(device).index or 0
        free, total = torch.cuda.mem_get_info(index)
        return float(free), f"GPU cuda:{index} ({total / GIB:.1f} GiB total)"
    import psutil

    vm = psutil.virtual_memory()
    return float(vm.available), f"host RAM ({vm.total / GIB:.1f} GiB total)"


def check_fit(estimates: list[PhaseEstimate], available: float, where: str) -> None:
    """UserError naming every phase whose estimate exceeds ``HEADROOM`` of ``available``."""
    limit = available * HEADROOM
    over = [e for e in estimates if e.total > limit]
    if not over:
        return
    lines = [f"the run does not fit in memory: {where} has {available / GIB:.2f} GiB free "
             f"(the check allows {HEADROOM:.0%} of it):"]
    for e in over:
        lines.append(f"  {e.describe()}" + (f"; {e.hint}" if e.hint else ""))
    lines.append("These are estimates (docs/real-models.md, 'Memory check'); nothing was "
                 "loaded or run.")
    raise UserError("\n".join(lines))


# ----------------------------------------------------------------- a model's shape


def _hf_config(mcfg: ModelConfig, role: str, tokenizer):
    if mcfg.is_checkpoint:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(str(model_source(mcfg, role)), local_files_only=True)
    from distillmeter.models.tiny import TinyModelSpec, llama_config

    return llama_config(TinyModelSpec(**mcfg.arch.model_dump()), tokenizer)


def model_shape(mcfg: ModelConfig, role: str, tokenizer) -> tuple[ModelShape, int]:
    """The model's shape for the memory estimate, and its position limit (``max_len``).
    Parameters are counted on a meta-device build (no memory), or by formula if that fails."""
    config = _hf_config(mcfg, role, tokenizer)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = int(text.hidden_size)
    layers = int(text.num_hidden_layers)
    heads = int(getattr(text, "num_attention_heads", 1) or 1)
    ffn = int(getattr(text, "intermediate_size", None) or 4 * hidden)
    head_dim = int(getattr(text, "head_dim", None) or hidden // heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    kv = kv_heads * head_dim
    vocab = int(text.vocab_size)
    try:
        from transformers import AutoModelForCausalLM

        from distillmeter.models.causal_lm import count_params

        with torch.device("meta"):
            params = count_params(AutoModelForCausalLM.from_config(config))
    except Exception:  # an architecture that cannot be built on meta: a Llama-like formula
        tied = bool(getattr(text, "tie_word_embeddings", True))
        params = vocab * hidden * (1 if tied else 2) + layers * (
            2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * ffn + 2 * hidden) + hidden
    max_pos = int(getattr(text, "max_position_embeddings", 0) or 0)
    limit = mcfg.max_len or (mcfg.arch.max_len if mcfg.arch is not None else max_pos or 4096)
    return ModelShape(vocab=vocab, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads,
                      head_dim=head_dim, ffn=ffn, counted_params=params), limit
