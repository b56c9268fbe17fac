"""DistillMeterCallback with TRL's GKDTrainer (on-policy distillation) on tiny local models:
the teacher's forward passes and the student's on-policy generations are metered in
windows of their own (teacher.score, student.generate) beside student.train, from the
actual calls, with what they read and wrote counted; evaluation's teacher passes stay in
eval.student; the models get their own methods back after training."""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("trl", reason="TRL is in the [trainer] extra")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import real_pair  # noqa: E402
from distillmeter.integrations import DistillMeterCallback  # noqa: E402
from distillmeter.protocol import load_report  # noqa: E402

pytestmark = pytest.mark.slow  # importing TRL and the Trainer takes ~10 s on a shared CPU

STEPS, BATCH, NEW = 6, 4, 6


def _gkd(tmp, callback, *, lmbda=1.0, eval_steps=None):
    from datasets import Dataset

    try:
        from trl.experimental.gkd import GKDConfig, GKDTrainer
    except ImportError:  # TRL before the experimental namespace
        from trl import GKDConfig, GKDTrainer

    from distillmeter.models import TinyModelSpec, build_llama

    tok = real_pair.tokenizer()
    student = build_llama(TinyModelSpec(d_model=32, n_layers=1, n_heads=2, d_ff=64,
                                        max_len=64), tok, seed=0)
    teacher = build_llama(TinyModelSpec(d_model=64, n_layers=2, n_heads=2, d_ff=128,
                                        max_len=64), tok, seed=1)
    # what the teacher really reads, seen from inside its forward (the callback wraps
    # whatever forward the model has, so it wraps this one)
    read = []
    own_forward = teacher.forward

    def spy(*args, **kwargs):
        # (in a training step?, tokens read): the student is in eval mode in evaluations
        read.append((student.training, int(kwargs["attention_mask"].sum())))
        return own_forward(*args, **kwargs)

    teacher.forward = spy

    def rows(offset: int, n: int):
        return Dataset.from_list([{"messages": [
            {"role": "user", "content": f"{i}+{i * 7}="},
            {"role": "assistant", "content": f"{i * 8}"}]} for i in range(offset, offset + n)])

    args = GKDConfig(output_dir=str(tmp / "hf"), max_steps=STEPS,
                     per_device_train_batch_size=BATCH, per_device_eval_batch_size=BATCH,
                     eval_strategy="steps" if eval_steps else "no", eval_steps=eval_steps,
                     report_to=[], use_cpu=True, disable_tqdm=True, logging_strategy="no",
                     save_strategy="no", seed=0, lmbda=lmbda, max_new_tokens=NEW,
                     max_length=64, dataloader_num_workers=0)
    trainer = GKDTrainer(model=student, teacher_model=teacher, args=args,
                         train_dataset=rows(0, 64), eval_dataset=rows(500, 8) if eval_steps
                         else None, processing_class=tok, callbacks=[callback])
    # the methods the models hold once the trainer is built (accelerate may wrap forward)
    before = {(who, attr): vars(m).get(attr) for who, m in (("t", teacher), ("s", student))
              for attr in ("forward", "generate")}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer.train()
    finally:
        torch.set_num_threads(threads)
    return trainer, teacher, student, read, before


@pytest.fixture(scope="module")
def gkd_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gkd")
    cb = DistillMeterCallback(tmp / "run", method="gkd", idle_seconds=0, print_report=False)
    trainer, teacher, student, read, spy = _gkd(tmp, cb, eval_steps=3)
    return tmp / "run", trainer, teacher, student, read, spy


def test_teacher_forward_and_generation_are_windows_of_their_own(gkd_run):
    run_dir, trainer, teacher, student, read, _ = gkd_run
    report = load_report(run_dir)
    names = [s.name for s in report.stages]
    assert names.count("eval.student") == 2  # evaluations after steps 3 and 6
    train = []  # the training windows, those that an evaluation cut in two joined again
    assert names[0] == "setup.load"  # the callback was made before the models
    for n in names[1:]:
        if n != "eval.student" and not (train and n == train[-1] == "student.train"):
            train.append(n)
    # every step, in the order GKD calls them: generate, (student forward), teacher forward
    assert train[0] == "student.train" and train[-1] == "student.train"
    step = ["student.generate", "student.train", "teacher.score", "student.train"]
    assert train[1:] == step * STEPS
    for s in report.stages:
        if s.name in ("teacher.score", "student.generate"):
            assert s.energy_j["total"] > 0 and s.tokens > 0 and s.samples == BATCH, s.name
            assert s.info["calls"] == 1 and s.info["metered"].startswith("per call")
    score = [s for s in report.stages if s.name == "teacher.score"]
    assert score[0].info["params"] == sum(p.numel() for p in teacher.parameters())
    assert score[0].side == "teacher" and report.totals.by_side["teacher"] > 0
    # the tokens the teacher really read in training; its evaluation reads stay in eval
    in_training = [t for training, t in read if training]
    assert [s.tokens for s in score] == in_training
    assert len(read) > len(score)  # evaluation ran the teacher too, inside eval.student
    gen = [s for s in report.stages if s.name == "student.generate"]
    # prompt tokens + at most NEW generated tokens a row
    assert all(s.tokens <= 64 * BATCH for s in gen)
    assert all(s.info["params"] == sum(p.numel() for p in student.parameters()) for s in gen)
    # energy conserved: every window counted once
    stages = sum(s.energy_j["total"] for s in report.stages)
    assert stages + report.totals.unattributed_j == pytest.approx(report.totals.energy_j,
                                                                  abs=1e-6)


def test_the_models_get_their_own_methods_back(gkd_run):
    _, trainer, teacher, student, _, before = gkd_run
    after = {(who, attr): vars(m).get(attr) for who, m in (("t", teacher), ("s", student))
             for attr in ("forward", "generate")}
    # what the callback wrapped (accelerate itself rewraps the student's forward in train())
    for key in (("t", "forward"), ("t", "generate"), ("s", "generate")):
        assert after[key] is before[key] or after[key] == before[key], key
    assert before[("t", "forward")] is not None  # accelerate's wrapper, kept as it was
    assert before[("t", "generate")] is None and before[("s", "generate")] is None


def test_phases_off_keeps_everything_in_training(tmp_path):
    cb = DistillMeterCallback(tmp_path / "run", idle_seconds=0, print_report=False,
                              phases=False)
    _gkd(tmp_path, cb, lmbda=1.0)
    report = load_report(tmp_path / "run")
    assert {s.name for s in report.stages} == {"setup.load", "student.train"}
