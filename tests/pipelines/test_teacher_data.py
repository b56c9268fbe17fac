"""A method with no teacher data never trains: a real Qwen2 teacher/student pair made here
(transformers' Qwen2 with a byte-level BPE tokenizer trained with `tokenizers`), the
teacher untrained, so it keeps none of its answers; `task.n_pool: 0`; a pool file with no
usable prompt. Each stops before any student, with one line naming the method, the count
and the way out; what the teacher measured is kept and accounted. And a student that
trained on no teacher answer anyway (an older run) is not put in the verdict as a method."""

from __future__ import annotations

import re

import pytest

import real_pair
from distillmeter import protocol
from distillmeter.cli import main
from distillmeter.errors import UserError
from distillmeter.pipelines.config_file import load_config

METHODS = [{"name": "baseline", "data": ["labelled"]},
           {"name": "synthetic", "data": ["labelled", "synthetic"]},
           {"name": "kd", "data": ["labelled", "synthetic"], "loss": "kd"}]


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen")
    teacher, student = real_pair.qwen2_pair(root)
    return {"root": root, "teacher": teacher, "student": student,
            "files": real_pair.data(root)}


def _config(qwen, path, **overrides):
    cfg = real_pair.config(qwen["teacher"], qwen["student"], qwen["files"], methods=METHODS)
    cfg["generation"]["verify"] = True
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        cfg[section][name] = value
    return real_pair.write_config(path, cfg)


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines()
            if line.startswith("error:")]


def test_an_untrained_teacher_keeps_no_answer_and_no_student_trains(qwen, tmp_path, capsys):
    out = tmp_path / "out"
    cfg = _config(qwen, tmp_path / "cfg.yaml")
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 2
    assert _error_lines(capsys) == [
        "error: methods synthetic, kd have no teacher data: the teacher kept 0 of 16 answers "
        "(teacher.generate, verified); stopped before any student trained (the teacher's run "
        "is kept and accounted): set generation.verify: false, use a larger pool "
        "(task.n_pool) or a trained teacher"]
    # no student run directory at all (the baseline's neither): nothing reaches a verdict
    (teacher,) = [p for p in out.iterdir() if p.is_dir()]
    assert teacher.name.startswith("teacher-")
    ledger = protocol.read_ledger(teacher)
    assert ledger.run_end is not None and ledger.run_end.status == "ok"
    # what the teacher did is kept and accounted; the cache kd would need is not made
    report = protocol.load_report(teacher)
    assert [s.name for s in report.stages] == ["setup.load", "eval.teacher",
                                               "teacher.generate"]
    assert next(s for s in report.stages if s.name == "teacher.generate").energy_j["total"] > 0
    assert not list((teacher / "artifacts").glob("logits-*"))

    # the same config resumed stops again at once: no new teacher run, no student
    assert main(["run", str(cfg), "--out", str(out), "--resume", "--quiet"]) == 2
    assert len(_error_lines(capsys)) == 1
    assert [p.name for p in out.iterdir() if p.is_dir()] == [teacher.name]

    # the way out taken (verify: false): this untrained teacher answers blanks only
    cfg = _config(qwen, tmp_path / "cfg.yaml", generation__verify=False)
    assert main(["run", str(cfg), "--out", str(out), "--resume", "--quiet"]) == 2
    assert _error_lines(capsys) == [
        "error: methods synthetic, kd have no teacher data: the teacher's 16 answers were "
        "all blank (teacher.generate); stopped before any student trained (the teacher's run "
        "is kept and accounted): use a trained teacher or a larger pool (task.n_pool)"]
    assert not [p for p in out.iterdir() if p.is_dir() and not p.name.startswith("teacher-")]


