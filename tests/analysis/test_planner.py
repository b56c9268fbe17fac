"""The budget planner on chosen numbers (see reportfactory.toy_campaign)."""

from __future__ import annotations

import pytest
from reportfactory import report, toy_campaign

from distillmeter.analysis.planner import Budget, plan
from distillmeter.analysis.summary import analyse

KWH = 3.6e6


def one(result: dict) -> dict:
    assert len(result["groups"]) == 1
    return result["groups"][0]


def test_best_quality_that_fits() -> None:
    g = one(plan(analyse(toy_campaign()), Budget(kwh=3960 / KWH)))
    assert g["choice"] == "kd"
    assert g["verdict"].startswith("pick kd: exact_match 0.61")
    assert "highest mean exact_match of the 3 configuration(s) that fit" in g["why"][1]
    assert g["rules"]  # the frontier's rules come along


def test_upper_bound_is_the_default_criterion() -> None:
    # kd: mean 3800 J, upper 95% bound 3800 + 4.303 * 10 / sqrt(3) = 3824.8 J
    a = analyse(toy_campaign())
    strict = one(plan(a, Budget(kwh=3810 / KWH)))
    assert strict["choice"] == "base"
    assert any("kd does not fit" in w for w in strict["why"])
    kd = next(c for c in strict["candidates"] if c["config"] == "kd")
    assert kd["kwh_bound"] * KWH == pytest.approx(3800 + 4.302653 * 10 / 3 ** 0.5)
    lenient = one(plan(a, Budget(kwh=3810 / KWH), on_mean=True))
    assert lenient["choice"] == "kd"


def test_nothing_fits_names_the_cheapest() -> None:
    g = one(plan(analyse(toy_campaign()), Budget(kwh=1000 / KWH)))
    assert g["choice"] is None and g["cheapest"] == "base"
    assert g["verdict"].startswith("nothing fits the budget")
    assert "The cheapest is baseline at 1.1 kJ per student" in g["verdict"]  # its label


def test_carbon_and_money_budgets() -> None:
    a = analyse(toy_campaign())  # 400 gCO2e/kWh, PUE 1
    g = one(plan(a, Budget(co2_kg=0.0005)))  # kd: 3824.8 J -> 0.000425 kg
    assert g["choice"] == "kd"
    g = one(plan(a, Budget(usd=0.0002, price_per_kwh=0.2)))  # kd: 0.000211 USD
    assert g["choice"] == "base"
    both = one(plan(a, Budget(kwh=3960 / KWH, co2_kg=1e-5)))  # all limits must hold
    assert both["choice"] is None
    # a grid override re-accounts the carbon
    clean = analyse(toy_campaign(), grid=10.0)
    assert one(plan(clean, Budget(co2_kg=1.1e-5)))["choice"] == "kd"  # 1.06e-5 kg


def test_amortised_plan() -> None:
    # shared by 10 students kd costs 800 + 300 = 1100 J
    g = one(plan(analyse(toy_campaign(), amortize=10), Budget(kwh=1200 / KWH)))
    assert g["choice"] == "kd"


def test_cheaper_config_with_overlapping_quality_is_pointed_out() -> None:
    reps = []
    for s, (e, q) in enumerate([(1000.0, 0.60), (1010.0, 0.65), (990.0, 0.62)]):
        reps.append(report(f"a{s}", method="a", seed=s, config_id="a",
                           stages={"student.train": e}, quality=q))
    for s, (e, q) in enumerate([(2000.0, 0.63), (2010.0, 0.64), (1990.0, 0.635)]):
        reps.append(report(f"b{s}", method="b", seed=s, config_id="b",
                           stages={"student.train": e}, quality=q))
    reps.append(report("c0", method="c", seed=0, config_id="c",
                       stages={"student.train": 500.0}, quality=0.1))
    g = one(plan(analyse([(r.run_id, r) for r in reps]), Budget(kwh=1.0)))
    assert g["choice"] == "b"
    assert any(w.startswith("a costs 1 kJ less per student and its quality interval "
                            "overlaps b's") for w in g["why"])


def test_one_seed_is_said() -> None:
    r = report("x", method="m", seed=0, config_id="x", stages={"student.train": 10.0},
               quality=0.5)
    g = one(plan(analyse([("x", r)]), Budget(kwh=1.0)))
    assert g["choice"] == "x"
    assert any("one seed" in w for w in g["why"])


def test_no_budget_is_an_error() -> None:
    with pytest.raises(ValueError):
        plan(analyse(toy_campaign()), Budget())
