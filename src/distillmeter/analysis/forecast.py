"""Forecasts from the cost model (pure functions): one stage (``predict_stage``), and every
run a config would make (``forecast_plan``, from the plain-data work plan that
``pipelines.work`` writes).

**Interval.** A stage's 95% interval is prediction x exp(+-q x r) -+ q x a: r the relative
spread of the prediction (the fit's residual spread and its coefficients' covariance at
this stage's work; for energy, the time's spread through the draw term plus the energy
fit's own), a its absolute noise floor (the residual spread x the fit's offset: a stage of
a few hundredths of a second is known to a few tenths), q the t quantile at the fit's
residual degrees of freedom; never below 0. Then:

- a generation stage's work range (answers that run to ``max_new_tokens`` instead of
  stopping) raises the upper end to the forecast at the top of the range;
- a stage whose passes are ``rho`` times larger (or smaller) than any of its operation
  measured here (FLOPs per pass; parameters when passes are unknown) has its interval
  widened by sqrt(rho) each way, and from 10x on a warning says so;
- a coefficient with no measurement here is borrowed (below) and widens it 3x each way;
- where the device's floor is known, the lower end never goes under floor x FLOPs.

**The machine's drift.** The fit's residuals say how well one equation describes these
runs, not how far the same work moves from one run to the next: on a quiet 2-core VM the
same ``teacher.train`` took 26.3 s in one campaign and 18.4 s minutes later. So r above
also carries the machine's run-to-run drift d, estimated from identical work measured
more than once in the runs (seeds of one configuration, a repeated teacher, the idle
windows: ``drift.py``), for time and for energy apiece, at its 95% upper bound (few
repeats, few degrees of freedom): r = sqrt(r_fit^2 + d^2), in quadrature on the log scale
(independent errors of the model and of the machine). Stages forecast as measured already
hold the drift in their repeats. ``ci95_fit`` / ``seconds_ci95_fit`` keep the fit's own
interval; without repeated work there is no d and the forecast says so (``drift``).

A fit with no residual degrees of freedom has no spread of its own: a prior 30% is used
and the forecast says so. Totals add the stages' bounds (their errors share coefficients,
so they are not independent; adding bounds is the cautious reading).

These intervals are for what the meter will report, and forecast vs measured compares
with that. Where a device's energy is the meter's estimate (no counter), the estimate's own
error against the true energy (``ESTIMATE_REL`` of it, as every report carries) comes on
top: each total also has ``energy_ci95``, its interval widened by that share of the
estimated part, which is what a budget is checked against.

**The meter's overhead.** The meter's idle window (``setup.idle``) is forecast like any
stage, but kept out of every run's total, as the accounting keeps it out of the measured
figures: ``meter_overhead_j`` beside ``total_j``.

**Fallbacks.** A stage with no model work (``setup.load``), and the energy a run spends
between stages, are forecast as measured on this hardware for the same role (mean, with
the t prediction interval). An operation never measured here is forecast from the floor
table: FLOPs x J/FLOP x the efficiency ratio measured on this hardware's other stages
(energy / floor; seconds = energy / their mean power); without a floor, its coefficients
are borrowed from the nearest operation (training <-> forward throughput; per pass,
scoring <-> decoding, a training pass = 3 forward passes) and the forecast warns. A
decoding backend never measured here (an unknown engine) is not forecast: the stage is
named and the rest forecast.
"""

from __future__ import annotations

import math
import re
from typing import Any

from distillmeter.accounting.uncertainty import ESTIMATE_REL
from distillmeter.analysis.breakeven import is_baseline, n_star
from distillmeter.analysis.costfit import BETWEEN, time_features
from distillmeter.analysis.costmodel import CostModel
from distillmeter.analysis.costwork import StageWork, stage_work
from distillmeter.analysis.drift import drift_rel
from distillmeter.analysis.forecast_basis import StageForecast, floor_path, measured, q95
from distillmeter.protocol import METER_STAGES

__all__ = ["StageForecast", "forecast_plan", "point_key", "predict_stage",
           "widen_for_estimate"]

