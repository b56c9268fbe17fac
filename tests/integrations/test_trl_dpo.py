"""DistillMeterCallback with TRL's DPOTrainer on a tiny local model: the reference pass TRL
precomputes (``precompute_ref_log_probs=True``, run inside ``DPOTrainer.__init__``) is
metered in ``student.reference`` windows of its own, one per dataset, with the tokens the
reference really read; training has its own ``student.train``; energy is conserved; the
trainer gets its own methods back."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl", reason="TRL is in the [trainer] extra")

import real_pair  # noqa: E402
from distillmeter.integrations import DistillMeterCallback  # noqa: E402
from distillmeter.protocol import load_report  # noqa: E402

pytestmark = pytest.mark.slow  # importing TRL and the Trainer takes ~10 s on a shared CPU

STEPS, BATCH, PAIRS, EVAL_PAIRS = 4, 4, 16, 6


def _pairs(offset: int, n: int):
    from datasets import Dataset

    # answers of several lengths (the rejected one often longer), distinct per call so
    # that no pass can reuse TRL's cache of another
    return Dataset.from_list([{"prompt": f"{i}+{i * 3}=", "chosen": f"{4 * i}",
                               "rejected": f"{4 * i + 1 + i % 3}" * (1 + i % 3)}
                              for i in range(offset, offset + n)])


def _dpo(tmp, callback, *, precompute=True, seed=0):
    from trl import DPOConfig, DPOTrainer

    from distillmeter.models import TinyModelSpec, build_llama

    tok = real_pair.tokenizer()
    spec = TinyModelSpec(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=64)
    policy = build_llama(spec, tok, seed=seed)
    reads = []  # (rows, tokens) of every batch TRL's reference pass ran
    args = DPOConfig(output_dir=str(tmp / "hf"), max_steps=STEPS,
                     per_device_train_batch_size=BATCH, per_device_eval_batch_size=BATCH,
                     precompute_ref_log_probs=precompute, precompute_ref_batch_size=BATCH,
                     eval_strategy="steps", eval_steps=2, report_to=[], use_cpu=True,
                     disable_tqdm=True, logging_strategy="no", save_strategy="no",
                     seed=seed, max_length=64, dataloader_num_workers=0, beta=0.1)
    own, in_init = policy.model.forward, [True]

    def spy(*a, **kw):  # what the backbone reads; in __init__ only the reference pass runs it
        if in_init[0]:
            mask = kw["attention_mask"]
            reads.append((torch.is_grad_enabled(), int(mask.shape[0]), int(mask.sum())))
        return own(*a, **kw)

    policy.model.forward = spy
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # without precomputing, TRL needs a reference model it can run in every step
        ref = None if precompute else build_llama(spec, tok, seed=seed)
        trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=_pairs(0, PAIRS),
                             eval_dataset=_pairs(100 + seed * 1000, EVAL_PAIRS),
                             processing_class=tok, callbacks=[callback])
        in_init[0] = False
        trainer.train()
    finally:
        torch.set_num_threads(threads)
    return trainer, reads


@pytest.fixture(scope="module")
def dpo_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dpo")
    cb = DistillMeterCallback(tmp / "run", method="dpo", idle_seconds=0, print_report=False)
    trainer, _ = _dpo(tmp, cb)
    return tmp / "run", trainer


def test_the_reference_pass_has_windows_of_its_own(dpo_run):
    run_dir, trainer = dpo_run
    report = load_report(run_dir)
    names = [s.name for s in report.stages]
    # the callback was made first; TRL ran the reference over train, then eval, in
    # __init__, and setup.load resumed after each pass
    assert names[:6] == ["setup.load", "student.reference", "setup.load",
                         "student.reference", "setup.load", "student.train"]
    assert "student.reference" not in names[6:]
    assert names.count("eval.student") == 2
    ref = [s for s in report.stages if s.name == "student.reference"]
    assert [s.info["dataset"] for s in ref] == ["train", "eval"]
    # rows: a chosen and a rejected sequence per pair; tokens: the attention mask's sum
    train_ds, eval_ds = trainer.train_dataset, trainer.eval_dataset
    assert [s.samples for s in ref] == [2 * PAIRS, 2 * EVAL_PAIRS]

    def tokens(ds):
        return sum(len(p) * 2 + len(c) + len(r) for p, c, r in
                   zip(ds["prompt_ids"], ds["chosen_ids"], ds["rejected_ids"], strict=True))

    assert [s.tokens for s in ref] == [tokens(train_ds), tokens(eval_ds)]
    for s in ref:
        assert s.side == "student" and s.energy_j["total"] > 0 and s.status == "ok"
        assert s.info["metered"].startswith("per call") and s.info["passes"] == 1
        assert s.info["params"] == sum(p.numel() for p in trainer.model.parameters())
    train = [s for s in report.stages if s.name == "student.train"]
    assert sum(s.energy_j["total"] for s in train) > 0 and sum(s.tokens for s in train) > 0
    stages = sum(s.energy_j["total"] for s in report.stages)
    assert stages + report.totals.unattributed_j == pytest.approx(report.totals.energy_j,
                                                                  abs=1e-6)
    # the precomputed columns really are there, so training never ran the reference
    assert "ref_chosen_logps" in train_ds.column_names


def test_the_trainer_gets_its_own_methods_back(dpo_run):
    _, trainer = dpo_run
    assert "_precompute_ref_logps" not in vars(trainer)
    assert "compute_ref_log_probs" not in vars(trainer)


def test_tokens_are_those_the_reference_read(tmp_path):
    """Counted from the batches, checked against the model's own view of them; and
    without precomputing, the reference runs in the training steps: no window of its own."""
    cb = DistillMeterCallback(tmp_path / "run", idle_seconds=0, print_report=False)
    _, reads = _dpo(tmp_path, cb, seed=1)
    ref = [s for s in load_report(tmp_path / "run").stages if s.name == "student.reference"]
    assert reads and not any(grad for grad, _, _ in reads)
    assert sum(t for _, _, t in reads) == sum(s.tokens for s in ref)
    assert sum(r for _, r, _ in reads) == sum(s.samples for s in ref) == 2 * (PAIRS + EVAL_PAIRS)

    cb = DistillMeterCallback(tmp_path / "inline", idle_seconds=0, print_report=False)
    _dpo(tmp_path / "x", cb, precompute=False, seed=2)
    names = {s.name for s in load_report(tmp_path / "inline").stages}
    assert names == {"setup.load", "student.train", "eval.student"}


def test_phases_off_leaves_the_reference_pass_in_setup(tmp_path):
    cb = DistillMeterCallback(tmp_path / "run", idle_seconds=0, print_report=False,
                              phases=False)
    _dpo(tmp_path, cb, seed=3)
    names = [s.name for s in load_report(tmp_path / "run").stages]
    assert "student.reference" not in names and names[0] == "setup.load"


def test_a_meter_started_at_the_first_event_starts_for_the_reference_pass(tmp_path):
    """``setup_stage=None``: no meter until a Trainer event needs one; the reference pass in
    ``__init__`` is the first work, so it starts the meter and comes first."""
    cb = DistillMeterCallback(tmp_path / "run", setup_stage=None, idle_seconds=0,
                              print_report=False)
    _dpo(tmp_path, cb, seed=4)
    names = [s.name for s in load_report(tmp_path / "run").stages]
    assert names[:3] == ["student.reference", "student.reference", "student.train"]
