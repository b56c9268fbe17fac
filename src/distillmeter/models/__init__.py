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
_CAUSAL_LM, _TINY = "distillmeter.models.causal_lm", "distillmeter.models.tiny"
_TOKENIZER, _BUILD = "distillmeter.models.tokenizer", "distillmeter.models.build"
_LAZY = {  # module paths in full: the layout test counts them as imports
    "check_tokenizers_compatible": _CAUSAL_LM, "count_params": _CAUSAL_LM,
    "load_causal_lm": _CAUSAL_LM,
    "DEFAULT_GENERATION": _TINY, "DEFAULT_STUDENT_SPEC": _TINY,
    "DEFAULT_STUDENT_TRAINING": _TINY, "DEFAULT_TEACHER_SPEC": _TINY,
    "DEFAULT_TEACHER_TRAINING": _TINY, "TinyModelSpec": _TINY, "build_llama": _TINY,
    "llama_config": _TINY,
    "SPECIAL_TOKENS": _TOKENIZER, "build_char_tokenizer": _TOKENIZER,
    "encode_prompt_completion": _TOKENIZER,
    "LoadedModel": _BUILD, "build_model": _BUILD, "load_checkpoint": _BUILD,
    "save_checkpoint": _BUILD, "vocab_width": _BUILD,
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
    return getattr(import_module(module), name)
