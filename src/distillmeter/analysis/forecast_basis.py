"""What a forecast stage is (``StageForecast``) and the forecasts that do not come from the
time fit: a stage with no model work forecast as measured here (``measured``), and an
operation never measured here forecast from the device's floor (``floor_path``). The rules
are described in ``forecast.py``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from scipy import stats

from distillmeter.analysis.costmodel import CostModel
from distillmeter.analysis.costwork import StageWork
from distillmeter.analysis.stats import t_quantile


@dataclass
class StageForecast:
    """One stage's forecast. ``ci95`` / ``seconds_ci95``: the 95% intervals the forecast
    states (the fit's spread and the machine's drift); ``ci95_fit`` /
    ``seconds_ci95_fit``: the same from the fit's spread alone (None: the same as
    ``ci95``, a stage forecast as measured, whose repeats hold the drift already)."""

    stage: str
    energy_j: float | None = None
    seconds: float | None = None
    ci95: list[float] | None = None
    seconds_ci95: list[float] | None = None
    basis: str = "none"  # fit | measured | floor | borrowed | none
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    cannot: str | None = None
    ci95_fit: list[float] | None = None
    seconds_ci95_fit: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"energy_j": self.energy_j, "seconds": self.seconds, "ci95": self.ci95,
             "seconds_ci95": self.seconds_ci95, "basis": self.basis, "notes": self.notes,
             "warnings": self.warnings,
             "ci95_fit": self.ci95 if self.ci95_fit is None else self.ci95_fit,
             "seconds_ci95_fit": self.seconds_ci95 if self.seconds_ci95_fit is None
             else self.seconds_ci95_fit}
        if self.cannot:
            d["cannot"] = self.cannot
        return d


def q95(dof: int) -> float:
    return t_quantile(0.975, dof) if dof > 0 else float(stats.norm.ppf(0.975))


def measured(model: CostModel, key: str, stage: str) -> StageForecast | None:
    rec = model.by_name.get(key)
    if not rec or not rec.get("seconds"):
        return None
    secs = rec["seconds"]
    energies = [math.fsum(v) for v in zip(*rec["energy_j"].values(), strict=False)] \
        if rec["energy_j"] else [0.0] * len(secs)

    def band(xs: list[float]) -> tuple[float, list[float]]:
        m = math.fsum(xs) / len(xs)
        if len(xs) < 2:
            return m, [m / 2.0, m * 2.0]
        sd = math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1))
        half = q95(len(xs) - 1) * sd * math.sqrt(1.0 + 1.0 / len(xs))
        return m, [max(0.0, m - half), m + half]

    e, e_ci = band(energies)
    s, s_ci = band(secs)
    note = f"as measured here ({len(secs)} run(s)): not scaled with the work"
    if len(secs) < 2:
        note += "; one measurement, so the interval is a prior x/÷ 2"
    return StageForecast(stage, e, s, e_ci, s_ci, "measured", [note])


def floor_path(model: CostModel, stage: str, work: StageWork, missing: list[str]
                ) -> StageForecast | None:
    eff, floor = model.efficiency, model.floor
    if not eff or not floor or work.flops <= 0:
        return None
    unit = work.flops * floor["pj_per_flop"] * 1e-12
    primary = unit * eff["median"]
    seconds = primary / eff["power_w"] if eff["power_w"] > 0 else None
    others = 0.0
    if seconds:
        for dev, fit in model.energy.items():
            if not dev.startswith(eff["device_kind"] + ":"):
                others += fit.coef.get("power_w", 0.0) * seconds
    e = primary + others
    lo, hi = unit * eff["min"] / 1.5 + others / 1.5, unit * eff["max"] * 1.5 + others * 1.5
    note = (f"no {' or '.join(missing)} stage measured on this hardware: energy = FLOPs x the "
            f"floor of {floor['name']} ({floor['pj_per_flop']:g} pJ/FLOP, {floor['basis']}) "
            f"x the ratio energy/floor measured on its other stages (median "
            f"{eff['median']:.3g}, {eff['min']:.3g}-{eff['max']:.3g}); seconds = energy / "
            f"their mean power ({eff['power_w']:.3g} W)")
    s_ci = None if seconds is None else [seconds * lo / e, seconds * hi / e]
    return StageForecast(stage, e, seconds, [lo, hi], s_ci, "floor", [note])
