"""The work a config implies (pipelines/work.py), against the work a real run of it
recorded: the same runs and stages, the same parameter counts, and, where the work does not
depend on what the models write, the same steps, passes, sequences and tokens."""

from __future__ import annotations

import copy

import pytest
import yaml

from distillmeter import protocol
from distillmeter.cli import main
from distillmeter.pipelines.config_file import parse_config
from distillmeter.pipelines.work import generate_work, plan_work, score_work, train_work

SHAPE = ("params", "layers", "attn_width", "batch_size")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, tiny_run_dict):
    """A real tiny run (grad_accum 2 for the students) and its config."""
    data = copy.deepcopy(tiny_run_dict)
    data["training"] = {**data["training"], "grad_accum": 2}
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", str(path), "--out", str(out), "--quiet", "--no-report"]) == 0
    reports = {p.name: protocol.load_report(p) for p in out.iterdir() if p.is_dir()}
    return parse_config(data), reports


def test_plan_names_the_runs_and_stages_a_run_makes(recorded):
    cfg, reports = recorded
    plan = plan_work(cfg)
    assert sorted(n for r in plan.runs for n in r.run_names) == sorted(reports)
    for run in plan.runs:
        rep = reports[run.run_names[0]]
        assert [s.name for s in run.stages] == [s.name for s in rep.stages]
        assert run.upstream == [s.name for s in rep.upstream]


def test_planned_work_equals_recorded_work(recorded):
    cfg, reports = recorded
    for run in plan_work(cfg).runs:
        rep = reports[run.run_names[0]]
        measured = {s.name: s for s in rep.stages}
        for st in run.stages:
            got = measured[st.name]
            for key in SHAPE:
                assert st.info.get(key) == got.info.get(key), (st.name, key)
            if st.name.endswith(".train"):
                for key in ("steps", "micro_batches"):
                    assert st.info[key] == got.info[key], (st.name, key)
                assert st.samples == got.samples
                if run.key in ("teacher", "baseline"):  # labelled data only: known lengths
                    # tokens per micro-batch are taken at the data's mean length
                    assert st.tokens == pytest.approx(got.tokens, rel=0.03)
            if st.name.startswith("eval.") or st.name == "teacher.generate":
                for key in ("gen_batches", "prompt_tokens"):
                    assert st.info[key] == got.info[key], (st.name, key)
                lo, hi = st.info["work_range"]["decode_steps"]
                assert lo <= got.info["decode_steps"] <= hi
            if st.name.startswith("eval."):
                for key in ("score_batches", "scored_tokens"):
                    assert st.info[key] == got.info[key], (st.name, key)
            if st.name == "teacher.logits":  # every answer kept: verify is off
                assert st.samples == got.samples
                assert st.info["score_batches"] == got.info["score_batches"]
    train = reports["baseline-s0"].stages[1]
    assert train.info["micro_batches"] == 2 * train.info["steps"]


def test_train_work_follows_the_loop():
    cfg = parse_config({"training": {"token_budget": 1000, "batch_size": 4, "grad_accum": 3}})
    w = train_work([10] * 10, cfg.training)  # batches of 4, 4, 2 sequences per epoch
    assert w["micro_batches"] == 3 * w["steps"]
    assert w["tokens"] >= 1000 and w["tokens"] - 1000 < 3 * 40
    assert w["samples"] * 10 == w["tokens"]


def test_generation_batches_decode_until_the_longest_answer():
    info, tokens, n = generate_work([3, 3, 5, 5], [2, 6, 1, 1], batch_size=2,
                                    max_new_tokens=5)
    # sorted by prompt length: (3, 3) decode min(5, 7) = 5 steps, (5, 5) decode 2
    assert info["gen_batches"] == 2 and info["decode_steps"] == 7
    assert info["new_tokens"] == 3 + 5 + 2 + 2 and tokens == 16 + 12 and n == 4
    assert info["work_range"]["decode_steps"] == [7, 10]
    assert score_work([5] * 10, 4, shard=6)["score_batches"] == 2 + 1


def test_stages_that_cannot_be_planned_say_why(tiny_run_dict):
    data = copy.deepcopy(tiny_run_dict)
    data["eval"] = {**data["eval"], "backend": "lm_eval",
                    "lm_eval": {"tasks": ["hellaswag"]}}
    data["generation"] = {**data["generation"], "backend": "vllm"}
    plan = plan_work(parse_config(data))
    teacher = {s.name: s for s in plan.runs[0].stages}
    assert "lm_eval" in teacher["eval.teacher"].cannot
    assert teacher["teacher.generate"].info["backend"] == "vllm"
    assert teacher["teacher.train"].cannot is None
