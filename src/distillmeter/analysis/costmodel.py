"""The cost model of one kind of hardware: fitted from its runs' reports
(``fit_cost_model``), kept as ``RUNS_DIR/costmodel.json`` (``CostModel.to_dict``), read
back (``CostModel.from_dict``). The model itself is described in ``costfit.py`` and
docs/analysis.md ("Forecasts").

Besides the time and energy fits it keeps what the forecast's fallbacks need:

- ``by_name``: every stage's measured seconds and energy by (run role, stage name), for
  stages with no model work to scale (``setup.load``): forecast as measured;
- ``ranges``: the FLOPs per pass measured for each operation, so a forecast far outside
  them is flagged and its interval widened;
- ``floor`` and ``efficiency``: the device's floor (``data/hardware_floors.json``) and the
  ratio energy / floor measured on this hardware's stages, for an operation that has no
  run here (floor x measured ratio);
- ``drift``: the machine's run-to-run drift, from identical work measured more than once
  (``drift.py``), which every fitted forecast's interval carries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from distillmeter.analysis.costfit import (
    BETWEEN,
    MEANINGS,
    SCHEMA,
    TIME_OFFSET_S,
    LinearFit,
    Observation,
    fit_linear,
    observations,
    run_role,
    time_features,
)
from distillmeter.analysis.drift import estimate_drift
from distillmeter.analysis.efficiency import match_floor
from distillmeter.analysis.runs import cpu_name, gpu_names, hardware_label
from distillmeter.errors import UserError
from distillmeter.protocol import Report

IDLE_STAGE = "setup.idle"  # the meter's fresh idle measurement (energy/idle_baseline.py), a stage


@dataclass
class CostModel:
    hardware: str
    time: LinearFit
    energy: dict[str, LinearFit]  # device -> fit of power_w (and j_per_flop)
    sources: dict[str, str]  # device -> how its energy was measured
    by_name: dict[str, dict[str, Any]] = field(default_factory=dict)
    ranges: dict[str, list[float]] = field(default_factory=dict)
    floor: dict[str, Any] | None = None
    efficiency: dict[str, Any] | None = None
    runs: list[str] = field(default_factory=list)
    excluded: list[dict[str, str]] = field(default_factory=list)
    residuals: list[dict[str, Any]] = field(default_factory=list)
    drift: dict[str, Any] | None = None  # the machine's run-to-run drift (drift.py)

    @property
    def estimated_devices(self) -> list[str]:
        return sorted(d for d, s in self.sources.items() if s == "estimate")

    def coefficients(self) -> list[dict[str, Any]]:
        """Every fitted coefficient with its standard error and meaning (for the docs and
        the console)."""
        rows = []
        for name in sorted(self.time.coef):
            rows.append({"model": "time", "name": name, "value": self.time.coef[name],
                         "stderr": self.time.stderr(name), "unit": _unit(name),
                         "meaning": _meaning(name)})
        for dev, fit in sorted(self.energy.items()):
            for name in sorted(fit.coef):
                rows.append({"model": f"energy {dev}", "name": name, "value": fit.coef[name],
                             "stderr": fit.stderr(name), "unit": _unit(name),
                             "meaning": MEANINGS.get(name, "")})
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "hardware": self.hardware, "time": self.time.to_dict(),
                "energy": {d: f.to_dict() for d, f in self.energy.items()},
                "sources": self.sources, "estimated_devices": self.estimated_devices,
                "coefficients": self.coefficients(), "by_name": self.by_name,
                "ranges": self.ranges, "floor": self.floor, "efficiency": self.efficiency,
                "runs": self.runs, "excluded": self.excluded, "residuals": self.residuals,
                "drift": self.drift}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CostModel:
        if d.get("schema") != SCHEMA:
            raise UserError(f"not a cost model (schema {d.get('schema')!r}, expected {SCHEMA})")
        return cls(d["hardware"], LinearFit.from_dict(d["time"]),
                   {k: LinearFit.from_dict(v) for k, v in d["energy"].items()},
                   dict(d["sources"]), d.get("by_name", {}), d.get("ranges", {}),
                   d.get("floor"), d.get("efficiency"), d.get("runs", []),
                   d.get("excluded", []), d.get("residuals", []), d.get("drift"))


def _meaning(name: str) -> str:
    if name.startswith("decode[") and name.endswith(".per_pass"):
        engine = name[len("decode["):name.index("]")]
        return MEANINGS["decode.per_pass"] + f", with the {engine} backend"
    return MEANINGS.get(name, "")


def _unit(name: str) -> str:
    if name.endswith("per_flop"):
        return "s/FLOP"
    if name == "power_w":
        return "W"
    if name == "j_per_flop":
        return "J/FLOP"
    return "s"


def by_hardware(reports: list[tuple[str, Report]]) -> dict[str, list[tuple[str, Report]]]:
    """The reports grouped by hardware label (GPU models, else CPU model)."""
    out: dict[str, list[tuple[str, Report]]] = {}
    for label, rep in reports:
        out.setdefault(hardware_label(rep.hardware), []).append((label, rep))
    return out


def _primary(obs: Observation, kind: str) -> float:
    prefix = "gpu:" if kind == "gpu" else "cpu:"
    return math.fsum(v for k, v in obs.energy.items() if k.startswith(prefix))


def fit_cost_model(reports: list[tuple[str, Report]], floors: list[dict[str, Any]],
                   hardware: str) -> CostModel:
    """Fit the cost model of ``hardware`` from the reports of runs on it (others ignored).
    UserError when none of them, or none of their stages, can be used."""
    mine = by_hardware(reports).get(hardware, [])
    if not mine:
        raise UserError(f"no runs on {hardware}")
    obs = [o for label, rep in mine for o in observations(rep, label)]
    mapped = [o for o in obs if o.work is not None]
    excluded = [{"run": o.run, "stage": o.stage, "reason": o.reason or ""}
                for o in obs if o.work is None]
    if not mapped:
        raise UserError(f"the runs on {hardware} have no stage whose work is recorded "
                        "(params, batch size, tokens in the stage's info): nothing to fit")
    rows = [time_features(o.work) for o in mapped]
    time = fit_linear(rows, [o.seconds for o in mapped], offset=TIME_OFFSET_S,
                      optional=("stage.fixed",))

    sources: dict[str, str] = {}
    for _, rep in mine:
        sources.update({d: s for d, s in rep.sources.items() if d not in sources})
    energy: dict[str, LinearFit] = {}
    for dev in sorted({d for o in obs for d in o.energy}):
        # the meter's idle window is no work: its power is the idle floor, and relative
        # weighting would let a second of it pull a stage's predicted power down as much as
        # a long training stage pulls it up (it is forecast as measured, from by_name)
        use = [o for o in obs if dev in o.energy and o.stage != IDLE_STAGE
               and (o.work is not None or o.stage.startswith("setup."))]
        estimated = sources.get(dev) == "estimate"
        e_rows = [{"power_w": o.seconds} if estimated or o.work is None
                  else {"power_w": o.seconds, "j_per_flop": o.work.flops} for o in use]
        if use:
            ys = [max(o.energy[dev], 1e-9) for o in use]
            watts = math.fsum(ys) / math.fsum(o.seconds for o in use)
            energy[dev] = fit_linear(e_rows, ys, offset=watts * TIME_OFFSET_S)

    by_name: dict[str, dict[str, Any]] = {}

    def keep(key: str, seconds: float, energy: dict[str, float]) -> None:
        rec = by_name.setdefault(key, {"seconds": [], "energy_j": {}})
        rec["seconds"].append(seconds)
        for d, v in energy.items():
            rec["energy_j"].setdefault(d, []).append(v)

    for o in obs:
        keep(f"{o.role}:{o.stage}", o.seconds, o.energy)
    for _, rep in mine:  # the run's energy outside its stages (idle baseline, imports)
        t = rep.totals
        outside = t.seconds - math.fsum(s.seconds for s in rep.stages)
        if outside > 0 and rep.status == "ok":
            keep(f"{run_role(rep)}:{BETWEEN}", outside, {"total": t.unattributed_j})

    ranges: dict[str, list[float]] = {}
    for o in mapped:
        for op in o.work.ops:
            for key, size in ((op, o.work.per_pass_flops(op)),
                              (f"{op}:params", o.work.params)):
                if size:
                    lo, hi = ranges.get(key, [size, size])
                    ranges[key] = [min(lo, size), max(hi, size)]

    hw = mine[0][1].hardware
    kind = "gpu" if gpu_names(hw) else "cpu"
    model_name = (gpu_names(hw) or [None])[0] if kind == "gpu" else cpu_name(hw)
    entry = match_floor(model_name, floors, kind)
    floor = efficiency = None
    if entry is not None:
        floor = {"kind": kind, "name": entry["name"], "pj_per_flop": entry["pj_per_flop"],
                 "basis": entry.get("basis"), "source": entry.get("source")}
        ratios = [_primary(o, kind) / (o.work.flops * entry["pj_per_flop"] * 1e-12)
                  for o in mapped if o.work.flops > 0 and _primary(o, kind) > 0]
        if ratios:
            ratios.sort()
            secs = math.fsum(o.seconds for o in mapped)
            efficiency = {"device_kind": kind, "median": ratios[len(ratios) // 2],
                          "min": ratios[0], "max": ratios[-1], "n": len(ratios),
                          "power_w": math.fsum(_primary(o, kind) for o in mapped) / secs}

    residuals = []
    for o, row in zip(mapped, rows, strict=True):
        fitted, _ = time.predict(row)
        residuals.append({"run": o.run, "stage": o.stage, "seconds": o.seconds,
                          "fitted_s": fitted, "error": fitted / o.seconds - 1.0})

    def predict(o: Observation) -> float | None:  # the fitted seconds of o's work
        return time.predict(time_features(o.work))[0] if o.work is not None else None

    return CostModel(hardware, time, energy, sources, by_name, ranges, floor, efficiency,
                     sorted({o.run for o in obs}), excluded, residuals,
                     estimate_drift(mine, predict))
