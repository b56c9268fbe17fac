"""Batched generation with a real tiny Llama, checked against a plain greedy loop."""

from __future__ import annotations

import pytest
import torch

from distillmeter.engines.generation import Generation, GenerationBackend, TransformersBackend
from distillmeter.errors import UserError
from distillmeter.models import (
    TinyModelSpec,
    build_char_tokenizer,
    build_llama,
    encode_prompt_completion,
)
from distillmeter.tasks import ArithmeticTask

TASK = ArithmeticTask()


@pytest.fixture(scope="module")
def trained():
    """A tiny model given a few quick steps on worked sums, so that it writes
    something task-like and ends (some of) its answers with EOS."""
    tok = build_char_tokenizer(TASK.alphabet)
    model = build_llama(
        TinyModelSpec(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=32), tok, seed=0
    )
    seqs = [encode_prompt_completion(tok, ex.prompt, ex.target)[0]
            for ex in (TASK.example(a, b) for a, b in [(12, 34), (345, 678), (99, 1), (500, 5)])]
    width = max(map(len, seqs))
    x = torch.tensor([s + [tok.pad_token_id] * (width - len(s)) for s in seqs])
    labels = x.masked_fill(x == tok.pad_token_id, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(60):
        loss = model(input_ids=x, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, tok


def plain_greedy(model, tok, prompt: str, max_new: int) -> list[int]:
    """Reference: one prompt, no padding, no KV cache, full forward pass per token."""
    ids = tok(prompt)["input_ids"]
    new: list[int] = []
    with torch.no_grad():
        for _ in range(max_new):
            nxt = int(model(torch.tensor([ids + new])).logits[0, -1].argmax())
            new.append(nxt)
            if nxt == tok.eos_token_id:
                break
    return new


PROMPTS = ["12+34=", "345+678=", "99+1=", "500+5=", "7+7=", "123+456=", "1+999="]


def test_left_padded_batches_match_unpadded_greedy(trained):
    model, tok = trained
    backend = TransformersBackend(model, tok)
    assert isinstance(backend, GenerationBackend)
    seen: list[list[Generation]] = []
    gens = backend.generate(PROMPTS, max_new_tokens=14, batch_size=3, on_batch=seen.append)
    assert [g.prompt for g in gens] == PROMPTS
    assert sum(len(b) for b in seen) == len(PROMPTS) and len(seen) == 3
    finished = 0
    for prompt, g in zip(PROMPTS, gens, strict=True):
        ref = plain_greedy(model, tok, prompt, 14)
        ended = ref[-1] == tok.eos_token_id
        assert g.finished == ended
        finished += ended
        assert g.new_tokens == len(ref)  # EOS counted, padding not
        assert g.completion == tok.decode(ref[:-1] if ended else ref, skip_special_tokens=True)
        assert g.prompt_tokens == len(prompt) + 1  # characters + BOS
        assert "<" not in g.completion  # special tokens stripped
    assert finished >= 1  # the check above covered an EOS stop


def test_max_new_tokens_caps_counts(trained):
    model, tok = trained
    gens = TransformersBackend(model, tok).generate(PROMPTS[:4], max_new_tokens=2, batch_size=4)
    for g in gens:
        assert g.new_tokens <= 2
        if not g.finished:
            assert g.new_tokens == 2 and len(g.completion) == 2


def test_sampling_is_reproducible_and_leaves_global_rng_alone(trained):
    model, tok = trained
    backend = TransformersBackend(model, tok)
    prompts = PROMPTS * 3
    torch.manual_seed(42)
    before = torch.rand(1)
    torch.manual_seed(42)
    a = backend.generate(prompts, max_new_tokens=12, temperature=1.5, top_p=0.95,
                         batch_size=8, seed=1)
    assert torch.equal(torch.rand(1), before)
    b = backend.generate(prompts, max_new_tokens=12, temperature=1.5, top_p=0.95,
                         batch_size=8, seed=1)
    c = backend.generate(prompts, max_new_tokens=12, temperature=1.5, top_p=0.95,
                         batch_size=8, seed=2)
    assert a == b
    assert [g.completion for g in a] != [g.completion for g in c]
    greedy = backend.generate(prompts, max_new_tokens=12, batch_size=8)
    assert [g.completion for g in a] != [g.completion for g in greedy]


def test_bad_settings(trained):
    model, tok = trained
    backend = TransformersBackend(model, tok)
    with pytest.raises(UserError, match="top_p"):
        backend.generate(["1+1="], max_new_tokens=3, temperature=1.0, top_p=0)
    with pytest.raises(UserError, match="temperature"):
        backend.generate(["1+1="], max_new_tokens=3, temperature=-1)
    with pytest.raises(UserError, match="max_new_tokens"):
        backend.generate(["1+1="], max_new_tokens=0)
    assert backend.generate([], max_new_tokens=3) == []
