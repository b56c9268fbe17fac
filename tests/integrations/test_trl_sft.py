"""DistillMeterCallback with TRL's SFTTrainer, as a new user writes it: the callback made
first, then a tiny Llama and its data prepared, then 40 training steps with two
evaluations. Every stretch of the run is in a stage (setup.load before training, training
and evaluation windows), no window is empty, and almost nothing is unattributed."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl", reason="TRL is in the [trainer] extra")

from distillmeter.energy import EnergyMeter  # noqa: E402
from distillmeter.integrations import DistillMeterCallback  # noqa: E402
from distillmeter.protocol import load_report, read_ledger  # noqa: E402

pytestmark = pytest.mark.slow  # importing TRL and the Trainer takes ~10 s on a shared CPU

STEPS, EVAL_EVERY = 40, 20


@pytest.fixture(scope="module", params=["cached idle", "first run on a host"])
def sft_run(tmp_path_factory, request):
    """The run twice: with an idle baseline an earlier run on the host left in the cache,
    and as the first run on a host (the default 3 s idle measurement, in setup.idle)."""
    tmp = tmp_path_factory.mktemp("sft")
    cache = tmp / "idle.json"
    if request.param == "cached idle":
        with EnergyMeter(tmp / "first", idle_seconds=0.5, idle_cache=cache):
            pass  # an earlier run on this host measured its idle power
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        callback = DistillMeterCallback(tmp / "run", method="sft", idle_cache=cache,
                                        print_report=False)
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        from distillmeter.models import TinyModelSpec, build_char_tokenizer, build_llama

        tok = build_char_tokenizer("0123456789+= ")
        model = build_llama(TinyModelSpec(d_model=32, n_layers=1, n_heads=2, d_ff=64,
                                          max_len=32), tok, seed=0)
        train = Dataset.from_dict({"text": [f"{i}+{i * 7}={i * 8}" for i in range(400)]})
        evald = Dataset.from_dict({"text": [f"{i}+{i * 3}={i * 4}" for i in range(500, 532)]})
        args = SFTConfig(output_dir=str(tmp / "hf"), max_steps=STEPS,
                         per_device_train_batch_size=8, per_device_eval_batch_size=8,
                         eval_strategy="steps", eval_steps=EVAL_EVERY, save_strategy="no",
                         report_to=[], use_cpu=True, disable_tqdm=True,
                         logging_strategy="no", seed=0, max_length=32,
                         dataloader_num_workers=0)
        trainer = SFTTrainer(model=model, args=args, train_dataset=train,
                             eval_dataset=evald, processing_class=tok, callbacks=[callback])
        trainer.train()
    finally:
        torch.set_num_threads(threads)
    return tmp / "run", trainer, request.param


def test_every_stretch_is_a_stage_and_none_is_empty(sft_run):
    run_dir, trainer, kind = sft_run
    report = load_report(run_dir)
    fresh = kind == "first run on a host"
    assert [s.name for s in report.stages] == ["setup.idle"] * fresh + [
        "setup.load", "student.train", "eval.student", "student.train", "eval.student"]
    for s in report.stages:
        assert s.seconds > 0 and s.energy_j["total"] > 0, s.name
        if s.side != "setup":
            assert s.tokens > 0, s.name  # no empty window
    train = [s for s in report.stages if s.name == "student.train"]
    assert sum(s.tokens for s in train) == trainer.state.num_input_tokens_seen
    idle = read_ledger(run_dir / "ledger.jsonl").of("idle_baseline")
    if fresh:  # measured now, 3 s of doing nothing: its own stage, not unattributed
        assert not any(ev.cached for ev in idle) and report.stages[0].seconds > 2.5
    else:  # from the cache: the run waited for none
        assert all(ev.cached for ev in idle)
    # what no stage holds: the boundary readings between windows, a few milliseconds each
    assert report.totals.unattributed_j <= 0.10 * report.totals.energy_j, report.totals


def test_labels_learnt_when_training_began(sft_run):
    run_dir, trainer, _ = sft_run
    report = load_report(run_dir)
    assert report.method == "sft" and report.seed == 0
    start = read_ledger(run_dir / "ledger.jsonl").run_start
    assert start.labels["student_params"] == sum(p.numel() for p in trainer.model.parameters())
    assert start.labels["tokens_counted"] == "non_padding"
    assert f"max_steps: {STEPS}" in (run_dir / "config.yaml").read_text()
