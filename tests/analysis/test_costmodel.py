"""The cost model (analysis/costwork, costfit, costmodel, forecast, forecast_check) on the
recorded H100 run's stages (run directories cut from tests/data/h100-run-a, accounted by
the real accounting), and its least-squares core against brute force."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from runbuilder import STUDENT_PARAMS, TEACHER_PARAMS
from scipy.optimize import nnls

from distillmeter.analysis.costfit import fit_linear
from distillmeter.analysis.costmodel import CostModel, fit_cost_model
from distillmeter.analysis.costwork import stage_work
from distillmeter.analysis.efficiency import load_floors
from distillmeter.analysis.forecast import forecast_plan, predict_stage
from distillmeter.analysis.forecast_check import check_forecast
from distillmeter.analysis.loading import load_runs

H100 = "1x NVIDIA H100 80GB HBM3"


@pytest.fixture
def reports(campaign_dir):
    loaded, skipped = load_runs(campaign_dir)
    assert not skipped
    return [(r.run_dir.name, r.report) for r in loaded]


@pytest.fixture
def model(reports):
    return fit_cost_model(reports, load_floors(), H100)


def test_nnls_matches_brute_force():
    # scipy's NNLS, which the fit uses: some releases gave wrong answers (pyproject.toml)
    rng = np.random.default_rng(7)
    for _ in range(40):
        a = rng.normal(size=(8, 4))
        b = rng.normal(size=8)
        x = nnls(a, b)[0]
        assert (x >= 0).all()
        best = np.inf
        for k in range(5):  # the optimum over every support with a non-negative solution
            for cols in itertools.combinations(range(4), k):
                z = np.zeros(4)
                if cols:
                    z[list(cols)] = np.linalg.lstsq(a[:, list(cols)], b, rcond=None)[0]
                if (z >= 0).all():
                    best = min(best, float(np.sum((a @ z - b) ** 2)))
        assert float(np.sum((a @ x - b) ** 2)) == pytest.approx(best, rel=1e-9, abs=1e-12)


def test_linear_fit_recovers_coefficients_and_leaves_out_what_it_cannot_tell_apart():
    rows = [{"a": 1.0, "b": n, "c": 1.0} for n in (1.0, 2.0, 5.0)] + \
           [{"a": 2.0, "b": 1.0, "c": 1.0}]
    y = [3.0 * r["a"] + 0.5 * r["b"] + 0.2 for r in rows]
    fit = fit_linear(rows, y)
    assert fit.coef == pytest.approx({"a": 3.0, "b": 0.5, "c": 0.2})
    assert fit.dof == 1 and fit.rel_sd == pytest.approx(0.0, abs=1e-9)
    two = fit_linear(rows[:2], y[:2], optional=("c",))  # 2 kinds of work, 3 coefficients
    assert "c" in two.dropped and "c" not in two.coef


def test_fit_on_measured_h100_stages(model, reports):
    # stage work from the runs' labels (teacher_params / student_params) and tokens
    assert model.hardware == H100
    assert set(model.ranges) >= {"train:params", "score:params"}
    assert model.ranges["train:params"] == [STUDENT_PARAMS, STUDENT_PARAMS]
    gpu = model.energy["gpu:0"]
    assert gpu.coef["power_w"] > 0 and gpu.coef.get("j_per_flop", 0) > 0
    assert model.sources["gpu:0"] == "nvml_counter" and not model.estimated_devices
    # two kinds of work (training, scoring): no fixed cost per stage can be told apart
    assert "stage.fixed" in model.time.dropped
    # the floor is the measured H100 one; these stages run above it
    assert model.floor["pj_per_flop"] == pytest.approx(1.03)
    assert model.efficiency["min"] >= 1.0
    excluded = {e["stage"] for e in model.excluded}
    assert {"eval.teacher", "teacher.generate", "eval.student"} <= excluded


def test_measured_stage_is_forecast_near_itself(model, reports):
    rep = dict(reports)["kd-s0"]
    st = next(s for s in rep.stages if s.name == "student.train")
    f = predict_stage(model, "student.train", "student", st.tokens, st.samples,
                      {"params": STUDENT_PARAMS})
    assert f.basis == "fit"
    assert f.ci95[0] <= f.energy_j <= f.ci95[1]
    assert f.ci95[0] <= st.energy_j["total"] <= f.ci95[1]
    assert f.energy_j == pytest.approx(st.energy_j["total"], rel=0.25)


def test_operation_never_measured_falls_back_to_the_floor(model):
    info = {"params": TEACHER_PARAMS, "batch_size": 16, "gen_batches": 4,
            "decode_steps": 384, "prompt_tokens": 2048, "new_tokens": 4096}
    f = predict_stage(model, "teacher.generate", "teacher", 6144, 64, info)
    assert f.basis == "floor"
    assert "floor" in f.notes[-1] and "NVIDIA H100" in f.notes[-1]
    work, _ = stage_work("teacher.generate", 6144, 64, info)
    floor_j = work.flops * 1.03e-12
    assert f.ci95[0] >= floor_j and f.ci95[0] <= f.energy_j <= f.ci95[1]


def test_far_off_config_warns_and_widens(model):
    near = predict_stage(model, "student.train", "student", 876544, 1712,
                         {"params": STUDENT_PARAMS})
    far = predict_stage(model, "student.train", "student", 876544, 1712,
                        {"params": 100 * STUDENT_PARAMS})
    assert not near.warnings
    assert any("far from anything measured" in w and "100.0x beyond" in w
               for w in far.warnings)
    assert far.ci95[1] / far.ci95[0] > 10 * near.ci95[1] / near.ci95[0]
    assert far.ci95[0] >= 6 * 100 * STUDENT_PARAMS * 876544 * 1.03e-12  # never under floor


def test_new_stage_kinds_map_by_their_info_or_are_named():
    gen, _ = stage_work("student.generate", 300, 10, {
        "params": 1e6, "gen_batches": 1, "decode_steps": 20, "prompt_tokens": 100})
    assert set(gen.ops) == {"decode"}
    score, _ = stage_work("teacher.score", 300, 10, {"params": 1e6, "score_batches": 2,
                                                     "scored_tokens": 300})
    assert set(score.ops) == {"score"}
    online, _ = stage_work("student.train", 800, 48, {
        "params": 3e3, "micro_batches": 6, "kd": "online", "teacher_params": 1e4})
    assert set(online.ops) == {"train", "score"}
    none, why = stage_work("student.reward", 0, 0, {"params": 1e6})
    assert none is None and "maps to no operation" in why
    vllm, _ = stage_work("teacher.generate", 300, 10, {
        "params": 1e6, "gen_batches": 1, "decode_steps": 20, "prompt_tokens": 100,
        "backend": "vllm"})
    assert set(vllm.ops) == {"decode[vllm]"}


def test_model_file_round_trips(model):
    again = CostModel.from_dict(json.loads(json.dumps(model.to_dict())))
    args = ("student.train", "student", 876544, 1712, {"params": STUDENT_PARAMS})
    assert predict_stage(again, *args).to_dict() == predict_stage(model, *args).to_dict()
    meanings = {c["name"]: c["meaning"] for c in model.to_dict()["coefficients"]}
    assert all(meanings.values())


def test_forecast_of_measured_runs_checks_against_them(model, reports):
    # a plan that repeats the campaign's own teacher and kd runs, stage for stage
    def stages(rep):
        return [{"name": s.name, "tokens": s.tokens, "samples": s.samples,
                 "info": {"params": TEACHER_PARAMS if s.name.startswith("teacher")
                          else STUDENT_PARAMS}} for s in rep.stages]

    by = dict(reports)
    plan = {"runs": [
        {"key": "teacher", "name": "teacher-0001", "role": "teacher", "config_id": "t",
         "stages": stages(by["teacher-0001"]), "run_names": ["teacher-0001"]},
        {"key": "kd", "name": "kd-s0", "role": "student", "config_id": "kd-cfg",
         "stages": stages(by["kd-s0"]), "upstream": ["teacher.logits"],
         "run_names": ["kd-s0", "kd-s1", "kd-s2"]}]}
    doc = forecast_plan(model, plan)
    kd = doc["methods"]["kd"]
    assert kd["teacher_j"] == doc["methods"]["teacher"]["stages"]["teacher.logits"]["energy_j"]
    assert kd["total_j"] == pytest.approx(kd["own_j"] + kd["teacher_j"])
    assert kd["teacher_share"] == pytest.approx(kd["teacher_j"] / kd["total_j"])
    check = check_forecast(doc, reports)
    runs = {r["run"] for r in check["rows"]}
    assert runs == {"teacher-0001", "kd-s0", "kd-s1", "kd-s2"}
    for r in check["rows"]:
        assert r["inside"] == (r["ci95"][0] <= r["measured_j"] <= r["ci95"][1])
        assert r["error"] == pytest.approx(r["forecast_j"] / r["measured_j"] - 1)
    assert check["summary"]["n"] == len(check["rows"])
    assert not math.isnan(check["summary"]["median_abs_error"])
