"""The machine's run-to-run drift (analysis/drift.py): estimated from identical work
measured more than once, on reports with chosen numbers (checked against the pooled
log-sd worked out here by hand) and on recorded runs of this project; no figure without
repeated work; and what it does to a forecast's interval."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from reportfactory import report

from distillmeter.analysis.drift import DRIFT_MIN_S, drift_line, drift_rel, estimate_drift
from distillmeter.protocol import load_report

RECORDED = Path(__file__).resolve().parents[1] / "data" / "drift-runs"


def _run(run_id: str, config_id: str, seconds: dict[str, float], watts: float = 10.0,
         method: str = "kd"):
    """A student run whose stages last ``seconds``, drawing ``watts`` (energy follows)."""
    rep = report(run_id, method=method, config_id=config_id,
                 stages={n: watts * s for n, s in seconds.items()})
    rep.stages = [st.model_copy(update={"seconds": seconds[st.name]}) for st in rep.stages]
    return (run_id, rep)


def _pooled(groups: list[list[float]]) -> tuple[float, int]:
    """Pooled within-group sd of the logs, written out independently of the module."""
    ss = dof = 0
    for xs in groups:
        logs = [math.log(x) for x in xs]
        m = sum(logs) / len(logs)
        ss += sum((v - m) ** 2 for v in logs)
        dof += len(xs) - 1
    return math.sqrt(ss / dof), dof


def test_pooled_over_seeds_of_each_configuration():
    a_train, a_eval, b_train = [10.0, 11.0, 12.5], [2.0, 2.2, 2.1], [20.0, 19.0]
    reports = [
        *[_run(f"a{i}", "A", {"setup.load": 0.05 + 0.02 * i, "student.train": a_train[i],
                              "eval.student": a_eval[i]}) for i in range(3)],
        *[_run(f"b{i}", "B", {"setup.load": 0.06, "student.train": b_train[i],
                              "eval.student": 0.3}) for i in range(2)],
        _run("c0", "C", {"student.train": 40.0}),  # one run: not repeated
    ]
    d = estimate_drift(reports)
    sd, dof = _pooled([a_train, a_eval, b_train])  # setup.load, B's eval: under 1 s
    assert dof == 5
    assert d["seconds"]["rel_sd"] == pytest.approx(sd)
    assert d["seconds"]["dof"] == 5 and d["seconds"]["groups"] == 3 and d["seconds"]["n"] == 8
    # chi-square with 5 dof: its 5% quantile is 1.1455 (tables)
    assert d["seconds"]["upper95"] == pytest.approx(sd * math.sqrt(5 / 1.1455), rel=1e-4)
    # energy = 10 W x seconds: the same spread
    assert d["energy"]["rel_sd"] == pytest.approx(sd)
    assert set(d["by_kind"]) == {"seeds"}
    assert {(g["stage"], g["identity"]) for g in d["groups"]} == {
        ("student.train", "A"), ("eval.student", "A"), ("student.train", "B")}
    assert drift_rel(d, "seconds") == d["seconds"]["upper95"]
    line = drift_line(d)
    assert f"{sd:.1%}" in line and "5 dof" in line and "quadrature" in line


def test_work_that_differs_a_little_is_compared_through_the_prediction():
    # seed 1 did 10% more work (more tokens in its batches): told apart from drift by the
    # cost model's prediction for each run's own work
    reports = [_run("a0", "A", {"student.train": 10.0}), _run("a1", "A", {"student.train": 11.0})]
    work = {"a0": 1.0, "a1": 1.1}
    assert estimate_drift(reports)["seconds"]["rel_sd"] > 0.06
    d = estimate_drift(reports, predict=lambda o: work[o.run])
    assert d["seconds"]["rel_sd"] == pytest.approx(0.0, abs=1e-12)


def test_the_idle_window_counts_for_energy_only():
    reports = []
    for i, w in enumerate([9.0, 9.5, 10.0]):
        run_id, rep = _run(f"r{i}", f"cfg{i}", {"setup.idle": 1.0, "student.train": 30.0 + i},
                           watts=w)
        reports.append((run_id, rep))
    d = estimate_drift(reports)
    assert d["seconds"] is None  # no configuration ran twice; the idle wait is set, not work
    sd, dof = _pooled([[9.0, 9.5, 10.0]])
    assert d["energy"]["rel_sd"] == pytest.approx(sd) and d["energy"]["dof"] == dof == 2
    # chi-square with 2 dof: quantile p is -2 ln(1 - p), in closed form
    assert d["energy"]["upper95"] == pytest.approx(sd * math.sqrt(2 / (-2 * math.log(0.95))))
    assert set(d["by_kind"]) == {"idle"}


def test_the_idle_window_is_not_pooled_with_repeated_work():
    reports = []
    for i, (secs, w) in enumerate([(10.0, 9.0), (12.0, 9.2), (11.0, 9.1)]):
        _, rep = _run(f"r{i}", "A", {"setup.idle": 1.0, "student.train": secs}, watts=w)
        reports.append((f"r{i}", rep))
    d = estimate_drift(reports)
    energies = [w * s for s, w in [(10.0, 9.0), (12.0, 9.2), (11.0, 9.1)]]
    assert d["energy"]["rel_sd"] == pytest.approx(_pooled([energies])[0])
    assert d["by_kind"]["idle"]["energy"]["rel_sd"] == pytest.approx(
        _pooled([[9.0, 9.2, 9.1]])[0])
    assert d["from"] == ["seeds"] and "idle" not in drift_line(d)


def test_no_repeated_work_gives_no_figure():
    reports = [_run("a0", "A", {"student.train": 12.0, "setup.load": 0.1}),
               _run("b0", "B", {"student.train": 14.0}),
               _run("c0", "C", {"eval.student": 0.2}), _run("c1", "C", {"eval.student": 0.3})]
    d = estimate_drift(reports)  # C ran twice, but its stage is under DRIFT_MIN_S
    assert DRIFT_MIN_S > 0.3
    assert d["seconds"] is None and d["energy"] is None and d["groups"] == []
    assert "no identical work was measured twice" in d["note"]
    assert drift_rel(d, "seconds") == 0.0 and drift_rel(None, "energy") == 0.0
    assert "not estimated" in drift_line(d) and "%" not in drift_line(d)


def test_recorded_runs():
    """Real runs of a small default-like campaign on this project's 2-core machine
    (benchmarks/forecast_error.py --quick's reference, reports only): two seeds of each
    point, one teacher, every run's idle window."""
    reports = [(p.parent.name, load_report(p.parent))
               for p in sorted(RECORDED.glob("*/report.json"))]
    assert len(reports) >= 5
    d = estimate_drift(reports)
    # independently: group the long stages of each configuration's runs by hand
    by: dict[tuple[str, str], list[float]] = {}
    idle: list[float] = []
    for _, rep in reports:
        for st in rep.stages:
            if st.name == "setup.idle":
                idle.append(st.energy_j["total"])
            elif rep.method != "teacher":
                by.setdefault((rep.config_id, st.name), []).append(st.seconds)
    long = [xs for xs in by.values() if len(xs) > 1 and sum(xs) / len(xs) >= DRIFT_MIN_S]
    assert long, "the recorded runs hold repeated long stages"
    sd, dof = _pooled(long)
    assert d["seconds"]["rel_sd"] == pytest.approx(sd) and d["seconds"]["dof"] == dof
    assert d["by_kind"]["idle"]["energy"]["n"] == len(idle)
    assert 0 < d["seconds"]["rel_sd"] < d["seconds"]["upper95"] < 1.0
