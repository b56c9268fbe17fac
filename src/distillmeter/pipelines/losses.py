"""Distillation losses: divergences between teacher and student next-token distributions.

Conventions (P_t: teacher, P_s: student, both at temperature T, over the vocabulary):

- ``forward_kl``: KL(P_t || P_s) = sum_v P_t(v) (log P_t(v) - log P_s(v))   (mode-covering)
- ``reverse_kl``: KL(P_s || P_t) = sum_v P_s(v) (log P_s(v) - log P_t(v))   (mode-seeking)
- ``jsd``: generalised Jensen-Shannon divergence with mixture weight ``beta`` in (0, 1):
  M = beta * P_t + (1 - beta) * P_s,
  JSD_beta = beta * KL(P_t || M) + (1 - beta) * KL(P_s || M).
  beta = 0.5 is the usual symmetric JSD (bounded by log 2). Note that other libraries
  (TRL's GKD) name the weights the other way round; here beta is the *teacher's* weight.

On-policy distillation (GKD) applies the same divergences at every position of sequences the
student sampled itself: ``completion_mask`` says which positions those are (the completion
up to and including its first EOS; never the prompt, never what follows the EOS), and
``kd_loss`` or ``topk_kd_loss`` with that mask is the loss (reverse KL is the usual choice).

P = softmax(logits / T), computed in float32 whatever the logits' dtype. Each loss returns
``T**2 * D`` averaged over the positions where ``mask`` is true (all positions if no mask),
the T^2 factor keeping gradient magnitudes comparable across temperatures (Hinton et al.).
A mask with no true entry gives 0 (still differentiable), not NaN. Masked-out positions
never contribute, even if they hold inf/NaN (e.g. padding rows of a cache).

Preference distillation (DPO) works on whole answers instead: ``sequence_logps`` turns a
model's logits into each answer's log-probability, and ``dpo_loss`` compares the policy's
and the frozen reference's on (chosen, rejected) pairs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from distillmeter.errors import UserError

DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")

# Floor for the teacher's tail mass reconstructed from a top-k cache. Rounding of fp16/bf16
# log-probs can make the cached top-k sum to >= 1; flooring keeps log(tail) finite, so
# reverse KL and JSD stay finite, and 1e-6 is far below anything the loss can resolve.
TAIL_FLOOR = 1e-6


def _check_args(divergence: str, temperature: float, beta: float) -> None:
    if divergence not in DIVERGENCES:
        raise UserError(f"unknown divergence {divergence!r}; use one of {', '.join(DIVERGENCES)}")
    if not temperature > 0:
        raise UserError(f"temperature must be > 0, got {temperature}")
    if divergence == "jsd" and not 0.0 < beta < 1.0:
        raise UserError(f"jsd needs 0 < beta < 1 (beta is the teacher's weight), got {beta}")


def _kl(logp: Tensor, logq: Tensor) -> Tensor:
    """KL(p || q) over the last dim from log-probs; terms with p = 0 count 0 (and give no
    NaN gradient even where log p = -inf)."""
    p = logp.exp()
    diff = torch.where(p > 0, logp - logq, torch.zeros_like(logp))
    return (p * diff).sum(-1)


def divergence_per_position(
    log_p_teacher: Tensor, log_p_student: Tensor, divergence: str, beta: float = 0.5
) -> Tensor:
    """D(teacher, student) per position, from normalised log-probs (..., V) -> (...)."""
    if divergence == "forward_kl":
        return _kl(log_p_teacher, log_p_student)
    if divergence == "reverse_kl":
        return _kl(log_p_student, log_p_teacher)
    if divergence == "jsd":
        log_m = torch.logsumexp(
            torch.stack([log_p_teacher + math.log(beta), log_p_student + math.log(1 - beta)]),
            dim=0,
        )
        return beta * _kl(log_p_teacher, log_m) + (1 - beta) * _kl(log_p_student, log_m)
    raise UserError(f"unknown divergence {divergence!r}; use one of {', '.join(DIVERGENCES)}")


def _check_mask(mask: Tensor | None, positions: torch.Size) -> None:
    if mask is not None and mask.shape != positions:
        raise ValueError(f"mask shape {tuple(mask.shape)} != positions {tuple(positions)}")


def _masked_mean(per_pos: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return per_pos.mean()
    m = mask.to(torch.bool)
    total = torch.where(m, per_pos, torch.zeros_like(per_pos)).sum()
    return total / m.sum().clamp_min(1)


def _zero_masked(x: Tensor, mask: Tensor | None) -> Tensor:
    """Teacher values at masked-out positions set to 0, so that NaN/inf there (padding)
    cannot reach the gradient (0 * NaN would still be NaN in the backward pass)."""
    if mask is None:
        return x
    keep = mask.to(torch.bool).unsqueeze(-1)
    return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))


def kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    divergence: str = "forward_kl",
    temperature: float = 1.0,
    beta: float = 0.5,
    mask: Tensor | None = None,
) -> Tensor:
    """``T^2 * D(P_t, P_s)`` averaged over unmasked positions, from full logits.

    ``student_logits`` and ``teacher_logits``: (..., V) of the same shape (slice both to the
    shared vocabulary first, see ``models.check_tokenizers_compatible``); ``mask``: (...)
    bool/0-1. Gradients flow to whichever inputs require them (normally the student's)."""
    _check_args(divergence, temperature, beta)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ in shape"
        )
    _check_mask(mask, student_logits.shape[:-1])
    log_s = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher = _zero_masked(teacher_logits.float(), mask)
    log_t = torch.log_softmax(teacher / temperature, dim=-1)
    per_pos = divergence_per_position(log_t, log_s, divergence, beta)
    return temperature**2 * _masked_mean(per_pos, mask)


