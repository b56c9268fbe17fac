"""`distillmeter estimate` and `plan --candidates` through the real CLI, fitted on real run
directories made here by `distillmeter run` on a tiny config (and on the H100 campaign cut
from tests/data); the forecast saved with --save and compared after the run."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from distillmeter.accounting.uncertainty import ESTIMATE_REL
from distillmeter.analysis.costfit import observations
from distillmeter.analysis.costmodel import CostModel, fit_cost_model
from distillmeter.analysis.efficiency import load_floors
from distillmeter.analysis.loading import load_runs
from distillmeter.analysis.runs import hardware_label
from distillmeter.cli import main
from tiny_config import TINY_RUN

H100 = "1x NVIDIA H100 80GB HBM3"


def _yaml(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def cfg_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cfg")


@pytest.fixture(scope="module")
def tiny_yaml(cfg_dir):
    return _yaml(cfg_dir / "tiny.yaml", TINY_RUN)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_yaml):
    """Real runs of the tiny config, two seeds, measured on this machine."""
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", str(tiny_yaml), "--out", str(out), "--quiet", "--no-report",
                 "--seeds", "2"]) == 0
    return out


def _estimate(capsys, *args):
    capsys.readouterr()
    rc = main(["estimate", *map(str, args), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def test_estimate_json(capsys, runs, tiny_yaml):
    doc = _estimate(capsys, tiny_yaml, "--from", runs)
    assert set(doc["methods"]) == {"teacher", "baseline", "synthetic", "kd"}
    assert list(doc["methods"]["teacher"]["stages"])[:5] == [
        "setup.load", "teacher.train", "eval.teacher", "teacher.generate", "teacher.logits"]
    for key, rec in doc["methods"].items():
        for name, st in rec["stages"].items():
            lo, hi = st["ci95"]
            assert 0 <= lo <= st["energy_j"] <= hi, (key, name)
            assert st["seconds"] > 0
        assert rec["total_j"] == pytest.approx(rec["own_j"] + rec["teacher_j"])
        # every device here is the meter's estimate: the energy interval carries its own
        # error (ESTIMATE_REL of the estimated part) on top of the reading's interval
        assert 0.4 < rec["estimate_rel"] <= ESTIMATE_REL + 1e-12, key
        lo, hi = rec["ci95"]
        assert rec["energy_ci95"] == pytest.approx([lo * (1 - rec["estimate_rel"]),
                                                    hi * (1 + rec["estimate_rel"])])
    kd = doc["methods"]["kd"]
    assert kd["upstream"] == ["teacher.train", "eval.teacher", "teacher.generate",
                              "teacher.logits"]
    assert 0 < kd["teacher_share"] < 1 and doc["methods"]["baseline"]["teacher_j"] == 0
    assert "n_star" in kd
    basis = doc["basis"]
    assert basis["runs"] == 7 and basis["time_fit"]["dof"] > 0
    model = CostModel.from_dict(json.loads((runs / "costmodel.json").read_text()))
    assert model.hardware == basis["hardware"]
    assert not doc["not_forecast"] and not doc["warnings"]
    # the console form: the same content as a table, marked predicted
    capsys.readouterr()
    assert main(["estimate", str(tiny_yaml), "--from", str(runs)]) == 0
    text = capsys.readouterr().out
    assert "predicted" in text and "teacher.logits" in text and "N*" in text
    assert "with estimate error" in text and "~: energy the meter estimates" in text


def test_no_runs_on_this_hardware(capsys, tmp_path, tiny_yaml, campaign_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["estimate", str(tiny_yaml), "--from", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "no runs on this hardware" in err and "holds no finished run" in err
    assert main(["estimate", str(tiny_yaml), "--from", str(campaign_dir)]) == 2
    err = capsys.readouterr().err
    assert "no runs on this hardware" in err and f"{H100} (10 run(s))" in err
    assert "--hardware" in err and "Traceback" not in err


def test_far_off_config_on_another_machines_runs(capsys, tiny_yaml, campaign_dir):
    # the tiny models are 10,000x smaller than the H100 runs' models: far from anything
    # measured there; generation was never measured there: the floor, said so
    doc = _estimate(capsys, tiny_yaml, "--from", campaign_dir, "--hardware", H100)
    assert any("far from anything measured" in w for w in doc["warnings"])
    gen = doc["methods"]["teacher"]["stages"]["teacher.generate"]
    assert gen["basis"] == "floor" and "floor" in gen["notes"][-1]
    train = doc["methods"]["teacher"]["stages"]["teacher.train"]
    assert train["ci95"][1] / train["ci95"][0] > 20


def test_far_off_config_warns_here(capsys, runs, cfg_dir, tiny_yaml):
    big = copy.deepcopy(TINY_RUN)  # a student 86x the tiny one, 23x the tiny teacher
    big["student"] = {"model": {"arch": {"d_model": 160, "n_layers": 1, "n_heads": 2,
                                         "d_ff": 320, "max_len": 32}}}
    doc = _estimate(capsys, _yaml(cfg_dir / "big.yaml", big), "--from", runs)
    far = doc["methods"]["baseline"]["stages"]["student.train"]
    assert any("student.train: far from anything measured" in w for w in doc["warnings"])
    near = _estimate(capsys, tiny_yaml, "--from", runs)["methods"]["baseline"]["stages"][
        "student.train"]
    assert far["ci95"][1] / far["energy_j"] > 2 * near["ci95"][1] / near["energy_j"]


def test_unknown_engine_names_the_stage_and_forecasts_the_rest(capsys, runs, cfg_dir):
    data = copy.deepcopy(TINY_RUN)
    data["generation"] = {**data["generation"], "backend": "vllm"}
    doc = _estimate(capsys, _yaml(cfg_dir / "vllm.yaml", data), "--from", runs)
    gen = doc["methods"]["teacher"]["stages"]["teacher.generate"]
    assert "'vllm' has no measured run on this hardware" in gen["cannot"]
    assert gen["energy_j"] is None
    assert doc["not_forecast"] == [{"run": "teacher", "stage": "teacher.generate",
                                    "reason": gen["cannot"]}]
    others = [s for k, s in doc["methods"]["teacher"]["stages"].items()
              if k != "teacher.generate"]
    assert all(s["energy_j"] > 0 for s in others)
    assert not doc["methods"]["synthetic"]["complete"]
    assert doc["methods"]["baseline"]["complete"]


def test_plan_candidates_ranks_unrun_configs(capsys, runs, cfg_dir, tiny_yaml):
    sweep = _yaml(cfg_dir / "sweep.yaml", {"base": str(tiny_yaml), "seeds": 1, "grid": {
        "training.token_budget": [400, 3200], "student.model.arch.d_model": [16, 32]}})
    capsys.readouterr()
    assert main(["plan", str(runs), "--budget-kwh", "1", "--candidates", str(sweep),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = out["candidates"]
    assert len(rows) == 4 * 3 and out["points"] == 4
    assert all(r["predicted"] for r in rows)
    energies = [r["energy_j"] for r in rows]
    assert energies == sorted(energies) and [r["rank"] for r in rows] == list(range(1, 13))
    def find(budget: int, width: int) -> dict:
        return next(r for r in rows if r["method"] == "baseline" and r["overrides"] == {
            "student.model.arch.d_model": width, "training.token_budget": budget})

    small, large = find(400, 16), find(3200, 32)
    assert small["energy_j"] < large["energy_j"]
    # a budget between the two: the small one fits, the large one does not
    budget = (small["ci95"][1] + large["ci95"][1]) / 2 / 3.6e6
    assert main(["plan", str(runs), "--budget-kwh", repr(budget), "--candidates",
                 str(sweep), "--json"]) == 0
    again = {(r["point"], r["method"]): r for r in json.loads(capsys.readouterr().out)[
        "candidates"]}
    assert again[(small["point"], "baseline")]["fits"]
    assert not again[(large["point"], "baseline")]["fits"]
    for r in again.values():
        assert r["fits"] == (r["kwh_bound"] <= budget)
    # the budget is held against the estimate's own error too (all energy estimated here):
    # the interval of the meter's reading, widened by ESTIMATE_REL of the estimated part
    for r in again.values():
        assert 0.4 < r["estimate_rel"] <= ESTIMATE_REL + 1e-12
        lo, hi = r["reading_ci95"]
        assert r["ci95"] == pytest.approx([lo * (1 - r["estimate_rel"]),
                                           hi * (1 + r["estimate_rel"])])
    assert main(["plan", str(runs), "--budget-kwh", repr(budget), "--candidates",
                 str(sweep)]) == 0
    assert "predicted" in capsys.readouterr().out


def test_forecast_is_recorded_after_the_run(capsys, tmp_path, runs, tiny_yaml):
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["estimate", str(tiny_yaml), "--from", str(runs), "--save", str(out)]) == 0
    assert (out / "forecast.json").is_file()
    assert main(["run", str(tiny_yaml), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "forecast vs measured" in text
    summary = json.loads((out / "summary.json").read_text())
    check = summary["forecast_check"]
    runs_seen = {r["run"] for r in check["rows"]}
    assert runs_seen == {p.name for p in out.iterdir() if p.is_dir()}
    stages = {(r["run"], r["stage"]) for r in check["rows"]}
    assert ("baseline-s0", "student.train") in stages
    assert any(r["stage"] == "teacher.logits" for r in check["rows"])
    for r in check["rows"]:
        assert r["inside"] == (r["ci95"][0] <= r["measured_j"] <= r["ci95"][1])
    assert "Forecast vs measured" in (out / "report.html").read_text()


def test_runs_that_recorded_no_work_counts_still_forecast(capsys, tmp_path, runs, tiny_yaml):
    # runs from before the pipelines recorded their work: params and batch size only
    import shutil

    old = tmp_path / "old"
    shutil.copytree(runs, old)
    (old / "costmodel.json").unlink(missing_ok=True)
    for path in old.glob("*/report.json"):
        rep = json.loads(path.read_text())
        for st in rep["stages"]:
            st["info"] = {k: v for k, v in st["info"].items() if k in ("params", "batch_size")}
        path.write_text(json.dumps(rep))
    doc = _estimate(capsys, tiny_yaml, "--from", old)
    teacher = doc["methods"]["teacher"]["stages"]
    assert teacher["teacher.train"]["basis"] == "fit"
    # no generation's decode steps recorded: decoding's per-step cost is borrowed, said so
    assert teacher["teacher.generate"]["basis"] == "borrowed"
    assert any("teacher.generate: borrowed decode.per_pass" in w for w in doc["warnings"])
    model = json.loads((old / "costmodel.json").read_text())
    assert {"run": "baseline-s0", "stage": "eval.student", "reason": (
        "its generation work (decode steps, batches, prompt tokens) was not recorded")} in \
        model["excluded"]


def test_onpolicy_rounds_forecast_and_checked_by_phase(capsys, tmp_path, runs, cfg_dir):
    # no onpolicy run was measured: its phases map to operations that were (decoding,
    # scoring, training); after the run, its many windows are added up by name
    data = copy.deepcopy(TINY_RUN)
    data["methods"] = [{"name": "onpolicy", "data": ["labelled"], "loss": "onpolicy",
                        "block_prompts": 8}]
    cfg = _yaml(cfg_dir / "onpolicy.yaml", data)
    out = tmp_path / "out"
    doc = _estimate(capsys, cfg, "--from", runs, "--save", out)
    stages = doc["methods"]["onpolicy"]["stages"]
    for name in ("student.generate", "teacher.score", "student.train"):
        assert stages[name]["basis"] == "fit" and stages[name]["energy_j"] > 0
    assert doc["methods"]["onpolicy"]["upstream"] == ["teacher.train", "eval.teacher"]
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--no-report"]) == 0
    assert main(["report", str(out), "--no-sensitivity"]) == 0
    check = json.loads((out / "summary.json").read_text())["forecast_check"]
    rows = [(r["run"], r["stage"]) for r in check["rows"]]
    assert rows.count(("onpolicy-s0", "student.train")) == 1
    windows = [s for s in json.loads((out / "onpolicy-s0" / "report.json").read_text())[
        "stages"] if s["name"] == "student.train"]
    assert len(windows) > 1
    row = next(r for r in check["rows"] if r["stage"] == "student.train")
    assert row["measured_j"] == pytest.approx(sum(s["energy_j"]["total"] for s in windows))


def test_a_setup_stage_the_runs_never_measured_apart_is_left_between_stages(
        capsys, runs, cfg_dir):
    # the tiny runs measured no idle baseline (idle_seconds 0); a config that does plans a
    # setup.idle stage: forecast within the energy between stages, the totals complete
    data = copy.deepcopy(TINY_RUN)
    data["meter"] = {**data["meter"], "idle_seconds": 1.0}
    doc = _estimate(capsys, _yaml(cfg_dir / "idle.yaml", data), "--from", runs)
    assert "setup.idle" not in doc["methods"]["teacher"]["stages"]
    assert any(n.startswith("setup.idle is not a stage of the measured runs")
               for n in doc["notes"])
    assert all(rec["complete"] for rec in doc["methods"].values())
    assert not doc["not_forecast"]


def test_the_meters_idle_window_does_not_pull_the_power_fit_down(tmp_path):
    # real tiny runs that each open with the meter's 1 s idle window (setup.idle): on this
    # machine the CPU estimate there is the idle floor, a fraction of what working stages
    # draw. The energy fit is of working stages only (setup.idle is forecast as measured):
    # fitted with the idle windows, the CPU's power came out at the idle floor (0.49 W
    # against 2.07 W working), and every forecast of the default's long stages 12% low.
    data = copy.deepcopy(TINY_RUN)
    data["meter"] = {**data["meter"], "idle_seconds": 1.0}
    out = tmp_path / "runs"
    assert main(["run", str(_yaml(tmp_path / "idle.yaml", data)), "--out", str(out),
                 "--quiet", "--no-report", "--seeds", "1"]) == 0
    loaded, _ = load_runs(out)
    reports = [(r.run_dir.name, r.report) for r in loaded]
    model = fit_cost_model(reports, load_floors(), hardware_label(reports[0][1].hardware))
    obs = [o for name, rep in reports for o in observations(rep, name)]
    idle = [o for o in obs if o.stage == "setup.idle"]
    assert len(idle) == len(reports)
    for dev in model.estimated_devices:
        working = [o for o in obs if o.work is not None and dev in o.energy]
        work_w = sum(o.energy[dev] for o in working) / sum(o.seconds for o in working)
        idle_w = sum(o.energy[dev] for o in idle) / sum(o.seconds for o in idle)
        fitted = model.energy[dev].coef["power_w"]
        assert abs(fitted / work_w - 1) < 0.25, (dev, fitted, work_w, idle_w)
    # a forecast's energy per student leaves the meter's idle window out, as the measured
    # figures do: it is forecast (the meter will measure it) and named apart
    cfg = _yaml(tmp_path / "idle.yaml", data)
    assert main(["estimate", str(cfg), "--from", str(out), "--save", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "forecast.json").read_text())
    for key, rec in doc["methods"].items():
        idle = rec["stages"]["setup.idle"]
        assert idle["energy_j"] > 0 and rec["meter_overhead_j"] == idle["energy_j"], key
        own = [s["energy_j"] for n, s in rec["stages"].items()
               if n != "setup.idle" and not s.get("cannot")]
        assert rec["own_j"] == pytest.approx(sum(own), rel=1e-12), key
        assert rec["total_j"] == pytest.approx(rec["own_j"] + rec["teacher_j"], rel=1e-12)
