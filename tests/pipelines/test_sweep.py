"""`distillmeter sweep`: the sweep file (strict), its expansion (pure), and tiny real
sweeps run here: teacher work shared by hash across configs, resume, report."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import pytest
import yaml

from distillmeter.cli import main
from distillmeter.errors import UserError
from distillmeter.pipelines.artifact_plan import plan_students, plan_teacher
from distillmeter.pipelines.scale.sweep_file import (
    check_path,
    expand,
    load_sweep,
    parse_sweep,
    point_name,
)
from distillmeter.pipelines.scale.sweep_run import run_sweep
from distillmeter.protocol import load_report, read_ledger

KD_ONLY = [{"name": "kd", "data": ["labelled"], "loss": "kd"}]


def write(tmp_path: Path, name: str, doc) -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def base_file(tmp_path, tiny_run_dict):
    return write(tmp_path, "tiny.yaml", {**copy.deepcopy(tiny_run_dict), "methods": KD_ONLY})


# --------------------------------------------------------------------------- expansion


def test_grid_expands_to_the_product_with_every_override_applied(base_file, tmp_path):
    sweep = load_sweep(write(tmp_path, "s.yaml", {
        "base": base_file.name,
        "grid": {"training.lr": [0.003, 0.01], "methods.0.alpha": [0.2, 0.5, 0.8]},
        "seeds": [0, 3]}))
    assert len(sweep.points) == 6 and sweep.seeds == [0, 3] and len(sweep.jobs()) == 12
    got = {(p.config.training.lr, p.config.methods[0].alpha) for p in sweep.points}
    assert got == {(lr, a) for lr in (0.003, 0.01) for a in (0.2, 0.5, 0.8)}
    p = sweep.points[0]
    # everything else is the base's; seeds cover every listed seed
    assert p.config.training.batch_size == 8 and p.config.seeds == 4
    assert p.name.startswith("lr=0.003,alpha=0.2-")
    assert [s.seed for s in plan_students(p.config) if s.seed in sweep.seeds] == [0, 3]


def test_point_names_are_stable_and_distinct():
    a = point_name({"training.lr": 0.01, "student.model.arch.d_model": 32})
    assert a == point_name({"training.lr": 0.01, "student.model.arch.d_model": 32})
    assert a.startswith("lr=0.01,d_model=32-")
    assert point_name({"teacher.model.arch.d_model": 32, "student.model.arch.d_model": 32}
                      ).startswith("teacher.model.arch.d_model=32,student.model.arch.d_model=")
    assert point_name({}) == "base"
    assert point_name({"training.lr": 0.01}) != point_name({"training.lr": 0.011})


def test_an_override_changes_one_key_of_the_default_section():
    # the base leaves the teacher out; one arch key is overridden, the rest stays default
    points = expand({"device": "cpu"}, {"teacher.model.arch.d_model": [64]}, [0])
    arch = points[0].config.teacher.model.arch
    assert (arch.d_model, arch.n_layers, arch.d_ff) == (64, 2, 512)


def test_inline_base_and_no_grid_is_one_point(tiny_run_dict):
    sweep = parse_sweep({"base": tiny_run_dict})
    assert [p.name for p in sweep.points] == ["base"] and sweep.seeds == [0]


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("doc,message", [
    ({"grid": {"training.lr": [0.1]}, "seed": 2}, "sweep.yaml:5: unknown key 'seed' (did you "
     "mean 'seeds'?)"),
    ({"grid": {"training.lrr": [0.1]}}, "sweep.yaml:3: grid: 'training.lrr': training has no "
     "key 'lrr' (did you mean 'lr'?)"),
    ({"grid": {"trainig.lr": [0.1]}}, "the config has no key 'trainig' (did you mean "
     "'training'?)"),
    ({"grid": {"methods.3.alpha": [0.1]}}, "methods is a list of 1 in the base; '3' is not "
     "an index of it"),
    ({"grid": {"training.lr.max": [0.1]}}, "'training.lr' is a value, not a section"),
    ({"grid": {"training.lr": 0.1}}, "'training.lr' must be a non-empty list of values"),
    ({"grid": {"training.lr": []}}, "must be a non-empty list"),
    ({"grid": {"seeds": [1, 2]}}, "'seeds' goes at the top level"),
    ({"grid": {"training.lr": [-1.0]}}, "grid point lr=-1.0-"),
    ({"grid": {"training.lr": ["fast"]}}, "training.lr"),
    ({"seeds": 0}, "seeds must be a count >= 1"),
    ({"seeds": [1, 1]}, "list of distinct seeds"),
    ({"ray": {"gpus": 1}}, "ray: unknown key 'gpus' (did you mean 'num_gpus'?)"),
    ({"ray": {"num_gpus": -1}}, "ray.num_gpus must be a number >= 0 or auto"),
])
def test_mistakes_are_named_before_any_work(base_file, tmp_path, doc, message):
    path = write(tmp_path, "sweep.yaml", {"base": base_file.name, **doc})
    with pytest.raises(UserError) as err:
        load_sweep(path)
    assert message in str(err.value).replace(str(tmp_path) + "/", "")


def test_base_mistakes_name_the_base(tmp_path, tiny_run_dict):
    with pytest.raises(UserError, match="no such config file"):
        load_sweep(write(tmp_path, "a.yaml", {"base": "missing.yaml"}))
    with pytest.raises(UserError, match="base: unknown key 'trainig'"):
        load_sweep(write(tmp_path, "b.yaml", {"base": {"trainig": {"lr": 1}}}))
    with pytest.raises(UserError, match=r"c.yaml:2: not valid YAML"):
        load_sweep(write(tmp_path, "c.yaml", "grid: [\n"))


def test_free_mappings_and_null_sections_take_their_keys(tiny_run_dict):
    resolved = parse_sweep({"base": tiny_run_dict}).points[0].config.resolved()
    assert check_path("task.params.width", resolved) is None
    assert check_path("eval.lm_eval.model_args.anything", resolved) is None
    assert check_path("carbon.country", resolved) is None


def test_task_params_go_by_the_tasks_schema(tiny_run_dict):
    """A built-in task's params are checked by its schema, so a typo in a grid key is
    named with the param meant, before any point is expanded."""
    resolved = parse_sweep({"base": tiny_run_dict}).points[0].config.resolved()
    assert check_path("task.params.min_digit", resolved) == (
        "'task.params.min_digit': task 'arithmetic' has no param 'min_digit' (did you mean "
        "'min_digits'?)")


def test_dry_run_lists_jobs_and_runs_nothing(base_file, tmp_path, capsys):
    path = write(tmp_path, "s.yaml", {"base": base_file.name, "grid": {"training.lr": [1e-3, 2e-3]},
                                      "seeds": 2})
    assert main(["sweep", str(path), "--out", str(tmp_path / "runs"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 configs x 2 seeds = 4 jobs" in out and not (tmp_path / "runs").exists()
    assert main(["sweep", str(write(tmp_path, "bad.yaml", {"grid": {"x.y": [1]}}))]) == 2


def test_sweep_refuses_to_run_under_torchrun(base_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    path = write(tmp_path, "s.yaml", {"base": base_file.name})
    assert main(["sweep", str(path), "--out", str(tmp_path / "runs")]) == 2
    assert "without torchrun" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- running


@pytest.fixture(scope="module")
def swept(tmp_path_factory, tiny_run_dict):
    """Two configs (learning rates) x one seed, one cached-KD method: one teacher."""
    tmp = tmp_path_factory.mktemp("sweep")
    write(tmp, "tiny.yaml", {**copy.deepcopy(tiny_run_dict), "methods": KD_ONLY})
    sweep = load_sweep(write(tmp, "sweep.yaml", {"base": "tiny.yaml",
                                                  "grid": {"training.lr": [0.003, 0.01]}}))
    records = run_sweep(sweep, tmp / "runs", quiet=True)
    return sweep, tmp / "runs", records


def test_sweep_runs_every_job_with_the_teacher_once(swept):
    sweep, runs, records = swept
    assert [(r.point, r.method, r.status) for r in records] == [
        (p.name, "kd", "done") for p in sweep.points], [r.note for r in records]
    teachers = sorted((runs / "teachers").iterdir())
    assert [t.name for t in teachers] == [plan_teacher(sweep.points[0].config).run_name]
    stages = [e.stage for e in read_ledger(teachers[0]).of("stage_start")]
    assert stages == ["setup.load", "teacher.train", "eval.teacher", "teacher.logits"]
    for p in sweep.points:
        run = runs / p.name / "kd-s0"
        report = load_report(run)
        assert report.config_id == next(iter(json.loads((runs / "sweep.json").read_text())
                                             ["points"][sweep.points.index(p)]["config_ids"]
                                             .values()))
        # the shared teacher's stages count upstream in each student, found on disk
        assert {s.name for s in report.upstream} == {"teacher.train", "eval.teacher",
                                                     "teacher.logits"}
        assert report.totals.with_upstream_j > report.totals.energy_j > 0
        assert read_ledger(run).run_start.labels["role"] == "student"
    lrs = {yaml.safe_load((runs / p.name / "kd-s0" / "config.yaml").read_text())["training"]
           ["lr"] for p in sweep.points}
    assert lrs == {0.003, 0.01}
    # the closing table marks estimated energy (this machine has no RAPL: an estimate)
    from rich.console import Console

    from distillmeter.pipelines.scale.sweep_run import summary_table

    buf = io.StringIO()
    Console(file=buf, width=120).print(summary_table(records))
    estimated = load_report(runs / sweep.points[0].name / "kd-s0").estimated
    assert ("~: estimated energy" in buf.getvalue()) == estimated


def test_resume_skips_done_runs_and_redoes_interrupted_ones(swept):
    sweep, runs, _ = swept
    with pytest.raises(UserError, match="already holds measured data"):
        run_sweep(sweep, runs, quiet=True)
    victim = runs / sweep.points[1].name / "kd-s0"
    lines = (victim / "ledger.jsonl").read_text().splitlines(keepends=True)
    (victim / "ledger.jsonl").write_text("".join(lines[:-1]))  # no run_end: interrupted
    records = run_sweep(sweep, runs, resume=True, quiet=True)
    assert [r.status for r in records] == ["skipped", "done"]
    assert "kept as kd-s0.failed-1" in records[1].note
    assert (victim.parent / "kd-s0.failed-1" / "report.json").exists()
    assert load_report(victim).status == "ok"
    assert len(list((runs / "teachers").iterdir())) == 1  # nothing made again


def test_report_merges_the_sweep(swept, capsys):
    _, runs, _ = swept
    assert main(["report", str(runs), "--no-sensitivity"]) == 0
    summary = json.loads((runs / "summary.json").read_text())
    # both configs, their one shared teacher; the rank/teacher dirs are not runs of their own
    assert len(summary["configs"]) == 2 and summary["n_runs"] == 3  # + the kept attempt
    assert len(summary["teacher_runs"]) == 1


def test_configs_sharing_part_of_a_teacher_share_its_artifacts(tmp_path, tiny_run_dict):
    """Two generation temperatures: two synthetic data sets, one trained teacher."""
    base = {**copy.deepcopy(tiny_run_dict), "methods": [
        {"name": "synthetic", "data": ["labelled", "synthetic"]}]}
    write(tmp_path, "tiny.yaml", base)
    sweep = load_sweep(write(tmp_path, "s.yaml", {
        "base": "tiny.yaml", "grid": {"generation.temperature": [0.0, 0.7]}}))
    records = run_sweep(sweep, tmp_path / "runs", quiet=True)
    assert [r.status for r in records] == ["done", "done"]
    teachers = sorted((tmp_path / "runs" / "teachers").iterdir())
    made = sorted([e.stage for e in read_ledger(t).of("stage_start")][1:] for t in teachers)
    assert made == [["teacher.generate"],
                    ["teacher.train", "eval.teacher", "teacher.generate"]]
    for p in sweep.points:
        up = load_report(tmp_path / "runs" / p.name / "synthetic-s0").upstream
        assert sorted(s.name for s in up) == ["eval.teacher", "teacher.generate",
                                              "teacher.train"]
