"""`distillmeter run` end to end on a tiny config: every run directory accounts cleanly,
teacher work is shared and named upstream, resume skips what is done and never loses or
double-counts measured energy, and measured data is never overwritten."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import pytest
import yaml

from distillmeter import protocol
from distillmeter.cli import main
from distillmeter.pipelines.config_file import load_config, parse_config


@pytest.fixture(scope="module")
def tiny_yaml(tmp_path_factory, tiny_run_dict):
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_run_dict))
    return path


@pytest.fixture(scope="module")
def done(tmp_path_factory, tiny_yaml):
    """One finished tiny run (teacher + baseline, synthetic, kd at seed 0); what it printed
    is kept next to OUT, in OUT.stdout."""
    out = tmp_path_factory.mktemp("runs")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["run", str(tiny_yaml), "--out", str(out), "--quiet"]) == 0
    out.with_name(out.name + ".stdout").write_text(printed.getvalue())
    return out


def _teacher_dirs(out):
    return sorted(p for p in out.iterdir() if p.name.startswith("teacher-"))


def _stage_names(run_dir):
    return [e.stage for e in protocol.read_ledger(run_dir).of("stage_end")]


def _conserves(report):
    stages = sum(s.energy_j["total"] for s in report.stages)
    assert stages + report.totals.unattributed_j == pytest.approx(report.totals.energy_j,
                                                                  abs=1e-6)


def test_every_run_directory_accounts_cleanly(done, tiny_yaml):
    names = sorted(p.name for p in done.iterdir() if p.is_dir())
    teacher = _teacher_dirs(done)
    assert len(teacher) == 1
    assert names == sorted(["baseline-s0", "kd-s0", "synthetic-s0", teacher[0].name])
    cfg = load_config(tiny_yaml)
    for name in names:
        report = protocol.load_report(done / name)
        _conserves(report)
        assert report.status == "ok" and report.quality is not None
        # the resolved config, every default written out, loads back to the same config
        assert parse_config(yaml.safe_load((done / name / "config.yaml").read_text())) == cfg
    assert _stage_names(teacher[0]) == ["setup.load", "teacher.train", "eval.teacher",
                                        "teacher.generate", "teacher.logits"]
    for name in ("baseline-s0", "synthetic-s0", "kd-s0"):
        assert _stage_names(done / name) == ["setup.load", "student.train", "eval.student"]


def test_students_name_the_teacher_stages_they_used(done):
    teacher = _teacher_dirs(done)[0]
    t_id = protocol.read_ledger(teacher).run_start.run_id
    used = {}
    for name in ("baseline-s0", "synthetic-s0", "kd-s0"):
        start = protocol.read_ledger(done / name).run_start
        assert start.method == name.split("-")[0] and start.seed == 0
        assert [u.run_id for u in start.upstream] in ([], [t_id])
        used[name] = [s for u in start.upstream for s in u.stages]
        if start.upstream:
            assert start.upstream[0].run_dir == f"../{teacher.name}"
    assert used["baseline-s0"] == []
    assert used["synthetic-s0"] == ["teacher.train", "eval.teacher", "teacher.generate"]
    assert used["kd-s0"] == ["teacher.train", "eval.teacher", "teacher.generate",
                             "teacher.logits"]
    kd = protocol.load_report(done / "kd-s0")
    assert sorted(s.name for s in kd.upstream) == sorted(used["kd-s0"])
    assert kd.totals.upstream_j == pytest.approx(sum(s.energy_j["total"] for s in kd.upstream))
    q = kd.quality.details
    assert q["teacher_value"] == protocol.load_report(teacher).quality.value
    assert "loss" in q


def test_teacher_artifacts_and_student_outputs_are_on_disk(done, tiny_run_dict):
    teacher = _teacher_dirs(done)[0]
    kinds = sorted(p.name.rsplit("-", 1)[0] for p in (teacher / "artifacts").iterdir())
    assert kinds == ["eval-teacher", "logits", "synthetic", "teacher"]
    manifest = json.loads(next((teacher / "artifacts").glob("logits-*/manifest.json"))
                          .read_text())
    assert manifest["complete"] and manifest["info"]["bytes_per_token"] > 0
    synth = json.loads(next((teacher / "artifacts").glob("synthetic-*/manifest.json"))
                       .read_text())
    assert synth["info"]["n_prompts"] == tiny_run_dict["task"]["n_pool"]
    assert 0.0 <= synth["info"]["kept_fraction"] <= 1.0
    for name in ("baseline-s0", "synthetic-s0", "kd-s0"):
        arts = sorted(p.name.rsplit("-", 1)[0] for p in (done / name / "artifacts").iterdir())
        assert arts == ["eval", "student", "train"]


def test_existing_runs_are_never_overwritten(done, tiny_yaml, capsys):
    before = (done / "kd-s0" / "ledger.jsonl").read_bytes()
    assert main(["run", str(tiny_yaml), "--out", str(done), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "already hold measured data" in err and "--resume" in err and "--out" in err
    assert (done / "kd-s0" / "ledger.jsonl").read_bytes() == before


def test_resume_skips_what_is_done(done, tiny_yaml, tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(done, out)
    ledgers = {p: p.read_bytes() for p in out.glob("*/ledger.jsonl")}
    assert main(["run", str(tiny_yaml), "--out", str(out), "--quiet", "--resume"]) == 0
    assert {p: p.read_bytes() for p in out.glob("*/ledger.jsonl")} == ledgers
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(
        p.name for p in done.iterdir() if p.is_dir())


def test_resume_with_another_config_is_refused(done, tiny_run_dict, tmp_path, capsys):
    changed = {**tiny_run_dict, "training": {**tiny_run_dict["training"], "lr": 0.005}}
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(changed))
    before = sorted(p.name for p in done.iterdir())
    assert main(["run", str(path), "--out", str(done), "--quiet", "--resume"]) == 2
    assert "holds a finished run of another configuration" in capsys.readouterr().err
    assert sorted(p.name for p in done.iterdir()) == before


def test_a_typo_stops_before_any_work(tmp_path, capsys):
    path = tmp_path / "my.yaml"
    path.write_text("training:\n  token_budgte: 10\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "my.yaml:2: training: unknown key 'token_budgte' (did you mean 'token_budget'?)" in err
    assert not (tmp_path / "out").exists()


def _cut_ledger_after(run_dir, stage_start: str) -> None:
    """Simulate a kill -9 inside ``stage_start``: the ledger ends a few lines after that
    stage began (no stage_end, no run_end), the report was never written."""
    path = run_dir / "ledger.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    i = next(k for k, s in enumerate(lines) if json.loads(s).get("event") == "stage_start"
             and json.loads(s)["stage"] == stage_start)
    path.write_text("".join(lines[: i + 1]))
    (run_dir / "report.json").unlink()


def test_resume_redoes_an_interrupted_student_and_keeps_its_energy(done, tiny_yaml, tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(done, out)
    _cut_ledger_after(out / "kd-s0", "student.train")
    teacher_ledger = (_teacher_dirs(out)[0] / "ledger.jsonl").read_bytes()
    assert main(["run", str(tiny_yaml), "--out", str(out), "--quiet", "--resume"]) == 0
    failed = out / "kd-s0.failed-1"
    report = protocol.load_report(failed)  # the interrupted attempt, accounted where it lies
    _conserves(report)
    assert [(s.name, s.status) for s in report.stages][-1] == ("student.train", "incomplete")
    redone = protocol.load_report(out / "kd-s0")
    assert redone.status == "ok" and redone.run_id != report.run_id
    assert (_teacher_dirs(out)[0] / "ledger.jsonl").read_bytes() == teacher_ledger


def test_resume_after_the_teacher_was_interrupted_reuses_its_finished_work(done, tiny_yaml,
                                                                         tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(done, out)
    teacher = _teacher_dirs(out)[0]
    for name in ("baseline-s0", "synthetic-s0", "kd-s0"):
        shutil.rmtree(out / name)  # the students never started
    _cut_ledger_after(teacher, "teacher.logits")
    cache = next((teacher / "artifacts").glob("logits-*"))
    shutil.rmtree(cache)  # the cache was not written yet
    assert main(["run", str(tiny_yaml), "--out", str(out), "--quiet", "--resume"]) == 0
    failed = teacher.with_name(teacher.name + ".failed-1")
    assert _stage_names(teacher) == ["setup.load", "teacher.logits"]  # only what was missing
    assert protocol.load_report(failed).stages[-1].status == "incomplete"
    start = protocol.read_ledger(out / "kd-s0").run_start
    refs = {u.run_dir: u.stages for u in start.upstream}
    assert refs == {f"../{failed.name}": ["teacher.train", "eval.teacher", "teacher.generate"],
                    f"../{teacher.name}": ["teacher.logits"]}
    kd = protocol.load_report(out / "kd-s0")
    assert sorted(s.name for s in kd.upstream) == ["eval.teacher", "teacher.generate",
                                                   "teacher.logits", "teacher.train"]


def test_stages_say_what_ran_so_the_analysis_can_compute_floors(done):
    """Each compute stage carries the model's parameter count and batch size in its report
    (from stage_end.info), and the efficiency analysis picks the count up."""
    from distillmeter.analysis.efficiency import stage_params

    teacher = protocol.load_report(_teacher_dirs(done)[0])
    kd = protocol.load_report(done / "kd-s0")
    t_params = {s.name: s.info.get("params") for s in teacher.stages}
    s_params = {s.name: s.info.get("params") for s in kd.stages}
    for name in ("teacher.train", "eval.teacher", "teacher.generate", "teacher.logits"):
        assert t_params[name] and t_params[name] > 0
        assert len({t_params[name], t_params["teacher.train"]}) == 1  # one teacher
    assert s_params["student.train"] == s_params["eval.student"] > 0
    assert s_params["student.train"] < t_params["teacher.train"]
    assert s_params["setup.load"] is None
    train = next(s for s in kd.stages if s.name == "student.train")
    assert train.info["batch_size"] > 0
    assert stage_params(train, kd.labels) == s_params["student.train"]
    # upstream copies keep what ran
    assert {s.name: s.info.get("params") for s in kd.upstream}["teacher.logits"] == \
        t_params["teacher.logits"]


def test_run_ends_with_the_analysis_across_its_runs(done):
    """`distillmeter run` analyses what it ran: summary files and the HTML report are in
    OUT, with one configuration per method and a Pareto flag on each."""
    import json

    summary = json.loads((done / "summary.json").read_text())
    methods = sorted(c["method"] for c in summary["configs"])
    assert methods == ["baseline", "kd", "synthetic"]
    assert any(c["pareto"] for c in summary["configs"])
    assert (done / "summary.csv").read_text().count("\n") == 4  # header + 3 configurations
    html = (done / "report.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and "<svg" in html
    # the verdict (each method against the baseline) is in summary.json, opens the page,
    # and is the last thing the run prints
    assert sorted(v["label"] for v in summary["verdict"]) == ["kd", "synthetic"]
    assert html.index('class="verdict"') < html.index("<h2>Group")
    printed = done.with_name(done.name + ".stdout").read_text().rstrip().splitlines()
    heading = max(i for i, line in enumerate(printed) if line.startswith("verdict"))
    assert heading > max(i for i, line in enumerate(printed) if line.startswith("wrote "))
    rest = "\n".join(printed[heading:])
    assert "  - kd: " in rest and "  - synthetic: " in rest
    # what it ran, first: the teacher's energy, marked when it is an estimate
    teacher_line = next(line for line in printed if line.startswith("teacher "))
    estimated = protocol.load_report(_teacher_dirs(done)[0]).estimated
    assert (" J est. in " in teacher_line) == estimated