def topk_logprobs(logits: Tensor, k: int, *, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """The top-k log-probabilities of softmax(logits / T) and their indices, per position.

    Returns (values float32 (..., k'), indices int64 (..., k')) with k' = min(k, V): a k
    larger than the vocabulary is capped (the built-in char vocabulary is small). Cast
    values to fp16/bf16 and indices to int32 for storage; the loss accepts them back. The
    tail mass 1 - sum(exp(values)) is not stored: ``topk_kd_loss`` recomputes it. Caches
    for ``topk_kd_loss`` should be taken at temperature 1 (the loss applies T itself)."""
    if k < 1:
        raise UserError(f"top-k needs k >= 1, got {k}")
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    values, indices = logp.topk(min(k, logp.shape[-1]), dim=-1)
    return values, indices


def topk_kd_loss(
    student_logits: Tensor,
    topk_logprobs: Tensor,
    topk_indices: Tensor,
    *,
    tail: bool = True,
    divergence: str = "forward_kl",
    temperature: float = 1.0,
    beta: float = 0.5,
    mask: Tensor | None = None,
) -> Tensor:
    """``T^2 * D`` against a cached top-k teacher, averaged over unmasked positions.

    ``topk_logprobs`` (..., k): the teacher's log-probs at temperature 1 (any float dtype,
    e.g. fp16 from the cache); ``topk_indices`` (..., k): their token ids (any int dtype).

    Both distributions are reduced to the same buckets, then compared:

    - ``tail=True``: k + 1 buckets, the k cached tokens and one bucket for everything else.
      Teacher tail = max(1 - sum(exp(topk_logprobs)), TAIL_FLOOR); student tail =
      logsumexp of the student's log-probs outside the k ids (computed directly, not as
      1 - sum, so it stays accurate when it is tiny). When k = V there is no tail bucket.
    - ``tail=False``: the k cached tokens only, each side renormalised over them.

    Temperature: the cache holds T = 1 log-probs, so T is applied to the buckets: each
    side's bucket log-probs are divided by T and renormalised (log-softmax over the
    buckets). For the k named tokens this is exact up to renormalisation (log p / T differs
    from logit / T by a constant). The tail is treated as one outcome, so for T != 1 its
    tempered mass is an approximation (exact at T = 1 or when k = V); student and teacher
    are bucketed the same way, so a student equal to the teacher still has loss 0. With
    k = V, this loss equals ``kd_loss`` at any T.
    """
    _check_args(divergence, temperature, beta)
    if topk_logprobs.shape != topk_indices.shape:
        raise ValueError(
            f"top-k values {tuple(topk_logprobs.shape)} and indices "
            f"{tuple(topk_indices.shape)} differ in shape"
        )
    if student_logits.shape[:-1] != topk_indices.shape[:-1]:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and top-k cache "
            f"{tuple(topk_indices.shape)} disagree on positions"
        )
    _check_mask(mask, student_logits.shape[:-1])
    vocab, k = student_logits.shape[-1], topk_indices.shape[-1]
    if k > vocab:
        raise ValueError(f"top-k cache has k={k} > the student's vocabulary ({vocab})")
    idx = topk_indices.long()
    if mask is not None:
        # Padding rows of a cache may hold any ids; point them at a valid one.
        idx = torch.where(mask.to(torch.bool).unsqueeze(-1), idx, torch.zeros_like(idx))
    t_vals = _zero_masked(topk_logprobs.float(), mask)
    s_logp = torch.log_softmax(student_logits.float(), dim=-1)
    s_vals = s_logp.gather(-1, idx)

    if tail and k < vocab:
        # Student: mass outside the k ids, by logsumexp over exactly those entries.
        outside = s_logp.scatter(-1, idx, float("-inf"))
        s_tail = torch.logsumexp(outside, dim=-1, keepdim=True)
        # Teacher: 1 - (cached mass), floored. In float64: in float32 the subtraction
        # loses the small tails that reverse KL and JSD are most sensitive to.
        t_mass = t_vals.double().exp().sum(-1, keepdim=True)
        t_tail = torch.log((1.0 - t_mass).clamp_min(TAIL_FLOOR)).float()
        s_buckets = torch.cat([s_vals, s_tail], dim=-1)
        t_buckets = torch.cat([t_vals, t_tail], dim=-1)
    else:
        s_buckets, t_buckets = s_vals, t_vals
    # Renormalise over the buckets at temperature T (at T = 1 with a tail this only
    # absorbs the cache's rounding; without a tail it renormalises over the k).
    log_s = torch.log_softmax(s_buckets / temperature, dim=-1)
    log_t = torch.log_softmax(t_buckets / temperature, dim=-1)
    per_pos = divergence_per_position(log_t, log_s, divergence, beta)
    return temperature**2 * _masked_mean(per_pos, mask)