PRIOR_REL_SD = 0.30
BORROW_WIDEN = 3.0
FAR = 10.0  # extrapolation ratio from which a forecast warns
# where a coefficient never measured here is borrowed from, and the factor: a training
# pass does three times a forward pass's work (6 x params per token against 2 x params)
_BORROW = {"train.per_flop": [("forward.per_flop", 1.0)],
           "forward.per_flop": [("train.per_flop", 1.0)],
           "train.per_pass": [("score.per_pass", 3.0), ("decode.per_pass", 3.0)],
           "score.per_pass": [("decode.per_pass", 1.0), ("train.per_pass", 1 / 3)],
           "decode.per_pass": [("score.per_pass", 1.0), ("train.per_pass", 1 / 3)]}


def _ratio(model: CostModel, work: StageWork) -> tuple[float, str | None]:
    """How far this stage's passes (FLOPs per pass; parameters where passes are unknown)
    lie outside those of the same operation measured here: a ratio >= 1."""
    rho, what = 1.0, None
    for op in work.ops:
        size, r, unit = work.per_pass_flops(op), model.ranges.get(op), "FLOPs per pass"
        if not size or not r:
            size, r, unit = work.params, model.ranges.get(f"{op}:params"), "parameters"
        if not size or not r:
            continue
        lo, hi = r
        x = max(size / hi, lo / size, 1.0)
        if x > rho:
            rho, what = x, (f"its {op} work ({size:.3g} {unit}) is {x:.1f}x "
                            f"{'beyond' if size > hi else 'below'} what was measured here "
                            f"({lo:.3g}-{hi:.3g})")
    return rho, what


def _energy(model: CostModel, seconds: float, flops: float, rel_t: float, abs_t: float
            ) -> tuple[float, float, float]:
    """(energy, its relative spread, its absolute spread) for a stage of ``seconds`` whose
    time has spread (``rel_t``, ``abs_t``): the time's spread reaches the energy through
    each device's draw (W x seconds); each device's energy fit adds its own."""
    total = drawn = rel2 = abs2 = 0.0
    for fit in model.energy.values():
        x = {"power_w": seconds}
        if "j_per_flop" in fit.coef:
            x["j_per_flop"] = flops
        e, var = fit.predict(x)
        total += e
        drawn += fit.coef.get("power_w", 0.0) * seconds
        rel, ab = fit.spread(e, var, PRIOR_REL_SD)
        rel2 += (rel * e) ** 2
        abs2 += ab ** 2
    if total <= 0:
        return 0.0, 0.0, 0.0
    watts = drawn / seconds if seconds > 0 else 0.0
    rel_e = math.sqrt((drawn * rel_t) ** 2 + rel2) / total
    return total, rel_e, math.sqrt((watts * abs_t) ** 2 + abs2)


def _band(y: float, rel: float, ab: float, q: float) -> list[float]:
    """The 95% band: log-symmetric for the relative spread, plus the absolute spread."""
    return [max(0.0, y * math.exp(-q * rel) - q * ab), y * math.exp(q * rel) + q * ab]


def _fill(model: CostModel, x: dict[str, float], notes: list[str]
          ) -> tuple[dict[str, float], list[str]]:
    """Coefficients for ``x``: fitted, else zero or borrowed where never measured here.
    Returns (coefficients, what was borrowed)."""
    coef = dict(model.time.coef)
    borrowed = []
    passes_known = any(k.endswith(".per_pass") for k in model.time.names + model.time.dropped)
    for name in x:
        if name in coef or name in model.time.dropped:
            continue
        if name == "kd.per_pass":
            coef[name] = 0.0
            notes.append("the cached-KD loss's own cost per pass has no measurement here: "
                         "counted as 0")
            continue
        if name.endswith(".per_pass") and not passes_known:
            coef[name] = 0.0
            notes.append("no run here recorded its passes (batch sizes): the per-pass "
                         "overhead is not counted")
            continue
        for src, factor in _BORROW.get(name, []):
            if src in coef:
                coef[name] = coef[src] * factor
                borrowed.append(f"{name} from {src}" + ("" if factor == 1.0 else
                                                        f" x {factor:.3g}"))
                break
    return coef, borrowed


