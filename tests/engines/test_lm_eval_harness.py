"""The real lm-evaluation-harness, offline, on local JSON tasks (a multiple-choice task
scored by loglikelihood and a generate_until task) and a tiny Qwen2 checkpoint with a BPE
tokenizer made here: ``prepare`` then ``evaluate`` gives exactly what a direct
``lm_eval.simple_evaluate`` call gives; the tokens counted are the ones the model was fed
(checked against the model's own forward passes); nothing is printed about git."""

from __future__ import annotations

import json

import pytest

import real_pair
from distillmeter.engines.lm_eval import (
    available,
    build_request,
    parse_results,
    prepare,
    primary_quality,
    run_lm_eval,
)

pytestmark = pytest.mark.skipif(not available(), reason="lm-evaluation-harness is not "
                                "installed (pip install 'distillmeter[eval]')")

SUMS_TASK = """\
task: local_sums
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer.split('#### ')[-1]}}}}"
generation_kwargs: {{until: ["\\n\\n"], max_gen_toks: 8, do_sample: false}}
metric_list:
  - {{metric: exact_match, aggregation: mean, higher_is_better: true}}
"""

CHOICE_TASK = """\
task: local_choice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}} Answer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - {{metric: acc, aggregation: mean, higher_is_better: true}}
  - {{metric: acc_norm, aggregation: mean, higher_is_better: true}}
"""


def local_tasks(root) -> str:
    """Both tasks' YAML files in ``root/tasks`` (an ``include_path``), on JSONL files."""
    records = real_pair.math_records(10, start=100)
    sums = real_pair.write_jsonl(root / "sums.jsonl", records)
    choices = []
    for i, r in enumerate(records):
        n = int(r["answer"].split("#### ")[-1])
        options = [str(n), str(n + 1), str(n * 2), f"{n} apples"]
        choices.append({"question": r["question"], "choices": options, "label": i % 4})
    choice = real_pair.write_jsonl(root / "choice.jsonl", choices)
    folder = root / "tasks"
    folder.mkdir()
    (folder / "sums.yaml").write_text(SUMS_TASK.format(data=sums))
    (folder / "choice.yaml").write_text(CHOICE_TASK.format(data=choice))
    return str(folder)


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    root = tmp_path_factory.mktemp("harness")
    _, student = real_pair.qwen2_pair(root)
    return {"model": student, "tasks": local_tasks(root)}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _request(harness, tasks, *, batch_size=4, **kw):
    req = build_request(harness["model"], tasks=tasks, dtype="float32", batch_size=batch_size,
                        device="cpu", **kw)
    req["include_path"] = harness["tasks"]
    return req


def test_scores_equal_a_direct_simple_evaluate_run(harness, capfd, tmp_path, monkeypatch):
    import lm_eval
    from lm_eval.tasks import TaskManager

    monkeypatch.chdir(tmp_path)  # outside any git repository, as a user's run may be
    req = {**_request(harness, ["local_choice", "local_sums"], limit=8), "log_samples": True}
    mine = prepare(req).evaluate()
    assert "not a git repository" not in capfd.readouterr().err  # no git lookup here
    direct = lm_eval.simple_evaluate(
        model="hf", model_args=req["model_args"], tasks=req["tasks"], limit=8, batch_size=4,
        device="cpu", log_samples=True, task_manager=TaskManager(include_path=req["include_path"]))
    assert "not a git repository" in capfd.readouterr().err  # what simple_evaluate prints
    assert mine["results"] == direct["results"]
    assert mine["n-samples"] == direct["n-samples"]
    # not only the aggregates: every request's answer (loglikelihoods, generations) is equal
    for task in ("local_choice", "local_sums"):
        assert [s["resps"] for s in mine["samples"][task]] == \
            [s["resps"] for s in direct["samples"][task]]
    # and the scores read from them are the task's metrics, sample_len not among them
    scores = {(s.task, s.metric): s for s in parse_results(mine)}
    assert set(scores) == {("local_choice", "acc"), ("local_choice", "acc_norm"),
                           ("local_sums", "exact_match")}
    assert scores[("local_choice", "acc")].n == 8
    q = primary_quality(list(scores.values()), task="local_choice")
    assert q.metric == "local_choice:acc_norm"


def _forward_counter(model):
    """Tokens and calls that reach the model's forward (batch 1: no padding)."""
    seen = {"calls": 0, "tokens": 0}

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        seen["calls"] += 1
        seen["tokens"] += int(ids.numel())
    return seen, model.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("task", ["local_choice", "local_sums"])
def test_tokens_counted_are_those_the_model_was_fed(harness, task):
    prepared = prepare(_request(harness, [task], batch_size=1))
    seen, handle = _forward_counter(prepared.model)
    try:
        prepared.evaluate()
    finally:
        handle.remove()
    work = prepared.work
    if task == "local_choice":  # one pass per distinct sequence, its tokens
        assert work.scored_tokens == seen["tokens"] and work.score_batches == seen["calls"]
        assert work.prompt_tokens == work.new_tokens == work.gen_batches == 0
        assert work.tokens == work.scored_tokens > 0
    else:  # the prompt in one pass, then one pass per generated token but the last
        assert work.scored_tokens == 0 and work.gen_batches == 10
        assert work.new_tokens == seen["calls"] and work.decode_steps == work.new_tokens
        assert work.prompt_tokens + work.new_tokens - 10 == seen["tokens"]
        assert work.tokens == work.prompt_tokens + work.new_tokens
        assert set(work.info()) == {"prompt_tokens", "new_tokens", "gen_batches",
                                    "decode_steps"}


def test_batching_does_not_change_what_is_counted(harness):
    one = prepare(_request(harness, ["local_choice", "local_sums"], batch_size=1))
    four = prepare(_request(harness, ["local_choice", "local_sums"], batch_size=4))
    one.evaluate()
    four.evaluate()
    assert four.work.scored_tokens == one.work.scored_tokens  # padding is not counted
    assert four.work.prompt_tokens == one.work.prompt_tokens
    assert four.work.gen_batches == 3 and one.work.gen_batches == 10


def test_run_lm_eval_runs_a_local_task(harness):
    res = run_lm_eval(_request(harness, ["local_sums"], limit=4, batch_size=2))
    q = primary_quality(parse_results(res))
    assert q.metric == "local_sums:exact_match" and q.n == 4
    assert json.dumps(q.details)  # plain data, for the ledger
