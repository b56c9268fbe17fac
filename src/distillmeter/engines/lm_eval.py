"""lm-evaluation-harness for the ``eval.*`` stages (extra ``[eval]``): real benchmarks.

``eval.backend: lm_eval``: the harness evaluates the model's checkpoint directory, as
``lm_eval --model hf --model_args pretrained=DIR`` would; its chosen score becomes the
run's quality, and the request records exactly what was asked of the harness
(``evaluate_lm_eval``). Loading is kept out of the evaluation's window: ``prepare``
builds the harness's model from the directory and loads the tasks (their data and
few-shot examples), and ``PreparedLmEval.evaluate`` runs only the evaluation, counting
the tokens the harness feeds and generates (``lm_eval_counts.py``)::

    request = build_request("ckpt/student", tasks=["gsm8k"], dtype="bfloat16", limit=200)
    prepared = prepare(request)                      # model and tasks loaded (unmetered)
    with meter.stage("eval.student") as st:
        results = prepared.evaluate()                # lm_eval.evaluate on them, only
        st.add(tokens=prepared.work.tokens)
    scores = parse_results(results)
    q = primary_quality(scores)
    meter.record_quality(q.metric, q.value, n=q.n, details=q.details)

``prepare`` does what ``lm_eval.simple_evaluate`` does before it evaluates (seeds, the
``hf`` model from ``model_args``, tasks, few-shot settings), in the same order, so the
scores are the same as a direct ``simple_evaluate`` call (tested); what it does after
(the git commit and environment lookups, which print "fatal: not a git repository"
outside a repository) is not done. ``simple_evaluate`` returns a dict whose ``results``
maps each task (and group, such as ``mmlu``) to ``{"<metric>,<filter>": value,
"<metric>_stderr,<filter>": stderr, "alias": ..., "sample_len": ...}`` (only the
``<metric>,<filter>`` keys are scores), and whose ``n-samples`` maps each task to
``{"original": N, "effective": n}`` (the examples evaluated, after ``limit``);
``group_subtasks`` lists a group's tasks. The harness is imported only by ``prepare``, so
the request building and the parsing are usable (and tested) without it.
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
from distillmeter.engines.lm_eval_counts import HarnessWork, count_work
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


def preload() -> None:
    """Import the harness's modules (seconds of Python imports) before any meter starts,
    so that ``eval.load`` measures loading the model and tasks, not importing."""
    import lm_eval.evaluator  # noqa: F401
    import lm_eval.models.huggingface  # noqa: F401
    import lm_eval.tasks  # noqa: F401


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
    """The harness's results for ``request`` (the ``lm_eval.simple_evaluate`` keywords that
    ``build_request`` makes): ``prepare(request).evaluate()``; UserError when absent."""
    return prepare(request).evaluate()


# the simple_evaluate keywords prepare() understands (what build_request writes, and the
# task sources); any other is a mistake in the caller's code
_REQUEST_KEYS = {"model", "model_args", "tasks", "num_fewshot", "limit", "batch_size",
                 "log_samples", "device", "apply_chat_template", "include_path",
                 "task_manager"}


@dataclass
class PreparedLmEval:
    """The harness's model and tasks, loaded; ``evaluate()`` is all that belongs inside an
    ``eval.*`` window. ``work`` counts what it runs through the model (None: a model the
    counters do not know; lm_eval_counts.py)."""

    lm: Any
    tasks: Any
    settings: dict[str, Any]
    work: HarnessWork | None

    @property
    def model(self) -> Any:
        """The torch model the harness runs (for its size and shape)."""
        return getattr(self.lm, "model", None)

    def evaluate(self) -> dict[str, Any]:
        """``lm_eval.evaluate`` on the prepared model and tasks: the results dict."""
        from lm_eval.evaluator import evaluate

        results = evaluate(lm=self.lm, task_dict=self.tasks, **self.settings)
        return results or {}  # non-zero ranks of a distributed evaluation get None


def prepare(request: Mapping[str, Any]) -> PreparedLmEval:
    """Everything ``lm_eval.simple_evaluate(**request)`` does before it evaluates, in its
    order and with its defaults: seed random, numpy and torch; build the model
    (``model_args``: for ``hf``, the checkpoint loaded in its dtype); load the tasks
    (their datasets: this is where a missing benchmark fails) and apply ``num_fewshot``
    and the few-shot seed."""
    if not available():
        raise UserError("lm-evaluation-harness is not installed: pip install "
                        "'distillmeter[eval]'")
    unknown = set(request) - _REQUEST_KEYS
    if unknown:
        raise TypeError(f"prepare: unsupported request keys {sorted(unknown)}")
    import random

    import numpy as np
    from lm_eval.api.registry import get_model
    from lm_eval.defaults import DEFAULT_OTHER_SEED, DEFAULT_RANDOM_SEED
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import set_torch_seed, simple_parse_args_string

    random.seed(DEFAULT_RANDOM_SEED)
    np.random.seed(DEFAULT_OTHER_SEED)
    set_torch_seed(DEFAULT_OTHER_SEED)
    args = str(request.get("model_args") or "")
    lm = get_model(str(request.get("model", "hf"))).create_from_arg_string(
        args, {"batch_size": request.get("batch_size"), "max_batch_size": None,
               "device": request.get("device")})
    manager = request.get("task_manager")
    if manager is None:
        include = request.get("include_path")
        manager = TaskManager(include_path=include,
                              metadata=simple_parse_args_string(args))
    tasks = manager.load(list(request["tasks"]))
    num_fewshot = request.get("num_fewshot")
    for task in tasks["tasks"].values():
        default = task.get_config("num_fewshot")
        if num_fewshot is not None and default != 0:  # a task's own 0 is kept, as there
            task.set_config(key="num_fewshot", value=num_fewshot)
        elif num_fewshot is None and default is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=DEFAULT_OTHER_SEED)
    settings = {"limit": request.get("limit"), "bootstrap_iters": 100000,
                "log_samples": bool(request.get("log_samples", True)),
                "apply_chat_template": request.get("apply_chat_template", False),
                "fewshot_as_multiturn": True}
    return PreparedLmEval(lm, tasks, settings, count_work(lm))


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
            # a score is "<metric>,<filter>"; the other keys (alias, name, sample_len,
            # sample_count) describe the task, even when they are numbers
            name, comma, filt = key.partition(",")
            v = _number(value)
            if v is None or not comma or name.endswith("_stderr"):
                continue
            stderr = _number(metrics.get(f"{name}_stderr,{filt}"))
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
    work: HarnessWork | None = None  # what the harness ran (None: not counted)

    @property
    def n(self) -> int:
        return self.quality.n

    @property
    def tokens(self) -> int:
        return self.work.tokens if self.work is not None else 0

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


def prepare_lm_eval(model_dir: Path, le: LmEvalConfig, *, batch_size: int, device: str,
                    dtype) -> tuple[PreparedLmEval, dict[str, Any]]:
    """The harness's model (from the checkpoint in ``model_dir``) and tasks, loaded, and
    the request they answer (for request.json): what an ``eval.load`` stage does."""
    request = lm_eval_request(model_dir, le, batch_size=batch_size, device=device, dtype=dtype)
    if le.include_path is not None:
        folder = resolve_path(le.include_path)
        if not folder.is_dir():
            raise UserError(f"eval.lm_eval.include_path: {folder} is not a directory")
        request["include_path"] = str(folder.resolve())
    return prepare(request), request


def evaluate_prepared(prepared: PreparedLmEval, request: dict[str, Any],
                      le: LmEvalConfig) -> LmEvalResult:
    """Run the prepared evaluation (the only thing inside the ``eval.*`` window); the run's
    quality from it, with the work counted."""
    results = prepared.evaluate()
    quality = primary_quality(parse_results(results), task=le.task, metric=le.metric)
    return LmEvalResult(quality, request, prepared.work)


def evaluate_lm_eval(model_dir: Path, le: LmEvalConfig, *, batch_size: int, device: str,
                     dtype) -> LmEvalResult:
    """Prepare and run the harness on the checkpoint in ``model_dir`` in one call."""
    prepared, request = prepare_lm_eval(model_dir, le, batch_size=batch_size, device=device,
                                        dtype=dtype)
    return evaluate_prepared(prepared, request, le)
