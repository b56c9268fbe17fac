"""``dpo_loss`` and ``sequence_logps`` against the formulas written out independently in
float64 (numpy), their gradients, masking, and TRL's DPO ``sigmoid`` loss on the same
inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distillmeter.errors import UserError
from distillmeter.pipelines.losses import dpo_loss, sequence_logps


def ref_dpo(pc, pr, rc, rr, beta):
    z = beta * ((pc - rc) - (pr - rr))
    # -log(sigmoid(z)) = log(1 + exp(-z)), written stably
    return float(np.mean(np.logaddexp(0.0, -z)))


def ref_seq(logits, labels, mask, average):
    """Per row: sum over t >= 1 with mask[t] of log softmax(logits[t - 1])[labels[t]]."""
    out = []
    for row in range(logits.shape[0]):
        total, n = 0.0, 0
        for t in range(1, logits.shape[1]):
            if mask[row, t]:
                x = logits[row, t - 1]
                total += x[labels[row, t]] - (x.max() + math.log(np.exp(x - x.max()).sum()))
                n += 1
        out.append(total / max(n, 1) if average else total)
    return np.array(out)


@pytest.mark.parametrize("seed,pairs,beta", [(0, 1, 0.1), (1, 7, 0.5), (2, 64, 2.0),
                                             (3, 5, 1e-3)])
def test_dpo_loss_matches_the_formula_in_float64(seed, pairs, beta):
    rng = np.random.default_rng(seed)
    pc, pr, rc, rr = (rng.normal(-20, 8, pairs) for _ in range(4))
    got = dpo_loss(*(torch.from_numpy(x) for x in (pc, pr, rc, rr)), beta=beta)
    assert got.dtype == torch.float64
    assert abs(got.item() - ref_dpo(pc, pr, rc, rr, beta)) < 1e-6


def test_dpo_loss_known_values_and_gradient():
    # equal log-ratios: loss log 2, whatever beta
    x = torch.tensor([-3.0, -9.0], dtype=torch.float64)
    assert dpo_loss(x, x, x, x, beta=0.7).item() == pytest.approx(math.log(2), abs=1e-12)
    # a large margin in favour of chosen: loss -> 0 without overflow
    big = dpo_loss(torch.tensor([0.0]), torch.tensor([-1e4]), torch.tensor([0.0]),
                   torch.tensor([0.0]), beta=1.0)
    assert torch.isfinite(big) and big.item() < 1e-30
    # gradient: d/d pc = -beta * sigmoid(-z) / P, and d/d pr is its negative
    rng = np.random.default_rng(5)
    vals = [torch.tensor(rng.normal(-10, 3, 6), requires_grad=True) for _ in range(4)]
    beta = 0.3
    dpo_loss(*vals, beta=beta).backward()
    pc, pr, rc, rr = (v.detach().numpy() for v in vals)
    z = beta * ((pc - rc) - (pr - rr))
    expect = -beta / (1 + np.exp(z)) / 6
    assert np.allclose(vals[0].grad.numpy(), expect, atol=1e-12)
    assert np.allclose(vals[1].grad.numpy(), -expect, atol=1e-12)
    assert np.allclose(vals[2].grad.numpy(), -expect, atol=1e-12)
    assert torch.autograd.gradcheck(lambda a, b: dpo_loss(a, b, vals[2].detach(),
                                                          vals[3].detach(), beta=beta),
                                    (vals[0].detach().requires_grad_(),
                                     vals[1].detach().requires_grad_()))


@pytest.mark.parametrize("beta", [0, -0.1, float("nan"), float("inf"), True, "0.1"])
def test_dpo_loss_refuses_a_bad_beta(beta):
    x = torch.zeros(3)
    with pytest.raises(UserError, match="beta must be a finite number > 0"):
        dpo_loss(x, x, x, x, beta=beta)


@pytest.mark.parametrize("shapes", [[(3,), (3,), (3,), (4,)], [(2, 3)] * 4, [(0,)] * 4])
def test_dpo_loss_refuses_mismatched_shapes(shapes):
    with pytest.raises(ValueError, match="four \\[pairs\\] tensors"):
        dpo_loss(*(torch.zeros(s) for s in shapes))


def _batch(seed, rows, length, vocab):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (rows, length, vocab))
    labels = rng.integers(0, vocab, (rows, length))
    mask = np.zeros((rows, length), dtype=bool)
    for r in range(rows):
        start = rng.integers(1, length)
        end = rng.integers(start, length + 1)
        mask[r, start:end] = True
    return logits, labels, mask


@pytest.mark.parametrize("seed,rows,length,vocab", [(0, 1, 2, 3), (1, 4, 9, 11),
                                                    (2, 8, 30, 50)])
@pytest.mark.parametrize("average", [False, True])
def test_sequence_logps_match_the_formula_in_float64(seed, rows, length, vocab, average):
    logits, labels, mask = _batch(seed, rows, length, vocab)
    got = sequence_logps(torch.from_numpy(logits), torch.from_numpy(labels),
                         torch.from_numpy(mask), average=average)
    assert got.dtype == torch.float64 and got.shape == (rows,)
    assert np.allclose(got.numpy(), ref_seq(logits, labels, mask, average), atol=1e-9)


def test_padding_and_prompt_change_nothing():
    """The same answers, left- or right-padded with junk (NaN logits, -100 labels) and
    behind different prompts of the same tokens, give the same log-probs and gradient."""
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 6, 7, dtype=torch.float64), torch.randint(0, 7, (2, 6))
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 1, 1, 0, 0, 0]], dtype=torch.bool)
    pad = 3
    big_logits = torch.cat([logits, torch.full((2, pad, 7), float("nan"),
                                               dtype=torch.float64)], 1)
    big_logits = torch.cat([torch.full((2, pad, 7), float("inf"), dtype=torch.float64),
                            big_logits], 1).requires_grad_()
    big_labels = torch.cat([torch.full((2, pad), -100), labels, torch.full((2, pad), -100)], 1)
    big_mask = torch.cat([torch.zeros(2, pad, dtype=torch.bool), mask,
                          torch.zeros(2, pad, dtype=torch.bool)], 1)
    small = logits.clone().requires_grad_()
    a = sequence_logps(small, labels, mask)
    b = sequence_logps(big_logits, big_labels, big_mask)
    assert torch.allclose(a, b, atol=1e-12)
    a.sum().backward()
    b.sum().backward()
    assert torch.isfinite(big_logits.grad).all()
    assert torch.allclose(big_logits.grad[:, pad:pad + 6], small.grad, atol=1e-12)
    assert (big_logits.grad[:, :pad] == 0).all() and (big_logits.grad[:, pad + 6:] == 0).all()
    # the prompt's logits never matter: only positions before an answer token get gradient
    assert (small.grad[0, :1] == 0).all() and (small.grad[0, 4:] == 0).all()


def test_average_divides_by_the_answer_length_and_an_empty_answer_is_zero():
    torch.manual_seed(1)
    logits, labels = torch.randn(3, 5, 4, requires_grad=True), torch.randint(0, 4, (3, 5))
    mask = torch.tensor([[0, 1, 1, 1, 1], [0, 0, 0, 1, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    total = sequence_logps(logits, labels, mask)
    mean = sequence_logps(logits, labels, mask, average=True)
    assert torch.allclose(mean[:2], total[:2] / torch.tensor([4.0, 1.0]))
    assert mean[2].item() == 0.0 and total[2].item() == 0.0
    mean.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_sequence_logps_refuses_bad_shapes():
    with pytest.raises(ValueError, match="logits must be"):
        sequence_logps(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="must both be"):
        sequence_logps(torch.zeros(2, 3, 4), torch.zeros(2, 4), torch.zeros(2, 3))


def test_dpo_from_sequence_logps_trains_towards_the_chosen_answer():
    """A few steps of SGD on the loss raise the policy's chosen-minus-rejected margin."""
    torch.manual_seed(2)
    labels, mask = torch.randint(0, 5, (4, 6)), torch.ones(4, 6, dtype=torch.bool)
    ref = torch.randn(4, 6, 5)
    policy = ref.clone().requires_grad_()
    opt = torch.optim.SGD([policy], lr=1.0)

    def margin():
        lp = sequence_logps(policy, labels, mask)
        return (lp[:2] - lp[2:]).mean().item()

    before = margin()
    ref_lp = sequence_logps(ref, labels, mask)
    for _ in range(5):
        lp = sequence_logps(policy, labels, mask)
        loss = dpo_loss(lp[:2], lp[2:], ref_lp[:2], ref_lp[2:], beta=0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert margin() > before + 1.0


@pytest.mark.slow
def test_matches_trls_dpo_sigmoid_loss_on_the_same_batch(tmp_path):
    """TRL's DPOTrainer computes its loss from a padded [chosen; rejected] batch: the
    policy's log-probs from its own forward, the reference's from the batch when it has
    precomputed them. Given the same batch, ``sequence_logps`` (TRL's ``completion_mask``
    as the mask) and ``dpo_loss`` give TRL's number. The reference log-probs are ours on
    both sides: TRL's own precompute (its fused head with log-probs alone) differs from
    a plain float64 log-softmax by up to ~2e-3 per sequence on this batch, which is TRL's
    numerics, not the loss."""
    pytest.importorskip("trl", reason="TRL is in the [trainer] extra")
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    import real_pair
    from distillmeter.models import TinyModelSpec, build_llama

    tok = real_pair.tokenizer()
    spec = TinyModelSpec(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=64)
    policy = build_llama(spec, tok, seed=0).double()
    ref = build_llama(spec, tok, seed=1).double().eval()
    # answers of different lengths, so padding and the prompt/answer boundary both matter
    pairs = Dataset.from_list([{"prompt": f"{i}+{i * 3}=", "chosen": f"{4 * i}",
                                "rejected": f"{4 * i + i % 3 + 1}0" * (1 + i % 2)}
                               for i in range(6)])
    beta = 0.3
    args = DPOConfig(output_dir=str(tmp_path / "hf"), report_to=[], use_cpu=True,
                     disable_tqdm=True, per_device_train_batch_size=6, beta=beta,
                     max_length=64, loss_type=["sigmoid"], precompute_ref_log_probs=True,
                     precompute_ref_batch_size=6)
    trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=pairs,
                         processing_class=tok)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(6)])
    policy.eval()
    with torch.no_grad():
        ids, att, answer = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
        lp = sequence_logps(policy(input_ids=ids, attention_mask=att).logits, ids, answer)
        rlp = sequence_logps(ref(input_ids=ids, attention_mask=att).logits, ids, answer)
        assert batch["ref_chosen_logps"].shape == (6,)
        batch["ref_chosen_logps"], batch["ref_rejected_logps"] = rlp[:6], rlp[6:]
        theirs = trainer._compute_loss(trainer.model, batch, return_outputs=False).item()
    assert lp.shape == (12,) and len(set(answer.sum(1).tolist())) > 2
    ours = dpo_loss(lp[:6], lp[6:], rlp[:6], rlp[6:], beta=beta).item()
    assert ours != pytest.approx(math.log(2), abs=1e-2)  # the pairs really differ
    assert ours == pytest.approx(theirs, abs=1e-6)