def predict_stage(model: CostModel, stage: str, role: str, tokens: float, samples: float,
                  info: dict[str, Any]) -> StageForecast:
    """One stage's forecast (energy J, seconds, 95% intervals, basis, notes)."""
    work, reason = stage_work(stage, tokens, samples, info)
    if work is None:
        got = measured(model, f"{role}:{stage}", stage)
        if got is not None:
            return got
        return StageForecast(stage, cannot=f"{reason}; and no {stage} of a {role} run was "
                                           "measured on this hardware")
    notes = list(work.notes)
    x = time_features(work)
    engines = [k for k in x if k.startswith("decode[") and k not in model.time.coef
               and k not in model.time.dropped]
    if engines:
        engine = engines[0][len("decode["):engines[0].index("]")]
        seen = sorted({k.split(".")[0] for k in model.time.coef if k.startswith("decode")})
        return StageForecast(stage, cannot=(
            f"its generation backend '{engine}' has no measured run on this hardware "
            f"(measured: {', '.join(seen) or 'none'}), so its decoding cost is unknown"))
    rho, what = _ratio(model, work)
    observed = {k.split(":")[0] for k in model.ranges if k.endswith(":params")}
    never = sorted(op for op in work.ops if op not in observed and op != "kd")
    if never:  # an operation with no run here: the floor x measured efficiency, if known
        got = floor_path(model, stage, work, never)
        if got is not None:
            got.notes = notes + got.notes
            return _widen(model, got, rho, what, 1.0, work.flops)
    coef, borrowed = _fill(model, x, notes)
    missing = [k for k in x if k not in coef and k not in model.time.dropped]
    if missing:
        return StageForecast(stage, cannot=(
            f"no {', '.join(missing)} measured on this hardware, no floor known for it "
            "and nothing to borrow from"))
    warnings: list[str] = []
    if borrowed:
        msg = (f"{stage}: borrowed {', '.join(borrowed)} (no such stage measured on this "
               "hardware and no floor known for it): a rough figure, interval widened 3x")
        warnings.append(msg)

    q = q95(model.time.dof)
    d_t, d_e = drift_rel(model.drift, "seconds"), drift_rel(model.drift, "energy")

    def point(w: StageWork) -> tuple[float, float, list[list[float]]]:
        """(seconds, energy, [time band, energy band, the same two from the fit alone])"""
        xx = time_features(w)
        t = math.fsum(coef.get(k, 0.0) * v for k, v in xx.items())
        _, var = model.time.predict({k: v for k, v in xx.items() if k in model.time.names})
        rel_t, abs_t = model.time.spread(t, var, PRIOR_REL_SD)
        e, rel_e, abs_e = _energy(model, t, w.flops, rel_t, abs_t)
        return t, e, [_band(t, math.hypot(rel_t, d_t), abs_t, q),
                      _band(e, math.hypot(rel_e, d_e), abs_e, q),
                      _band(t, rel_t, abs_t, q), _band(e, rel_e, abs_e, q)]

    t, e, bands = point(work)
    if model.time.rel_sd is None:
        notes.append(f"the fit has no residual degrees of freedom: a prior {PRIOR_REL_SD:.0%} "
                     "spread is used")
    if work.hi is not None:  # the top of the work range raises the upper ends
        _, _, top = point(work.hi)
        for b, b_hi in zip(bands, top, strict=True):
            b[1] = max(b[1], b_hi[1])
    got = StageForecast(stage, e, t, bands[1], bands[0], "borrowed" if borrowed else "fit",
                        notes, warnings, ci95_fit=bands[3], seconds_ci95_fit=bands[2])
    return _widen(model, got, rho, what, BORROW_WIDEN if borrowed else 1.0, work.flops)


