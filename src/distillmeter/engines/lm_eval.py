"""lm-evaluation-harness for the ``eval.*`` stages (extra ``[eval]``): real benchmarks.

``eval.backend: lm_eval``: the harness evaluates the model's checkpoint directory (it loads
its own copy, as ``lm_eval --model hf --model_args pretrained=DIR`` would), inside the
metered stage; its chosen score becomes the run's quality, and the request records
exactly what was asked of the harness (``evaluate_lm_eval``).

    request = build_request("ckpt/student", tasks=["gsm8k"], dtype="bfloat16", limit=200)
    with meter.stage("eval.student"):
        results = run_lm_eval(request)               # lm_eval.simple_evaluate(**request)
    scores = parse_results(results)
    q = primary_quality(scores)
    meter.record_quality(q.metric, q.value, n=q.n, details=q.details)

``simple_evaluate`` returns a dict whose ``results`` maps each task (and group, such as
``mmlu``) to ``{"<metric>,<filter>": value, "<metric>_stderr,<filter>": stderr, "alias":
...}``, and whose ``n-samples`` maps each task to ``{"original": N, "effective": n}`` (the
examples evaluated, after ``limit``); ``group_subtasks`` lists a group's tasks. The
harness is imported only by ``run_lm_eval``, so the request building and the parsing are
usable (and tested) without it. The harness does not report token counts, so an
``eval.*`` stage run through it carries energy, time and samples but no J/token.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, model_validator

from distillmeter.configbase import MAX_COUNT, error_at
from distillmeter.configbase import StrictModel as _Strict
from distillmeter.errors import UserError
from distillmeter.paths import resolve_path

# Which metric stands for a task when none is named: exact match on the strict answer
# extraction first (gsm8k), then normalised accuracy (hellaswag, arc), then accuracy (mmlu).
PREFERRED_METRICS = ("exact_match,strict-match", "exact_match,flexible-extract",
                     "exact_match,none", "acc_norm,none", "acc,none", "pass@1,none",
                     "f1,none", "bleu,none")


def available() -> bool:
    """True when lm-evaluation-harness is installed."""
    return importlib.util.find_spec("lm_eval") is not None


def model_args(pretrained: str | Path, *, dtype: str | None = "bfloat16",
               extra: Mapping[str, Any] | None = None) -> str:
    """The ``model_args`` string of lm-eval's ``hf`` model: ``pretrained=...,dtype=...``."""
    parts: dict[str, Any] = {"pretrained": str(pretrained)}
    if dtype:
        parts["dtype"] = dtype
    parts.update(extra or {})
    for k, v in parts.items():
        if "," in str(v) or "=" in str(v):
            raise UserError(f"lm-eval model_args: {k}={v!r} holds ',' or '=', which the "
                            "harness's 'key=value,key=value' string cannot carry")
    return ",".join(f"{k}={_arg(v)}" for k, v in parts.items())


def _arg(v: Any) -> str:
    return str(v) if not isinstance(v, bool) else ("True" if v else "False")


