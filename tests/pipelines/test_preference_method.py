"""The preference method (``methods/preference.py``) in a real tiny ``distillmeter run``:
its four windows with energy, conservation, the baseline's training named upstream, the
forecast planning the same stages, the verdict naming it; and bad settings refused."""

from __future__ import annotations

import copy
import json
import math

import pytest
import yaml

from distillmeter import protocol
from distillmeter.cli import main
from distillmeter.pipelines.config_file import parse_config
from distillmeter.pipelines.methods.preference import PHASES

# max_new_tokens 2: a sampled answer is cut at 2 tokens (or ends sooner at EOS), which is
# what the forecast plans for an answer at least that long, so planned and recorded
# training agree step for step; a high temperature keeps a prompt's 3 samples apart.
PREFERENCE = {"name": "preference", "data": ["labelled"], "loss": "dpo", "k": 3,
              "prompts": 8, "sample_temperature": 1.5, "max_new_tokens": 2}
METHODS = [{"name": "baseline", "data": ["labelled"]}, PREFERENCE]


def _config(tiny_run_dict, path, methods=METHODS):
    data = copy.deepcopy(tiny_run_dict)
    data["methods"] = copy.deepcopy(methods)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def pref_run(tmp_path_factory, tiny_run_dict):
    cfg = _config(tiny_run_dict, tmp_path_factory.mktemp("cfg") / "pref.yaml")
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    return cfg, out


def _train_log(run_dir) -> dict:
    log = next((run_dir / protocol.ARTIFACTS_DIR).glob("train-*/train.json"))
    return json.loads(log.read_text())


def test_its_report_has_the_four_windows_with_energy(pref_run):
    _, out = pref_run
    rep = protocol.load_report(out / "preference-s0")
    assert rep.method == "preference" and rep.labels["loss"] == "dpo"
    assert [s.name for s in rep.stages] == ["setup.load", *PHASES, "eval.student"]
    for s in rep.stages:
        assert s.energy_j["total"] > 0, s.name
    st = {s.name: s for s in rep.stages}
    assert st["student.generate"].samples == 8 * 3  # k answers to each prompt
    assert st["teacher.judge"].samples == 8 * 3      # the teacher read every one
    pairs, ties = st["teacher.judge"].info["pairs"], st["teacher.judge"].info["ties"]
    assert pairs + ties == 8 and pairs > 0
    assert st["student.reference"].samples == 2 * pairs  # each pair's two answers, once
    pref = _train_log(out / "preference-s0")["preference"]
    assert (pref["pairs"], pref["ties"], pref["candidates"]) == (pairs, ties, 24)
    parts = _train_log(out / "preference-s0")["last_parts"]
    assert set(parts) == {"dpo", "margin", "accuracy"}  # DPO trained, not CE


def test_energy_is_conserved(pref_run):
    _, out = pref_run
    rep = protocol.load_report(out / "preference-s0")
    t = rep.totals
    assert t.energy_j == pytest.approx(t.stages_j + t.unattributed_j, rel=1e-9)
    assert t.stages_j == pytest.approx(math.fsum(s.energy_j["total"] for s in rep.stages),
                                       rel=1e-9)
    assert t.with_upstream_j == pytest.approx(t.energy_j + t.upstream_j, rel=1e-9)
    assert t.upstream_j == pytest.approx(math.fsum(u.energy_j["total"]
                                                   for u in rep.upstream), rel=1e-9)


def test_the_baseline_student_it_starts_from_is_named_upstream(pref_run):
    _, out = pref_run
    base = protocol.load_report(out / "baseline-s0")
    named = protocol.read_ledger(out / "preference-s0").run_start.upstream
    ref = [u for u in named if u.run_id == base.run_id]
    assert ref and ref[0].stages == ["student.train"]
    counted = [u for u in protocol.load_report(out / "preference-s0").upstream
               if u.name == "student.train"]
    trained = next(s for s in base.stages if s.name == "student.train")
    assert counted and counted[0].energy_j["total"] == pytest.approx(trained.energy_j["total"])
    # and the teacher it judged with: its training counted as for every teacher user
    assert any(u.name == "teacher.train" for u in protocol.load_report(
        out / "preference-s0").upstream)


