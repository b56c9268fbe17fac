"""The shared training loop on a tiny real model, alone or as one rank of a torchrun job
(gloo on this CPU), for test_distributed.py.

    torchrun --nproc_per_node 2 ddp_worker.py OUT_DIR    # DDP, then FSDP, in one job
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from distillmeter.pipelines.config import ArchConfig, DistributedConfig, ModelConfig, TrainingConfig
from distillmeter.pipelines.data import batches, encode_pairs
from distillmeter.pipelines.scale.distributed import Distributed
from distillmeter.pipelines.training import ce_loss, train

ARCH = {"d_model": 16, "n_layers": 2, "n_heads": 2, "d_ff": 32, "max_len": 32}
# 5 sequences a micro-batch over 2 ranks: uneven shards (3 + 2), and each epoch of 16
# sequences ends with a batch of 1, which leaves one rank without rows (weight 0)
TRAINING = TrainingConfig(lr=3e-3, warmup_frac=0.0, batch_size=5, grad_accum=2,
                          token_budget=900)


def setup(seed: int = 0):
    """The tiny task, tokenizer, model and the global batch stream (the same everywhere)."""
    from distillmeter.models import build_char_tokenizer
    from distillmeter.models.build import build_model
    from distillmeter.tasks import load_task

    data = load_task("arithmetic", seed=0, n_labelled=16, n_pool=0, n_test=4, n_teacher=0)
    tok = build_char_tokenizer(data.task.alphabet)
    model = build_model(ModelConfig(arch=ArchConfig(**ARCH)), tok, seed=seed,
                        device="cpu").model
    seqs = encode_pairs(tok, [(e.prompt, e.target) for e in data.labelled], ARCH["max_len"])
    return model, batches(seqs, TRAINING.batch_size, tok.pad_token_id, seed=seed)


def run(dist: Distributed):
    torch.manual_seed(0)
    model, data = setup()
    return train(model, data, ce_loss, TRAINING, device="cpu", dist=dist)


if __name__ == "__main__":
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    for strategy in ("ddp", "fsdp"):
        dist = Distributed.init(DistributedConfig(strategy=strategy), "cpu")
        res = run(dist)
        if dist.is_main:
            torch.save(res.model.state_dict(), out / f"{strategy}.pt")
        (out / f"{strategy}.rank{dist.rank}.json").write_text(json.dumps({
            "losses": res.losses, "tokens": res.tokens, "steps": res.steps,
            "rank_tokens": res.rank_tokens, "rank_samples": res.rank_samples,
            "model_is_none": res.model is None}))
    dist.close()