def build_request(pretrained: str | Path, *, tasks: Sequence[str], dtype: str | None = "bfloat16",
                  num_fewshot: int | None = None, limit: int | float | None = None,
                  batch_size: int | str = "auto", device: str | None = None,
                  apply_chat_template: bool = False, model: str = "hf",
                  extra_model_args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``lm_eval.simple_evaluate`` (plain data: it goes to the
    run's config and can be checked before any GPU work)."""
    tasks = [str(t) for t in tasks]
    if not tasks:
        raise UserError("lm-eval: name at least one task (e.g. gsm8k, mmlu)")
    if num_fewshot is not None and num_fewshot < 0:
        raise UserError(f"lm-eval: num_fewshot must be >= 0, got {num_fewshot}")
    if limit is not None and not limit > 0:
        raise UserError(f"lm-eval: limit must be > 0 (a count, or a fraction < 1), got {limit}")
    req: dict[str, Any] = {"model": model,
                           "model_args": model_args(pretrained, dtype=dtype,
                                                    extra=extra_model_args),
                           "tasks": tasks, "num_fewshot": num_fewshot, "limit": limit,
                           "batch_size": batch_size, "log_samples": False}
    if device is not None:
        req["device"] = device
    if apply_chat_template:
        req["apply_chat_template"] = True
    return req


def run_lm_eval(request: Mapping[str, Any]) -> dict[str, Any]:
    """Run the harness (``lm_eval.simple_evaluate(**request)``); UserError when absent."""
    if not available():
        raise UserError("lm-evaluation-harness is not installed: pip install "
                        "'distillmeter[eval]'")
    import lm_eval

    results = lm_eval.simple_evaluate(**dict(request))
    if results is None:  # non-zero ranks of a distributed evaluation get None
        return {}
    return results


@dataclass(frozen=True)
class TaskScore:
    """One task's (or group's) metric: ``metric`` is the harness's key minus a ``none``
    filter (``acc``, ``exact_match,strict-match``)."""

    task: str
    metric: str
    value: float
    stderr: float | None
    n: int


@dataclass(frozen=True)
class EvalQuality:
    """What goes into the meter's ``quality`` event."""

    metric: str
    value: float
    n: int
    details: dict[str, Any] = field(default_factory=dict)


def _short(key: str) -> str:
    return key[: -len(",none")] if key.endswith(",none") else key


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _samples(results: Mapping[str, Any], task: str) -> int:
    """Examples evaluated for a task, or summed over a group's subtasks."""
    n_samples = results.get("n-samples") or {}
    if task in n_samples:
        entry = n_samples[task]
        return int(entry.get("effective", entry.get("original", 0)) or 0)
    subtasks = (results.get("group_subtasks") or {}).get(task) or []
    return sum(_samples(results, t) for t in subtasks)


def parse_results(results: Mapping[str, Any]) -> list[TaskScore]:
    """Every numeric metric of every task and group in a ``simple_evaluate`` result."""
    per_task = results.get("results")
    if not isinstance(per_task, Mapping) or not per_task:
        raise UserError("lm-eval returned no 'results' (did every task fail to load?)")
    scores = []
    for task, metrics in per_task.items():
        n = _samples(results, task)
        for key, value in metrics.items():
            name, _, filt = key.partition(",")
            v = _number(value)
            if v is None or name.endswith("_stderr") or key == "alias":
                continue
            stderr = _number(metrics.get(f"{name}_stderr,{filt}" if filt else f"{name}_stderr"))
            scores.append(TaskScore(task, _short(key), v, stderr, n))
    return scores


def primary_quality(scores: Sequence[TaskScore], *, task: str | None = None,
                    metric: str | None = None) -> EvalQuality:
    """The run's quality: ``metric`` of ``task`` (default: the first task's preferred
    metric, see ``PREFERRED_METRICS``); every score goes into ``details``."""
    if not scores:
        raise UserError("lm-eval: no numeric metric in the results")
    task = task or scores[0].task
    mine = [s for s in scores if s.task == task]
    if not mine:
        raise UserError(f"lm-eval: no results for task {task!r} "
                        f"(have: {', '.join(sorted({s.task for s in scores}))})")
    wanted = [_short(metric), metric] if metric else [_short(m) for m in PREFERRED_METRICS]
    chosen = next((s for w in wanted for s in mine if s.metric == w), None)
    if chosen is None and metric:
        raise UserError(f"lm-eval: task {task!r} has no metric {metric!r} "
                        f"(have: {', '.join(s.metric for s in mine)})")
    chosen = chosen or mine[0]
    details = {"backend": "lm_eval",
               "scores": {f"{s.task}:{s.metric}": {"value": s.value, "stderr": s.stderr,
                                                    "n": s.n} for s in scores}}
    if chosen.stderr is not None:
        details["stderr"] = chosen.stderr
    return EvalQuality(metric=f"{chosen.task}:{chosen.metric}", value=chosen.value,
                       n=chosen.n, details=details)


# --------------------------------------------------------------------------- settings


class LmEvalConfig(_Strict):
    """``eval.backend: lm_eval``: lm-evaluation-harness tasks (extra ``[eval]``). The model
    under test is passed as its checkpoint directory. ``task``/``metric`` pick the score
    that becomes the run's quality (default: the first task's preferred metric); every
    score is kept in its details. ``include_path``: a folder of task YAML files (your own
    benchmarks, e.g. on local data files), searched besides the harness's own tasks."""

    tasks: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: ["gsm8k"], min_length=1)
    # 65,536 worked examples fill more than any context window
    num_fewshot: int | None = Field(None, ge=0, le=2**16)
    limit: float | None = Field(None, gt=0, le=MAX_COUNT)
    apply_chat_template: bool = False
    task: str | None = Field(None, min_length=1)
    metric: str | None = Field(None, min_length=1)
    model_args: dict[Annotated[str, Field(min_length=1)], str | int | float | bool] = Field(
        default_factory=dict)
    include_path: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _task_listed(self) -> LmEvalConfig:
        if self.task is not None and self.task not in self.tasks:
            raise error_at(("task",), f"task {self.task!r} is not among tasks "
                           f"({', '.join(self.tasks)})", self.task)
        return self


# --------------------------------------------------------------------------- a stage's run


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


def lm_eval_request(model_dir: Path, le: LmEvalConfig, *, batch_size: int, device: str,
                    dtype) -> dict[str, Any]:
    """``simple_evaluate`` keyword arguments for the model in ``model_dir``."""
    limit = le.limit
    if limit is not None and limit >= 1 and float(limit).is_integer():
        limit = int(limit)  # a count; a value below 1 is a fraction of each task
    return build_request(Path(model_dir).resolve(), tasks=le.tasks,
                         dtype=_DTYPE_NAMES.get(str(dtype), str(dtype)),
                         num_fewshot=le.num_fewshot, limit=limit, batch_size=batch_size,
                         device=device, apply_chat_template=le.apply_chat_template,
                         extra_model_args=le.model_args)


def evaluate_lm_eval(model_dir: Path, le: LmEvalConfig, *, batch_size: int, device: str,
                     dtype) -> LmEvalResult:
    """Run the harness on the checkpoint in ``model_dir``; the run's quality from it."""
    request = lm_eval_request(model_dir, le, batch_size=batch_size, device=device, dtype=dtype)
    call = dict(request)
    include = le.include_path
    if include is not None:
        folder = resolve_path(include)
        if not folder.is_dir():
            raise UserError(f"eval.lm_eval.include_path: {folder} is not a directory")
        request["include_path"] = str(folder.resolve())
        if available():  # else run_lm_eval names the extra
            from lm_eval.tasks import TaskManager

            call["task_manager"] = TaskManager(include_path=request["include_path"])
    results = run_lm_eval(call)
    quality = primary_quality(parse_results(results), task=le.task, metric=le.metric)
    return LmEvalResult(quality, request)
