"""What lm-evaluation-harness runs through the model, counted as it runs (``count_work``).

The harness reports scores, not work. Its ``hf`` model funnels every request through
three methods, which are wrapped on the model object (nothing else of the harness is
touched):

- ``_loglikelihood_tokens`` (loglikelihood and rolling-loglikelihood requests, already
  encoded as context and continuation tokens): each sequence the model is fed counts its
  tokens once. The harness feeds ``(context + continuation)[:-1]``, left-truncated to its
  ``max_length``, and with its logits cache on (the default) one pass serves every request
  whose ``context + continuation[:-1]`` is the same (a multiple-choice question with
  one-token answers costs one pass, not one per answer), so those count once;
- ``_model_call``: every forward pass while scoring (``score_batches``);
- ``_model_generate`` (``generate_until``, one call per batch): the prompt tokens (its
  attention mask: padding not counted), the tokens generated for each row up to and
  including the first end-of-sequence token (the padding after it not counted), the
  decoding steps (the batch runs until its longest row ends) and the batches.

These are the counts the built-in evaluation records (docs/pipelines.md, Stages), so J/token
reads the same for both backends. A harness model without these methods (another model
type, a future harness) gets no counters: ``count_work`` returns None and the stage has no
tokens, as before.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

HOOKS = ("_loglikelihood_tokens", "_model_call", "_model_generate")


@dataclass
class HarnessWork:
    """Tokens and passes of one evaluation through the harness."""

    scored_tokens: int = 0  # tokens fed to loglikelihood passes
    score_batches: int = 0  # forward passes while scoring
    prompt_tokens: int = 0  # generate_until prompts, real tokens
    new_tokens: int = 0  # generated, up to and including EOS
    gen_batches: int = 0
    decode_steps: int = 0

    @property
    def tokens(self) -> int:
        """Every token the model processed: scored, prompted and generated."""
        return self.scored_tokens + self.prompt_tokens + self.new_tokens

    def info(self) -> dict[str, int]:
        """The stage-info keys of the built-in evaluation (analysis/costwork.py reads them);
        the generation keys only when something was generated."""
        out = asdict(self)
        if not self.gen_batches:
            for k in ("prompt_tokens", "new_tokens", "gen_batches", "decode_steps"):
                out.pop(k)
        if not self.score_batches and not self.scored_tokens:
            out.pop("score_batches")
            out.pop("scored_tokens")
        return out


def _eos_ids(lm: Any) -> set[int]:
    ids = set()
    eot = getattr(lm, "eot_token_id", None)
    if isinstance(eot, int):
        ids.add(eot)
    gen = getattr(getattr(lm, "model", None), "generation_config", None)
    eos = getattr(gen, "eos_token_id", None)
    ids.update([eos] if isinstance(eos, int) else list(eos or []))
    return ids


def _new_tokens(row: list[int], eos: set[int]) -> int:
    for i, tok in enumerate(row):
        if tok in eos:
            return i + 1
    return len(row)


def count_work(lm: Any) -> HarnessWork | None:
    """Wrap ``lm``'s request methods to count into a fresh ``HarnessWork`` (see the module
    docstring); None when ``lm`` lacks them."""
    if not all(callable(getattr(lm, h, None)) for h in HOOKS):
        return None
    work = HarnessWork()
    scoring = [False]
    loglikelihood, model_call, model_generate = (getattr(lm, h) for h in HOOKS)
    max_length = int(lm.max_length)
    shared = bool(getattr(lm, "logits_cache", False)) and \
        getattr(lm, "backend", "causal") == "causal"

    def counted_loglikelihood(requests, *args, **kwargs):
        seen: set[tuple[int, ...]] = set()
        for _, context, continuation in requests:
            fed = tuple(context + continuation[:-1])
            if shared:
                if fed in seen:
                    continue
                seen.add(fed)
            work.scored_tokens += min(len(fed), max_length)
        scoring[0] = True
        try:
            return loglikelihood(requests, *args, **kwargs)
        finally:
            scoring[0] = False

    def counted_call(*args, **kwargs):
        if scoring[0]:
            work.score_batches += 1
        return model_call(*args, **kwargs)

    eos = _eos_ids(lm)

    def counted_generate(context, *args, **kwargs):
        out = model_generate(context, *args, **kwargs)
        mask = kwargs.get("attention_mask")
        work.prompt_tokens += int(mask.sum()) if mask is not None else int(context.numel())
        width = int(context.shape[1])
        rows = out[:, width:].tolist()
        work.new_tokens += sum(_new_tokens(r, eos) for r in rows)
        work.decode_steps += max((len(r) for r in rows), default=0)
        work.gen_batches += 1
        return out

    lm._loglikelihood_tokens = counted_loglikelihood
    lm._model_call = counted_call
    lm._model_generate = counted_generate
    return work
