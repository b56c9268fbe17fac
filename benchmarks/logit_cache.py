"""The logit cache's size and fidelity against k: bytes per token, and how far the top-k +
tail reconstruction is from the teacher's full distribution.

For k in 8, 16, 64, 256 (capped at the vocabulary size), the real cache writer
(``pipelines.logit_cache.write_cache``) caches the default teacher over the KD method's
training sequences, and for every cached position we compare:

- ``KL(p || q)``, p the teacher's full next-token distribution (float64) and q its
  reconstruction from the cache: the k stored probabilities (as stored, fp16) and the tail
  mass ``1 - sum`` spread evenly over the other V - k tokens;
- the tail mass itself (what the loss's (k+1)-th bucket carries);
- bytes per learned token on disk (shards, headers and offsets included).

    .venv/bin/python benchmarks/logit_cache.py --runs runs     # the teacher of a finished run
    .venv/bin/python benchmarks/logit_cache.py --ks 2 4 8 16

It needs a finished default run (for the trained teacher and its synthetic data): run
`distillmeter run` first, or point --runs at any output directory that holds one.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from distillmeter.errors import UserError


def _find(runs: Path, kind: str) -> Path:
    hits = sorted(runs.glob(f"teacher-*/artifacts/{kind}-*/manifest.json"))
    if not hits:
        raise UserError(f"no {kind} artifact under {runs}/teacher-*/: run `distillmeter run` "
                        "first (or pass --runs)")
    return hits[0].parent


@torch.no_grad()
def fidelity(teacher, seqs, cache, pad_id: int, batch_size: int = 256) -> dict:
    """Mean KL(full || top-k + uniform tail), mean tail mass, over every cached position."""
    from distillmeter.pipelines.data import eval_batches

    kl_sum, tail_sum, n, done = 0.0, 0.0, 0, 0
    for batch in eval_batches(seqs, batch_size, pad_id):
        logits = teacher(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        logp = torch.log_softmax(logits[:, :-1][batch.loss_mask].double(), dim=-1)
        values, indices = cache.gather(list(range(done, done + len(batch.index))))
        done += len(batch.index)
        vocab, k = logp.shape[-1], indices.shape[-1]
        top = values.double().exp()
        tail = (1.0 - top.sum(-1, keepdim=True)).clamp_min(0.0)
        q = (tail / max(vocab - k, 1)).expand(-1, vocab).clone() if k < vocab \
            else torch.zeros_like(logp)
        q.scatter_(-1, indices.long(), top)
        q = q / q.sum(-1, keepdim=True)  # fp16 rounding can leave the sum a hair off 1
        p = logp.exp()
        kl = (p * (logp - q.clamp_min(1e-300).log())).sum(-1)
        kl_sum += float(kl.sum())
        tail_sum += float(tail.sum())
        n += logp.shape[0]
    return {"kl": kl_sum / n, "tail": tail_sum / n, "positions": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=Path("runs"))
    ap.add_argument("--ks", type=int, nargs="+", default=[8, 16, 64, 256])
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16"])
    args = ap.parse_args()
    torch.set_num_threads(2)

    from distillmeter.models import build
    from distillmeter.pipelines import components
    from distillmeter.pipelines.config import RunConfig
    from distillmeter.pipelines.context import training_pairs
    from distillmeter.pipelines.data import encode_pairs
    from distillmeter.pipelines.logit_cache import LogitCache, write_cache
    from distillmeter.pipelines.synthetic import read_synthetic

    components.preload()
    cfg = RunConfig()
    loaded = build.load_checkpoint(_find(args.runs, "teacher"), "cpu")
    teacher, tok = loaded.model, loaded.tokenizer
    data = components.load_task_data(cfg.task)
    synthetic = read_synthetic(_find(args.runs, "synthetic"))
    seqs = encode_pairs(tok, training_pairs(cfg.method("kd"), data, synthetic), loaded.max_len)
    vocab = build.vocab_width(teacher)
    print(f"teacher: {_find(args.runs, 'teacher')}; vocabulary {vocab} tokens; "
          f"{len(seqs)} sequences ({len(data.labelled)} labelled + {len(synthetic)} synthetic)")
    print(f"{'k asked':>8} {'k used':>7} {'bytes/token':>12} {'MiB':>7} {'tail mass':>10} "
          f"{'KL(p||q) nats':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.ks:
            folder = Path(tmp) / f"k{k}"
            m = write_cache(folder, teacher, seqs, key_hash=f"k{k}", top_k=k, vocab_size=vocab,
                            pad_id=tok.pad_token_id, dtype=args.dtype, batch_size=256)
            fid = fidelity(teacher, seqs, LogitCache(folder), tok.pad_token_id)
            info = m.info
            print(f"{k:>8} {info['top_k']:>7} {info['bytes_per_token']:>12.1f} "
                  f"{info['bytes'] / 2**20:>7.2f} {fid['tail']:>10.2e} {fid['kl']:>14.2e}")
    print(f"({fid['positions']} learned positions; k is capped at the vocabulary size, so the "
          "larger k repeat the full-vocabulary cache)")


if __name__ == "__main__":
    main()
