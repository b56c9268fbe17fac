"""Batched text generation behind a small interface (transformers now; vLLM can plug in).

A backend turns prompts into completions and says exactly how many tokens it read and
wrote, since those counts are what the energy report divides by (J per token).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from transformers import GenerationConfig, PreTrainedTokenizerBase

from distillmeter.errors import UserError


@dataclass(frozen=True)
class Generation:
    """One prompt's result.

    ``completion``: the new text, special tokens stripped (EOS not included).
    ``prompt_tokens``: the prompt's real tokens (BOS included, padding not).
    ``new_tokens``: tokens the model generated for it, up to and including EOS; padding
    added after a row finished is not counted. ``finished``: it ended with EOS (False if it
    ran into ``max_new_tokens``). ``ids``: the ``new_tokens`` generated token ids, EOS
    included (empty where a backend does not return them)."""

    prompt: str
    completion: str
    prompt_tokens: int
    new_tokens: int
    finished: bool = True
    ids: tuple[int, ...] = ()


OnBatch = Callable[[list[Generation]], None]


@runtime_checkable
class GenerationBackend(Protocol):
    """Generates completions for prompts. ``temperature == 0`` means greedy decoding;
    otherwise sampling at ``temperature`` with nucleus ``top_p``, reproducible for a given
    ``seed`` (and batch size). ``on_batch`` is called after each batch with that batch's
    results (sum their ``new_tokens`` for progress/metering)."""

    name: str

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        batch_size: int = 64,
        seed: int = 0,
        on_batch: OnBatch | None = None,
    ) -> list[Generation]: ...


def check_sampling(max_new_tokens: int, temperature: float, top_p: float, batch_size: int) -> None:
    """UserError for out-of-range generation settings."""
    if max_new_tokens < 1:
        raise UserError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise UserError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise UserError(f"top_p must be in (0, 1], got {top_p}")
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")


class TransformersBackend:
    """``model.generate`` with left padding, an attention mask and the KV cache.

    Prompts are encoded with the tokenizer's special tokens (BOS for Llama-style
    tokenizers), the same way ``models.encode_prompt_completion`` encodes training data.
    Prompts are grouped by length before batching, so batches carry little padding; results
    come back in the prompts' order."""

    name = "transformers"

    def __init__(self, model: Any, tokenizer: PreTrainedTokenizerBase, device: str | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.device = torch.device(device) if device else next(model.parameters()).device
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos = gen_eos if gen_eos is not None else tokenizer.eos_token_id
        if eos is None:
            raise UserError("generation needs an EOS token: the tokenizer and model define none")
        self.eos_ids: list[int] = list(eos) if isinstance(eos, (list, tuple)) else [int(eos)]
        pad = tokenizer.pad_token_id
        self.pad_id: int = pad if pad is not None else self.eos_ids[0]

    def _config(self, max_new_tokens: int, temperature: float, top_p: float) -> GenerationConfig:
        # Everything set explicitly: a checkpoint's generation_config.json (e.g. a
        # repetition penalty, or transformers' default top_k=50) must not change what runs.
        common: dict[str, Any] = dict(
            max_new_tokens=max_new_tokens,
            min_new_tokens=0,
            num_beams=1,
            use_cache=True,
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_ids,
            repetition_penalty=1.0,
        )
        if temperature == 0:
            return GenerationConfig(do_sample=False, **common)
        return GenerationConfig(
            do_sample=True, temperature=temperature, top_p=top_p, top_k=0, **common
        )

    def _count_new(self, row: list[int]) -> tuple[int, bool]:
        """Real new tokens in a generated row: up to and including the first EOS."""
        for i, t in enumerate(row):
            if t in self.eos_ids:
                return i + 1, True
        return len(row), False

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        batch_size: int = 64,
        seed: int = 0,
        on_batch: OnBatch | None = None,
    ) -> list[Generation]:
        """Completions for ``prompts`` (see ``GenerationBackend``)."""
        check_sampling(max_new_tokens, temperature, top_p, batch_size)
        prompts = list(prompts)
        if not prompts:
            return []
        config = self._config(max_new_tokens, temperature, top_p)
        encoded = self.tokenizer(prompts, add_special_tokens=True)["input_ids"]
        lengths = [len(ids) for ids in encoded]
        order = sorted(range(len(prompts)), key=lambda i: lengths[i])
        results: list[Generation | None] = [None] * len(prompts)
        was_training = self.model.training
        self.model.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            # Seeded sampling without disturbing the caller's RNG state.
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                for start in range(0, len(order), batch_size):
                    idx = order[start : start + batch_size]
                    batch = self._generate_batch([prompts[i] for i in idx], config)
                    for i, g in zip(idx, batch, strict=True):
                        results[i] = g
                    if on_batch is not None:
                        on_batch(batch)
        finally:
            self.model.train(was_training)
        return [g for g in results if g is not None]

    def _generate_batch(self, prompts: list[str], config: GenerationConfig) -> list[Generation]:
        enc = self.tokenizer(
            prompts, return_tensors="pt", padding=True, padding_side="left",
            add_special_tokens=True,
        )
        input_ids = enc["input_ids"].to(self.device)
        attention_mask = enc["attention_mask"].to(self.device)
        out = self.model.generate(
            input_ids=input_ids, attention_mask=attention_mask, generation_config=config
        )
        new = out[:, input_ids.shape[1] :].tolist()
        prompt_tokens = attention_mask.sum(dim=1).tolist()
        batch = []
        for prompt, row, n_prompt in zip(prompts, new, prompt_tokens, strict=True):
            n_new, finished = self._count_new(row)
            content = row[: n_new - 1] if finished else row[:n_new]
            text = self.tokenizer.decode(content, skip_special_tokens=True)
            batch.append(Generation(prompt, text, int(n_prompt), n_new, finished,
                                    tuple(row[:n_new])))
        return batch
