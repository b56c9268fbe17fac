"""The figures scipy's numerics give, held to those of the hand-written ones they replaced.

The t quantile was a bisection of Student's CDF in closed form, the cost fit a hand-written
Lawson-Hanson NNLS. Before they were deleted they were compared with scipy's on thousands
of inputs (commit 1789a57: the quantile agreed to 1.8e-10 relative over df 1-500 and p
0.501-0.9999, the NNLS solutions to 1e-11, the H100 campaign's cost model to 1e-9). The
literals below were printed by the old implementation; scipy's must give them to 1e-9.
"""

from __future__ import annotations

import pytest
from scipy import stats

from distillmeter.analysis.costmodel import fit_cost_model
from distillmeter.analysis.efficiency import load_floors
from distillmeter.analysis.loading import load_runs
from distillmeter.analysis.quality import proportion_summary, wilson
from distillmeter.analysis.stats import t_quantile

REL = 1e-9
H100 = "1x NVIDIA H100 80GB HBM3"

# t_quantile(p, df) as the bisection computed it
OLD_T = {
    (0.975, 1): 12.706204736172367, (0.975, 2): 4.302652729749752,
    (0.975, 4): 2.776445105198036, (0.975, 9): 2.2621571627978483,
    (0.975, 29): 2.0452296421326537, (0.95, 4): 2.131846786326605,
    (0.995, 9): 3.2498355415928017, (0.9, 1): 3.0776835371752895,
    (0.975, 100000): 1.9599877075261247,
}

# proportion_summary(values, [items] * k): (lo, hi) with the bisection's t quantile
OLD_QUALITY = [
    ([0.88, 0.96, 0.59], 256, 0.26557104134133275, 0.9804920266263177),
    ([0.992, 0.992, 0.992], 128, 0.9397562599827718, 0.9989865097968118),
    ([0.053, 0.02, 0.088], 500, 0.012319434184649924, 0.20498498284499883),
    ([0.5, 0.7], 10, 0.04042381376501836, 0.9816211135016486),
]


@pytest.mark.parametrize("key", sorted(OLD_T))
def test_t_quantile_gives_the_old_figures(key):
    assert t_quantile(*key) == pytest.approx(OLD_T[key], rel=REL)


@pytest.mark.parametrize("values,items,lo,hi", OLD_QUALITY)
def test_quality_intervals_give_the_old_figures(values, items, lo, hi):
    s = proportion_summary(values, [items] * len(values))
    assert (s.lo, s.hi) == (pytest.approx(lo, rel=REL), pytest.approx(hi, rel=REL))


def test_the_cost_model_on_the_h100_campaign_gives_the_old_figures(campaign_dir):
    loaded, _ = load_runs(campaign_dir)
    model = fit_cost_model([(r.run_dir.name, r.report) for r in loaded], load_floors(), H100)
    time = model.time
    assert time.coef == pytest.approx({"forward.per_flop": 4.1284086198942396e-15,
                                       "train.per_flop": 8.781772052488897e-15}, rel=REL)
    assert {k: time.stderr(k) for k in time.names} == pytest.approx(
        {"forward.per_flop": 3.235321178871123e-16, "train.per_flop": 2.3040866956779063e-16},
        rel=REL)
    assert (time.rel_sd, time.dof, time.dropped) == (
        pytest.approx(0.07524605174263548, rel=REL), 8, ["stage.fixed"])
    gpu = model.to_dict()["energy"]["gpu:0"]
    assert gpu["coef"] == pytest.approx({"j_per_flop": 1.6613310442538176e-12,
                                         "power_w": 185.8210467976601}, rel=REL)
    assert gpu["stderr"] == pytest.approx({"j_per_flop": 1.960489110916941e-13,
                                           "power_w": 23.454653677818833}, rel=REL)
    assert gpu["rel_sd"] == pytest.approx(0.06891884257728126, rel=REL)


@pytest.mark.parametrize("n", [1, 2, 5, 17, 64, 256, 1000])
def test_wilson_is_scipys_for_whole_items(n):
    # the formula stays (the analysis needs it for a fractional n and the t quantile);
    # with whole items and the normal quantile it is scipy's
    z = stats.norm.ppf(0.975)
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        lo, hi = wilson(k / n, n, z)
        assert (lo, hi) == (pytest.approx(ci.low, rel=REL, abs=1e-12),
                            pytest.approx(ci.high, rel=REL, abs=1e-12))
