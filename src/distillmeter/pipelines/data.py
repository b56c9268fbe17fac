"""Training sequences and batches: the one place text becomes tensors.

A training sequence is ``BOS + prompt + target + EOS``. The model learns the target (and the
EOS that ends it) given the prompt: the loss positions are those whose *next* token belongs
to the target. The teacher's logit cache stores exactly those positions, in this order, so
the cache and the batches line up by sequence index and position.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from distillmeter.errors import UserError


@dataclass
class Sequences:
    """Tokenized sequences: ``ids[i]`` is BOS + prompt + target + EOS and ``prompt_lens[i]``
    counts its leading tokens that are not learned (BOS + prompt)."""

    ids: list[list[int]]
    prompt_lens: list[int]

    def __len__(self) -> int:
        return len(self.ids)

    def n_loss_positions(self, i: int) -> int:
        """How many positions of sequence ``i`` are learned (target tokens + EOS)."""
        return len(self.ids[i]) - self.prompt_lens[i]

    def total_tokens(self) -> int:
        return sum(len(s) for s in self.ids)

    def fingerprint(self) -> str:
        """sha256 over the token ids and prompt lengths: identifies the exact sequences (the
        logit cache records it and a student refuses a cache built on other sequences)."""
        h = hashlib.sha256()
        for ids, p in zip(self.ids, self.prompt_lens, strict=True):
            h.update(f"{p}:{','.join(map(str, ids))};".encode())
        return h.hexdigest()


def encode_pairs(tokenizer, pairs: Sequence[tuple[str, str]], max_len: int) -> Sequences:
    """Tokenize (prompt, target) pairs into training sequences: the prompt encoded exactly
    as generation encodes it (with the tokenizer's special tokens, i.e. BOS), the target
    without, then EOS: what ``models.encode_prompt_completion`` does, batched (one tokenizer
    call per side instead of two per pair). A sequence longer than the model's ``max_len``
    is a UserError (silently cutting it would teach a wrong answer)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise UserError("the tokenizer has no EOS token; training needs one to end answers")
    if not pairs:
        return Sequences(ids=[], prompt_lens=[])
    prompts = tokenizer([p for p, _ in pairs], add_special_tokens=True)["input_ids"]
    targets = tokenizer([t for _, t in pairs], add_special_tokens=False)["input_ids"]
    ids, prompt_lens = [], []
    for (prompt, target), head, tail in zip(pairs, prompts, targets, strict=True):
        seq = list(head) + list(tail) + [eos]
        if len(seq) > max_len:
            raise UserError(f"a training sequence has {len(seq)} tokens, more than the model's "
                            f"max_len ({max_len}): {prompt!r} -> {target[:40]!r}")
        if not head:
            raise UserError(f"empty prompt {prompt!r}: the first learned token needs context")
        ids.append(seq)
        prompt_lens.append(len(head))
    return Sequences(ids=ids, prompt_lens=prompt_lens)


@dataclass
class Batch:
    """A right-padded batch. ``loss_mask[b, t]`` is True where position t's logits predict a
    learned token (``input_ids[b, t + 1]``); it has one column fewer than ``input_ids``."""

    index: list[int]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor

    @property
    def n_tokens(self) -> int:
        """Non-padding tokens: what the token budget and the stage's token count measure."""
        return int(self.attention_mask.sum())

    def targets(self) -> torch.Tensor:
        """The next token at every position (shifted input ids), ``[B, L-1]``."""
        return self.input_ids[:, 1:]

    def to(self, device: str | torch.device) -> Batch:
        return Batch(self.index, self.input_ids.to(device), self.attention_mask.to(device),
                     self.loss_mask.to(device))


def collate(seqs: Sequences, index: Sequence[int], pad_id: int) -> Batch:
    """Build the batch of sequences ``index`` (right padding)."""
    length = max(len(seqs.ids[i]) for i in index)
    input_ids = torch.full((len(index), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(index), length), dtype=torch.long)
    loss_mask = torch.zeros((len(index), length - 1), dtype=torch.bool)
    for row, i in enumerate(index):
        ids = seqs.ids[i]
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention[row, : len(ids)] = 1
        # position t predicts token t+1: learned tokens are prompt_len .. len-1
        loss_mask[row, seqs.prompt_lens[i] - 1 : len(ids) - 1] = True
    return Batch(list(index), input_ids, attention, loss_mask)


def batches(seqs: Sequences, batch_size: int, pad_id: int, *, seed: int,
            shuffle: bool = True) -> Iterator[Batch]:
    """Batches forever, reshuffled every epoch from ``seed`` (the same seed, the same order).
    The last partial batch of an epoch is kept so that small sets lose no example."""
    if len(seqs) == 0:
        raise UserError("no training sequences (is the data source empty?)")
    rng = random.Random(seed)
    order = list(range(len(seqs)))
    while True:
        if shuffle:
            rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            yield collate(seqs, order[start : start + batch_size], pad_id)


def eval_batches(seqs: Sequences, batch_size: int, pad_id: int) -> Iterator[Batch]:
    """Each sequence once, in order."""
    for start in range(0, len(seqs), batch_size):
        yield collate(seqs, list(range(start, min(start + batch_size, len(seqs)))), pad_id)
