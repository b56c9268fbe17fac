"""Evaluation (``eval.teacher``, ``eval.student``): batched greedy decoding on the test set,
exact match on the final answer, and the mean per-token loss of the reference answers;
the eval artifacts of either backend (built-in or lm-evaluation-harness)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distillmeter.errors import writing
from distillmeter.pipelines import artifacts
from distillmeter.pipelines.artifacts import ArtifactManifest
from distillmeter.pipelines.config import EvalConfig
from distillmeter.pipelines.data import encode_pairs, eval_batches
from distillmeter.pipelines.training import mean_token_loss
from distillmeter.privacy.redact import redact_values

if TYPE_CHECKING:
    from distillmeter.engines.lm_eval import LmEvalResult

METRIC = "exact_match"


@dataclass
class EvalResult:
    """Exact match and mean per-token loss on ``n`` test examples, with what it cost."""

    exact_match: float
    loss: float
    n: int
    prompt_tokens: int = 0
    new_tokens: int = 0
    loss_tokens: int = 0
    records: list[dict] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        """Tokens the model processed: the decoded prompts and answers, plus the scored
        reference answers (teacher-forced)."""
        return self.prompt_tokens + self.new_tokens + self.loss_tokens

    def metrics(self) -> dict:
        return {"metric": METRIC, "exact_match": self.exact_match, "loss": self.loss,
                "n": self.n, "prompt_tokens": self.prompt_tokens,
                "new_tokens": self.new_tokens, "loss_tokens": self.loss_tokens}


def evaluate(model, tokenizer, task, examples, cfg: EvalConfig, *, device: str, max_len: int,
             on_batch=None) -> EvalResult:
    """Greedy-decode every test prompt (batched, via the generation backend) and score it."""
    from distillmeter.engines.generation import TransformersBackend
    from distillmeter.tasks import exact_match

    backend = TransformersBackend(model, tokenizer, device)
    gens = backend.generate([ex.prompt for ex in examples], max_new_tokens=cfg.max_new_tokens,
                            temperature=0.0, batch_size=cfg.batch_size, seed=0,
                            on_batch=on_batch)
    completions = [g.completion for g in gens]
    em = exact_match(task, examples, completions)
    seqs = encode_pairs(tokenizer, [(ex.prompt, ex.target) for ex in examples], max_len)
    loss, n_loss = mean_token_loss(model, eval_batches(seqs, cfg.batch_size,
                                                       tokenizer.pad_token_id), device)
    records = [{"prompt": ex.prompt, "target": ex.target, "completion": c,
                "correct": bool(task.check(ex, c))}
               for ex, c in zip(examples, completions, strict=True)]
    return EvalResult(exact_match=em, loss=loss, n=len(examples),
                      prompt_tokens=sum(g.prompt_tokens for g in gens),
                      new_tokens=sum(g.new_tokens for g in gens),
                      loss_tokens=seqs.total_tokens(), records=records)


def scoring_info(result: EvalResult, batch_size: int) -> dict[str, Any]:
    """The scoring half of an evaluation's work, for the stage's info (the decoding half
    is recorded by ``progress.generation_progress``): teacher-forced batches and tokens,
    and the backend that decoded."""
    return {"score_batches": -(-result.n // batch_size), "scored_tokens": result.loss_tokens,
            "backend": "transformers"}


def write_eval(folder: Path, result: EvalResult, *, kind: str, key_hash: str, stage: str,
               run_id: str | None) -> ArtifactManifest:
    """``completions.jsonl`` (prompt, target, completion, correct) and ``metrics.json``."""
    folder = Path(folder)
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "completions.jsonl", "w", encoding="utf-8") as f:
            for r in result.records:
                f.write(json.dumps(r) + "\n")
        (folder / "metrics.json").write_text(json.dumps(result.metrics(), indent=2))
    return artifacts.write_manifest(folder, ArtifactManifest(
        kind=kind, hash=key_hash, stage=stage, run_id=run_id, info=result.metrics()))


def read_metrics(folder: Path) -> dict:
    """``metrics.json`` of an eval artifact."""
    return json.loads((Path(folder) / "metrics.json").read_text(encoding="utf-8"))


def write_lm_eval(folder: Path, result: LmEvalResult, *, kind: str, key_hash: str, stage: str,
                  run_id: str | None, load_stage: str | None = None) -> ArtifactManifest:
    """``metrics.json`` and ``request.json`` in an eval artifact (the request redacted:
    model_args may carry a token or password for the harness). ``load_stage``: the stage
    that loaded the model and tasks for it, which a user of the artifact counts with
    ``stage`` (``TeacherOutputs.upstream_for``)."""
    folder = Path(folder)
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metrics.json").write_text(json.dumps(result.metrics(), indent=2))
        request = redact_values(json.loads(json.dumps(result.request, default=str)))
        (folder / "request.json").write_text(json.dumps(request, indent=2))
    info = {k: v for k, v in result.metrics().items() if k != "details"}
    if result.work is not None:
        info["tokens"] = result.tokens
    if load_stage is not None:
        info["load_stage"] = load_stage
    return artifacts.write_manifest(folder, ArtifactManifest(
        kind=kind, hash=key_hash, stage=stage, run_id=run_id, info=info))


LM_EVAL_LOAD = "eval.load"


def lm_eval_stages(ui, meter, label: str, stage: str, model_dir: Path, cfg: EvalConfig, *,
                   device: str, dtype, folder: Path, kind: str, key_hash: str
                   ) -> LmEvalResult:
    """``eval.load`` (the harness builds its model from ``model_dir`` and loads the tasks),
    then ``stage`` (``eval.teacher`` / ``eval.student``), which holds only the evaluation:
    its tokens are what the harness fed and generated, its info the work and the model's
    shape, as the built-in evaluation records them. The eval artifact goes to ``folder``."""
    from distillmeter.engines.lm_eval import evaluate_prepared, prepare_lm_eval
    from distillmeter.models import count_params
    from distillmeter.pipelines.stagework import attention_info

    with ui.metered(meter, label, LM_EVAL_LOAD, None):
        prepared, request = prepare_lm_eval(model_dir, cfg.lm_eval, batch_size=cfg.batch_size,
                                            device=device, dtype=dtype)
    model = prepared.model
    shape = {"params": count_params(model), **attention_info(model)} if model is not None \
        else {}
    with ui.metered(meter, label, stage, None) as bar:
        bar.annotate(backend="lm_eval", batch_size=cfg.batch_size, **shape)
        result = evaluate_prepared(prepared, request, cfg.lm_eval)
        bar.advance(result.tokens, result.n, 0)
        if result.work is not None:
            bar.annotate(**result.work.info())
        write_lm_eval(folder, result, kind=kind, key_hash=key_hash, stage=stage,
                      run_id=meter.run_id, load_stage=LM_EVAL_LOAD)
    return result


def metric_value(metrics: dict[str, Any]) -> float:
    """The score an eval artifact's ``metrics.json`` names (either backend)."""
    return float(metrics[metrics.get("metric", "exact_match")])
