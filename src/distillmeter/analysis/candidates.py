"""The forward-looking planner: configurations nobody has run yet (a sweep's grid points),
ranked by their *predicted* energy per student against a budget (pure functions over
forecasts, ``forecast.forecast_plan``).

Each (grid point, method) is a candidate. Its cost per student is the forecast total: the
student's own stages plus the teacher stages it counts, in full or divided among N students
(``amortize``). It *fits* when the upper end of the forecast's 95% interval is within every
budget given (``on_mean``: the point forecast instead), the same criterion the measured
planner uses; where energy is the meter's estimate, the interval carries the estimate's
own error, as the measured intervals do. Quality is not forecast: the ranking says which
configurations are worth running within the budget, not which is best; a candidate with a
stage that could not be forecast is listed as incomplete and never fits.
"""

from __future__ import annotations

from typing import Any

from distillmeter.analysis.forecast import widen_for_estimate

UNITS = {"kwh": "kWh", "co2_kg": "kg CO2e", "usd": "USD"}


def _convert(joules: float, unit: str, pue: float, grid: float | None,
             price: float | None) -> float | None:
    kwh = joules / 3.6e6
    if unit == "kwh":
        return kwh
    if unit == "co2_kg":
        return None if grid is None else kwh * pue * grid / 1000.0
    return None if price is None else kwh * pue * price


def rank_candidates(points: list[dict[str, Any]], limits: dict[str, float], *,
                    amortize: float = 1.0, on_mean: bool = False, pue: float = 1.0,
                    grid: float | None = None, price: float | None = None
                    ) -> dict[str, Any]:
    """``points``: ``[{"point": name, "overrides": {...}, "forecast": doc}]``; ``limits``:
    budget per student by unit (``kwh``, ``co2_kg``, ``usd``). Candidates come back
    cheapest first (complete forecasts before incomplete ones)."""
    if not limits:
        raise ValueError("give at least one budget (kWh, kg CO2e or USD)")
    rows = []
    for p in points:
        for method, rec in p["forecast"]["methods"].items():
            if rec["role"] != "student":
                continue
            own_lo, own_hi = rec["ci95"]
            share = rec["teacher_j"] / amortize
            # the interval counted the teacher stages in full; divide their part too
            t_lo = sum(f["ci95"][0] for f in _upstream(p["forecast"], rec))
            t_hi = sum(f["ci95"][1] for f in _upstream(p["forecast"], rec))
            energy = rec["own_j"] + share
            reading = [own_lo - t_lo + t_lo / amortize, own_hi - t_hi + t_hi / amortize]
            # then the meter estimate's own error where energy is estimated (no counter)
            rel = rec.get("estimate_rel", 0.0)
            lo, hi = widen_for_estimate(reading, rel)
            row: dict[str, Any] = {
                "point": p["point"], "overrides": p.get("overrides", {}), "method": method,
                "predicted": True, "energy_j": energy, "ci95": [lo, hi],
                "reading_ci95": reading, "estimate_rel": rel,
                "teacher_share": share / energy if energy else None,
                "n_star": rec.get("n_star"), "complete": bool(rec.get("complete", True)),
                "fits": bool(rec.get("complete", True)), "over": []}
            for unit, limit in limits.items():
                value = _convert(energy if on_mean else hi, unit, pue, grid, price)
                row[f"{unit}_bound"] = value
                if value is None or value > limit:
                    row["fits"] = False
                    row["over"].append(f"no {UNITS[unit]} figure (give --grid or "
                                       "--price-per-kwh)" if value is None else
                                       f"{value:.3g} {UNITS[unit]} > {limit:.3g}")
            if not row["complete"]:
                row["over"].append("a stage could not be forecast")
            rows.append(row)
    rows.sort(key=lambda r: (not r["complete"], r["energy_j"], r["point"], r["method"]))
    for rank, r in enumerate(rows, 1):
        r["rank"] = rank
    fitting = [r for r in rows if r["fits"]]
    what = "mean forecast" if on_mean else (
        "upper end of the forecast's 95% interval (with the meter estimate's own error "
        "where energy is estimated)")
    return {"criterion": f"a candidate fits when the {what} of its energy per student is "
                         "within the budget; every figure is predicted (nothing was run); "
                         "quality is not forecast",
            "limits": limits, "amortize": amortize, "on_mean": on_mean,
            "candidates": rows, "fitting": len(fitting),
            "cheapest": rows[0] if rows else None}


def _upstream(doc: dict[str, Any], rec: dict[str, Any]) -> list[dict[str, Any]]:
    teacher = next((r for r in doc["methods"].values() if r["role"] == "teacher"), None)
    if teacher is None:
        return []
    return [teacher["stages"][s] for s in rec.get("upstream", [])
            if s in teacher["stages"] and not teacher["stages"][s].get("cannot")]
