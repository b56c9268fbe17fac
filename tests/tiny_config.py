"""The tiny config the pipeline and forecast tests run: a whole `distillmeter run` in
seconds (tiny models, a few hundred training tokens)."""

TINY_ARCH = {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "max_len": 32}

# A whole `distillmeter run` in seconds: tiny models, a few hundred training tokens.
TINY_RUN = {
    "task": {"n_labelled": 16, "n_pool": 24, "n_test": 8, "n_teacher": 64},
    "teacher": {"model": {"arch": {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64}},
                "training": {"token_budget": 3000, "batch_size": 16}},
    "student": {"model": {"arch": TINY_ARCH}},
    "training": {"token_budget": 800, "batch_size": 8},
    "logits": {"top_k": 8, "shard_sequences": 16},
    "generation": {"max_new_tokens": 20, "batch_size": 16, "verify": False},
    "eval": {"max_new_tokens": 20, "batch_size": 8},
    "meter": {"idle_seconds": 0.0, "sample_hz": 20.0},
    "seeds": 1,
    "device": "cpu",
    "threads": 1,
}
