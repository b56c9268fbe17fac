"""`distillmeter estimate` on a config with a student budget axis (`budgets`), through the
real CLI, fitted on real runs of that axis made here: one forecast entry per point, named
as its runs are; forecast vs measured matches the axis's runs by name; and the machine's
drift widens the intervals (or, with no repeated work, is said to be missing)."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from distillmeter.analysis.breakeven import n_star
from distillmeter.analysis.costmodel import CostModel
from distillmeter.analysis.forecast import forecast_plan
from distillmeter.analysis.forecast_check import check_forecast
from distillmeter.analysis.loading import load_runs
from distillmeter.cli import main
from distillmeter.pipelines.config_file import load_config
from distillmeter.pipelines.work import plan_work
from tiny_config import TINY_RUN

METHODS = [{"name": "baseline", "data": ["labelled"], "loss": "ce"},
           {"name": "kd", "data": ["labelled", "synthetic"], "loss": "kd"}]
POINTS = ["baseline-b400", "baseline-b900", "kd-b400", "kd-b900"]


@pytest.fixture(scope="module")
def axis(tmp_path_factory):
    """(config path, runs directory): the tiny config on a two-point axis, two seeds."""
    data = copy.deepcopy(TINY_RUN)
    data.update(budgets=[400, 900], methods=METHODS, seeds=2)
    path = tmp_path_factory.mktemp("cfg") / "axis.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", str(path), "--out", str(out), "--quiet", "--no-report"]) == 0
    return path, out


def _estimate(capsys, *args):
    capsys.readouterr()
    rc = main(["estimate", *map(str, args), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def test_each_point_is_forecast_under_its_runs_names(capsys, axis, tmp_path):
    path, runs = axis
    doc = _estimate(capsys, path, "--from", runs, "--save", tmp_path)
    assert set(doc["methods"]) == {"teacher", *POINTS}
    dirs = sorted(p.name for p in runs.iterdir() if (p / "report.json").is_file())
    named = sorted(n for rec in doc["methods"].values() for n in rec["runs"])
    assert named == dirs  # every run directory of the axis, by its -b<budget>- name
    for key in POINTS:
        rec = doc["methods"][key]
        method, point = key.split("-b")
        assert rec["method"] == method and rec["budget_point"] == point
        assert rec["token_budget"] == int(point)
        assert rec["runs"] == [f"{key}-s0", f"{key}-s1"]
        # a larger budget trains longer: its forecast says so
    train = {k: doc["methods"][k]["stages"]["student.train"]["seconds"] for k in POINTS}
    assert train["baseline-b900"] > train["baseline-b400"]
    assert train["kd-b900"] > train["kd-b400"]
    # N* against the baseline at the same budget
    for b in ("400", "900"):
        kd, base = doc["methods"][f"kd-b{b}"], doc["methods"][f"baseline-b{b}"]
        assert kd["n_star"] == (n_star(kd["teacher_j"], base["total_j"], kd["own_j"])
                                if kd["n_star"] is not None else None)
        assert base["n_star"] is None
    saved = json.loads((tmp_path / "forecast.json").read_text())
    assert "drift" in saved and set(saved["methods"]) == set(doc["methods"])


def test_forecast_check_matches_the_axis_runs_by_name(capsys, axis):
    path, runs = axis
    doc = _estimate(capsys, path, "--from", runs)
    loaded, _ = load_runs(runs)
    check = check_forecast(doc, [(str(r.run_dir), r.report) for r in loaded])
    assert check is not None
    assert {r["run"] for r in check["rows"]} == {r.run_dir.name for r in loaded}
    by_run = {r["run"]: r["method"] for r in check["rows"]}
    assert by_run["kd-b900-s1"] == "kd-b900" and by_run["baseline-b400-s0"] == "baseline-b400"
    s = check["summary"]
    assert s["inside"] >= s["inside_fit"]  # the drift only widens
    for r in check["rows"]:
        assert r["ci95"][0] <= r["ci95_fit"][0] and r["ci95_fit"][1] <= r["ci95"][1]


def test_no_repeated_work_is_said_and_adds_nothing(capsys, axis):
    # the tiny runs' stages last hundredths of a second and they measure no idle window:
    # no identical work long enough to measure drift on
    path, runs = axis
    doc = _estimate(capsys, path, "--from", runs)
    assert doc["drift"]["seconds"] is None and doc["drift"]["energy"] is None
    for rec in doc["methods"].values():
        assert rec["ci95"] == rec["ci95_fit"]
        for st in rec["stages"].values():
            assert st["ci95"] == st["ci95_fit"]
    capsys.readouterr()
    assert main(["estimate", str(path), "--from", str(runs)]) == 0
    text = capsys.readouterr().out
    lines = [ln for ln in text.splitlines() if "run-to-run drift" in ln]
    assert len(lines) == 1 and "not estimated" in lines[0]


def _part(rel: float) -> dict:
    return {"rel_sd": rel / 2, "upper95": rel, "dof": 4, "groups": 2, "n": 6}


def test_the_drift_widens_fitted_intervals(axis):
    path, runs = axis
    main(["estimate", str(path), "--from", str(runs), "--json"])  # writes costmodel.json
    model = CostModel.from_dict(json.loads((runs / "costmodel.json").read_text()))
    plan = plan_work(load_config(path)).as_dict()
    docs = {}
    for d in (0.0, 0.2, 0.4):
        model.drift = {"seconds": _part(d), "energy": _part(d)} if d else None
        docs[d] = forecast_plan(model, plan)
    for key in POINTS:
        stages = {d: docs[d]["methods"][key]["stages"] for d in docs}
        train = {d: s["student.train"] for d, s in stages.items()}
        assert train[0.0]["basis"] == "fit"
        # the same point forecast, the fit's own interval unchanged, the stated one wider
        assert train[0.2]["energy_j"] == train[0.0]["energy_j"]
        assert train[0.2]["ci95_fit"] == pytest.approx(train[0.0]["ci95"])
        for what in ("ci95", "seconds_ci95"):
            lo = [train[d][what][0] for d in (0.0, 0.2, 0.4)]
            hi = [train[d][what][1] for d in (0.0, 0.2, 0.4)]
            # (a tiny stage's lower end may already sit at 0: its absolute noise floor)
            assert lo[0] >= lo[1] >= lo[2] and hi[0] < hi[1] < hi[2], (key, what)
        # a stage forecast as measured already holds the drift in its repeats
        assert stages[0.4]["setup.load"]["ci95"] == stages[0.0]["setup.load"]["ci95"]
        tot = {d: docs[d]["methods"][key] for d in docs}
        assert tot[0.4]["ci95"][1] > tot[0.0]["ci95"][1]
        assert tot[0.4]["ci95_fit"] == pytest.approx(tot[0.0]["ci95"])
    assert docs[0.2]["drift"]["seconds"]["upper95"] == 0.2
