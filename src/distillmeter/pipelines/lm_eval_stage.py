"""``eval.backend: lm_eval``: an ``eval.*`` stage run by lm-evaluation-harness.

The harness evaluates the model's checkpoint directory (it loads its own copy, as
``lm_eval --model hf --model_args pretrained=DIR`` would), inside the metered stage; its
chosen score becomes the run's quality and every score goes into the quality's details
and the eval artifact's ``metrics.json``. The request (``request.json``) records exactly
what was asked of the harness.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillmeter.errors import UserError
from distillmeter.pipelines import artifacts
from distillmeter.pipelines.artifacts import ArtifactManifest
from distillmeter.pipelines.config import EvalConfig
from distillmeter.pipelines.lm_eval_backend import (
    EvalQuality,
    available,
    build_request,
    parse_results,
    primary_quality,
    run_lm_eval,
)

_DTYPE_NAMES = {"torch.float32": "float32", "torch.bfloat16": "bfloat16",
                "torch.float16": "float16"}


@dataclass
class LmEvalResult:
    quality: EvalQuality
    request: dict[str, Any]

    @property
    def n(self) -> int:
        return self.quality.n

    def metrics(self) -> dict[str, Any]:
        """metrics.json: ``metric`` names the score, stored under its own name as well."""
        q = self.quality
        return {"metric": q.metric, q.metric: q.value, "value": q.value, "n": q.n,
                "backend": "lm_eval", "details": q.details}


def lm_eval_request(model_dir: Path, cfg: EvalConfig, *, device: str, dtype) -> dict[str, Any]:
    """``simple_evaluate`` keyword arguments for the model in ``model_dir``."""
    le = cfg.lm_eval
    limit = le.limit
    if limit is not None and limit >= 1 and float(limit).is_integer():
        limit = int(limit)  # a count; a value below 1 is a fraction of each task
    return build_request(Path(model_dir).resolve(), tasks=le.tasks,
                         dtype=_DTYPE_NAMES.get(str(dtype), str(dtype)),
                         num_fewshot=le.num_fewshot, limit=limit, batch_size=cfg.batch_size,
                         device=device, apply_chat_template=le.apply_chat_template,
                         extra_model_args=le.model_args)


def evaluate_lm_eval(model_dir: Path, cfg: EvalConfig, *, device: str, dtype) -> LmEvalResult:
    """Run the harness on the checkpoint in ``model_dir``; the run's quality from it."""
    request = lm_eval_request(model_dir, cfg, device=device, dtype=dtype)
    call = dict(request)
    include = cfg.lm_eval.include_path
    if include is not None:
        from distillmeter.pipelines.file_data import resolve_path

        folder = resolve_path(include)
        if not folder.is_dir():
            raise UserError(f"eval.lm_eval.include_path: {folder} is not a directory")
        request["include_path"] = str(folder.resolve())
        if available():  # else run_lm_eval names the extra
            from lm_eval.tasks import TaskManager

            call["task_manager"] = TaskManager(include_path=request["include_path"])
    results = run_lm_eval(call)
    quality = primary_quality(parse_results(results), task=cfg.lm_eval.task,
                              metric=cfg.lm_eval.metric)
    return LmEvalResult(quality, request)


def write_lm_eval(folder: Path, result: LmEvalResult, *, kind: str, key_hash: str, stage: str,
                  run_id: str | None) -> ArtifactManifest:
    """``metrics.json`` and ``request.json`` in an eval artifact."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(result.metrics(), indent=2))
    (folder / "request.json").write_text(json.dumps(result.request, indent=2, default=str))
    info = {k: v for k, v in result.metrics().items() if k != "details"}
    return artifacts.write_manifest(folder, ArtifactManifest(
        kind=kind, hash=key_hash, stage=stage, run_id=run_id, info=info))


def metric_value(metrics: dict[str, Any]) -> float:
    """The score an eval artifact's ``metrics.json`` names (either backend)."""
    return float(metrics[metrics.get("metric", "exact_match")])
