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

# The one label-trained method: a campaign whose students name no teacher work.
BASELINE_ONLY = [{"name": "baseline", "data": ["labelled"], "loss": "ce"}]


def write_tiny(path, **sections):
    """TINY_RUN with top-level ``sections`` replaced, written as YAML to ``path``;
    returns the config as plain data."""
    import copy

    import yaml

    data = {**copy.deepcopy(TINY_RUN), **sections}
    path.write_text(yaml.safe_dump(data))
    return data
