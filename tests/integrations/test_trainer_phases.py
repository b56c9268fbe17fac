"""The pieces of the Trainer phase hooks, without a Trainer: token counts of a generate
result, the wrapping and unwrapping of real tiny models, and finding the trainer whose
event is being handled."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import torch

from distillmeter.integrations.trainer_phases import (
    PhaseHooks,
    find_trainer,
    generated_tokens,
    read_tokens,
)
from distillmeter.models import TinyModelSpec, build_char_tokenizer, build_llama


def test_generated_tokens_stop_at_each_rows_first_eos():
    pad, eos = 0, 2
    seqs = torch.tensor([[5, 6, 7, 2, pad, pad],    # EOS third new token: 2
                         [5, 6, 2, 9, 2, 9],        # first EOS counts, not what follows: 1
                         [5, 6, 8, 8, 8, 8],        # never stopped: all 4
                         [5, 6, 2, 2, 2, 2]])       # pad == EOS after the first one: 1
    assert generated_tokens(seqs, 2, [eos]) == 2 + 1 + 4 + 1
    assert generated_tokens(SimpleNamespace(sequences=seqs), 2, [eos]) == 8
    assert generated_tokens(seqs, 2, []) == 16  # no EOS known: every new column
    assert generated_tokens(seqs, 6, [eos]) == 0
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    assert read_tokens((), {"input_ids": torch.ones(2, 3), "attention_mask": mask}) == (5, 2)
    assert read_tokens((torch.ones(2, 3, dtype=torch.long),), {}) == (6, 2)


def _tiny(seed: int, d: int):
    tok = build_char_tokenizer("0123456789+=")
    return build_llama(TinyModelSpec(d_model=d, n_layers=1, n_heads=2, d_ff=2 * d,
                                     max_len=16), tok, seed=seed), tok


def test_hooks_meter_the_calls_and_put_the_methods_back():
    teacher, tok = _tiny(1, 32)
    student, _ = _tiny(0, 16)
    windows = []

    class Window:
        def __init__(self, name, info):
            self.name, self.info, self.tokens, self.samples = name, info, 0, 0

        def add(self, tokens=0, samples=0):
            self.tokens += tokens
            self.samples += samples

    metering = {"on": True}

    @contextmanager
    def phase(name, info):
        if not metering["on"]:
            yield None
            return
        w = Window(name, info)
        windows.append(w)
        yield w

    trainer = SimpleNamespace(teacher_model=teacher, model=student)
    hooks = PhaseHooks(phase)
    assert hooks.install(trainer) == ["student.generate", "teacher.generate", "teacher.score"]
    ids = torch.tensor([[1, 3, 4, 13], [0, 1, 5, 13]])
    att = (ids != 0).long()
    with torch.no_grad():
        out = teacher(input_ids=ids, attention_mask=att)  # through nn.Module.__call__
        gen = student.generate(input_ids=ids, attention_mask=att, max_new_tokens=3,
                               do_sample=False, pad_token_id=0, eos_token_id=2)
    assert out.logits.shape[:2] == (2, 4)
    score, sgen = windows
    assert (score.name, score.tokens, score.samples) == ("teacher.score", 7, 2)
    assert score.info["params"] == sum(p.numel() for p in teacher.parameters())
    assert sgen.name == "student.generate" and sgen.samples == 2
    new = generated_tokens(gen, 4, [2])
    assert 2 <= new <= 6 and sgen.tokens == 7 + new
    # the forward passes inside the student's generate are not metered apart
    assert len(windows) == 2 and hooks.calls == {"teacher.score": 1, "student.generate": 1}
    metering["on"] = False  # outside training: the calls run as they are
    with torch.no_grad():
        teacher(input_ids=ids, attention_mask=att)
    assert len(windows) == 2
    hooks.remove()
    assert "forward" not in vars(teacher) and "generate" not in vars(student)
    assert PhaseHooks(phase).install(SimpleNamespace(model=student)) == []  # no teacher


def test_find_trainer_is_the_caller_holding_the_callback():
    callback = object()

    class Handler:
        callbacks = [callback]

    class Trainer:
        callback_handler = Handler()

        def train(self):
            return self._event()

        def _event(self):
            return find_trainer(callback)

    trainer = Trainer()
    assert trainer.train() is trainer
    assert find_trainer(object()) is None
