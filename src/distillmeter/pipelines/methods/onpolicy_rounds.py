"""On-policy distillation (GKD): the student learns from the teacher on its own samples.

It runs through the one training loop (``training.train``) like every method: the same
optimizer, schedule, token budget and stopping rule. Only the data source and the loss
differ. The data source, ``OnPolicyData``, serves the loop batches; each time its block is
used up it runs a round, each phase in a metered window of its own:

    student.generate  the student samples completions for the next ``block_prompts``
                      prompts of the pool (batched, left-padded, KV cache; at
                      ``sample_temperature``, up to ``max_new_tokens``)
    teacher.score     the teacher's forward pass over those prompt + completion sequences
                      and the round's off-policy sequences; its top-k log-probs (plus the
                      tail, as in the logit cache) kept for the round
    student.train     the loop's updates on the round's batches

then hands the round's batches to the loop, on-policy and off-policy mixed in a seeded
order, ``lmbda`` of them on-policy. The loss, ``OnPolicyKD``, is ``T^2 * D(teacher,
student)`` over the learned positions: the completion up to and including its first EOS
(the prompt and anything after the EOS never count), and the target + EOS of off-policy
sequences. Optimizer and schedule state simply continue across rounds.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from distillmeter.engines.generation import TransformersBackend
from distillmeter.errors import UserError
from distillmeter.pipelines.config import MethodConfig
from distillmeter.pipelines.data import Batch, Sequences, batches, collate
from distillmeter.pipelines.logit_cache import DTYPES, topk_rows
from distillmeter.pipelines.progress import PhaseWindows
from distillmeter.pipelines.training import autocast, topk_rows_kd

PHASES = ("student.generate", "teacher.score", "student.train")


@dataclass
class RoundScores:
    """The teacher's top-k log-probs over one round's sequences, rows in learned-position
    order: ``gather(batch.index)`` lines them up with ``logits[:, :-1][batch.loss_mask]``
    (as ``LogitCache.gather`` does for the cache)."""

    values: torch.Tensor
    indices: torch.Tensor
    offsets: torch.Tensor

    def gather(self, index: list[int], device: str | torch.device = "cpu"):
        rows = torch.cat([torch.arange(int(self.offsets[i]), int(self.offsets[i + 1]))
                          for i in index])
        return self.values[rows].to(device), self.indices[rows].to(device)


class OnPolicyKD:
    """``T^2 * D(teacher, student)`` on every batch of a round (on- and off-policy), against
    the round's ``teacher.score`` rows (``scores``, set by ``OnPolicyData``). No CE term:
    as in GKD, the off-policy batches learn the teacher's distribution too."""

    def __init__(self, method: MethodConfig, vocab_size: int | None = None):
        self.method, self.vocab_size = method, vocab_size
        self.scores: RoundScores | None = None

    def __call__(self, logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        if self.scores is None:
            raise RuntimeError("no teacher scores: OnPolicyData runs teacher.score first")
        loss = topk_rows_kd(logits, batch, self.scores, self.method, self.vocab_size)
        return loss, {"kd": float(loss.detach())}


@dataclass
class RoundLog:
    """What the rounds did (written to the run's train.json)."""

    rounds: int = 0
    prompts: int = 0
    finished: int = 0  # completions that ended with EOS
    new_tokens: int = 0
    on_batches: int = 0
    off_batches: int = 0
    scored_sequences: int = 0
    unused_batches: int = 0  # of the last round, when the budget ran out first
    # steps between the student that sampled a batch and the update that learns from it
    ages: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        ages = self.ages or [0]
        return {"rounds": self.rounds, "prompts_sampled": self.prompts,
                "finished_fraction": self.finished / self.prompts if self.prompts else None,
                "mean_new_tokens": self.new_tokens / self.prompts if self.prompts else None,
                "on_policy_batches": self.on_batches, "off_policy_batches": self.off_batches,
                "scored_sequences": self.scored_sequences,
                "unused_batches": self.unused_batches,
                "mean_sample_age_steps": sum(ages) / len(ages),
                "max_sample_age_steps": max(ages)}


class OnPolicyData(Iterator[Batch]):
    """The batches ``training.train`` pulls for an onpolicy method, rounds run on demand.

    ``windows`` (``progress.PhaseWindows`` with the three ``PHASES``) meters each phase;
    the round's batches are counted into its ``student.train`` window as they are handed
    out (every batch handed out is trained on: the loop asks only for what it uses).
    ``prompts``: the pool, cycled in an order reshuffled every pass from ``seed``.
    ``offpolicy``: the method's labelled and/or synthetic sequences. ``loss`` receives each
    round's teacher scores."""

    def __init__(self, *, method: MethodConfig, student: torch.nn.Module,
                 teacher: torch.nn.Module, tokenizer, prompts: list[str],
                 offpolicy: Sequences | None, loss: OnPolicyKD, windows: PhaseWindows,
                 batch_size: int, grad_accum: int = 1, generate_batch_size: int,
                 score_batch_size: int, top_k: int, score_dtype: str, vocab_size: int,
                 max_len: int, seed: int, device: str | torch.device,
                 student_autocast: torch.dtype | None = None,
                 teacher_autocast: torch.dtype | None = None):
        if not prompts:
            raise UserError("onpolicy needs prompts to sample from: the task's pool is empty")
        self.method, self.teacher, self.tok = method, teacher, tokenizer
        self.backend = TransformersBackend(student, tokenizer, device=str(device))
        self.loss, self.windows = loss, windows
        self.batch_size, self.grad_accum = batch_size, grad_accum
        self.gen_batch, self.score_batch = generate_batch_size, score_batch_size
        self.k, self.dtype, self.vocab = min(top_k, vocab_size), DTYPES[score_dtype], vocab_size
        self.max_len, self.seed, self.device = max_len, seed, device
        self.s_mixed, self.t_mixed = student_autocast, teacher_autocast
        self.prompts = list(prompts)
        self._prompt_order = self._cycle(len(self.prompts), seed)
        self._prompt_ids = dict(zip(self.prompts, tokenizer(
            self.prompts, add_special_tokens=True)["input_ids"], strict=True))
        longest = max(len(ids) for ids in self._prompt_ids.values())
        if longest + method.max_new_tokens > max_len:
            raise UserError(f"method {method.name}: the longest pool prompt ({longest} tokens) "
                            f"+ max_new_tokens ({method.max_new_tokens}) exceeds the models' "
                            f"max_len ({max_len}); lower max_new_tokens")
        self.offpolicy = offpolicy
        self._off = (batches(offpolicy, batch_size, tokenizer.pad_token_id, seed=seed)
                     if offpolicy is not None and len(offpolicy) else None)
        self._off_credit = 0.0
        self._rng = random.Random(seed + 7919)
        self._queue: deque[tuple[Batch, bool, int]] = deque()
        self._handed = 0  # micro-batches handed to the loop
        self.log = RoundLog()

    @staticmethod
    def _cycle(n: int, seed: int) -> Iterator[int]:
        rng = random.Random(seed)
        order = list(range(n))
        while True:
            rng.shuffle(order)
            yield from order

    def __next__(self) -> Batch:
        if not self._queue:
            self._round()
        batch, on_policy, born = self._queue.popleft()
        if on_policy:
            self.log.ages.append(self._handed // self.grad_accum - born)
        self._handed += 1
        self.windows.advance(batch.n_tokens, len(batch.index), batch.n_tokens)
        return batch

    def close(self) -> None:
        """Record how many batches of the last round the budget left unused."""
        self.log.unused_batches = len(self._queue)

    # ------------------------------------------------------------------ a round
    def _round(self) -> None:
        m = self.method
        step = self._handed // self.grad_accum  # the student's updates so far
        prompts = [self.prompts[next(self._prompt_order)] for _ in range(m.block_prompts)]

        self.windows.enter("student.generate")
        with autocast(self.device, self.s_mixed):
            gens = self.backend.generate(
                prompts, max_new_tokens=m.max_new_tokens, temperature=m.sample_temperature,
                top_p=1.0, batch_size=self.gen_batch, seed=self.seed * 1_000_003 + self.log.rounds,
                on_batch=lambda b: self.windows.advance(
                    sum(g.prompt_tokens + g.new_tokens for g in b), len(b), len(b)))
        seqs = Sequences(ids=[], prompt_lens=[])
        for g in gens:
            head = list(self._prompt_ids[g.prompt])
            seqs.ids.append(head + list(g.ids))
            seqs.prompt_lens.append(len(head))
        self.log.prompts += len(gens)
        self.log.finished += sum(g.finished for g in gens)
        self.log.new_tokens += sum(g.new_tokens for g in gens)

        # the round's batches: on-policy ones from the samples, off-policy ones from the
        # method's data, lmbda of them on-policy. Counted in full batches' worth of
        # sequences, so that a block smaller than a batch keeps the fraction too; what
        # does not make a whole batch is carried to the next round.
        order = list(range(len(seqs)))
        self._rng.shuffle(order)
        groups = [(order[i : i + self.batch_size], True)
                  for i in range(0, len(order), self.batch_size)]
        if self._off is not None and m.lmbda < 1.0:
            self._off_credit += len(seqs) / self.batch_size * (1.0 - m.lmbda) / m.lmbda
            while self._off_credit >= 1.0 - 1e-9:
                self._off_credit -= 1.0
                off = next(self._off)
                first = len(seqs)
                for i in off.index:
                    seqs.ids.append(self.offpolicy.ids[i])
                    seqs.prompt_lens.append(self.offpolicy.prompt_lens[i])
                groups.append((list(range(first, len(seqs))), False))
        self._rng.shuffle(groups)

        self.windows.enter("teacher.score")
        self.teacher.eval()
        with autocast(self.device, self.t_mixed):
            values, indices, offsets = topk_rows(
                self.teacher, seqs, list(range(len(seqs))), k=self.k, vocab_size=self.vocab,
                batch_size=self.score_batch, pad_id=self.tok.pad_token_id, dtype=self.dtype,
                device=self.device,
                on_batch=lambda n_tok, n_seq: self.windows.advance(n_tok, n_seq, n_seq))
        self.loss.scores = RoundScores(values, indices, offsets)
        self.log.scored_sequences += len(seqs)

        self.windows.enter("student.train")
        pad = self.tok.pad_token_id
        for index, on_policy in groups:
            self._queue.append((collate(seqs, index, pad), on_policy, step))
            if on_policy:
                self.log.on_batches += 1
            else:
                self.log.off_batches += 1
        self.log.rounds += 1


def onpolicy_data(method: MethodConfig, windows: PhaseWindows, parts, loss: OnPolicyKD
                  ) -> OnPolicyData:
    """The run's ``OnPolicyData`` from its parts (``methods.TrainParts``): rounds over the
    task's prompt pool, generation in batches of ``generation.batch_size``, the teacher's
    scores kept as ``logits`` says (``top_k``, capped at the vocabulary, and ``dtype``;
    scored in batches of ``logits.batch_size``). The windows are annotated by the method
    (``methods/on_policy.py``) before the rounds start."""
    student, loaded_teacher = parts.student, parts.teacher
    gen, lc, training = parts.generation, parts.logits, parts.training
    return OnPolicyData(
        method=method, student=student.model, teacher=loaded_teacher.model,
        tokenizer=parts.tokenizer, prompts=list(parts.data.pool),
        offpolicy=parts.sequences if method.lmbda < 1.0 else None,
        loss=loss, windows=windows, batch_size=training.batch_size,
        grad_accum=training.grad_accum, generate_batch_size=gen.batch_size,
        score_batch_size=lc.batch_size, top_k=lc.top_k, score_dtype=lc.dtype,
        vocab_size=score_vocab(loss, loaded_teacher.model),
        max_len=min(student.max_len, loaded_teacher.max_len), seed=parts.seed,
        device=parts.device, student_autocast=student.autocast,
        teacher_autocast=loaded_teacher.autocast)


def score_vocab(loss: OnPolicyKD, teacher) -> int:
    """The vocabulary the teacher's scores cover: the tokenizer's (shared) ids, else the
    teacher's output width."""
    return int(loss.vocab_size or teacher.get_output_embeddings().weight.shape[0])
