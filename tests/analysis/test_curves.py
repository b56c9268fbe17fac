"""The curve analysis on real tiny runs: a budget axis (``budgets: [400, 900]``) run by
`distillmeter run`, read back as each method's curve: labels, curves in summary.json with
both energies and their intervals, rules that compare only within a budget or along a
curve, the terminal table within 80 columns, the curves in report.html, and the plan
naming the measured point it picks."""

from __future__ import annotations

import copy
import io
import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from distillmeter.analysis.directory import analyse_dir
from distillmeter.analysis.planner import Budget, plan
from distillmeter.cli import main
from distillmeter.render.curve_plots import print_curves
from distillmeter.render.html import render_html

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_config import TINY_RUN  # noqa: E402

METHODS = [{"name": "baseline", "data": ["labelled"], "loss": "ce"},
           {"name": "kd", "data": ["labelled", "synthetic"], "loss": "kd"}]


@pytest.fixture(scope="module")
def axis_dir(tmp_path_factory) -> Path:
    data = copy.deepcopy(TINY_RUN)
    data.update(budgets=[400, 900], methods=METHODS, seeds=2)
    path = tmp_path_factory.mktemp("cfg") / "axis.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    return out


def test_points_are_labelled_by_method_and_budget(axis_dir):
    a = analyse_dir(axis_dir, with_sensitivity=False)
    assert [c.label for c in a.configs] == ["baseline @400", "baseline @900", "kd @400",
                                            "kd @900"]
    assert all(c.n_seeds == 2 for c in a.configs)


def test_summary_json_carries_the_curves(axis_dir):
    summary = json.loads((axis_dir / "summary.json").read_text())
    curves = {c["method"]: c for c in summary["curves"]}
    assert list(curves) == ["baseline", "kd"]  # the baseline first
    for cv in curves.values():
        pts = cv["points"]
        assert [p["token_budget"] for p in pts] == [400, 900]
        assert [p["label"] for p in pts] == [f"{cv['method']} @400", f"{cv['method']} @900"]
        for p in pts:
            assert p["n_seeds"] == 2 and len(p["run_dirs"]) == 2
            lo, hi = p["energy_full_j_ci95"]
            assert lo <= p["energy_full_j_mean"] <= hi
            qlo, qhi = p["quality_ci95"]
            assert qlo <= p["quality_mean"] <= qhi
    kd = curves["kd"]["points"][0]  # amortize 1: both energies are the same
    assert kd["energy_j_mean"] == pytest.approx(kd["energy_full_j_mean"])
    by_id = {c["config"]: c for c in summary["configs"]}
    assert {by_id[p["config"]]["token_budget"] for p in curves["kd"]["points"]} == {400, 900}


def test_amortising_divides_only_the_teacher_share(axis_dir):
    a = analyse_dir(axis_dir, amortize=4, with_sensitivity=False)
    from distillmeter.analysis.curves import curves_of_group

    cvs = {cv.method: cv for cv in curves_of_group(a, "g1")}
    for p in cvs["kd"].points:
        teacher_full = p.energy_full_j.mean - p.energy_j.mean
        assert teacher_full > 0  # the shared teacher work, 3/4 of it left out
        assert p.config.side_mean("teacher") == pytest.approx(teacher_full / 3, rel=1e-6)
    for p in cvs["baseline"].points:  # no teacher work: nothing to divide
        assert p.energy_j.mean == pytest.approx(p.energy_full_j.mean)


def _pair_sentences(rules: list[str]) -> list[tuple[str, str]]:
    """The two points every pairwise comparison sentence names."""
    label = r"(baseline|kd) @(\d+)"
    out = []
    for r in rules:
        if r.startswith(("measured frontier", "at every budget", "at ", "from ", "up to",
                         "past ", "kd along", "baseline along", "kd's teacher", "no ")):
            continue
        found = re.findall(label, r)
        if len(found) >= 2:
            out.append((found[0], found[1]))
    return out


def test_rules_compare_within_a_budget_or_along_a_curve(axis_dir):
    a = analyse_dir(axis_dir, with_sensitivity=False)
    rules = a.rules["g1"]
    assert any(r.startswith("at 400 tokens per student: ") for r in rules)
    assert any(r.startswith("kd along its budget: 400 ") for r in rules)
    for (m1, b1), (m2, b2) in _pair_sentences(rules):
        assert b1 == b2 or m1 == m2, (m1, b1, m2, b2)
    # four points: a pair of every two would be 6 sentences; at most 4 pairs are compared
    assert len(_pair_sentences(rules)) <= 4


def test_the_curve_table_fits_80_columns(axis_dir):
    a = analyse_dir(axis_dir, amortize=4, with_sensitivity=False)
    buf = io.StringIO()
    print_curves(a, "g1", Console(file=buf, width=80, color_system=None))
    text = buf.getvalue()
    assert "kd @900" in text and "/4" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_report_html_draws_each_curve_and_the_frontier(axis_dir):
    a = analyse_dir(axis_dir, amortize=4, with_sensitivity=False)
    page = render_html(a, runs_dir=str(axis_dir))
    assert "Curves along the student's token budget" in page
    assert page.count('class="curve"') == 2  # one line a method
    assert page.count('class="curve-full"') == 2  # the teacher's work in full, dotted
    assert page.count('class="ci-q"') == 4  # a quality bar a point (2 seeds each)


def test_the_plan_names_the_measured_point(axis_dir):
    a = analyse_dir(axis_dir, with_sensitivity=False)
    p = plan(a, Budget(kwh=1.0))["groups"][0]
    point = p["choice_point"]
    assert point["token_budget"] in (400, 900) and point["label"] == p["choice_label"]
    assert len(point["run_dirs"]) == 2
    assert f"the measured point of {point['method']}'s curve at {point['token_budget']} " \
           "tokens per student" in p["verdict"]
