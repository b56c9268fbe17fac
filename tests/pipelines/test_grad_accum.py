"""Gradient accumulation: two micro-batches of 4 make the same optimizer step as one batch
of 8 (sequences of equal length, so both weigh each token alike)."""

from __future__ import annotations

import torch

from distillmeter.pipelines.config import TrainingConfig
from distillmeter.pipelines.data import Sequences, batches
from distillmeter.pipelines.training import ce_loss, train


def _seqs(n: int = 8, length: int = 10) -> Sequences:
    g = torch.Generator().manual_seed(0)
    ids = [[1] + torch.randint(4, 20, (length - 2,), generator=g).tolist() + [2]
           for _ in range(n)]
    return Sequences(ids=ids, prompt_lens=[4] * n)


def _trained(tiny_model, batch_size: int, grad_accum: int) -> tuple[dict, dict, float]:
    model = tiny_model(seed=0)
    seqs = _seqs()
    cfg = TrainingConfig(lr=1e-2, batch_size=batch_size, grad_accum=grad_accum,
                         token_budget=seqs.total_tokens(), warmup_frac=0.0,
                         schedule="constant")
    result = train(model, batches(seqs, batch_size, 0, seed=0, shuffle=False), ce_loss, cfg)
    assert result.steps == 1 and result.samples == 8 and result.tokens == seqs.total_tokens()
    # the step's gradients stay on the parameters (cleared only before the next step)
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return weights, grads, result.losses[0]


def test_two_micro_batches_of_four_equal_one_batch_of_eight(tiny_model):
    whole, whole_grads, whole_loss = _trained(tiny_model, 8, 1)
    accumulated, acc_grads, acc_loss = _trained(tiny_model, 4, 2)
    start = tiny_model(seed=0).state_dict()
    assert abs(acc_loss - whole_loss) < 1e-6
    assert whole_grads.keys() == acc_grads.keys() and whole_grads
    for k, g in whole_grads.items():  # each micro-batch's loss weighs 1/grad_accum
        torch.testing.assert_close(acc_grads[k], g, rtol=1e-5, atol=1e-7)
    moved = 0
    for k, v in whole.items():
        torch.testing.assert_close(accumulated[k], v, rtol=1e-5, atol=1e-6)
        moved += not torch.equal(v, start[k])
    assert moved > 0  # the step did change the weights
