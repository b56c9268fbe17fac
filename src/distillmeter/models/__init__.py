"""distillmeter.models: tokenizers and causal LMs (built-in tiny Llamas; local HF checkpoints).

    tok = build_char_tokenizer(task.alphabet)
    teacher = build_llama(DEFAULT_TEACHER_SPEC, tok, seed=0)        # LlamaForCausalLM
    model, tok = load_causal_lm("Qwen/Qwen2.5-0.5B", dtype="bf16")  # local cache only
    vocab = check_tokenizers_compatible(t_tok, s_tok, t_vocab, s_vocab)
"""

from distillmeter.models.loading import check_tokenizers_compatible, count_params, load_causal_lm
from distillmeter.models.tiny import (
    DEFAULT_GENERATION,
    DEFAULT_STUDENT_SPEC,
    DEFAULT_STUDENT_TRAINING,
    DEFAULT_TEACHER_SPEC,
    DEFAULT_TEACHER_TRAINING,
    TinyModelSpec,
    build_llama,
    llama_config,
)
from distillmeter.models.tokenizer import (
    SPECIAL_TOKENS,
    build_char_tokenizer,
    encode_prompt_completion,
)

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
]
