"""One process of a plain transformers ``Trainer`` job with ``DistillMeterCallback``, for
test_trainer_ranks.py: run alone (``python trainer_ddp_worker.py OUT``) or as each rank of
``torchrun --nproc_per_node 2`` (gloo on CPU). A tiny Llama built here, the char tokenizer,
global batches of ``GLOBAL_BATCH`` examples either way (split over the ranks).

Writes ``OUT/rank<k>.json``: this process's CPU seconds (``os.times``, children
included) from just before the callback was made to the end of training, and over
training alone, the tokens the Trainer saw and the data set's, and whether the callback
returned a report. ``OUT/run`` is the run directory. ``STEPS`` (default 144: 12 epochs of
96 examples in global batches of 8, so every run sees the same tokens).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

out = Path(sys.argv[1])
STEPS, GLOBAL_BATCH, N_TRAIN = int(os.environ.get("STEPS", "144")), 8, 96


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# the callback first (so setup.load holds the model and the data), as docs/integrations.md says
from distillmeter.integrations import DistillMeterCallback  # noqa: E402

cpu0 = cpu_s()
meter = DistillMeterCallback(out / "run", method="sft", idle_seconds=0.3, sample_hz=10,
                             print_report=False)

import torch  # noqa: E402
from transformers import (  # noqa: E402
    DataCollatorForLanguageModeling,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from distillmeter.models import TinyModelSpec, build_char_tokenizer, build_llama  # noqa: E402

torch.set_num_threads(1)
world = int(os.environ.get("WORLD_SIZE", "1"))
rank = int(os.environ.get("RANK", "0"))
tok = build_char_tokenizer("0123456789+= ")
model = build_llama(TinyModelSpec(d_model=64, n_layers=2, n_heads=2, d_ff=128, max_len=48),
                    tok, seed=0)
texts = [f"{i}+{i * 7}={i * 8}" + " " * (i % 5) for i in range(N_TRAIN)]
train = [dict(tok(t)) for t in texts]


class Probe(TrainerCallback):
    """This process's CPU time over training (from the first to the last Trainer event)."""

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = cpu_s()

    def on_train_end(self, args, state, control, **kwargs):  # before the meter's own
        self.end = cpu_s()
        self.train_cpu = self.end - self.t0


probe = Probe()
args = TrainingArguments(output_dir=str(out / "hf"), max_steps=STEPS,
                         per_device_train_batch_size=GLOBAL_BATCH // world, save_strategy="no",
                         report_to=[], use_cpu=True, disable_tqdm=True, logging_strategy="no",
                         seed=0, dataloader_num_workers=0)
trainer = Trainer(model=model, args=args, train_dataset=train,
                  data_collator=DataCollatorForLanguageModeling(tok, mlm=False),
                  callbacks=[probe, meter])
trainer.train()
report = meter.report  # accounted at on_train_end (rank 0; None on the others)
(out / f"rank{rank}.json").write_text(json.dumps({
    "rank": rank, "world": world, "pid": os.getpid(),
    "cpu_s": probe.end - cpu0, "train_cpu_s": probe.train_cpu,
    "tokens_seen": int(trainer.state.num_input_tokens_seen),
    "dataset_tokens": sum(sum(ex["attention_mask"]) for ex in train),
    "steps": int(trainer.state.global_step),
    "report": report is not None}))
