"""distillmeter.models: tokenizers and causal LMs (built-in tiny Llamas; local HF checkpoints).

    tok = build_char_tokenizer(task.alphabet)
    teacher = build_llama(DEFAULT_TEACHER_SPEC, tok, seed=0)        # LlamaForCausalLM
    model, tok = load_causal_lm("Qwen/Qwen2.5-0.5B", dtype="bf16")  # local cache only
    vocab = check_tokenizers_compatible(t_tok, s_tok, t_vocab, s_vocab)

``config`` (the run config's model sections), ``checkpoints`` (where a checkpoint comes
from, its tokenizer and dtype), ``build`` (a run's models as loaded, checkpoints written
and read), ``memory`` (the memory estimate of each phase).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Loaded on first use (PEP 562): the config sections in ``models.config`` validate without
# importing torch, which every other module here needs.
_LAZY = {
    "check_tokenizers_compatible": "loading", "count_params": "loading",
    "load_causal_lm": "loading",
    "DEFAULT_GENERATION": "tiny", "DEFAULT_STUDENT_SPEC": "tiny",
    "DEFAULT_STUDENT_TRAINING": "tiny", "DEFAULT_TEACHER_SPEC": "tiny",
    "DEFAULT_TEACHER_TRAINING": "tiny", "TinyModelSpec": "tiny", "build_llama": "tiny",
    "llama_config": "tiny",
    "SPECIAL_TOKENS": "tokenizer", "build_char_tokenizer": "tokenizer",
    "encode_prompt_completion": "tokenizer",
    "LoadedModel": "build", "build_model": "build", "load_checkpoint": "build",
    "save_checkpoint": "build", "vocab_width": "build",
}

__all__ = [
    "DEFAULT_GENERATION",
    "DEFAULT_STUDENT_SPEC",
    "DEFAULT_STUDENT_TRAINING",
    "DEFAULT_TEACHER_SPEC",
    "DEFAULT_TEACHER_TRAINING",
    "SPECIAL_TOKENS",
    "TinyModelSpec",
    "build_char_tokenizer",
    "build_llama",
    "check_tokenizers_compatible",
    "count_params",
    "encode_prompt_completion",
    "llama_config",
    "load_causal_lm",
    "LoadedModel",
    "build_model",
    "load_checkpoint",
    "save_checkpoint",
    "vocab_width",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'distillmeter.models' has no attribute {name!r}")
    return getattr(import_module(f"distillmeter.models.{module}"), name)
