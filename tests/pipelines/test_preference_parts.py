"""Preference distillation's parts on the built-in task and real tiny Llamas: sampling k
candidates, the teacher's judging (likelihood, verifier-first), pairs with ties dropped and
counted, the reference's log-probs, and DPO steps through the shared training loop with the
reference precomputed or run inside each step."""

from __future__ import annotations

import math

import pytest
import torch

from distillmeter.errors import UserError
from distillmeter.pipelines.config import TrainingConfig
from distillmeter.pipelines.preference_parts import (
    Candidate,
    DPOLoss,
    Score,
    build_pairs,
    generate_candidates,
    judge,
    pair_batches,
    pair_sequences,
    reference_logps,
)
from distillmeter.pipelines.training import train

K = 4


@pytest.fixture
def sampled(task_data, tokenizer, tiny_model):
    student = tiny_model(seed=1)
    prompts = list(task_data.pool[:6])
    cands = generate_candidates(student, tokenizer, prompts, k=K, temperature=1.0,
                                max_new_tokens=12, seed=3, batch_size=8)
    return student, prompts, cands


def _mean_logp(model, tokenizer, prompt: str, ids) -> float:
    """The teacher's mean log-prob of ``ids`` after ``prompt``, one unpadded row, by hand."""
    head = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    seq = torch.tensor([list(head) + list(ids)])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=seq).logits[0].double(), -1)
    return sum(float(logp[len(head) + j - 1, t]) for j, t in enumerate(ids)) / len(ids)


def test_k_candidates_per_prompt_sampled_reproducibly(sampled, tokenizer, tiny_model):
    student, prompts, cands = sampled
    assert [len(c) for c in cands] == [K] * len(prompts)
    eos = tokenizer.eos_token_id
    for p, row in zip(prompts, cands, strict=True):
        for c in row:
            assert c.prompt == p and 1 <= len(c.ids) <= 12
            assert c.finished == (c.ids[-1] == eos)
            body = c.ids[:-1] if c.finished else c.ids
            assert c.completion == tokenizer.decode(list(body), skip_special_tokens=True)
    # an untrained student at T=1 gives different answers to one prompt
    assert any(len({c.ids for c in row}) > 1 for row in cands)
    again = generate_candidates(student, tokenizer, prompts, k=K, temperature=1.0,
                                max_new_tokens=12, seed=3, batch_size=8)
    assert again == cands
    other = generate_candidates(student, tokenizer, prompts, k=K, temperature=1.0,
                                max_new_tokens=12, seed=4, batch_size=8)
    assert other != cands


@pytest.mark.parametrize("kw,match", [({"k": 1}, "k must be >= 2"),
                                      ({"temperature": 0.0}, "temperature > 0")])
def test_sampling_settings_are_checked(task_data, tokenizer, tiny_model, kw, match):
    args = {"k": 2, "temperature": 1.0, "max_new_tokens": 4, "seed": 0, **kw}
    with pytest.raises(UserError, match=match):
        generate_candidates(tiny_model(), tokenizer, task_data.pool[:2], **args)


def test_likelihood_judge_is_the_teachers_mean_log_prob(sampled, tokenizer, tiny_model):
    _, prompts, cands = sampled
    teacher = tiny_model(seed=7, d_model=32).train()
    seen = []
    scores = judge(teacher, tokenizer, cands, batch_size=5, on_batch=seen.append)
    assert [len(s) for s in scores] == [K] * len(prompts)
    for row_c, row_s in zip(cands, scores, strict=True):
        for c, s in zip(row_c, row_s, strict=True):
            assert s.correct is None and s.key == (s.likelihood,)
            assert s.likelihood == pytest.approx(_mean_logp(teacher, tokenizer, c.prompt,
                                                            c.ids), abs=1e-5)
    assert sum(len(b.index) for b in seen) == K * len(prompts)
    assert teacher.training  # judged in eval mode, given back as it was
    with pytest.raises(UserError, match="unknown judge mode"):
        judge(teacher, tokenizer, cands, mode="votes")
    with pytest.raises(UserError, match="needs a task"):
        judge(teacher, tokenizer, cands, mode="verifier")


def test_verifier_first_puts_a_correct_answer_above_any_likelihood(task_data, tokenizer,
                                                                   tiny_model):
    """Per prompt: the task's own answer (correct), and wrong ones the untrained teacher
    may well like more; verifier mode chooses the correct one every time, likelihood mode
    goes by the teacher alone."""
    task, teacher, eos = task_data.task, tiny_model(seed=7, d_model=32), tokenizer.eos_token_id
    cands = []
    for p in task_data.pool[:5]:
        right = task.solve(p)
        wrong = [right[:-1] + str((int(right[-1]) + d) % 10) for d in (1, 2)] + ["7"]
        cands.append([Candidate(p, t, tuple(tokenizer(t, add_special_tokens=False)
                                             ["input_ids"]) + (eos,), True)
                      for t in [*wrong, right]])
    verified = judge(teacher, tokenizer, cands, mode="verifier", task=task)
    plain = judge(teacher, tokenizer, cands)
    for row_v, row_p in zip(verified, plain, strict=True):
        assert [s.correct for s in row_v] == [False, False, False, True]
        assert [s.likelihood for s in row_v] == pytest.approx([s.likelihood for s in row_p])
    pairs = build_pairs(verified, cands)
    assert pairs.ties == 0 and all(c == 3 for _, c, _ in pairs.pairs)
    # among the wrong ones the teacher's likelihood decides which is rejected
    for (_, _, r), row in zip(pairs.pairs, verified, strict=True):
        assert r == min(range(3), key=lambda j: row[j].likelihood)
    by_likelihood = build_pairs(plain, cands)
    for p, c, r in by_likelihood.pairs:
        assert plain[p][c].likelihood == max(s.likelihood for s in plain[p])
        assert plain[p][r].likelihood == min(s.likelihood for s in plain[p])


