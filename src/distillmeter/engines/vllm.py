"""vLLM for the teacher's work (extra ``[vllm]``): ``teacher.generate`` and ``teacher.logits``.

    backend, why = make_generation_backend("vllm", model=model, tokenizer=tok, device=dev,
                                           model_path="ckpt/teacher")   # distillmeter.engines
    gens = backend.generate(prompts, max_new_tokens=128, batch_size=256)
    write_cache_vllm(folder, backend, seqs, key_hash=h, top_k=64, vocab_size=v)  # logit_cache

vLLM is imported only when an engine is built, so this module imports (and its request
building and result conversion are tested) where vLLM is absent. When vLLM is asked for but
absent (or there is no CUDA), ``make_generation_backend`` falls back to the transformers
backend and says why; ``backend.name`` says which one ran, for the report's labels.

Requests are token ids, encoded by the same tokenizer the transformers backend uses
(special tokens included), so both backends see identical inputs. Per prompt:
``SamplingParams(n=1, max_tokens, temperature, top_p, seed)``; the seed is derived from the
run's seed and the prompt's index, so results do not depend on how prompts are chunked.

``teacher.logits``: one request per training sequence with ``prompt_logprobs=k`` and
``max_tokens=1``. vLLM's ``prompt_logprobs[j]`` is a ``{token_id: Logprob}`` dict for the
distribution of token j given the tokens before it (None for j = 0), holding the top-k and
the actual token. The cache stores, for every learned position (tokens ``prompt_len ..
len-1``, see ``data.py``), the k most likely tokens among the shared vocabulary, in the
layout of ``logit_cache.py`` (same shards, offsets and manifest; ``LogitCache`` loads it).
vLLM's values are log-softmax over the model's whole output vocabulary (its default
``logprobs_mode``, raw log-probs at temperature 1); padding rows beyond the shared
vocabulary are dropped, and ``logprobs_margin`` extra entries are asked for so that k
remain.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from distillmeter.engines.generation import Generation, OnBatch, check_sampling
from distillmeter.errors import UserError

_SEED_MIX = 0x9E3779B1  # golden-ratio multiplier: distinct, well-spread per-prompt seeds


def availability() -> tuple[bool, str]:
    """Whether vLLM can run here, and why not."""
    if importlib.util.find_spec("vllm") is None:
        return False, "vLLM is not installed (pip install 'distillmeter[vllm]')"
    if not torch.cuda.is_available():
        return False, "vLLM needs a CUDA GPU and torch sees none"
    return True, "vLLM is installed and a CUDA GPU is visible"


def available() -> bool:
    """True when vLLM is installed and a CUDA GPU is visible."""
    return availability()[0]


@dataclass
class VllmSettings:
    """How the vLLM engine is built (``vllm.LLM`` arguments). ``max_logprobs`` must cover
    ``top_k + logprobs_margin`` of the logit cache (vLLM's own default is 20)."""

    tensor_parallel_size: int = 1
    dtype: str = "auto"
    gpu_memory_utilization: float = 0.6  # the transformers teacher may share the GPU
    max_model_len: int | None = None
    max_logprobs: int = 128
    logprobs_margin: int = 0
    enforce_eager: bool = False
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def llm_kwargs(self, model_path: str, tokenizer_path: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``vllm.LLM``."""
        kw: dict[str, Any] = dict(model=model_path, tokenizer=tokenizer_path or model_path,
                                  tensor_parallel_size=self.tensor_parallel_size,
                                  dtype=self.dtype, seed=self.seed,
                                  gpu_memory_utilization=self.gpu_memory_utilization,
                                  max_logprobs=self.max_logprobs,
                                  enforce_eager=self.enforce_eager)
        if self.max_model_len is not None:
            kw["max_model_len"] = self.max_model_len
        kw.update(self.extra)
        return kw


# --------------------------------------------------------------------------- requests


def prompt_seed(seed: int, index: int) -> int:
    """A per-prompt sampling seed from the run's seed and the prompt's index."""
    return (int(seed) * _SEED_MIX + int(index)) % (2**31 - 1)


def sampling_kwargs(*, max_new_tokens: int, temperature: float, top_p: float,
                    seed: int | None) -> dict[str, Any]:
    """``SamplingParams`` arguments for one generation request (n=1). Greedy when
    ``temperature == 0`` (top_p and the seed do not apply then)."""
    kw: dict[str, Any] = dict(n=1, max_tokens=max_new_tokens, min_tokens=0,
                              temperature=float(temperature), repetition_penalty=1.0,
                              skip_special_tokens=True)
    if temperature > 0:
        kw["top_p"] = float(top_p)
        kw["seed"] = seed
    else:
        kw["top_p"] = 1.0
    return kw


def logprobs_kwargs(k: int) -> dict[str, Any]:
    """``SamplingParams`` arguments for a prompt-logprobs request: the prompt's top-k at
    every position, one (discarded) greedy token generated, no detokenizing."""
    return dict(n=1, max_tokens=1, temperature=0.0, prompt_logprobs=int(k), detokenize=False)


# --------------------------------------------------------------------------- results


def to_generation(prompt: str, output: Any, eos_ids: Sequence[int]) -> Generation:
    """A ``Generation`` from a vLLM ``RequestOutput`` (``prompt_token_ids``,
    ``outputs[0].text/token_ids/finish_reason/stop_reason``). ``new_tokens`` counts the
    EOS that ended a sequence, as the transformers backend does, whether or not vLLM put it
    in ``token_ids`` (and ``ids`` ends with it)."""
    out = output.outputs[0]
    ids = list(out.token_ids)
    finished = out.finish_reason == "stop"
    new = len(ids)
    ended_by_eos = finished and getattr(out, "stop_reason", None) is None
    if ended_by_eos and (not ids or ids[-1] not in eos_ids):
        new += 1
        ids.append(int(eos_ids[0]))
    return Generation(prompt=prompt, completion=out.text,
                      prompt_tokens=len(output.prompt_token_ids), new_tokens=new,
                      finished=finished, ids=tuple(ids))


def _logprob(entry: Any) -> float:
    return float(entry.logprob if hasattr(entry, "logprob") else entry)


def topk_from_prompt_logprobs(prompt_logprobs: Sequence[Mapping[int, Any] | None],
                              prompt_len: int, k: int, vocab_size: int
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k (values [P, k] float32, indices [P, k] int64) at the learned positions of one
    sequence, P = len - prompt_len, in the order ``logit_cache`` stores them. Raises
    UserError when fewer than k tokens of the shared vocabulary were returned somewhere."""
    n = len(prompt_logprobs)
    values = torch.empty((n - prompt_len, k), dtype=torch.float32)
    indices = torch.empty((n - prompt_len, k), dtype=torch.int64)
    for row, j in enumerate(range(prompt_len, n)):
        entry = prompt_logprobs[j]
        if entry is None:
            raise UserError(f"vLLM returned no prompt logprobs at position {j}")
        ranked = sorted(((_logprob(v), int(t)) for t, v in entry.items() if int(t) < vocab_size),
                        key=lambda x: (-x[0], x[1]))
        if len(ranked) < k:
            raise UserError(
                f"vLLM returned {len(ranked)} log-probs within the shared vocabulary "
                f"({vocab_size}) at position {j}, fewer than top_k={k}: raise "
                "vllm logprobs_margin (padding rows of the model's vocabulary took places)")
        values[row] = torch.tensor([v for v, _ in ranked[:k]])
        indices[row] = torch.tensor([t for _, t in ranked[:k]])
    return values, indices


# --------------------------------------------------------------------------- engine


class Engine(Protocol):
    """What the backend needs from vLLM: run token-id requests with one set of sampling
    arguments each, results in request order. ``VllmEngine`` is the real one."""

    def run(self, token_ids: list[list[int]], params: list[dict[str, Any]]) -> list[Any]: ...


class VllmEngine:
    """``vllm.LLM``, built at first use (loading a model takes a while; a run that never
    asks vLLM for anything never pays for it)."""

    def __init__(self, model_path: str | Path, settings: VllmSettings | None = None,
                 tokenizer_path: str | Path | None = None) -> None:
        self.model_path = str(model_path)
        self.tokenizer_path = str(tokenizer_path) if tokenizer_path else None
        self.settings = settings or VllmSettings()
        self._llm: Any = None

    def _engine(self) -> Any:
        if self._llm is None:
            ok, why = availability()
            if not ok:
                raise UserError(why)
            import vllm

            self._llm = vllm.LLM(**self.settings.llm_kwargs(self.model_path,
                                                             self.tokenizer_path))
        return self._llm

    def run(self, token_ids: list[list[int]], params: list[dict[str, Any]]) -> list[Any]:
        from vllm import SamplingParams

        llm = self._engine()
        prompts = [{"prompt_token_ids": ids} for ids in token_ids]
        return llm.generate(prompts, [SamplingParams(**p) for p in params], use_tqdm=False)


# --------------------------------------------------------------------------- backend


class VllmBackend:
    """A ``GenerationBackend`` on vLLM, plus prompt log-probs for the logit cache.

    ``tokenizer``: the teacher's (encodes the requests exactly as the transformers backend
    does); ``engine``: a ``VllmEngine`` (or anything with its ``run``)."""

    name = "vllm"

    def __init__(self, engine: Engine, tokenizer: Any, settings: VllmSettings | None = None):
        self.engine = engine
        self.tokenizer = tokenizer
        self.settings = settings or getattr(engine, "settings", None) or VllmSettings()
        eos = tokenizer.eos_token_id
        if eos is None:
            raise UserError("generation needs an EOS token: the tokenizer defines none")
        self.eos_ids = list(eos) if isinstance(eos, (list, tuple)) else [int(eos)]

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int,
                 temperature: float = 0.0, top_p: float = 1.0, batch_size: int = 64,
                 seed: int = 0, on_batch: OnBatch | None = None) -> list[Generation]:
        """Completions for ``prompts``, submitted ``batch_size`` at a time (vLLM schedules
        each submission continuously, up to its ``max_num_seqs``)."""
        check_sampling(max_new_tokens, temperature, top_p, batch_size)
        prompts = list(prompts)
        encoded = self.tokenizer(prompts, add_special_tokens=True)["input_ids"]
        results: list[Generation] = []
        for start in range(0, len(prompts), batch_size):
            idx = range(start, min(start + batch_size, len(prompts)))
            params = [sampling_kwargs(max_new_tokens=max_new_tokens, temperature=temperature,
                                      top_p=top_p, seed=prompt_seed(seed, i)) for i in idx]
            outputs = self.engine.run([list(encoded[i]) for i in idx], params)
            batch = [to_generation(prompts[i], o, self.eos_ids)
                     for i, o in zip(idx, outputs, strict=True)]
            results += batch
            if on_batch is not None:
                on_batch(batch)
        return results

    def topk_logprobs(self, seqs: Any, index: Sequence[int], *, k: int, vocab_size: int,
                      batch_size: int = 64,
                      on_batch: Callable[[int, int], None] | None = None
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Per sequence of ``index`` (in order): its learned positions' top-k (values,
        indices), as ``topk_from_prompt_logprobs`` returns them."""
        want = k + self.settings.logprobs_margin
        if want > self.settings.max_logprobs:
            raise UserError(f"top_k {k} + logprobs_margin {self.settings.logprobs_margin} "
                            f"exceeds vllm max_logprobs ({self.settings.max_logprobs})")
        index = list(index)
        for start in range(0, len(index), batch_size):
            chunk = index[start : start + batch_size]
            outputs = self.engine.run([list(seqs.ids[i]) for i in chunk],
                                      [logprobs_kwargs(want) for _ in chunk])
            for i, out in zip(chunk, outputs, strict=True):
                yield topk_from_prompt_logprobs(out.prompt_logprobs, seqs.prompt_lens[i], k,
                                                vocab_size)
            if on_batch is not None:
                on_batch(sum(len(seqs.ids[i]) for i in chunk), len(chunk))
