"""Preference distillation's building blocks: the student samples, the teacher judges, the
student learns by DPO against its frozen starting self.

Plain functions on explicit arguments (models, tokenizer, prompts, numbers), no RunConfig,
so that a method module can wrap each in its stage window:

    student.generate   generate_candidates: k sampled answers per prompt
    teacher.judge      judge: the teacher scores every candidate; build_pairs: (chosen,
                       rejected) per prompt from the best and the worst score
    student.reference  reference_logps: the frozen reference's log-probs of every pair,
                       one pass before training (see "Where the reference runs")
    student.train      pair_sequences + pair_batches + DPOLoss through the shared loop
                       (``training.train``)

**The judge's score.** ``likelihood`` (the default): the teacher's log-likelihood of the
answer tokens (EOS included when the answer ended), divided by their number. Length-
normalised because a summed log-prob falls with every token: as a score it would prefer
the shortest answer whatever it says. ``verifier``: the task's verifier first (a correct
answer beats an incorrect one), the likelihood breaking ties among equals. A tie between a
prompt's best and worst candidate (the same answer, or scores within ``tie_tol``) gives no
pair; ``build_pairs`` counts those prompts.

**Pairs in the shared loop.** A pair's two sequences are ``2i`` (chosen) and ``2i + 1``
(rejected) of one ``data.Sequences``, each ``BOS + prompt + answer``, the answer's tokens
learned (``prompt_lens`` = the prompt's). ``pair_batches`` yields ordinary ``data.Batch``es
holding whole pairs, chosen and rejected rows interleaved, so ``training.train`` runs them
as it runs every batch (one forward pass over both halves) and ``DPOLoss`` reads the roles
and the reference log-probs from ``batch.index``. The token budget counts both halves.
What the loop lacks is only for torchrun: ``Distributed.shard`` deals a batch's rows out
round-robin and weights each rank by its share of learned positions; DPO needs a shard
that keeps rows ``2i`` and ``2i + 1`` on one rank and weights by pairs (DPO's loss is a
mean over pairs, not tokens). Single-process training needs nothing more.

**Where the reference runs** (``benchmarks/dpo_reference.py``: the default-sized student,
512 pairs of arithmetic prompts, 32 pairs a step, one torch thread, 2 CPU cores under load
average 8-11 from other work, energy by EnergyMeter's labelled CPU estimate, medians,
2026-12-02):

    epochs  steps  option      reference pass   student.train    total
    4       64     precompute  0.99 s  10.0 J   9.6 s   98 J     10.6 s  108 J
    4       64     inline      -                14.5 s  147 J    14.5 s  147 J
    16      256    precompute  0.34 s   3.8 J   19.3 s  206 J    19.7 s  210 J
    16      256    inline      -                28.3 s  300 J    28.3 s  300 J

Precomputed, the reference reads each pair once (one forward pass, no grad); inside the
steps it reads every batch again, each time the budget revisits the pairs, so its cost
grows with the epochs: inline cost 36% more energy at 4 epochs and 43% at 16 (the
reference's forward pass is about a third of each inline step's energy on this model),
and it keeps a second model in memory through training. The pass itself is short (0.3-1 s
here, so on a CPU its window carries a wide ``short stage`` uncertainty; it grows with
the pairs on real models). The pick: precompute, once, in its own ``student.reference``
window (``reference_logps``), the reference then freed; ``DPOLoss(reference=...)`` stays for
comparison and for a reference that changes during training.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from distillmeter.engines.generation import Generation, TransformersBackend
from distillmeter.errors import UserError
from distillmeter.pipelines.data import Batch, Sequences, collate
from distillmeter.pipelines.losses import dpo_loss, sequence_logps

JUDGE_MODES = ("likelihood", "verifier")


@dataclass(frozen=True)
class Candidate:
    """One sampled answer: ``ids`` the generated token ids (EOS included when
    ``finished``), ``completion`` their text."""

    prompt: str
    completion: str
    ids: tuple[int, ...]
    finished: bool


@dataclass(frozen=True)
class Score:
    """The judge's view of one candidate: ``likelihood`` (mean log-prob per answer token
    under the teacher), ``correct`` (the verifier's answer; None in likelihood mode) and
    ``key``, what ranks candidates (larger is better)."""

    likelihood: float
    correct: bool | None = None

    @property
    def key(self) -> tuple[float, ...]:
        return (self.likelihood,) if self.correct is None else (float(self.correct),
                                                                self.likelihood)


@dataclass
class Pairs:
    """``pairs``: (prompt index, chosen candidate, rejected candidate) per prompt that gave
    one; ``ties``: prompts dropped because their best and worst candidates tied."""

    pairs: list[tuple[int, int, int]]
    ties: int
    prompts: int


def generate_candidates(model: torch.nn.Module, tokenizer, prompts: Sequence[str], *, k: int,
                        temperature: float, max_new_tokens: int, seed: int,
                        batch_size: int = 64, device: str = "cpu",
                        on_batch: Callable[[list[Generation]], None] | None = None
                        ) -> list[list[Candidate]]:
    """``k`` answers sampled per prompt by ``model`` at ``temperature`` (> 0), reproducible
    for a seed (and batch size): each prompt appears ``k`` times in one seeded generation
    (batched, left-padded, KV cache), so its rows are independent draws. ``on_batch`` gets
    each batch's ``Generation``s (to count tokens into a window)."""
    if k < 2:
        raise UserError(f"preference: k must be >= 2 candidates per prompt (a pair needs "
                        f"two), got {k}")
    if not temperature > 0:
        raise UserError(f"preference: sampling needs a temperature > 0, got {temperature}")
    backend = TransformersBackend(model, tokenizer, device=device)
    rows = [p for p in prompts for _ in range(k)]
    gens = backend.generate(rows, max_new_tokens=max_new_tokens, temperature=temperature,
                            batch_size=batch_size, seed=seed, on_batch=on_batch)
    out: list[list[Candidate]] = [[] for _ in prompts]
    for i, g in enumerate(gens):
        out[i // k].append(Candidate(g.prompt, g.completion, tuple(g.ids), g.finished))
    return out


def _prompt_ids(tokenizer, prompts: Sequence[str]) -> list[list[int]]:
    return [list(x) for x in tokenizer(list(prompts), add_special_tokens=True)["input_ids"]]


def answer_sequences(tokenizer, prompts: Sequence[str],
                     answers: Sequence[Sequence[int]]) -> Sequences:
    """``BOS + prompt + answer`` per (prompt, answer ids), the answer's tokens learned."""
    heads = dict(zip(prompts, _prompt_ids(tokenizer, prompts), strict=True))
    ids = [heads[p] + list(a) for p, a in zip(prompts, answers, strict=True)]
    return Sequences(ids=ids, prompt_lens=[len(heads[p]) for p in prompts])


def _label_mask(batch: Batch) -> torch.Tensor:
    """``batch.loss_mask`` (per logit position) as ``sequence_logps`` wants it: per label."""
    first = torch.zeros_like(batch.loss_mask[:, :1])
    return torch.cat([first, batch.loss_mask], dim=1)


@torch.no_grad()
def sequences_logps(model: torch.nn.Module, seqs: Sequences, pad_id: int, *,
                    average: bool, batch_size: int = 64, device: str = "cpu",
                    on_batch: Callable[[Batch], None] | None = None) -> torch.Tensor:
    """``sequence_logps`` of every sequence's learned tokens under ``model`` (eval mode, no
    grad), in order: ``[len(seqs)]`` float32 on the CPU."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(seqs), batch_size):
            batch = collate(seqs, list(range(start, min(start + batch_size, len(seqs)))),
                            pad_id).to(device)
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask
                           ).logits
            out.append(sequence_logps(logits, batch.input_ids, _label_mask(batch),
                                      average=average).float().cpu())
            if on_batch is not None:
                on_batch(batch)
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def judge(teacher: torch.nn.Module, tokenizer, candidates: Sequence[Sequence[Candidate]], *,
          mode: str = "likelihood", task=None, batch_size: int = 64, device: str = "cpu",
          on_batch: Callable[[Batch], None] | None = None) -> list[list[Score]]:
    """Every candidate's ``Score`` (see the module docstring), in the shape of
    ``candidates``. ``verifier`` mode needs ``task`` (its ``check(prompt, completion)``).
    The teacher reads each candidate's exact sampled ids, so it must share the student's
    tokenizer (``models.check_tokenizers_compatible``)."""
    if mode not in JUDGE_MODES:
        raise UserError(f"preference: unknown judge mode {mode!r}; use one of "
                        f"{', '.join(JUDGE_MODES)}")
    if mode == "verifier" and task is None:
        raise UserError("preference: the verifier judge needs a task with a verifier")
    flat = [c for row in candidates for c in row]
    seqs = answer_sequences(tokenizer, [c.prompt for c in flat], [c.ids for c in flat])
    vocab = teacher.get_output_embeddings().weight.shape[0]
    if any(t >= vocab for ids in seqs.ids for t in ids):
        raise UserError(f"preference: a candidate holds a token id the teacher's vocabulary "
                        f"({vocab}) lacks: teacher and student tokenizers differ")
    values = sequences_logps(teacher, seqs, tokenizer.pad_token_id, average=True,
                             batch_size=batch_size, device=device, on_batch=on_batch).tolist()
    scores, i = [], 0
    for row in candidates:
        scores.append([Score(values[i + j], task.check(c.prompt, c.completion)
                             if mode == "verifier" else None) for j, c in enumerate(row)])
        i += len(row)
    return scores


def build_pairs(scores: Sequence[Sequence[Score]],
                candidates: Sequence[Sequence[Candidate]] | None = None, *,
                tie_tol: float = 1e-6) -> Pairs:
    """(chosen, rejected) per prompt: its best and its worst candidate by ``Score.key``
    (the first of equals). A prompt whose best and worst tie gives no pair and is counted
    in ``ties``: equal verifier verdicts and likelihoods within ``tie_tol`` nats per token
    (float noise of the same answer in differently padded batches), or, with
    ``candidates``, the same answer ids."""
    pairs, ties = [], 0
    for p, row in enumerate(scores):
        if len(row) < 2:
            ties += 1
            continue
        keys = [s.key for s in row]
        best = max(range(len(row)), key=lambda j: keys[j])
        worst = min(range(len(row)), key=lambda j: keys[j])
        same = candidates is not None and candidates[p][best].ids == candidates[p][worst].ids
        a, b = keys[best], keys[worst]
        if same or (a[:-1] == b[:-1] and abs(a[-1] - b[-1]) <= tie_tol):
            ties += 1
            continue
        pairs.append((p, best, worst))
    return Pairs(pairs, ties, len(scores))


def pair_sequences(tokenizer, candidates: Sequence[Sequence[Candidate]], pairs: Pairs, *,
                   max_len: int) -> Sequences:
    """The pairs as training sequences: ``2i`` chosen, ``2i + 1`` rejected, each ``BOS +
    prompt + answer`` (an answer that reached EOS ends with it and learns it; one cut by
    ``max_new_tokens`` does not). Longer than ``max_len``: a UserError."""
    prompts, answers = [], []
    for p, c, r in pairs.pairs:
        for j in (c, r):
            prompts.append(candidates[p][j].prompt)
            answers.append(candidates[p][j].ids)
    seqs = answer_sequences(tokenizer, prompts, answers)
    longest = max((len(s) for s in seqs.ids), default=0)
    if longest > max_len:
        raise UserError(f"preference: a pair's sequence has {longest} tokens, more than the "
                        f"model's max_len ({max_len}); lower max_new_tokens")
    return seqs


def pair_batches(seqs: Sequences, pairs_per_batch: int, pad_id: int, *,
                 seed: int) -> Iterator[Batch]:
    """Batches of whole pairs forever, reshuffled every epoch from ``seed``: rows ``[c, r,
    c, r, ...]``, ``index`` the sequence numbers (even: chosen)."""
    n = len(seqs) // 2
    if n == 0 or len(seqs) % 2:
        raise UserError("preference: no pairs to train on (every prompt's candidates tied?)")
    rng, order = random.Random(seed), list(range(n))
    while True:
        rng.shuffle(order)
        for start in range(0, n, pairs_per_batch):
            rows = [s for i in order[start:start + pairs_per_batch] for s in (2 * i, 2 * i + 1)]
            yield collate(seqs, rows, pad_id)


def reference_logps(reference: torch.nn.Module, seqs: Sequences, pad_id: int, *,
                    batch_size: int = 64, device: str = "cpu",
                    on_batch: Callable[[Batch], None] | None = None) -> torch.Tensor:
    """The frozen reference's summed log-prob of every pair sequence's answer, ``[2P]``:
    computed once, before training (its own window)."""
    return sequences_logps(reference, seqs, pad_id, average=False, batch_size=batch_size,
                           device=device, on_batch=on_batch)


class DPOLoss:
    """``loss_fn(logits, batch) -> (loss, parts)`` for ``training.train`` on
    ``pair_batches``: ``dpo_loss`` of the batch's pairs. The reference's log-probs come
    from ``ref_logps`` (``reference_logps``, indexed by sequence number) or, when that is
    None, from ``reference`` run on the batch under no-grad inside the step."""

    def __init__(self, *, beta: float = 0.1, ref_logps: torch.Tensor | None = None,
                 reference: torch.nn.Module | None = None):
        if (ref_logps is None) == (reference is None):
            raise ValueError("DPOLoss: give precomputed ref_logps or a reference model")
        if not (math.isfinite(beta) and beta > 0):
            raise UserError(f"DPO beta must be a finite number > 0, got {beta!r}")
        self.beta, self.ref_logps, self.reference = beta, ref_logps, reference
        if reference is not None:
            reference.eval().requires_grad_(False)

    def __call__(self, logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        index = torch.tensor(batch.index)
        if not (bool((index[0::2] % 2 == 0).all()) and bool((index[1::2] == index[0::2] + 1)
                                                             .all())):
            raise ValueError("DPOLoss needs pair_batches: rows [chosen 2i, rejected 2i+1, ...]")
        mask = _label_mask(batch)
        policy = sequence_logps(logits, batch.input_ids, mask)
        if self.ref_logps is not None:
            ref = self.ref_logps[index].to(policy.device, policy.dtype)
        else:
            with torch.no_grad():
                ref_logits = self.reference(input_ids=batch.input_ids,
                                            attention_mask=batch.attention_mask).logits
                ref = sequence_logps(ref_logits, batch.input_ids, mask)
        loss = dpo_loss(policy[0::2], policy[1::2], ref[0::2], ref[1::2], beta=self.beta)
        margin = ((policy[0::2] - ref[0::2]) - (policy[1::2] - ref[1::2])).detach()
        return loss, {"dpo": float(loss.detach()), "margin": float(margin.mean()),
                      "accuracy": float((margin > 0).float().mean())}
