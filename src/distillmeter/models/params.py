"""A model's parameter count and shape without building it (no torch import): from a
built-in ``arch`` or from a checkpoint's ``config.json``. The cost forecast
(``distillmeter estimate``) needs them before anything runs.

The count is exact for the Llama family the built-in models use (and the Qwen2 and Mistral
checkpoints shaped like it): with hidden size H, L layers, feed-forward size F, key/value
width K per layer (key/value heads x head size), attention width A (query heads x head
size) and vocabulary V::

    params = V*H (embedding) + V*H (output head, unless tied)
             + L * (H*A (q) + 2*H*K (k, v) + A*H (o) + 3*H*F (gate, up, down) + 2*H (norms)
                    + A + 2*K (q/k/v biases, Qwen2 only))
             + H (final norm)

``tests/models/test_params.py`` checks it against ``count_params`` of real models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillmeter.errors import UserError

# model_type values whose attention projections carry biases by default (Qwen2's q/k/v)
_QKV_BIAS = {"qwen2", "qwen2_moe"}
# char tokenizer specials: <pad>, <s>, </s>, <unk> (models/tokenizer.py)
N_SPECIAL_TOKENS = 4


@dataclass(frozen=True)
class ModelShape:
    """What the work of a forward pass (the forecast) and the memory estimate depend on.
    ``counted_params``: the parameter count as counted on a built model, where one was
    (any architecture: ``models.memory.model_shape``); else :attr:`params` is the formula."""

    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    tied: bool = True
    qkv_bias: bool = False
    counted_params: int | None = None

    @property
    def kv_width(self) -> int:
        """Key (or value) width per layer: kv_heads x head size."""
        return self.kv_heads * self.head_dim

    @property
    def attn_width(self) -> int:
        """Query heads x head size: the width attention scores are computed over."""
        return self.heads * self.head_dim

    @property
    def params(self) -> int:
        """Exact parameter count (tied weights counted once); see the module docstring."""
        if self.counted_params is not None:
            return self.counted_params
        h, a, k = self.hidden, self.attn_width, self.kv_heads * self.head_dim
        per_layer = h * a + 2 * h * k + a * h + 3 * h * self.ffn + 2 * h
        if self.qkv_bias:
            per_layer += a + 2 * k
        embed = self.vocab * h * (1 if self.tied else 2)
        return embed + self.layers * per_layer + h


def char_vocab(alphabet: str) -> int:
    """The built-in character tokenizer's size: one id per distinct character + 4 specials."""
    return len(dict.fromkeys(alphabet)) + N_SPECIAL_TOKENS


def shape_from_arch(arch: Any, vocab: int) -> ModelShape:
    """The shape of a built-in tiny Llama (``models.config.ArchConfig``)."""
    return ModelShape(vocab=vocab, hidden=arch.d_model, layers=arch.n_layers,
                      heads=arch.n_heads, kv_heads=arch.n_heads,
                      head_dim=arch.d_model // arch.n_heads, ffn=arch.d_ff,
                      tied=bool(arch.tie_embeddings))


def shape_from_config(config: dict[str, Any], where: str = "config.json") -> ModelShape:
    """The shape a Hugging Face ``config.json`` describes (its text model's, for a
    multimodal config). UserError naming the missing key when it lacks one."""
    text = config.get("text_config") or config
    try:
        hidden = int(text["hidden_size"])
        layers = int(text["num_hidden_layers"])
        heads = int(text.get("num_attention_heads") or 1)
        vocab = int(text["vocab_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{where}: cannot read the model's shape (missing or bad {exc})"
                        ) from None
    head_dim = int(text.get("head_dim") or hidden // heads)
    kv_heads = int(text.get("num_key_value_heads") or heads)
    ffn = int(text.get("intermediate_size") or 4 * hidden)
    tied = bool(text.get("tie_word_embeddings", config.get("tie_word_embeddings", True)))
    model_type = str(text.get("model_type") or config.get("model_type") or "")
    bias = text.get("attention_bias")
    qkv_bias = bool(bias) if bias is not None else model_type in _QKV_BIAS
    return ModelShape(vocab=vocab, hidden=hidden, layers=layers, heads=heads,
                      kv_heads=kv_heads, head_dim=head_dim, ffn=ffn, tied=tied,
                      qkv_bias=qkv_bias)


def read_config_json(folder: Path) -> ModelShape:
    """The shape of the checkpoint in ``folder`` (its config.json only; no weights read)."""
    path = Path(folder) / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a model config (a JSON object)")
    return shape_from_config(data, str(path))
