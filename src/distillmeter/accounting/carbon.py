"""Carbon and cost from energy: grid intensity by country (a cited public table), PUE, and
a price per kWh.

co2e_g = kWh x PUE x grid intensity; cost = kWh x PUE x price. PUE scales both because the
facility draws (and pays for) cooling and power delivery on top of what the devices use.
"""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache
from importlib import resources
from typing import Any

from distillmeter.errors import UserError
from distillmeter.protocol import Carbon, Cost

J_PER_KWH = 3.6e6
COUNTRY_ENV = "DISTILLMETER_COUNTRY"


@lru_cache(maxsize=1)
def grid_table() -> dict[str, Any]:
    """The packaged grid-intensity table (``data/grid_intensity.json``)."""
    text = resources.files("distillmeter").joinpath("data/grid_intensity.json").read_text("utf-8")
    return json.loads(text)


def _lookup(code: str) -> tuple[str, float]:
    table = grid_table()
    countries = table["countries"]
    key = code.strip().upper()
    if key in countries:
        return key, float(countries[key]["gco2e_per_kwh"])
    for iso2, row in countries.items():  # also accept ISO alpha-3 codes
        if row.get("iso3") == key:
            return iso2, float(row["gco2e_per_kwh"])
    close = country_suggestions(code)
    if close:
        hint = f"did you mean {' or '.join(close)}?"
    else:
        hint = f"known codes: {', '.join(sorted(countries))}."
    raise UserError(
        f"no grid intensity for country {code!r}; {hint} "
        "Or pass a number instead (--grid GCO2_PER_KWH)."
    )


# Codes people write for a country whose ISO 3166 code is another: the United Kingdom is
# GB (UK is only "exceptionally reserved"), Greece is GR (EL is the EU's own code).
_ALIASES = {"UK": "GB", "EL": "GR"}


def country_suggestions(code: str, limit: int = 3) -> list[str]:
    """Close matches for a country code or name the table does not know, as ``"GB
    (United Kingdom)"``: a known alias, codes one letter off (3-letter codes), and
    names that start with or resemble what was written."""
    import difflib

    countries = grid_table()["countries"]
    key = str(code).strip().upper()
    names = {row["name"].upper(): iso2 for iso2, row in countries.items()}
    iso3 = {str(row.get("iso3")).upper(): iso2 for iso2, row in countries.items()}
    found: list[str] = []
    if key in _ALIASES:
        found.append(_ALIASES[key])
    if len(key) >= 3:
        found += [iso3[m] for m in difflib.get_close_matches(key, list(iso3), limit, 0.6)]
        found += [iso2 for name, iso2 in names.items() if name.startswith(key)]
        found += [names[m] for m in difflib.get_close_matches(key, list(names), limit, 0.6)]
    out = list(dict.fromkeys(c for c in found if c in countries))[:limit]
    return [f"{c} ({countries[c]['name']})" for c in out]


def grid_intensity(
    grid_gco2_per_kwh: float | None = None, country: str | None = None
) -> tuple[float, str, str | None]:
    """(gCO2e/kWh, where it came from, country code). A number given wins; else the
    country (argument, then $DISTILLMETER_COUNTRY, then the table's WORLD average)."""
    if grid_gco2_per_kwh is not None:
        g = _non_negative(grid_gco2_per_kwh, "grid intensity (gCO2e/kWh)")
        return g, "user", country.upper() if country else None
    table = grid_table()
    via = "argument"
    if not country:
        country = os.environ.get(COUNTRY_ENV) or None
        via = f"${COUNTRY_ENV}"
    if not country:
        country, via = table["default"], "default"
    try:
        code, g = _lookup(country)
    except UserError as exc:
        if via.startswith("$"):
            raise UserError(f"{COUNTRY_ENV}={country!r}: {exc}") from None
        raise
    source = f"{table['source']} ({table['year']}; {table['countries'][code]['name']})"
    return g, source, code


def _non_negative(x: float, what: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be a number, got {x!r}") from None
    if not math.isfinite(v) or v < 0:
        raise UserError(f"{what} must be a non-negative number, got {x!r}")
    return v


def check_pue(pue: float | None) -> float:
    """PUE defaults to 1.0 (devices only); below 1 is impossible, so it is refused."""
    if pue is None:
        return 1.0
    v = _non_negative(pue, "PUE")
    if v < 1.0:
        raise UserError(f"PUE must be at least 1.0 (facility energy / IT energy), got {pue!r}")
    return v


def carbon(
    energy_j: float,
    with_upstream_j: float | None = None,
    *,
    grid_gco2_per_kwh: float | None = None,
    country: str | None = None,
    pue: float | None = None,
) -> Carbon:
    """CO2e of ``energy_j`` (and of ``with_upstream_j``) at the chosen grid and PUE."""
    g, source, code = grid_intensity(grid_gco2_per_kwh, country)
    p = check_pue(pue)
    co2 = energy_j / J_PER_KWH * p * g
    co2_up = None if with_upstream_j is None else with_upstream_j / J_PER_KWH * p * g
    return Carbon(grid_gco2_per_kwh=g, grid_source=source, country=code, pue=p,
                  co2e_g=co2, co2e_g_with_upstream=co2_up)


def cost(
    energy_j: float,
    with_upstream_j: float | None = None,
    *,
    price_per_kwh: float | None = None,
    currency: str | None = None,
    pue: float | None = None,
) -> Cost:
    """Electricity cost; ``total`` is None when no price is given."""
    cur = (currency or "USD").strip() or "USD"
    if price_per_kwh is None:
        return Cost(price_per_kwh=None, currency=cur, total=None, total_with_upstream=None)
    price = _non_negative(price_per_kwh, "price per kWh")
    p = check_pue(pue)
    total = energy_j / J_PER_KWH * p * price
    up = None if with_upstream_j is None else with_upstream_j / J_PER_KWH * p * price
    return Cost(price_per_kwh=price, currency=cur, total=total, total_with_upstream=up)
