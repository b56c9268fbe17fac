"""What a config asks for: teacher artifacts, their stages, which a method's student counts."""

from __future__ import annotations

from distillmeter.pipelines.artifact_plan import plan_students, plan_teacher
from distillmeter.pipelines.config import RunConfig
from distillmeter.pipelines.config_file import parse_config


def _stages(plan, method):
    return [a.stage for a in plan.used_by(method)]


def test_default_plan_and_what_each_method_counts():
    cfg = RunConfig()
    plan = plan_teacher(cfg)
    assert [(a.kind, a.stage) for a in plan.artifacts()] == [
        ("teacher", "teacher.train"), ("eval-teacher", "eval.teacher"),
        ("synthetic", "teacher.generate"), ("logits", "teacher.logits")]
    assert _stages(plan, cfg.method("baseline")) == []
    assert _stages(plan, cfg.method("synthetic")) == ["teacher.train", "eval.teacher",
                                                      "teacher.generate"]
    assert _stages(plan, cfg.method("kd")) == ["teacher.train", "eval.teacher",
                                               "teacher.generate", "teacher.logits"]
    runs = plan_students(cfg)
    assert [r.name for r in runs] == [f"{m}-s{s}" for m in ("baseline", "synthetic", "kd")
                                      for s in range(3)]
    # one config_id per method, shared by its seeds
    assert len({r.config_id for r in runs}) == 3


def test_two_caches_get_one_stage_each_and_online_kd_needs_none():
    cfg = parse_config({"methods": [
        {"name": "kd-lab", "data": ["labelled"], "loss": "kd"},
        {"name": "kd-syn", "data": ["synthetic"], "loss": "kd"},
        {"name": "kd-online", "data": ["labelled"], "loss": "kd", "teacher_mode": "online"}]})
    plan = plan_teacher(cfg)
    lab, syn = plan.caches["kd-lab"], plan.caches["kd-syn"]
    assert lab.hash != syn.hash and lab.stage != syn.stage
    assert lab.stage.startswith("teacher.logits.") and syn.stage.startswith("teacher.logits.")
    assert _stages(plan, cfg.method("kd-lab")) == ["teacher.train", "eval.teacher", lab.stage]
    assert _stages(plan, cfg.method("kd-online")) == ["teacher.train", "eval.teacher"]
    assert "kd-online" not in plan.caches
    assert plan.synthetic is not None  # kd-syn needs the teacher's answers


def test_teacher_run_name_follows_what_it_makes():
    base = plan_teacher(RunConfig())
    assert plan_teacher(RunConfig()).run_name == base.run_name
    assert plan_teacher(parse_config({"training": {"lr": 0.001}})).run_name == base.run_name
    assert plan_teacher(parse_config({"logits": {"top_k": 8}})).run_name != base.run_name
    only_baseline = plan_teacher(parse_config({"methods": [{"name": "b",
                                                            "data": ["labelled"]}]}))
    assert only_baseline.synthetic is None and only_baseline.caches == {}
    assert only_baseline.teacher_hash == base.teacher_hash


def test_a_given_teacher_has_no_training_stage(tmp_path):
    cfg = parse_config({"teacher": {"train": False, "model": {"path": str(tmp_path)}}})
    plan = plan_teacher(cfg)
    assert plan.checkpoint is None
    assert _stages(plan, cfg.method("kd")) == ["eval.teacher", "teacher.generate",
                                               "teacher.logits"]