def _widen(model: CostModel, f: StageForecast, rho: float, what: str | None,
           factor: float, flops: float) -> StageForecast:
    """Widen ``f``'s intervals by ``factor`` x sqrt(``rho``) (how far its work lies from
    what was measured), warn from ``FAR`` on, and keep the energy above the floor."""
    if rho > 1.0:
        factor *= math.sqrt(rho)
        if rho >= FAR:
            msg = (f"{f.stage}: far from anything measured on this hardware: {what}; "
                   f"interval widened {math.sqrt(rho):.1f}x each way")
            if model.floor is None:
                msg += "; no floor is known for this device, so nothing bounds it from below"
            f.warnings.append(msg)
        else:
            f.notes.append(f"{what}: interval widened {math.sqrt(rho):.2f}x each way")
    for name in ("ci95", "seconds_ci95", "ci95_fit", "seconds_ci95_fit"):
        ci = getattr(f, name)
        if ci is not None:
            setattr(f, name, [ci[0] / factor, ci[1] * factor])
    floor_j = flops * model.floor["pj_per_flop"] * 1e-12 if model.floor else 0.0
    if f.ci95 is not None and f.energy_j is not None and floor_j > 0:
        if f.energy_j < floor_j:
            f.notes.append("the fit falls below the device's floor: raised to it")
            f.energy_j = floor_j
        f.ci95 = [max(f.ci95[0], floor_j), max(f.ci95[1], f.energy_j)]
        if f.ci95_fit is not None:
            f.ci95_fit = [max(f.ci95_fit[0], floor_j), max(f.ci95_fit[1], f.energy_j)]
    return f


def _estimated_j(model: CostModel, f: StageForecast) -> float:
    """The part of a stage's forecast energy drawn by devices the meter estimates (their
    energy is a draw x time: no FLOP term)."""
    if not f.seconds or f.energy_j is None:
        return 0.0
    drawn = math.fsum(model.energy[d].coef.get("power_w", 0.0) * f.seconds
                      for d in model.estimated_devices if d in model.energy)
    return min(drawn, f.energy_j)


def widen_for_estimate(ci: list[float], rel: float) -> list[float]:
    """A forecast interval of the meter's reading widened by the estimate's own error
    (``rel`` of the total: ESTIMATE_REL x the estimated share)."""
    return [max(ci[0] * (1.0 - rel), 0.0), ci[1] * (1.0 + rel)]


def point_key(run: dict[str, Any]) -> str:
    """The forecast's key for a planned run: ``teacher``, the method's name, or on a budget
    axis the point's (its run names less the seed: ``kd-b240k`` for ``kd-b240k-s0``)."""
    if run["role"] != "student":
        return str(run["key"])
    name = re.sub(r"-s\d+$", "", str(run["name"]))
    return name if name.startswith(f"{run['key']}-b") else str(run["key"])


