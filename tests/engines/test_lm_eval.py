"""The lm-eval backend without the harness: request building and results parsing, on a
results dict written in the layout ``lm_eval.simple_evaluate`` 0.4.13 returns (per-task
``"<metric>,<filter>"`` keys with ``_stderr`` twins, and ``alias``, ``name``, ``sample_len``
and a group's ``sample_count`` beside them; ``n-samples``, ``group_subtasks``). The
harness itself runs in test_lm_eval_harness.py."""

from __future__ import annotations

import pytest

from distillmeter.engines.lm_eval import (
    available,
    build_request,
    model_args,
    parse_results,
    primary_quality,
    run_lm_eval,
)
from distillmeter.errors import UserError

# gsm8k (two answer filters) and mmlu (a group over two subtasks, limit 50 each).
RESULTS = {
    "results": {
        "gsm8k": {"alias": "gsm8k", "name": "gsm8k", "sample_len": 200,
                  "exact_match,strict-match": 0.3125, "exact_match_stderr,strict-match": 0.0128,
                  "exact_match,flexible-extract": 0.3350,
                  "exact_match_stderr,flexible-extract": 0.0130},
        "mmlu": {"alias": "mmlu", "acc,none": 0.46, "acc_stderr,none": 0.05,
                 "sample_len": 100, "sample_count": {"mmlu_anatomy": 50}},
        "mmlu_anatomy": {"alias": " - anatomy", "acc,none": 0.40, "acc_stderr,none": 0.07},
        "mmlu_astronomy": {"alias": " - astronomy", "acc,none": 0.52,
                           "acc_stderr,none": "N/A"},
    },
    "group_subtasks": {"mmlu": ["mmlu_anatomy", "mmlu_astronomy"], "gsm8k": []},
    "n-shot": {"gsm8k": 5, "mmlu_anatomy": 0, "mmlu_astronomy": 0},
    "n-samples": {"gsm8k": {"original": 1319, "effective": 200},
                  "mmlu_anatomy": {"original": 135, "effective": 50},
                  "mmlu_astronomy": {"original": 152, "effective": 50}},
    "higher_is_better": {"gsm8k": {"exact_match": True}, "mmlu": {"acc": True}},
    "config": {"model": "hf", "model_args": "pretrained=ckpt,dtype=bfloat16", "limit": 200},
}


def test_request_for_simple_evaluate():
    req = build_request("ckpt/student", tasks=["gsm8k", "mmlu"], num_fewshot=5, limit=200,
                        batch_size=16, device="cuda:0")
    assert req == {"model": "hf", "model_args": "pretrained=ckpt/student,dtype=bfloat16",
                   "tasks": ["gsm8k", "mmlu"], "num_fewshot": 5, "limit": 200,
                   "batch_size": 16, "log_samples": False, "device": "cuda:0"}
    chat = build_request("m", tasks=["gsm8k"], dtype=None, apply_chat_template=True,
                         extra_model_args={"trust_remote_code": True})
    assert chat["model_args"] == "pretrained=m,trust_remote_code=True"
    assert chat["apply_chat_template"] is True and chat["batch_size"] == "auto"


@pytest.mark.parametrize("kwargs, match", [
    ({"tasks": []}, "at least one task"),
    ({"tasks": ["gsm8k"], "num_fewshot": -1}, "num_fewshot"),
    ({"tasks": ["gsm8k"], "limit": 0}, "limit"),
])
def test_bad_requests(kwargs, match):
    with pytest.raises(UserError, match=match):
        build_request("m", **kwargs)


def test_model_args_refuses_separators():
    with pytest.raises(UserError, match="cannot carry"):
        model_args("/models/a,b")


def test_parse_results_reads_every_metric_with_stderr_and_n():
    scores = {(s.task, s.metric): s for s in parse_results(RESULTS)}
    assert set(scores) == {("gsm8k", "exact_match,strict-match"),
                           ("gsm8k", "exact_match,flexible-extract"), ("mmlu", "acc"),
                           ("mmlu_anatomy", "acc"), ("mmlu_astronomy", "acc")}
    g = scores[("gsm8k", "exact_match,strict-match")]
    assert (g.value, g.stderr, g.n) == (0.3125, 0.0128, 200)
    assert scores[("mmlu", "acc")].n == 100  # the group: its subtasks' examples
    assert scores[("mmlu_astronomy", "acc")].stderr is None  # "N/A" is not a number


def test_primary_quality_prefers_strict_exact_match_then_named():
    q = primary_quality(parse_results(RESULTS))
    assert (q.metric, q.value, q.n) == ("gsm8k:exact_match,strict-match", 0.3125, 200)
    assert q.details["stderr"] == 0.0128 and q.details["backend"] == "lm_eval"
    assert q.details["scores"]["mmlu:acc"] == {"value": 0.46, "stderr": 0.05, "n": 100}
    m = primary_quality(parse_results(RESULTS), task="mmlu", metric="acc,none")
    assert (m.metric, m.value, m.n) == ("mmlu:acc", 0.46, 100)
    with pytest.raises(UserError, match="no metric 'f1'"):
        primary_quality(parse_results(RESULTS), task="mmlu", metric="f1")
    with pytest.raises(UserError, match="no results for task 'arc'"):
        primary_quality(parse_results(RESULTS), task="arc")


def test_empty_results_are_a_clear_error():
    with pytest.raises(UserError, match="no 'results'"):
        parse_results({"results": {}})


def test_missing_harness_is_a_user_error(monkeypatch):
    import importlib.util

    from distillmeter.engines import lm_eval

    real = importlib.util.find_spec
    # as on a machine without the [eval] extra: the module is not found
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "lm_eval" else real(name, *a))
    assert not available()
    with pytest.raises(UserError, match=r"distillmeter\[eval\]"):
        run_lm_eval(build_request("m", tasks=["gsm8k"]))
    with pytest.raises(UserError, match=r"distillmeter\[eval\]"):
        lm_eval.prepare(build_request("m", tasks=["gsm8k"]))
