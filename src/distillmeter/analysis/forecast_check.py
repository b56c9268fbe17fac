"""Closing the loop: the forecast made before some runs (``distillmeter estimate --save
OUT`` writes OUT/forecast.json) against what those runs measured, stage by stage (pure
functions).

A measured run matches the forecast by its run directory's name (``teacher-<hash>``,
``<method>-s<seed>``, ``<method>-b<budget>-s<seed>`` on a budget axis: the names the
forecast lists for each method or budget point). Per stage (the
windows of one name added up, as an onpolicy run's rounds are): the
forecast energy and its 95% interval, the measured energy, the error (forecast / measured
- 1) and whether the measurement fell inside the interval; the same for seconds. The
summary counts the stages inside their interval and gives the largest error among stages
of at least ``LONG_S`` seconds (those whose measurement is firm enough to judge a forecast
by). Each row also says whether the measurement fell inside the interval of the fit's
spread alone (``inside_fit``: without the machine's drift), so the drift term's effect on
coverage can be read off (``summary.inside_fit``, ``long_inside_fit``).
"""

from __future__ import annotations

import math
from typing import Any

from distillmeter.analysis.costfit import BETWEEN
from distillmeter.protocol import Report

LONG_S = 5.0


def _total(stage: Any) -> float:
    e = stage.energy_j
    return float(e["total"]) if "total" in e else math.fsum(e.values())


def _row(run: str, key: str, stage: str, f: dict[str, Any], joules: float, seconds: float
         ) -> dict[str, Any]:
    lo, hi = f["ci95"]
    s_ci = f.get("seconds_ci95") or [None, None]
    f_lo, f_hi = f.get("ci95_fit") or f["ci95"]
    s_fit = f.get("seconds_ci95_fit") or s_ci
    return {"run": run, "method": key, "stage": stage, "basis": f.get("basis"),
            "forecast_j": f["energy_j"], "ci95": [lo, hi], "measured_j": joules,
            "error": f["energy_j"] / joules - 1.0 if joules > 0 else math.inf,
            "inside": lo <= joules <= hi, "ci95_fit": [f_lo, f_hi],
            "inside_fit": f_lo <= joules <= f_hi,
            "forecast_s": f.get("seconds"), "seconds_ci95": s_ci, "measured_s": seconds,
            "seconds_error": (f["seconds"] / seconds - 1.0) if f.get("seconds") and seconds
            else None,
            "seconds_inside": None if s_ci[0] is None else s_ci[0] <= seconds <= s_ci[1],
            "seconds_inside_fit": None if s_fit[0] is None else s_fit[0] <= seconds <= s_fit[1]}


def check_forecast(doc: dict[str, Any], reports: list[tuple[str, Report]]
                   ) -> dict[str, Any] | None:
    """Forecast vs measured for every run of ``reports`` the forecast ``doc`` names; None
    when it names none of them."""
    names: dict[str, tuple[str, dict[str, Any]]] = {}
    for key, rec in doc.get("methods", {}).items():
        for name in rec.get("runs", []):
            names[name] = (key, rec)
    rows: list[dict[str, Any]] = []
    for label, rep in reports:
        name = label.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        if name not in names or rep.status != "ok":
            continue
        key, rec = names[name]
        measured: dict[str, list[float]] = {}  # windows of one name added up
        for st in rep.stages:
            got = measured.setdefault(st.name, [0.0, 0.0])
            got[0] += _total(st)
            got[1] += float(st.seconds)
        for stage, (joules, seconds) in measured.items():
            f = rec["stages"].get(stage)
            if not f or f.get("cannot") or f.get("energy_j") is None or not f.get("ci95"):
                continue
            rows.append(_row(name, key, stage, f, joules, seconds))
        f = rec["stages"].get(BETWEEN)
        outside = rep.totals.seconds - math.fsum(s.seconds for s in rep.stages)
        if f and f.get("energy_j") is not None and outside > 0:
            rows.append(_row(name, key, BETWEEN, f, float(rep.totals.unattributed_j), outside))
    if not rows:
        return None
    errs = sorted(abs(r["error"]) for r in rows)
    long = [r for r in rows if r["measured_s"] >= LONG_S]
    summary = {"n": len(rows), "inside": sum(r["inside"] for r in rows),
               "inside_fit": sum(r["inside_fit"] for r in rows),
               "median_abs_error": errs[len(errs) // 2],
               "long_stages": len(long), "long_s": LONG_S,
               "long_max_abs_error": max((abs(r["error"]) for r in long), default=None),
               "long_inside": sum(r["inside"] for r in long),
               "long_inside_fit": sum(r["inside_fit"] for r in long)}
    return {"created": doc.get("created"), "config": doc.get("config"),
            "hardware": doc.get("basis", {}).get("hardware"), "rows": rows,
            "drift": doc.get("drift"),
            "summary": summary}
