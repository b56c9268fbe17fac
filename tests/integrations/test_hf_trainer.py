"""DistillMeterCallback inside a real transformers Trainer: a tiny Llama from
distillmeter.models, the char tokenizer, a few CPU steps, real ledger/trace/report files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("accelerate", reason="transformers' Trainer needs accelerate "
                    "(pip install 'distillmeter[trainer]')")

from transformers import (  # noqa: E402
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
)

from distillmeter.integrations.hf_trainer import DistillMeterCallback, dataset_tokens  # noqa: E402
from distillmeter.models import TinyModelSpec, build_char_tokenizer, build_llama  # noqa: E402
from distillmeter.protocol import load_report, read_ledger  # noqa: E402

pytestmark = pytest.mark.slow  # importing the Trainer alone takes ~10 s on a shared CPU

SPEC = TinyModelSpec(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=48)
N_TRAIN, BATCH, STEPS = 24, 4, 6  # exactly one epoch: every training example seen once


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs with one torch thread (tests/conftest.py)."""


def _data(tok, n: int, offset: int = 0) -> list[dict]:
    # different lengths, so batches carry padding that must not be counted
    texts = [f"{i}+{i * 7}={i * 8}" + " " * (i % 5) for i in range(offset, offset + n)]
    return [dict(tok(t)) for t in texts]


def _trainer(tmp_path: Path, callback, *, collator=None, **arg_overrides) -> Trainer:
    tok = build_char_tokenizer("0123456789+= ")
    model = build_llama(SPEC, tok, seed=0)
    args = dict(output_dir=str(tmp_path / "hf"), max_steps=STEPS,
                per_device_train_batch_size=BATCH, per_device_eval_batch_size=4,
                eval_strategy="steps", eval_steps=3, save_strategy="no", report_to=[],
                use_cpu=True, disable_tqdm=True, logging_strategy="no", seed=0,
                dataloader_num_workers=0)
    args.update(arg_overrides)
    return Trainer(model=model, args=TrainingArguments(**args),
                   train_dataset=_data(tok, N_TRAIN), eval_dataset=_data(tok, 6, offset=100),
                   data_collator=collator or DataCollatorForLanguageModeling(tok, mlm=False),
                   callbacks=[callback])


def _tokens(rows: list[dict]) -> int:
    return sum(sum(r["attention_mask"]) for r in rows)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trainer")
    cb = DistillMeterCallback(tmp / "run", method="sft", idle_seconds=0, print_report=False)
    trainer = _trainer(tmp, cb)
    trainer.train()
    return tmp / "run", trainer, cb


def test_report_has_stage_windows_tokens_and_energy(trained):
    run_dir, trainer, cb = trained
    report = load_report(run_dir)  # validates against the protocol's schema
    assert cb.report is not None and cb.report.run_id == report.run_id
    assert report.method == "sft" and report.seed == 0
    names = [s.name for s in report.stages]
    # the callback was made before the model: setup.load until training begins; the
    # evaluations at steps 3 and 6 split training into windows, and none follows the last
    # one (nothing is left to do: no step, no checkpoint), so no window is left empty
    assert names == ["setup.load", "student.train", "eval.student", "student.train",
                     "eval.student"]
    train = [s for s in report.stages if s.name == "student.train"]
    # one epoch exactly: the training tokens are every example's non-padding tokens
    assert sum(s.tokens for s in train) == _tokens(trainer.train_dataset)
    assert sum(s.tokens for s in train) == trainer.state.num_input_tokens_seen
    assert sum(s.samples for s in train) == N_TRAIN
    assert all(s.status == "ok" for s in report.stages)
    assert sum(s.energy_j["total"] for s in train) > 0
    evals = [s for s in report.stages if s.name == "eval.student"]
    assert [s.tokens for s in evals] == [_tokens(trainer.eval_dataset)] * 2
    assert [s.samples for s in evals] == [6, 6]
    assert all(s.energy_j["total"] > 0 for s in evals)


def test_quality_labels_and_config(trained):
    run_dir, trainer, _ = trained
    report = load_report(run_dir)
    assert report.quality is not None
    assert report.quality.metric == "eval_loss" and report.quality.n == 6
    assert report.quality.details["global_step"] == STEPS
    start = read_ledger(run_dir / "ledger.jsonl").run_start
    n_params = sum(p.numel() for p in trainer.model.parameters())
    assert start.labels["student_params"] == n_params
    assert start.labels["tokens_counted"] == "non_padding"
    assert "max_steps: 6" in (run_dir / "config.yaml").read_text()