def test_a_student_recipe_refuses_empty_teacher_data_before_its_run_directory(qwen,
                                                                             tmp_path):
    """The student recipe checks too (a sweep calls it without the runner's check)."""
    from distillmeter.pipelines import components
    from distillmeter.pipelines.artifact_plan import plan_students, plan_teacher
    from distillmeter.pipelines.config_file import load_config as load
    from distillmeter.pipelines.context import Context
    from distillmeter.pipelines.progress import StageProgress
    from distillmeter.pipelines.student import run_student
    from distillmeter.pipelines.teacher import run_teacher

    cfg = load(_config(qwen, tmp_path / "cfg.yaml"))
    ctx = Context(cfg, tmp_path / "out", StageProgress(quiet=True),
                  components.pick_device(cfg))
    plan = plan_teacher(cfg)
    teacher = run_teacher(ctx, plan, tmp_path / "out" / plan.run_name)
    assert teacher.synthetic_kept() == 0
    run = next(r for r in plan_students(cfg) if r.method.name == "synthetic")
    with pytest.raises(UserError, match=r"^method synthetic has no teacher data: the "
                                        r"teacher kept 0 of 16 answers"):
        run_student(ctx, run, teacher, tmp_path / "out" / run.name)
    assert not (tmp_path / "out" / run.name).exists()


def test_n_pool_0_with_a_synthetic_method_is_refused_at_its_line(qwen, tmp_path, capsys):
    path = _config(qwen, tmp_path / "cfg.yaml", task__n_pool=0)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1)
                if text.strip() == "n_pool: 0")
    with pytest.raises(UserError) as err:
        load_config(path)
    assert str(err.value) == (
        f"{path}:{line}: task.n_pool: methods synthetic, kd learn from the teacher's answers "
        "to the prompt pool, which is empty: no teacher data; set task.n_pool to at least 1, "
        "or drop those methods (got 0)")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    assert len(_error_lines(capsys)) == 1 and not out.exists()
    # the baseline alone needs no pool
    cfg = real_pair.config(qwen["teacher"], qwen["student"], qwen["files"],
                           methods=METHODS[:1])
    cfg["task"]["n_pool"] = 0
    assert load_config(real_pair.write_config(tmp_path / "b.yaml", cfg)).task.n_pool == 0


def test_a_pool_file_with_no_usable_prompt_stops_before_any_work(qwen, tmp_path, capsys):
    files = {**qwen["files"], "pool": qwen["files"]["test"]}  # every prompt is a test one
    cfg = real_pair.config(qwen["teacher"], qwen["student"], files, methods=METHODS[:2])
    path = real_pair.write_config(tmp_path / "cfg.yaml", cfg)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    (line,) = _error_lines(capsys)
    assert re.fullmatch(r"error: method synthetic has no teacher data: task\.files\.pool "
                        r"gives 0 usable prompts .*; give a larger pool .*", line)
    assert not out.exists()


def _meter_run(root, name: str, *, method: str, labels: dict, quality: float):
    from distillmeter.accounting import account, write_report
    from distillmeter.energy import EnergyMeter

    with EnergyMeter(root / name, idle_seconds=0, method=method, seed=0, config_id=method,
                     task="sums", labels=labels) as meter:
        with meter.stage("student.train", tokens=1000):
            sum(i * i for i in range(200_000))
        meter.record_quality("exact_match", quality, n=6)
    write_report(root / name, account(root / name))


def test_the_analysis_never_puts_a_student_without_teacher_answers_in_the_verdict(tmp_path):
    from distillmeter.analysis.directory import analyse_dir

    data = ["labelled", "synthetic"]
    _meter_run(tmp_path, "baseline-s0", method="baseline",
               labels={"role": "student", "data": ["labelled"]}, quality=0.5)
    _meter_run(tmp_path, "synthetic-s0", method="synthetic",
               labels={"role": "student", "data": data, "synthetic_examples": 0},
               quality=0.5)
    _meter_run(tmp_path, "kd-s0", method="kd",
               labels={"role": "student", "data": data, "synthetic_examples": 12},
               quality=0.6)
    analysis = analyse_dir(tmp_path)
    by_method = {v.get("method"): v for v in analysis.verdict}
    empty = by_method["synthetic"]
    assert empty["no_teacher_data"] is True and "energy_multiple" not in empty
    assert "trained on 0 of the teacher's answers" in empty["text"]
    assert "x the baseline's energy" not in empty["text"]
    assert "x the baseline's energy" in by_method["kd"]["text"]  # a normal method, as before
    assert any("synthetic" in n and "0 of the teacher's answers" in n for n in analysis.notes)