def completion_mask(
    input_ids: Tensor,
    prompt_lens: Tensor | list[int],
    eos_ids: int | list[int] | tuple[int, ...],
    attention_mask: Tensor | None = None,
) -> Tensor:
    """Which logits of prompt + sampled-completion rows a loss may use: ``[B, L-1]`` bool.

    ``input_ids`` ``[B, L]``: each row is a prompt followed by what was sampled after it.
    ``prompt_lens`` (``[B]``): how many leading columns of each row are prompt. Right-padded
    rows pass each prompt's own length; a left-padded batch as ``generate`` returns it
    passes the padded prompt width for every row. Column ``t`` of the result is True when
    the token it predicts, ``input_ids[:, t + 1]``, belongs to the completion: at or after
    ``prompt_lens``, and at or before the completion's first EOS (the EOS is learned, so the
    student learns to stop). Everything after that EOS is masked, whatever it holds (padding
    whose id may equal the EOS id, or tokens a batch kept generating), and so is every
    column where ``attention_mask`` is 0. A completion that never reached EOS (it ran into
    ``max_new_tokens``) is learned to its end. The logits to pair it with are
    ``logits[:, :-1]``."""
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [batch, length], got {tuple(input_ids.shape)}")
    rows, length = input_ids.shape
    device = input_ids.device
    plen = torch.as_tensor(prompt_lens, dtype=torch.long, device=device).reshape(-1)
    if plen.shape[0] != rows:
        raise ValueError(f"{plen.shape[0]} prompt lengths for {rows} rows")
    if bool((plen < 1).any()) or bool((plen > length).any()):
        raise ValueError(f"prompt lengths must be in 1..{length} (a completion needs a "
                         "prompt token to be predicted from)")
    eos = torch.as_tensor([eos_ids] if isinstance(eos_ids, int) else list(eos_ids),
                          dtype=input_ids.dtype, device=device)
    pos = torch.arange(length, device=device).unsqueeze(0)
    in_completion = pos >= plen.unsqueeze(1)
    is_eos = torch.isin(input_ids, eos) & in_completion
    # the first EOS of each completion (length when there is none)
    first_eos = torch.where(is_eos, pos, torch.full_like(pos, length)).min(dim=1).values
    learned = in_completion & (pos <= first_eos.unsqueeze(1))
    if attention_mask is not None:
        if attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask {tuple(attention_mask.shape)} != input_ids "
                             f"{tuple(input_ids.shape)}")
        learned &= attention_mask.to(torch.bool)
    return learned[:, 1:]