def test_the_forecast_plans_the_stages_it_recorded(pref_run, capsys):
    from distillmeter.pipelines.work import plan_work

    cfg_path, out = pref_run
    rep = protocol.load_report(out / "preference-s0")
    plan = plan_work(parse_config(yaml.safe_load(cfg_path.read_text())))
    run = next(r for r in plan.runs if r.key == "preference")
    assert run.config_id == rep.config_id
    assert [s.name for s in run.stages if s.name != "idle"] == [s.name for s in rep.stages]
    planned = {s.name: s for s in run.stages}
    recorded = {s.name: s for s in rep.stages}
    assert recorded["teacher.judge"].info["ties"] == 0  # the premise of the step count
    for name in PHASES:
        assert planned[name].samples == recorded[name].samples, name
    for key in ("steps", "micro_batches", "params", "batch_size"):
        assert planned["student.train"].info[key] == recorded["student.train"].info[key], key
    assert planned["student.generate"].info["gen_batches"] == \
        recorded["student.generate"].info["gen_batches"]
    capsys.readouterr()
    assert main(["estimate", str(cfg_path), "--from", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["methods"]
    pref, base = doc["preference"], doc["baseline"]
    assert {"teacher.judge", "student.reference"} <= set(pref["stages"])
    # the starting student's training counted in full, as the measured run counts it
    assert pref["starts_from"] == base["config_id"] and pref["complete"]
    assert pref["starting_student_j"] == pytest.approx(
        base["stages"]["student.train"]["energy_j"])
    assert pref["total_j"] == pytest.approx(pref["own_j"] + pref["teacher_j"]
                                            + pref["starting_student_j"])
    # its own teacher.judge is on the teacher side of the share, as in the analysis
    judge = pref["stages"]["teacher.judge"]["energy_j"]
    assert pref["teacher_share"] == pytest.approx((pref["teacher_j"] + judge)
                                                  / pref["total_j"])


def test_the_verdict_names_it_with_its_teacher_share(pref_run):
    _, out = pref_run
    summary = json.loads((out / "summary.json").read_text())
    verdict = [v for v in summary.get("verdict") or [] if "preference" in json.dumps(v)]
    assert verdict
    text = json.dumps(verdict)
    assert "teacher-side" in text and "teacher.judge" in text and "baseline" in text
    row = next(c for c in summary["configs"] if c["method"] == "preference")
    rep = protocol.load_report(out / "preference-s0")
    judge = sum(s.energy_j["total"] for s in rep.stages if s.name == "teacher.judge")
    assert row["by_stage_j_mean"]["teacher.judge"] == pytest.approx(judge)
    assert row["teacher_side_j_mean"] >= judge > 0
    # the rules say the starting student's training is in its total, in full
    assert "preference starts from baseline's trained student" in json.dumps(summary)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "preference" in html and "teacher.judge" in html


@pytest.mark.parametrize("change, key", [
    ({"k": 1}, "k"),
    ({"sample_temperature": 0.0}, "sample_temperature"),
    ({"starts_from": "nosuch"}, "starts_from"),
    ({"starts_from": "preference"}, "starts_from"),
    ({"judge": "vibes"}, "judge"),
])
def test_bad_settings_are_refused_naming_the_key(tmp_path, tiny_run_dict, capsys, change,
                                                 key):
    cfg = _config(tiny_run_dict, tmp_path / "bad.yaml",
                  [METHODS[0], {**PREFERENCE, **change}])
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"methods[1].{key}" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_its_settings_default_and_stay_its_own(tiny_run_dict):
    cfg = parse_config({"methods": [METHODS[0], {"name": "p", "data": ["labelled"],
                                                 "loss": "dpo"}]})
    m = cfg.method("p")
    assert (m.k, m.prompts, m.judge, m.beta, m.starts_from) == (4, None, "likelihood", 0.1,
                                                               "baseline")
    from distillmeter.errors import UserError

    with pytest.raises(UserError, match="k only applies with loss: dpo"):
        parse_config({"methods": [{"name": "b", "data": ["labelled"], "k": 3}]})


def test_amortising_divides_the_teacher_not_the_starting_student(pref_run):
    from distillmeter.analysis.runs import figures

    _, out = pref_run
    fig = figures(protocol.load_report(out / "preference-s0"))
    base = protocol.load_report(out / "baseline-s0")
    trained = next(s for s in base.stages if s.name == "student.train").energy_j["total"]
    assert fig.carried_j == pytest.approx(trained)  # the baseline's training, in full
    shared = fig.upstream_j - fig.carried_j  # the teacher's training and evaluation
    assert shared > 0
    assert fig.total_j(4.0) == pytest.approx(fig.own_j + trained + shared / 4)


def test_the_packaged_config_is_the_default_with_its_own_methods():
    from importlib.resources import files

    from distillmeter.pipelines.config import RunConfig
    from distillmeter.pipelines.config_file import load_config

    cfg = load_config("preference")  # `distillmeter run preference` finds it by name
    default = RunConfig()
    assert [m.name for m in cfg.methods] == ["baseline", "kd", "preference"]
    assert cfg.model_copy(update={"methods": default.methods, "seeds": default.seeds}) == default
    assert cfg.method("baseline") == default.method("baseline")
    m = cfg.method("preference")
    assert (m.loss, m.starts_from, m.judge, m.k, m.prompts) == ("dpo", "baseline",
                                                                "likelihood", 4, None)
    text = files("distillmeter").joinpath("configs", "preference.yaml").read_text()
    assert set(yaml.safe_load(text)) == {"methods", "seeds"}
