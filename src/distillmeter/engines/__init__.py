"""distillmeter.engines: the backends that run models for the stages, behind small
interfaces, chosen by name.

- generation (``teacher.generate``, ``eval.*``): ``GenerationBackend`` in ``generation.py``;
  ``transformers`` (batched, left-padded, KV cache) and ``vllm`` (``vllm.py``, extra
  ``[vllm]``), chosen by :func:`make_generation_backend`;
- evaluation on benchmarks: lm-evaluation-harness (``lm_eval.py``, extra ``[eval]``).

Engines know models and tasks, not pipelines: the recipes in ``distillmeter.pipelines``
call them inside their metered stages.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from distillmeter.errors import UserError

GENERATION_BACKENDS = ("transformers", "vllm")


def make_generation_backend(kind: str, *, model: Any = None, tokenizer: Any = None,
                            device: str | None = None, model_path: str | Path | None = None,
                            settings: Any = None,
                            note: Callable[[str], None] | None = None) -> tuple[Any, str]:
    """The backend ``kind`` names (``transformers`` or ``vllm``) and a line saying which
    one runs and why. vLLM asked for but unusable here -> the transformers backend."""
    from distillmeter.engines.generation import TransformersBackend
    from distillmeter.engines.vllm import VllmBackend, VllmEngine, availability

    if kind not in GENERATION_BACKENDS:
        raise UserError(f"unknown generation backend {kind!r} (transformers or vllm)")
    if kind == "vllm":
        ok, why = availability()
        if ok and model_path is None:
            ok, why = False, "vLLM loads models from a checkpoint directory and none was given"
        if ok:
            engine = VllmEngine(model_path, settings)
            return VllmBackend(engine, tokenizer, settings), "generation backend: vllm"
        line = f"generation backend: transformers (vllm asked for, but {why})"
    else:
        line = "generation backend: transformers"
    if note is not None:
        note(line)
    if model is None:
        raise UserError("the transformers generation backend needs the loaded model")
    return TransformersBackend(model, tokenizer, device), line
