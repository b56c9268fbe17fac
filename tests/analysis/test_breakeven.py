"""Break-even, totals with shared teacher work, amortisation and the rules' numbers."""

from __future__ import annotations

import math

import pytest
from reportfactory import T
from reportfactory import toy_campaign as campaign

from distillmeter.analysis.breakeven import n_star, payback_tokens
from distillmeter.analysis.runs import campaign_total_j, figures
from distillmeter.analysis.stats import t_quantile
from distillmeter.analysis.summary import analyse


def test_formulas() -> None:
    assert n_star(3000.0, baseline_j=1100.0, marginal_j=800.0) == pytest.approx(10.0)
    assert n_star(3000.0, baseline_j=1100.0, marginal_j=1100.0) is None  # saves nothing
    assert payback_tokens(3700.0, 0.5, 0.1) == pytest.approx(9250.0)
    assert payback_tokens(3700.0, 0.1, 0.1) is None
    assert payback_tokens(3700.0, None, 0.1) is None


def test_break_even_in_an_analysis() -> None:
    a = analyse(campaign(), min_q=0.6)  # kd's Q is 0.61 / 0.8 = 0.76, sft's 0.625
    be = a.break_even["g1"]
    assert be["baseline"] == "base"
    assert be["baseline_j_per_student"] == pytest.approx(1100.0)
    kd = next(e for e in be["configs"] if e["config"] == "kd")
    assert kd["teacher_side_j"] == pytest.approx(3000.0)
    assert kd["marginal_j"] == pytest.approx(800.0)
    assert kd["n_star"] == pytest.approx(10.0)
    assert kd["students_needed"] == 11  # the first N with 800 + 3000 / N < 1100
    # payback: distillation energy 3000 + 700 (eval left out) over 0.5 - 0.1 J/token
    assert kd["teacher_eval_j_per_token"] == pytest.approx(0.5)
    assert kd["student_eval_j_per_token"] == pytest.approx(0.1)
    assert kd["payback_tokens"] == pytest.approx(3700.0 / 0.4)
    sft = next(e for e in be["configs"] if e["config"] == "sft")
    assert sft["n_star"] is None and "saves no energy" in sft["statement"]
    # the saving's range: both t-intervals (seeds 10 J apart on both sides) allow
    half = t_quantile(0.975, 2) * 10.0 / math.sqrt(3)
    saving = (300.0 - 2 * half, 300.0 + 2 * half)
    assert kd["n_star_range"] == pytest.approx([3000 / saving[1], 3000 / saving[0]])
    rules = " | ".join(a.rules["g1"])
    assert "N* = 10 students (range 8.58-12; 11 or more)" in rules
    assert "teacher-side energy is 79% of the kd total" in rules  # 3000 / 3800


def test_amortize_divides_only_shared_work() -> None:
    full = analyse(campaign())
    shared = analyse(campaign(), amortize=4)
    kd_full, kd_shared = full.config("kd"), shared.config("kd")
    assert kd_full.energy_j.mean == pytest.approx(3800.0)
    assert kd_shared.energy_j.mean == pytest.approx(800.0 + 3000.0 / 4)
    assert kd_shared.side_mean("teacher") == pytest.approx(750.0)
    assert shared.config("base").energy_j.mean == pytest.approx(1100.0)
    # the sides add up to the total
    for c in shared.configs:
        assert sum(s.mean for s in c.by_side.values()) == pytest.approx(c.energy_j.mean)


def test_upstream_counted_once_across_students() -> None:
    runs = [figures(r) for _, r in campaign(with_teacher=False)]
    total = campaign_total_j(runs)
    own = 3 * 1100.0 + (690 + 700 + 710 + 300) + 2 * 1900.0
    assert total["external_upstream_j"] == pytest.approx(3000.0 + 2000.0)
    assert total["energy_j"] == pytest.approx(own + 5000.0)
    # with the teacher run present its energy is its own, not added again
    runs_t = [figures(r) for _, r in campaign()]
    assert campaign_total_j(runs_t)["energy_j"] == pytest.approx(own + 5550.0)


def test_teacher_run_is_not_a_configuration() -> None:
    a = analyse(campaign())
    assert sorted(c.config for c in a.configs) == ["base", "kd", "sft"]
    assert [t.run_id for t in a.grouping.teacher_runs] == [T]


def test_no_baseline_says_so() -> None:
    reps = [(i, r) for i, r in campaign() if not r.run_id.startswith("base")]
    be = analyse(reps, min_q=0.6).break_even["g1"]
    assert be["baseline"] is None
    kd = next(e for e in be["configs"] if e["config"] == "kd")
    assert "no baseline" in kd["statement"]
    assert analyse(campaign(), baseline_method="sft_synth").break_even["g1"]["baseline"] \
        == "sft"


def test_pareto_marks_in_analysis() -> None:
    a = analyse(campaign())
    assert a.config("base").pareto and a.config("kd").pareto
    sft = a.config("sft")  # more energy than kd for less quality
    assert not sft.pareto and sft.dominated_by == "kd"
