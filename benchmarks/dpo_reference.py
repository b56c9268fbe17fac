"""Where DPO's frozen reference should run: once, in its own pass before training, or inside
every training step?

The default-sized student (``models.DEFAULT_STUDENT_SPEC``, the char tokenizer of the
built-in arithmetic task), ``--pairs`` preference pairs of real task prompts (chosen: the
task's worked answer; rejected: the same with a wrong final digit and a step dropped, so
lengths differ), trained by ``pipelines.preference_parts.DPOLoss`` through the shared loop
(``training.train``) for ``--epochs`` passes over the pairs at ``--pairs-per-batch``:

- precompute: ``reference_logps`` in a ``student.reference`` window, then ``student.train``
  with the stored log-probs;
- inline: ``student.train`` with the reference run under no-grad in every step.

Each option runs ``--repeats`` times, alternating, each in its own EnergyMeter run
(accounted: stage energy from the counters, RAPL, or the labelled CPU estimate); the
medians are printed with the load average, as a JSON line and a table.

    .venv/bin/python benchmarks/dpo_reference.py [--pairs 512] [--epochs 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from distillmeter.accounting import account
from distillmeter.energy import EnergyMeter
from distillmeter.models import DEFAULT_STUDENT_SPEC, build_char_tokenizer, build_llama
from distillmeter.pipelines.config import TrainingConfig
from distillmeter.pipelines.data import Sequences
from distillmeter.pipelines.preference_parts import (
    DPOLoss,
    answer_sequences,
    pair_batches,
    reference_logps,
)
from distillmeter.pipelines.training import train
from distillmeter.tasks import load_task


def pairs(n: int, tokenizer) -> Sequences:
    data = load_task("arithmetic", seed=0, n_labelled=8, n_pool=n, n_test=8, n_teacher=8)
    task, eos = data.task, tokenizer.eos_token_id
    prompts, answers = [], []
    for p in data.pool:
        right = task.solve(p)
        wrong = right[1:-1] + str((int(right[-1]) + 1) % 10)
        for text in (right, wrong):
            prompts.append(p)
            answers.append(list(tokenizer(text, add_special_tokens=False)["input_ids"]) + [eos])
    return answer_sequences(tokenizer, prompts, answers)


def one(option: str, seqs: Sequences, tokenizer, args, out: Path) -> dict:
    pad = tokenizer.pad_token_id
    tokens = sum(len(s) for s in seqs.ids)
    cfg = TrainingConfig(lr=1e-3, warmup_frac=0.0, batch_size=2 * args.pairs_per_batch,
                         token_budget=int(args.epochs * tokens))
    student = build_llama(DEFAULT_STUDENT_SPEC, tokenizer, seed=0)
    reference = build_llama(DEFAULT_STUDENT_SPEC, tokenizer, seed=0)  # the starting student
    run = out / f"{option}-{time.monotonic_ns()}"
    t0 = time.perf_counter()
    with EnergyMeter(run, idle_seconds=0, method=option) as meter:
        if option == "precompute":
            with meter.stage("student.reference") as st:
                ref = reference_logps(reference, seqs, pad, batch_size=2 * args.pairs_per_batch)
                st.add(tokens=tokens, samples=len(seqs))
            loss = DPOLoss(beta=0.1, ref_logps=ref)
        else:
            loss = DPOLoss(beta=0.1, reference=reference)
        with meter.stage("student.train") as st:
            result = train(student, pair_batches(seqs, args.pairs_per_batch, pad, seed=0),
                           loss, cfg)
            st.add(tokens=result.tokens, samples=result.samples)
    wall = time.perf_counter() - t0
    report = account(run)
    by = {s.name: s for s in report.stages}
    ref_st = by.get("student.reference")
    return {"option": option, "steps": result.steps, "wall_s": wall,
            "reference_s": ref_st.seconds if ref_st else 0.0,
            "reference_j": ref_st.energy_j["total"] if ref_st else 0.0,
            "train_s": by["student.train"].seconds,
            "train_j": by["student.train"].energy_j["total"],
            "source": sorted({v for s in report.stages for v in s.source.values()}),
            "final_loss": result.final_loss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=512)
    ap.add_argument("--pairs-per-batch", type=int, default=32)
    ap.add_argument("--epochs", type=float, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer = build_char_tokenizer(load_task("arithmetic", seed=0, n_labelled=1, n_pool=1,
                                               n_test=1, n_teacher=1).task.alphabet)
    seqs = pairs(args.pairs, tokenizer)
    rows: dict[str, list[dict]] = {"precompute": [], "inline": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for option in rows:
                rows[option].append(one(option, seqs, tokenizer, args, Path(tmp)))
    med = {o: {k: statistics.median(r[k] for r in rs) for k in
               ("wall_s", "reference_s", "reference_j", "train_s", "train_j")}
           for o, rs in rows.items()}
    info = {"pairs": args.pairs, "pairs_per_batch": args.pairs_per_batch,
            "epochs": args.epochs, "repeats": args.repeats, "threads": args.threads,
            "steps": rows["inline"][0]["steps"], "load_avg": os.getloadavg(),
            "source": rows["inline"][0]["source"], "median": med}
    print(json.dumps(info))
    print(f"{'option':<11}{'ref s':>8}{'ref J':>8}{'train s':>9}{'train J':>9}{'total J':>9}")
    for o, m in med.items():
        print(f"{o:<11}{m['reference_s']:>8.2f}{m['reference_j']:>8.1f}{m['train_s']:>9.2f}"
              f"{m['train_j']:>9.1f}{m['reference_j'] + m['train_j']:>9.1f}")


if __name__ == "__main__":
    main()
