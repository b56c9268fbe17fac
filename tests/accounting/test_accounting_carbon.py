"""Carbon, PUE and cost; and runs with several devices and estimated sources."""

from __future__ import annotations

import pytest

from distillmeter.accounting import account, carbon, cost, grid_intensity, grid_table
from distillmeter.errors import UserError


def test_grid_table_is_cited_and_covers_major_countries():
    table = grid_table()
    assert "Ember" in table["source"] and table["year"] >= 2023
    assert table["unit"] == "gCO2e/kWh"
    countries = table["countries"]
    assert len(countries) >= 31
    for code in ("WORLD", "US", "CN", "IN", "DE", "FR", "GB", "JP", "SE", "NO", "PL", "ZA"):
        assert code in countries
    for row in countries.values():
        assert 0 < row["gco2e_per_kwh"] < 1500
    # hydro/nuclear grids are cleaner than coal-heavy ones
    assert countries["FR"]["gco2e_per_kwh"] < 100 < countries["PL"]["gco2e_per_kwh"]


def test_carbon_by_country_and_override(fixture_dir, monkeypatch):
    monkeypatch.delenv("DISTILLMETER_COUNTRY", raising=False)
    kwh = account(fixture_dir).totals.kwh
    table = grid_table()["countries"]
    world = account(fixture_dir).carbon
    assert world.country == "WORLD"
    assert world.co2e_g == pytest.approx(kwh * table["WORLD"]["gco2e_per_kwh"])
    fr = account(fixture_dir, country="fr").carbon
    assert fr.country == "FR" and "Ember" in fr.grid_source
    assert fr.co2e_g == pytest.approx(kwh * table["FR"]["gco2e_per_kwh"])
    assert account(fixture_dir, country="POL").carbon.country == "PL"  # ISO alpha-3 too
    user = account(fixture_dir, grid_gco2_per_kwh=100.0).carbon
    assert (user.grid_gco2_per_kwh, user.grid_source) == (100.0, "user")
    assert user.co2e_g == pytest.approx(kwh * 100.0)
    monkeypatch.setenv("DISTILLMETER_COUNTRY", "SE")
    assert account(fixture_dir).carbon.country == "SE"
    monkeypatch.setenv("DISTILLMETER_COUNTRY", "XX")
    with pytest.raises(UserError, match="DISTILLMETER_COUNTRY='XX'"):
        account(fixture_dir)


def test_unknown_country_and_bad_numbers(fixture_dir):
    with pytest.raises(UserError, match="no grid intensity for country 'Atlantis'"):
        account(fixture_dir, country="Atlantis")
    with pytest.raises(UserError, match="grid intensity"):
        grid_intensity(-1.0)
    with pytest.raises(UserError, match="PUE must be at least 1.0"):
        account(fixture_dir, pue=0.8)
    with pytest.raises(UserError, match="price per kWh"):
        cost(1.0, price_per_kwh=float("inf"))


def test_pue_scales_carbon_and_cost():
    base = carbon(3.6e6, grid_gco2_per_kwh=400.0)
    assert base.co2e_g == pytest.approx(400.0) and base.pue == 1.0
    dc = carbon(3.6e6, 7.2e6, grid_gco2_per_kwh=400.0, pue=1.5)
    assert dc.co2e_g == pytest.approx(600.0)
    assert dc.co2e_g_with_upstream == pytest.approx(1200.0)
    assert cost(3.6e6).total is None
    c = cost(3.6e6, price_per_kwh=0.25, currency="EUR", pue=1.2)
    assert (c.total, c.currency) == (pytest.approx(0.3), "EUR")


def test_several_devices_and_an_estimated_cpu(synthetic_run):
    """gpu:0 with counter readings and cpu:0 read by a utilisation x TDP estimate (power in
    the trace only): the report splits the energy by device and flags the estimate."""
    rs = {"event": "run_start", "t": 0.0, "run_id": "r1", "wall_time": "2026-01-01T00:00:00Z",
          "devices": ["gpu:0", "cpu:0"], "schema": "distillmeter/1",
          "readings": {"gpu:0": 0.0, "cpu:0": None},
          "sources": {"gpu:0": "nvml_counter", "cpu:0": "estimate"}}
    events = [
        rs,
        {"event": "idle_baseline", "t": 1.0, "device": "gpu:0", "power_w": 50.0, "seconds": 1.0},
        {"event": "stage_start", "t": 2.0, "stage": "student.train",
         "readings": {"gpu:0": 100.0, "cpu:0": None}},
        {"event": "stage_end", "t": 12.0, "stage": "student.train",
         "readings": {"gpu:0": 2100.0, "cpu:0": None}, "tokens": 1000, "samples": 10},
        {"event": "run_end", "t": 14.0, "readings": {"gpu:0": 2200.0}, "status": "ok"},
    ]
    rows = [(i * 0.05, "cpu:0", None, 30.0) for i in range(0, 281)]  # 30 W for 14 s
    rows += [(i * 0.05, "gpu:0", None, 200.0) for i in range(0, 281)]
    report = account(synthetic_run("multi", events, rows))
    st = report.stages[0]
    assert st.energy_j["gpu:0"] == pytest.approx(2000.0)
    assert st.energy_j["cpu:0"] == pytest.approx(300.0)  # 30 W x 10 s
    assert st.energy_j["total"] == pytest.approx(2300.0)
    assert st.source == {"gpu:0": "nvml_counter", "cpu:0": "estimate"}
    assert report.estimated is True
    # the estimate carries +-50%, far wider than the counter's boundary term
    assert st.uncertainty_j >= 0.5 * 300.0
    assert report.totals.by_device == {"gpu:0": pytest.approx(2200.0),
                                       "cpu:0": pytest.approx(420.0)}
    assert any("no idle baseline for cpu:0" in w for w in report.warnings)
    assert st.active_energy_j == pytest.approx(2300.0 - 50.0 * 10.0)
    assert st.j_per_token == pytest.approx(2.3)