def forecast_plan(model: CostModel, plan: dict[str, Any]) -> dict[str, Any]:
    """Forecast every run of a work plan (``pipelines.work.WorkPlan.as_dict()``): one entry
    per planned run (teacher, method, or a method's budget point)."""
    methods: dict[str, Any] = {}
    warnings: list[str] = []
    notes: list[str] = list(plan.get("notes", []))
    cannot: list[dict[str, str]] = []
    teacher_stages: dict[str, StageForecast] = {}
    for run in plan["runs"]:
        key = point_key(run)
        stages: dict[str, StageForecast] = {}
        for st in run["stages"]:
            if st.get("cannot"):
                f = StageForecast(st["name"], cannot=st["cannot"])
            else:
                f = predict_stage(model, st["name"], run["role"], st["tokens"],
                                  st["samples"], st["info"])
                f.notes = list(st.get("notes", [])) + f.notes
            if f.cannot and st["name"].startswith("setup.") and \
                    f"{run['role']}:{BETWEEN}" in model.by_name:
                # a setup stage these runs never measured apart (the idle baseline, before
                # it had a stage of its own): its time is in their energy between stages
                note = (f"{st['name']} is not a stage of the measured runs: its time is "
                        f"forecast within {BETWEEN}")
                if note not in notes:
                    notes.append(note)
                continue
            stages[st["name"]] = f
            warnings += f.warnings
            if f.cannot:
                cannot.append({"run": key, "stage": st["name"], "reason": f.cannot})
        between = measured(model, f"{run['role']}:{BETWEEN}", BETWEEN)
        if between is not None:
            stages[BETWEEN] = between
        if run["role"] == "teacher":
            teacher_stages = stages
        methods[key] = {"role": run["role"], "method": run["key"],
                        "budget_point": key[len(run["key"]) + 2:] or None,
                        "config_id": run["config_id"],
                        "runs": run.get("run_names") or [run["name"]],
                        "stages": stages, "upstream": list(run.get("upstream", [])),
                        "starts_from": run.get("starts_from")}
    # a student that starts from another's (Method.starts_from) counts that student's
    # training in full, as its measured runs do (never divided by --amortize)
    trained = {v["config_id"]: v["stages"].get("student.train") for v in methods.values()}
    for rec in methods.values():
        # the meter's own idle window is forecast (it will be measured) but, as in every
        # measured figure, kept out of the run's energy: meter_overhead_j
        own = [f for n, f in rec["stages"].items() if not f.cannot and n not in METER_STAGES]
        meter = [f for n, f in rec["stages"].items() if not f.cannot and n in METER_STAGES]
        up = [teacher_stages[s] for s in rec["upstream"]
              if s in teacher_stages and not teacher_stages[s].cannot
              and s not in METER_STAGES]
        start = trained.get(rec["starts_from"]) if rec["starts_from"] else None
        start_ok = start is not None and not start.cannot
        rec["meter_overhead_j"] = math.fsum(f.energy_j for f in meter)
        rec["own_j"] = math.fsum(f.energy_j for f in own)
        rec["teacher_j"] = math.fsum(f.energy_j for f in up)
        rec["starting_student_j"] = start.energy_j if start_ok else 0.0
        up = up + ([start] if start_ok else [])  # in the totals below, not in teacher_j
        rec["total_j"] = rec["own_j"] + rec["teacher_j"] + rec["starting_student_j"]
        rec["ci95"] = [math.fsum(f.ci95[0] for f in own + up),
                       math.fsum(f.ci95[1] for f in own + up)]
        rec["ci95_fit"] = [math.fsum((f.ci95_fit or f.ci95)[i] for f in own + up)
                           for i in (0, 1)]
        rec["seconds"] = math.fsum(f.seconds or 0.0 for f in own + meter)
        est = math.fsum(_estimated_j(model, f) for f in own + up)
        rec["estimate_rel"] = ESTIMATE_REL * est / rec["total_j"] if rec["total_j"] else 0.0
        rec["energy_ci95"] = widen_for_estimate(rec["ci95"], rec["estimate_rel"])
        # the teacher side as the measured analysis counts it: the upstream teacher stages
        # and those a student runs in its own run (on-policy's teacher.score, preference's
        # teacher.judge), paid again by every student
        rec["own_teacher_j"] = math.fsum(f.energy_j for n, f in rec["stages"].items()
                                         if n.startswith("teacher.") and not f.cannot)
        side = rec["teacher_j"] + rec["own_teacher_j"] if rec["role"] == "student" else 0.0
        rec["teacher_share"] = side / rec["total_j"] if rec["total_j"] else None
        rec["complete"] = all(not f.cannot for f in rec["stages"].values()) and len(up) == len(
            [s for s in rec["upstream"] if s not in METER_STAGES]) + bool(rec["starts_from"])
        rec["stages"] = {k: f.to_dict() for k, f in rec["stages"].items()}
    students = {k: v for k, v in methods.items() if v["role"] == "student"}
    # N* against the baseline at the same point of the budget axis
    base = {v["budget_point"]: v for v in students.values() if is_baseline(v["method"])}
    for rec in students.values():
        rec["n_star"] = None
        b = base.get(rec["budget_point"])
        if b is not None and not is_baseline(rec["method"]) and rec["teacher_j"] > 0:
            rec["n_star"] = n_star(rec["teacher_j"], b["total_j"],
                                   rec["own_j"] + rec["starting_student_j"])
    return {"methods": methods, "warnings": list(dict.fromkeys(warnings)),
            "not_forecast": cannot, "notes": notes, "drift": model.drift}