def test_pairs_from_best_and_worst_with_ties_dropped_and_counted():
    def c(ids):
        return Candidate("1+1=", "", tuple(ids), True)

    scores = [[Score(-1.0), Score(-3.0), Score(-2.0)],           # best 0, worst 1
              [Score(-2.0), Score(-2.0 + 1e-9)],                  # a tie within tol
              [Score(-1.0, True), Score(-0.5, False)],            # the verifier decides
              [Score(-1.0, True), Score(-1.0, True)],             # a tie
              [Score(-1.0)],                                      # one candidate: no pair
              [Score(-1.0), Score(-4.0)]]                         # the same answer twice
    cands = [[c([1]), c([2]), c([3])], [c([1]), c([2])], [c([1]), c([2])],
             [c([1]), c([2])], [c([1])], [c([5, 6]), c([5, 6])]]
    pairs = build_pairs(scores, cands)
    assert pairs.pairs == [(0, 0, 1), (2, 0, 1)]
    assert pairs.ties == 4 and pairs.prompts == 6
    assert build_pairs(scores).ties == 3  # without the candidates, only the scores tie


@pytest.fixture
def pair_data(sampled, tokenizer, tiny_model):
    student, prompts, cands = sampled
    teacher = tiny_model(seed=7, d_model=32)
    pairs = build_pairs(judge(teacher, tokenizer, cands), cands)
    return student, cands, pairs, pair_sequences(tokenizer, cands, pairs, max_len=32)


def test_pair_sequences_and_batches_keep_pairs_whole(pair_data, tokenizer):
    _, cands, pairs, seqs = pair_data
    assert len(pairs.pairs) >= 4 and len(seqs) == 2 * len(pairs.pairs)
    p, c, r = pairs.pairs[0]
    head = tokenizer(cands[p][c].prompt, add_special_tokens=True)["input_ids"]
    assert seqs.ids[0] == list(head) + list(cands[p][c].ids)
    assert seqs.ids[1] == list(head) + list(cands[p][r].ids)
    assert seqs.prompt_lens[:2] == [len(head)] * 2
    it = pair_batches(seqs, 3, tokenizer.pad_token_id, seed=0)
    seen = []
    for _ in range(math.ceil(len(pairs.pairs) / 3)):
        b = next(it)
        assert b.index[0::2] == [i for i in b.index if i % 2 == 0]
        assert b.index[1::2] == [i + 1 for i in b.index[0::2]]
        seen += b.index
    assert sorted(seen) == list(range(len(seqs)))  # one epoch: every pair once
    with pytest.raises(UserError, match="longer|more than"):
        pair_sequences(tokenizer, cands, pairs, max_len=5)


def test_reference_logps_do_not_depend_on_batching(pair_data, tokenizer):
    student, _, _, seqs = pair_data
    pad = tokenizer.pad_token_id
    one = reference_logps(student, seqs, pad, batch_size=1)
    many = reference_logps(student, seqs, pad, batch_size=7)
    assert one.shape == (len(seqs),) and torch.allclose(one, many, atol=1e-5)
    assert (one < 0).all()


def test_dpo_steps_in_the_shared_loop_precomputed_or_inline(pair_data, tokenizer,
                                                            tiny_model):
    """The same seed, data and loop: a precomputed reference and one run inside each step
    train the same student (to float noise), and training raises the chosen answers'
    log-prob margin over the rejected ones."""
    student, _, pairs, seqs = pair_data
    pad = tokenizer.pad_token_id
    cfg = TrainingConfig(lr=3e-3, warmup_frac=0.0, batch_size=8,
                         token_budget=12 * sum(len(s) for s in seqs.ids))
    reference = tiny_model(seed=1)  # the starting student, frozen
    ref = reference_logps(reference, seqs, pad)

    def run(loss):
        model = tiny_model(seed=1)
        result = train(model, pair_batches(seqs, 4, pad, seed=0), loss, cfg)
        return model, result

    pre_model, pre = run(DPOLoss(beta=0.5, ref_logps=ref))
    in_model, inline = run(DPOLoss(beta=0.5, reference=reference))
    assert pre.steps == inline.steps > 3
    assert pre.losses[0] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference
    assert pre.losses == pytest.approx(inline.losses, abs=1e-4)
    after = reference_logps(pre_model, seqs, pad)
    margin = lambda lp: float(((lp[0::2] - ref[0::2]) - (lp[1::2] - ref[1::2])).mean())  # noqa: E731
    assert margin(after) > 0.5 and pre.losses[-1] < pre.losses[0]
    assert pre.last_parts["accuracy"] > 0.5
    assert torch.allclose(after, reference_logps(in_model, seqs, pad), atol=1e-3)


def test_dpo_loss_refuses_other_batches_and_settings(pair_data, tokenizer):
    student, _, _, seqs = pair_data
    with pytest.raises(ValueError, match="ref_logps or a reference"):
        DPOLoss()
    with pytest.raises(UserError, match="beta"):
        DPOLoss(beta=0.0, reference=student)
    from distillmeter.pipelines.data import collate

    batch = collate(seqs, [1, 0], tokenizer.pad_token_id)  # rejected first
    logits = student(input_ids=batch.input_ids).logits
    with pytest.raises(ValueError, match="pair_batches"):
        DPOLoss(ref_logps=torch.zeros(len(seqs)))(logits, batch)
