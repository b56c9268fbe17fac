"""``eval.backend: lm_eval``: the harness request built from the run config, the eval
artifact and quality it leaves; and, where lm-evaluation-harness is installed, a whole
`distillmeter run` whose eval.* stages are the real harness on a local task (offline: the
task reads a JSONL file; the models are tiny saved checkpoints)."""

from __future__ import annotations

import json

import pytest
import torch

import real_pair
from distillmeter import protocol
from distillmeter.cli import main
from distillmeter.engines.lm_eval import (
    LmEvalResult,
    available,
    lm_eval_request,
    parse_results,
    primary_quality,
)
from distillmeter.pipelines.config import EvalConfig
from distillmeter.pipelines.evaluation import metric_value, write_lm_eval


def test_the_request_follows_the_eval_config(tmp_path):
    cfg = EvalConfig(backend="lm_eval", batch_size=16, lm_eval={
        "tasks": ["gsm8k", "mmlu"], "num_fewshot": 5, "limit": 200,
        "apply_chat_template": True, "model_args": {"trust_remote_code": False}})
    req = lm_eval_request(tmp_path / "ckpt", cfg.lm_eval, batch_size=cfg.batch_size,
                          device="cuda", dtype=torch.bfloat16)
    assert req["model"] == "hf" and req["tasks"] == ["gsm8k", "mmlu"]
    assert req["model_args"] == (f"pretrained={(tmp_path / 'ckpt').resolve()},"
                                 "dtype=bfloat16,trust_remote_code=False")
    assert req["limit"] == 200 and isinstance(req["limit"], int)
    assert (req["num_fewshot"], req["batch_size"], req["device"]) == (5, 16, "cuda")
    assert req["apply_chat_template"] is True
    frac = EvalConfig(backend="lm_eval", lm_eval={"limit": 0.25})
    assert lm_eval_request(tmp_path, frac.lm_eval, batch_size=frac.batch_size, device="cpu",
                          dtype=torch.float32)["limit"] == 0.25


def test_the_eval_artifact_names_its_metric(tmp_path):
    results = {"results": {"gsm8k": {"exact_match,strict-match": 0.42,
                                     "exact_match_stderr,strict-match": 0.02, "alias": "gsm8k"}},
               "n-samples": {"gsm8k": {"original": 1319, "effective": 500}}}
    q = primary_quality(parse_results(results))
    write_lm_eval(tmp_path, LmEvalResult(q, {"tasks": ["gsm8k"]}), kind="eval", key_hash="h",
                  stage="eval.student", run_id=None)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["metric"] == "gsm8k:exact_match,strict-match" and metrics["n"] == 500
    assert metric_value(metrics) == 0.42
    assert metric_value({"metric": "exact_match", "exact_match": 0.9}) == 0.9  # builtin's
    assert json.loads((tmp_path / "request.json").read_text()) == {"tasks": ["gsm8k"]}


LOCAL_TASK = """\
task: local_sums
dataset_path: json
dataset_kwargs:
  data_files:
    test: {test}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer.split('#### ')[-1]}}}}"
generation_kwargs: {{until: ["\\n\\n"], max_gen_toks: 8, do_sample: false}}
metric_list:
  - {{metric: exact_match, aggregation: mean, higher_is_better: true}}
"""


def _loads_by_stage(monkeypatch) -> list[tuple[str, str | None]]:
    """(what was loaded, the meter's running stage) for every model, tokenizer and dataset
    load from here on: the meter's stage boundaries and the loaders are wrapped."""
    import datasets
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from distillmeter.energy.meter import EnergyMeter

    running: list[str | None] = [None]
    loads: list[tuple[str, str | None]] = []
    open_stage, close_stage = EnergyMeter.open_stage, EnergyMeter.close_stage

    def opened(self, st):
        open_stage(self, st)
        running[0] = st.name

    def closed(self, st):
        close_stage(self, st)
        running[0] = None

    monkeypatch.setattr(EnergyMeter, "open_stage", opened)
    monkeypatch.setattr(EnergyMeter, "close_stage", closed)
    for owner, name, what in ((PreTrainedModel, "from_pretrained", "model"),
                              (PreTrainedTokenizerBase, "from_pretrained", "tokenizer")):
        real = getattr(owner, name).__func__

        def spy(cls, *args, _real=real, _what=what, **kwargs):
            loads.append((_what, running[0]))
            return _real(cls, *args, **kwargs)
        monkeypatch.setattr(owner, name, classmethod(spy))
    real_dataset = datasets.load_dataset

    def dataset_spy(*args, **kwargs):
        loads.append(("dataset", running[0]))
        return real_dataset(*args, **kwargs)
    monkeypatch.setattr(datasets, "load_dataset", dataset_spy)
    return loads


@pytest.mark.slow  # the harness's imports and a whole run: ~30-60 s on 2 busy cores
@pytest.mark.skipif(not available(), reason="lm-evaluation-harness is not installed "
                                            "(pip install 'distillmeter[eval]')")
def test_a_run_evaluates_with_the_real_harness_on_a_local_task(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    teacher, student = real_pair.pair(tmp_path)
    files = real_pair.data(tmp_path)
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "sums.yaml").write_text(LOCAL_TASK.format(test=files["test"]))
    cfg = real_pair.config(teacher, student, files)
    cfg["methods"] = [{"name": "synthetic", "data": ["labelled", "synthetic"]}]
    cfg["eval"] = {"backend": "lm_eval", "batch_size": 4, "lm_eval": {
        "tasks": ["local_sums"], "limit": 4, "include_path": str(tmp_path / "tasks")}}
    path = real_pair.write_config(tmp_path / "cfg.yaml", cfg)
    out = tmp_path / "out"
    loads = _loads_by_stage(monkeypatch)
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    runs = [run for run in out.iterdir() if run.is_dir()]  # besides report.html, summary.*
    assert len(runs) == 2
    for run in runs:
        report = protocol.load_report(run)
        assert report.status == "ok"
        assert report.quality.metric == "local_sums:exact_match" and report.quality.n == 4
        assert report.quality.details["backend"] == "lm_eval"
        names = [s.name for s in report.stages]
        ev = next(s for s in report.stages if s.name in ("eval.teacher", "eval.student"))
        # the harness's loading has a stage of its own, just before the evaluation
        assert names[names.index(ev.name) - 1] == "eval.load"
        assert ev.seconds > 0 and ev.energy_j["total"] > 0  # metered like any stage
        # the tokens the harness fed and generated: 4 prompts, up to 8 new tokens each
        info = ev.info
        assert info["gen_batches"] == 1 and 0 < info["new_tokens"] <= 4 * 8
        assert ev.tokens == info["prompt_tokens"] + info["new_tokens"] > 0
        assert ev.j_per_token is not None and ev.j_per_token > 0
        assert info["backend"] == "lm_eval" and info["params"] > 0
    # no model, tokenizer or task data is loaded inside an evaluation window
    assert [w for w in loads if w[1] in ("eval.teacher", "eval.student")] == []
    assert {"model", "tokenizer", "dataset"} <= {what for what, st in loads
                                                  if st == "eval.load"}
    student_report = protocol.load_report(out / "synthetic-s0")
    assert "teacher_value" in student_report.quality.details
    assert student_report.labels["synthetic_examples"] > 0  # the teacher's answers it used
    # the student counts the teacher's evaluation, its loading included
    (up,) = protocol.read_ledger(out / "synthetic-s0").run_start.upstream
    assert {"eval.load", "eval.teacher"} <= set(up.stages)
