"""The hand-written numerics (the t quantile by bisection of Student's CDF, Lawson and
Hanson's NNLS, Wilson's interval) against scipy's, on many inputs: every figure they feed
must stay the same to 1e-9 when scipy replaces them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.optimize import nnls

from distillmeter.analysis import costfit, quality
from distillmeter.analysis.costmodel import fit_cost_model
from distillmeter.analysis.efficiency import load_floors
from distillmeter.analysis.loading import load_runs
from distillmeter.analysis.quality import proportion_summary, wilson
from distillmeter.analysis.stats import t_quantile

REL = 1e-9
H100 = "1x NVIDIA H100 80GB HBM3"


@pytest.mark.parametrize("df", [*range(1, 60), 100, 250, 1000, 100000])
def test_t_quantile_at_the_levels_used(df):
    for p in (0.9, 0.95, 0.975, 0.995):
        assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=REL)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=500), st.floats(min_value=0.501, max_value=0.9999))
def test_t_quantile_anywhere(df, p):
    assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=REL)


def _scipy_nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return nnls(a, b)[0]


def _problem(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A least-squares problem shaped like the cost fit's: unit-norm columns, some of them
    repeated or zero, a target that a non-negative mix explains only in part."""
    n, k = int(rng.integers(3, 40)), int(rng.integers(1, 8))
    a = np.abs(rng.normal(size=(n, k))) * rng.choice([1.0, 1e-3, 1e3], size=k)
    if k > 2 and rng.random() < 0.3:
        a[:, -1] = a[:, 0] * 2.0  # two coefficients the rows cannot tell apart
    if k > 1 and rng.random() < 0.2:
        a[:, 1] = 0.0
    a /= np.maximum(np.linalg.norm(a, axis=0), 1e-300)
    b = a @ (np.where(rng.random(k) < 0.3, -1.0, 1.0) * rng.random(k)) + rng.normal(size=n) * 0.1
    return a, b


def test_nnls_is_scipys_on_many_problems():
    rng = np.random.default_rng(19)
    for _ in range(2000):
        a, b = _problem(rng)
        if np.linalg.matrix_rank(a) < a.shape[1]:
            continue  # not unique: compared by the residual below
        assert costfit._nnls(a, b) == pytest.approx(_scipy_nnls(a, b), rel=REL, abs=1e-12)


def test_nnls_residual_is_scipys_where_the_solution_is_not_unique():
    rng = np.random.default_rng(23)
    for _ in range(500):
        a, b = _problem(rng)
        r_old = np.linalg.norm(a @ costfit._nnls(a, b) - b)
        r_new = np.linalg.norm(a @ _scipy_nnls(a, b) - b)
        assert r_new == pytest.approx(r_old, rel=REL, abs=1e-12)


def test_the_cost_model_is_the_same_with_scipys_nnls(campaign_dir, monkeypatch):
    loaded, _ = load_runs(campaign_dir)
    reports = [(r.run_dir.name, r.report) for r in loaded]
    old = json.loads(json.dumps(fit_cost_model(reports, load_floors(), H100).to_dict()))
    monkeypatch.setattr(costfit, "_nnls", _scipy_nnls)
    new = json.loads(json.dumps(fit_cost_model(reports, load_floors(), H100).to_dict()))
    assert _same(new, old)


def _same(a: object, b: object) -> bool:
    if isinstance(b, dict):
        assert isinstance(a, dict) and set(a) == set(b)
        return all(_same(a[k], b[k]) for k in b)
    if isinstance(b, list):
        assert isinstance(a, list) and len(a) == len(b)
        return all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(b, float):
        assert a == pytest.approx(b, rel=REL, abs=1e-15)
        return True
    assert a == b
    return True


@pytest.mark.parametrize("n", [1, 2, 5, 17, 64, 256, 1000])
def test_wilson_is_scipys_for_whole_items(n):
    z = stats.norm.ppf(0.975)
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        lo, hi = wilson(k / n, n, z)
        assert (lo, hi) == (pytest.approx(ci.low, rel=REL, abs=1e-12),
                            pytest.approx(ci.high, rel=REL, abs=1e-12))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=2, max_size=8),
       st.integers(min_value=1, max_value=2000))
def test_quality_intervals_are_the_same_with_scipys_t(values, items):
    old = proportion_summary(values, [items] * len(values))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(quality, "t_quantile", lambda p, df: float(stats.t.ppf(p, df)))
        new = proportion_summary(values, [items] * len(values))
    for a, b in ((old.lo, new.lo), (old.hi, new.hi)):
        assert b == pytest.approx(a, rel=REL, abs=1e-12)
