"""The student budget axis (``budgets``): one student per (method, budget, seed), each a
configuration of its method (its own config id, its token budget as a label), sharing one
teacher run; the forecast plans the same runs and steps that the run records."""

from __future__ import annotations

import copy

import pytest
import yaml

from distillmeter import protocol
from distillmeter.cli import main
from distillmeter.pipelines.artifact_plan import budget_label, plan_students
from distillmeter.pipelines.config_file import parse_config
from distillmeter.pipelines.work import plan_work
from tiny_config import write_tiny

METHODS = [{"name": "baseline", "data": ["labelled"], "loss": "ce"},
           {"name": "kd", "data": ["labelled", "synthetic"], "loss": "kd"}]


@pytest.fixture(scope="module")
def axis_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "axis.yaml"
    data = write_tiny(path, budgets=[400, 900], methods=METHODS)
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", str(path), "--out", str(out), "--quiet", "--no-report"]) == 0
    reports = {p.name: protocol.load_report(p) for p in out.iterdir() if p.is_dir()}
    return parse_config(data), reports


def test_every_method_runs_at_every_budget_with_one_teacher(axis_run):
    cfg, reports = axis_run
    students = sorted(n for n in reports if not n.startswith("teacher"))
    assert students == ["baseline-b400-s0", "baseline-b900-s0", "kd-b400-s0", "kd-b900-s0"]
    assert len([n for n in reports if n.startswith("teacher")]) == 1
    ids = {reports[n].config_id for n in students}
    assert len(ids) == 4  # a budget point is a configuration of its own
    for name in students:
        rep = reports[name]
        budget = int(name.split("-b")[1].split("-")[0])
        assert rep.labels["token_budget"] == budget
        train = next(s for s in rep.stages if s.name == "student.train")
        assert train.tokens >= budget  # the loop stops once the budget has gone through
        assert rep.method == name.split("-")[0]


def test_the_forecast_plans_each_point(axis_run):
    cfg, reports = axis_run
    plan = plan_work(cfg)
    assert sorted(n for r in plan.runs for n in r.run_names) == sorted(reports)
    for run in plan.runs:
        rep = reports[run.run_names[0]]
        assert run.config_id == rep.config_id
        planned = {s.name: s for s in run.stages}
        for st in rep.stages:
            if st.name == "student.train" and rep.method == "baseline":  # known lengths
                assert planned[st.name].info["steps"] == st.info["steps"]


def test_without_an_axis_names_and_ids_are_unchanged(tiny_run_dict):
    cfg = parse_config(copy.deepcopy(tiny_run_dict))
    plain = plan_students(cfg)
    assert [s.name for s in plain][:1] == [f"{cfg.methods[0].name}-s0"]
    one = parse_config({**copy.deepcopy(tiny_run_dict),
                        "budgets": [cfg.training.token_budget]})
    # the same budget given on the axis is the same configuration (same config id)
    assert [s.config_id for s in plan_students(one)] == [s.config_id for s in plain]
    assert budget_label(240000) == "240k" and budget_label(1500) == "1500"


@pytest.mark.parametrize("budgets, needle", [([400, 400], "distinct"), ([0], "budgets"),
                                            ([], "budgets"), (["many"], "budgets")])
def test_bad_axes_are_refused_with_the_key(tmp_path, tiny_run_dict, capsys, budgets, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**copy.deepcopy(tiny_run_dict), "budgets": budgets}))
    assert main(["run", str(path), "--out", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_launcher_that_started_one_process_of_several_is_named(tmp_path,
                                                                  monkeypatch, capsys):
    """accelerate's simple launcher (``--cpu``) sets MASTER_ADDR and its own variables but
    starts one process: the run says so instead of running quietly undistributed."""
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    path = tmp_path / "one.yaml"
    write_tiny(path, methods=METHODS[:1])
    assert main(["run", str(path), "--out", str(tmp_path / "runs"), "--no-report"]) == 0
    got = capsys.readouterr()
    out = " ".join((got.out + got.err).split())
    assert "accelerate launch asked for several processes" in out