def sequence_logps(logits: Tensor, labels: Tensor, mask: Tensor, *,
                   average: bool = False) -> Tensor:
    """Each row's log-probability of its answer tokens: ``[B, L, V], [B, L], [B, L] -> [B]``.

    ``labels`` are the row's own token ids (prompt + answer + padding, as fed to the model)
    and ``mask`` says, per label position, which tokens are the answer: True for the
    answer's tokens (its EOS included if it is to be learned), False for the prompt and for
    padding, left or right. The label shift is done here: ``logits[:, t]`` predicts
    ``labels[:, t + 1]``, so column 0 of ``mask`` is never used (no logit predicts the first
    token; an answer needs at least one prompt token before it). Masked positions never
    contribute, whatever their label id (padding, -100) and whatever their logits hold
    (inf/NaN included), to the value or to the gradient.

    ``average=False`` (DPO's own definition): the sum of the answer tokens' log-probs,
    log pi(y | x). ``average=True``: that sum divided by the number of answer tokens, the
    length-normalised log-likelihood. A summed log-prob falls with every token, so as a
    *score* it prefers short answers whatever their content; the average removes that bias,
    which is why the preference judge scores candidates with it. A row with no answer token
    gives 0 (still differentiable), not NaN.

    Log-softmax runs in float32, or float64 when the logits are float64."""
    if logits.dim() != 3:
        raise ValueError(f"logits must be [batch, length, vocab], got {tuple(logits.shape)}")
    if labels.shape != logits.shape[:2] or mask.shape != labels.shape:
        raise ValueError(f"labels {tuple(labels.shape)} and mask {tuple(mask.shape)} must "
                         f"both be [batch, length] = {tuple(logits.shape[:2])}")
    dtype = torch.promote_types(logits.dtype, torch.float32)
    keep = mask[:, 1:].to(torch.bool)
    target = torch.where(keep, labels[:, 1:].long(), torch.zeros_like(labels[:, 1:].long()))
    shifted = torch.where(keep.unsqueeze(-1), logits[:, :-1].to(dtype),
                          torch.zeros((), dtype=dtype, device=logits.device))
    per_token = torch.log_softmax(shifted, dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    total = torch.where(keep, per_token, torch.zeros_like(per_token)).sum(-1)
    if average:
        return total / keep.sum(-1).clamp_min(1)
    return total


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
) -> Tensor:
    """The DPO loss (Rafailov et al. 2023), averaged over pairs:
    ``mean(-logsigmoid(beta * ((pc - rc) - (pr - rr))))``.

    Each argument is ``[P]``, one value per preference pair: the policy's (``pc``, ``pr``)
    and the frozen reference's (``rc``, ``rr``) log-probability of the chosen and of the
    rejected answer, normally ``sequence_logps`` with ``average=False`` (the sum over the
    answer tokens, masking as that function documents). ``beta`` (> 0, finite) is the
    strength of the implicit KL pull towards the reference: small beta lets the policy move
    far. Length: with summed log-probs, a longer answer has larger log-ratios, so it weighs
    more in the margin; that is DPO's own definition (and TRL's ``sigmoid`` loss), kept
    here so that figures compare with the literature. Gradients flow to whichever inputs
    require them (normally only the policy's)."""
    if isinstance(beta, bool) or not (isinstance(beta, int | float) and math.isfinite(beta)
                                      and beta > 0):
        raise UserError(f"DPO beta must be a finite number > 0, got {beta!r}")
    parts = (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    shapes = [tuple(x.shape) for x in parts]
    if len(set(shapes)) != 1 or len(shapes[0]) != 1 or shapes[0][0] == 0:
        raise ValueError("dpo_loss needs four [pairs] tensors of one shape (pairs >= 1): got "
                         "policy chosen/rejected, reference chosen/rejected " + str(shapes))
    pc, pr, rc, rr = (x.to(torch.promote_types(x.dtype, torch.float32)) for x in parts)
    margin = (pc - rc) - (pr - rr)
    return -torch.nn.functional.logsigmoid(beta * margin).mean()
