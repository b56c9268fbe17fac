"""The shared training loop: sequences, batches, the schedule, and each method's loss."""

from __future__ import annotations

import itertools

import pytest
import torch

from distillmeter.errors import UserError
from distillmeter.pipelines.config import MethodConfig, TrainingConfig
from distillmeter.pipelines.data import batches, collate, encode_pairs
from distillmeter.pipelines.training import ce_loss, lr_at, mean_token_loss, train


def _seqs(task_data, tokenizer):
    return encode_pairs(tokenizer, [(e.prompt, e.target) for e in task_data.labelled], 32)


def test_sequences_learn_the_target_and_eos_only(task_data, tokenizer):
    ex = task_data.labelled[0]
    seqs = _seqs(task_data, tokenizer)
    ids, p = seqs.ids[0], seqs.prompt_lens[0]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids[1:p]) == ex.prompt
    assert tokenizer.decode(ids[p:-1]) == ex.target
    batch = collate(seqs, [0, 1], tokenizer.pad_token_id)
    learned = batch.targets()[0][batch.loss_mask[0]].tolist()
    assert learned == ids[p:]  # every target token and EOS, nothing of the prompt
    assert batch.n_tokens == len(seqs.ids[0]) + len(seqs.ids[1])


def test_batched_encoding_matches_the_components_encoding(task_data, tokenizer):
    from distillmeter.models import encode_prompt_completion

    pairs = [(e.prompt, e.target) for e in task_data.labelled]
    seqs = encode_pairs(tokenizer, pairs, 32)
    for (p, t), ids, n in zip(pairs, seqs.ids, seqs.prompt_lens, strict=True):
        assert (ids, n) == tuple(encode_prompt_completion(tokenizer, p, t))


def test_sequence_longer_than_the_model_is_a_user_error(task_data, tokenizer):
    with pytest.raises(UserError, match="more than the model's max_len \\(10\\)"):
        encode_pairs(tokenizer, [(task_data.labelled[0].prompt, task_data.labelled[0].target)],
                     10)


def test_batches_are_deterministic_and_cover_every_example(task_data, tokenizer):
    seqs = _seqs(task_data, tokenizer)
    a = [b.index for b in itertools.islice(batches(seqs, 5, 0, seed=3), 8)]
    b = [b.index for b in itertools.islice(batches(seqs, 5, 0, seed=3), 8)]
    c = [b.index for b in itertools.islice(batches(seqs, 5, 0, seed=4), 8)]
    assert a == b and a != c
    first_epoch = sorted(i for idx in a[:4] for i in idx)  # 16 examples: 5+5+5+1
    assert first_epoch == list(range(16))


def test_schedule_warms_up_then_decays_to_the_floor():
    cfg = TrainingConfig(lr=1.0, warmup_frac=0.1, min_lr_ratio=0.1)
    assert lr_at(0.0, cfg) < 0.02
    assert lr_at(0.1, cfg) == pytest.approx(1.0)
    assert lr_at(0.55, cfg) == pytest.approx(0.55)
    assert lr_at(1.0, cfg) == pytest.approx(0.1)
    assert lr_at(0.5, TrainingConfig(lr=0.5, warmup_frac=0, schedule="constant")) == 0.5


def test_loop_stops_at_the_token_budget_and_learns(task_data, tokenizer, tiny_model):
    torch.manual_seed(0)
    seqs = _seqs(task_data, tokenizer)
    model = tiny_model()
    before, _ = mean_token_loss(model, iter([collate(seqs, list(range(16)), 0)]))
    cfg = TrainingConfig(token_budget=3000, batch_size=8, lr=1e-2, warmup_frac=0.0)
    seen = []
    result = train(model, batches(seqs, 8, 0, seed=0), ce_loss, cfg,
                   on_step=lambda tok, n, loss: seen.append((tok, n)))
    after, n = mean_token_loss(model, iter([collate(seqs, list(range(16)), 0)]))
    assert result.tokens >= 3000 and result.tokens - seen[-1][0] < 3000  # stops just past it
    assert result.tokens == sum(t for t, _ in seen) and result.steps == len(seen)
    assert after < before - 0.5, (before, after)
    assert n == sum(seqs.n_loss_positions(i) for i in range(16))
    assert not model.training


def test_same_seed_same_model(task_data, tokenizer, tiny_model):
    seqs = _seqs(task_data, tokenizer)
    cfg = TrainingConfig(token_budget=600, batch_size=8)
    out = []
    for _ in range(2):
        model = tiny_model(seed=1)
        torch.manual_seed(1)
        out.append(train(model, batches(seqs, 8, 0, seed=1), ce_loss, cfg).losses)
    assert out[0] == out[1]


def test_online_kd_loss_trains_toward_the_teacher(task_data, tokenizer, tiny_model):
    from distillmeter.pipelines.training import OnlineKD

    pytest.importorskip("distillmeter.pipelines.losses")
    seqs = _seqs(task_data, tokenizer)
    teacher = tiny_model(seed=7, d_model=32)
    student = tiny_model(seed=1)
    method = MethodConfig(name="kd", data=["labelled"], loss="kd", alpha=0.0,
                          teacher_mode="online")
    loss_fn = OnlineKD(method, teacher)
    batch = collate(seqs, list(range(16)), 0)
    kd0 = loss_fn(student(input_ids=batch.input_ids).logits, batch)[1]["kd"]
    cfg = TrainingConfig(token_budget=2000, batch_size=8, lr=1e-2, warmup_frac=0.0)
    result = train(student, batches(seqs, 8, 0, seed=0), loss_fn, cfg)
    kd1 = loss_fn(student(input_ids=batch.input_ids).logits, batch)[1]["kd"]
    assert kd1 < kd0 and set(result.last_parts) == {"ce", "kd"}