def test_a_callback_made_after_the_model_says_its_loading_is_not_counted(tmp_path, capfd):
    tok = build_char_tokenizer("0123456789+= ")
    model = build_llama(SPEC, tok, seed=0)  # loaded first
    cb = DistillMeterCallback(tmp_path / "run", idle_seconds=0, print_report=False)
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), max_steps=2,
                             per_device_train_batch_size=BATCH, save_strategy="no",
                             report_to=[], use_cpu=True, disable_tqdm=True,
                             logging_strategy="no", dataloader_num_workers=0)
    Trainer(model=model, args=args, train_dataset=_data(tok, N_TRAIN),
            data_collator=DataCollatorForLanguageModeling(tok, mlm=False),
            callbacks=[cb]).train()
    said = "the model this Trainer trains was loaded before the callback was made"
    assert said in capfd.readouterr().err
    assert any(said in w for w in load_report(tmp_path / "run").warnings)


def test_a_callback_made_first_says_nothing_of_the_kind(trained, tmp_path):
    # other models alive in this process (the fixture's) are not the one trained here
    cb = DistillMeterCallback(tmp_path / "run", idle_seconds=0, print_report=False)
    _trainer(tmp_path, cb, eval_strategy="no", max_steps=2).train()
    for run_dir in (trained[0], tmp_path / "run"):
        assert not any("loaded before the callback" in w
                       for w in load_report(run_dir).warnings)


class _FailingCollator(DataCollatorForLanguageModeling):
    """Raises on the 4th batch: a crash in the middle of training."""

    calls = 0

    def __call__(self, features, *args, **kwargs):
        type(self).calls += 1
        if type(self).calls == 4:
            raise RuntimeError("collator exploded")
        return super().__call__(features, *args, **kwargs)


def test_crash_in_training_is_recorded_as_failed(tmp_path):
    tok = build_char_tokenizer("0123456789+= ")
    cb = DistillMeterCallback(tmp_path / "run", idle_seconds=0, print_report=False)
    trainer = _trainer(tmp_path, cb, collator=_FailingCollator(tok, mlm=False),
                       eval_strategy="no")
    with pytest.raises(RuntimeError, match="collator exploded"), cb:
        trainer.train()
    report = load_report(tmp_path / "run")
    assert [s.name for s in report.stages] == ["setup.load", "student.train"]
    assert report.stages[1].status == "failed"
    assert report.status == "failed"
    assert report.stages[1].tokens > 0  # the steps that did run were counted


def test_evaluate_after_training_when_kept_open(tmp_path):
    cb = DistillMeterCallback(tmp_path / "run", idle_seconds=0, print_report=False,
                              finish_at_train_end=False, quality_metric="eval_loss")
    trainer = _trainer(tmp_path, cb, eval_strategy="no", max_steps=2)
    trainer.train()
    assert not (tmp_path / "run" / "report.json").exists()
    metrics = trainer.evaluate()
    report = cb.finish()
    assert report is not None and (tmp_path / "run" / "report.json").exists()
    assert [s.name for s in report.stages] == ["setup.load", "student.train", "eval.student"]
    assert report.quality.value == pytest.approx(metrics["eval_loss"])
    with pytest.warns(UserWarning, match="already finished"):
        trainer.evaluate()  # after finish: not metered, and said so
    assert len(load_report(tmp_path / "run").stages) == 3


def test_dataset_tokens_reads_masks_ids_and_refuses_the_rest():
    assert dataset_tokens([{"input_ids": [1, 2, 3], "attention_mask": [1, 1, 0]},
                           {"input_ids": torch.tensor([4, 5])}]) == 4
    assert dataset_tokens([{"text": "no ids"}]) is None
    assert dataset_tokens(iter([{"input_ids": [1]}])) is None  # not read twice
    assert dataset_tokens(None) is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="either run_dir or meter"):
        DistillMeterCallback()
    with pytest.raises(ValueError):
        DistillMeterCallback("x", train_stage="training")  # not <side>.<what>


def test_report_json_is_plain_json(trained):
    run_dir, _, _ = trained
    data = json.loads((run_dir / "report.json").read_text())
    assert data["schema"] == "distillmeter.report/1"


def test_your_own_meter_gets_stages_and_stays_yours(tmp_path):
    from distillmeter.accounting import account
    from distillmeter.energy import EnergyMeter

    with EnergyMeter(tmp_path / "run", idle_seconds=0, method="mine") as meter:
        with meter.stage("setup.load"):
            cb = DistillMeterCallback(meter=meter)
            trainer = _trainer(tmp_path, cb, eval_strategy="no", max_steps=2)
        trainer.train()
        assert cb.report is None and not (tmp_path / "run" / "report.json").exists()
        meter.record_quality("mine", 1.0, n=1)  # still running: the callback left it open
    report = account(tmp_path / "run")
    assert [s.name for s in report.stages] == ["setup.load", "student.train"]
    assert report.method == "mine" and report.stages[1].tokens > 0
    with pytest.raises(ValueError, match="label it when you make it"):
        DistillMeterCallback(meter=meter, method="x")
