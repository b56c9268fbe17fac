"""What a stage's work is, in the cost model's terms (pure functions).

A stage is read the same way whether it was measured (a report's stage: tokens, samples
and the ``info`` the pipelines recorded) or only planned (``pipelines.work``: the same
fields, worked out from a config). Its work is split into *operations*, each with a count
of passes and of FLOPs:

- ``train``: forward + backward passes (``micro_batches``), 6 x params FLOPs per token;
- ``score``: teacher-forced forward passes over whole sequences (``score_batches``), 2 x
  params per token (the logit cache, the loss half of an evaluation, a live KD teacher);
- ``decode``: generation steps (``decode_steps``: each batch decodes until its longest
  answer ends), 2 x params per token for the prompts (prefill) and for every row of every
  step; a backend other than transformers is its own operation (``decode[vllm]``);
- ``kd``: the cached-KD loss's own work per training pass (gathering the top-k cache).

Attention adds 4 x layers x attention width x context FLOPs per token forward (x3 for
training), with the context the mean position attended (half the sequence when scoring or
training; prompt + half the answer when decoding). Where the recorded info lacks a count
(runs from before the pipelines recorded their work, or another tool's runs), the nearest
estimate is used and said (``notes``); where nothing maps, the stage's ``reason`` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from distillmeter.analysis.efficiency import stage_role

# the backend whose decoding the "decode" operation means; any other is its own operation
DEFAULT_ENGINE = "transformers"


@dataclass
class OpWork:
    passes: float  # forward(+backward) passes; 0 when unknown (then noted)
    flops: float


@dataclass
class StageWork:
    """A stage's work by operation. ``hi``: the same stage at the top of its work range
    (generation whose answers run to max_new_tokens), when it has one."""

    ops: dict[str, OpWork] = field(default_factory=dict)
    params: float | None = None
    notes: list[str] = field(default_factory=list)
    hi: StageWork | None = None

    @property
    def flops(self) -> float:
        return math.fsum(w.flops for w in self.ops.values())

    def per_pass_flops(self, op: str) -> float | None:
        """FLOPs per pass of one operation (how big each pass is), None if passes unknown."""
        w = self.ops.get(op)
        return w.flops / w.passes if w is not None and w.passes > 0 else None


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v >= 0 else None


def stage_op_kind(name: str) -> str | None:
    """The operation a stage's name suggests when its info says nothing more: ``train`` for
    ``*.train*``, ``score`` for ``*.logits*`` / ``*.score*``, ``decode`` for
    ``*.generate*``, ``eval`` (decode + score) for ``eval.*``; None otherwise."""
    side, _, what = name.partition(".")
    if side == "eval":
        return "eval"
    if what.startswith("train"):
        return "train"
    if what.startswith(("logits", "score")):
        return "score"
    if what.startswith("generate"):
        return "decode"
    return None


def _attn(info: dict[str, Any], prefix: str = "") -> float | None:
    """4 x layers x attention width: attention FLOPs per token per context position."""
    layers, width = _number(info.get(f"{prefix}layers")), _number(info.get(f"{prefix}attn_width"))
    return 4.0 * layers * width if layers and width else None


def _passes(info: dict[str, Any], key: str, samples: float, what: str,
            notes: list[str]) -> float:
    """A stage's forward/backward passes: recorded under ``key``, else sequences / batch
    size (noted), else 0 (no per-pass term; noted)."""
    passes = _number(info.get(key))
    batch = _number(info.get("batch_size"))
    if passes is None and batch and samples:
        passes = math.ceil(samples / batch)
        notes.append(f"{what} passes taken as sequences / batch size (not recorded)")
    if passes is None:
        passes = 0.0
        notes.append("per-pass overhead not counted: neither passes nor batch size recorded")
    return passes


def _train(tokens: float, samples: float, info: dict[str, Any], params: float,
           notes: list[str]) -> dict[str, OpWork]:
    passes = _passes(info, "micro_batches", samples, "training", notes)
    seq = tokens / samples if samples else 0.0
    a = _attn(info) or 0.0
    ops = {"train": OpWork(passes, 6.0 * params * tokens + 3.0 * a * tokens * (seq + 1) / 2)}
    if info.get("kd") == "cached":
        ops["kd"] = OpWork(passes, 0.0)
    t_params = _number(info.get("teacher_params"))
    if info.get("kd") == "online" and t_params:
        ta = _attn(info, "teacher_") or 0.0
        ops["score"] = OpWork(passes, 2.0 * t_params * tokens + ta * tokens * (seq + 1) / 2)
    return ops


def _score(tokens: float, samples: float, info: dict[str, Any], params: float,
           notes: list[str]) -> OpWork:
    passes = _passes(info, "score_batches", samples, "scoring", notes)
    scored = _number(info.get("scored_tokens"))
    if scored is None:
        scored = tokens
    seq = scored / samples if samples else 0.0
    a = _attn(info) or 0.0
    return OpWork(passes, 2.0 * params * scored + a * scored * (seq + 1) / 2)


def _decode(samples: float, info: dict[str, Any], params: float,
            steps_key: str = "decode_steps") -> OpWork | None:
    steps = _number(info.get(steps_key))
    batches = _number(info.get("gen_batches"))
    prompt = _number(info.get("prompt_tokens"))
    if steps is None or not batches or prompt is None or not samples:
        return None
    rows_steps = samples * steps / batches  # rows x steps, batches taken as equal
    p_len = prompt / samples
    a = _attn(info) or 0.0
    flops = 2.0 * params * (prompt + rows_steps) + a * (
        prompt * (p_len + 1) / 2 + rows_steps * (p_len + steps / batches / 2))
    return OpWork(steps, flops)


def decode_op(info: dict[str, Any]) -> str:
    """``decode`` for the transformers backend; ``decode[<backend>]`` for any other."""
    backend = str(info.get("backend") or DEFAULT_ENGINE)
    return "decode" if backend == DEFAULT_ENGINE else f"decode[{backend}]"


def stage_work(name: str, tokens: float, samples: float, info: dict[str, Any],
               labels: dict[str, Any] | None = None) -> tuple[StageWork | None, str | None]:
    """(the stage's work, None) or (None, why it cannot be mapped)."""
    labels = labels or {}
    kind = stage_op_kind(name)
    has = {k for k in ("micro_batches", "decode_steps", "score_batches") if k in info}
    if kind is None and not has:
        if name.startswith("setup."):
            return None, "no model work (forecast from its measured duration)"
        return None, ("its info records no work the cost model knows (micro_batches, "
                      "decode_steps, score_batches) and its name maps to no operation")
    params = _number(info.get("params")) or _number(labels.get(f"{stage_role(name)}_params")) \
        or _number(labels.get("params"))
    if not params:
        return None, "its parameter count is unknown (no params in its info or labels)"
    notes: list[str] = []
    work = StageWork(params=params, notes=notes)
    if kind == "train" or "micro_batches" in has:
        work.ops.update(_train(tokens, samples, info, params, notes))
        return work, None
    if "decode_steps" in has or kind == "decode" or (kind == "eval" and not has):
        dec = _decode(samples, info, params)
        if dec is None:
            return None, "its generation work (decode steps, batches, prompt tokens) was " \
                         "not recorded"
        work.ops[decode_op(info)] = dec
        if "score_batches" in has:
            work.ops["score"] = _score(0.0, samples, info, params, notes)
        rng = info.get("work_range") or {}
        if isinstance(rng, dict) and isinstance(rng.get("decode_steps"), list):
            hi_info = {**info, "decode_steps": rng["decode_steps"][-1]}
            hi = _decode(samples, hi_info, params)
            if hi is not None:
                work.hi = StageWork({**work.ops, decode_op(info): hi}, params, notes)
        return work, None
    work.ops["score"] = _score(tokens, samples, info, params, notes)
    return work, None
