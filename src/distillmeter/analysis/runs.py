"""One run's figures for the analysis, read off its report (pure functions).

A student run's report carries the teacher-side stages it used from another run directory
under ``upstream``. Its total energy is its own energy plus that upstream energy, counted in
full, or divided among N students with ``amortize=N``. Energy by side counts own stages on
their side, every upstream stage on the teacher side (shared teacher work, as the accounting
does; divided by N) and the run's unattributed energy, so the sides add up to the total.
An upstream stage on the student side is this student's own training, measured by an
interrupted attempt at its run and named as upstream by the resumed run ("carried"): it
counts on the student side, in full, never divided among students.

The meter's own stages (``protocol.METER_STAGES``: its idle measurement, ``setup.idle``)
are measuring, not the workload: every figure here leaves them out (own energy, sides,
stages, idle time) and keeps them apart as ``meter_overhead_j``, read off the stages so
that reports written before ``totals.meter_overhead_j`` existed are treated alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from distillmeter.analysis.energy_interval import IDLE_DRIFT_REL, Measured, parts_of
from distillmeter.protocol import METER_STAGES, Report

SIDE_ORDER = ("setup", "teacher", "student", "eval", "unattributed")

# labels that differ between seeds of one configuration, so they never split a config
_PER_RUN_LABELS = frozenset({"seed", "run_id", "run_dir", "wall_time"})


@dataclass(frozen=True)
class RunFigures:
    """What the analysis needs from one report. Energies in joules."""

    run_id: str
    run_dir: str
    method: str | None
    seed: int | None
    config: str  # configuration id (config_id, else method + labels)
    task: str | None
    hardware: str  # "GPU model(s)" or "CPU model", for grouping
    own_j: float  # this run directory's own energy (conserves with its stages)
    own_by_side: dict[str, float]
    upstream_j: float  # upstream stages' energy, in full
    upstream_by_side: dict[str, float]
    upstream_stages: dict[tuple[str, str], float]  # (run_id, stage) -> energy, in full
    stage_j: dict[str, float]  # own + upstream stage energy by stage name (in full)
    stage_tokens: dict[str, int]  # own + upstream tokens by stage name
    upstream_stage_names: frozenset[str]
    quality: float | None
    metric: str | None
    q: float | None  # student / teacher quality
    grid_gco2_per_kwh: float
    pue: float
    price_per_kwh: float | None
    estimated: bool
    has_student_stages: bool
    labels: dict[str, Any] = field(default_factory=dict)
    quality_n: int | None = None  # test items the quality was measured on
    teacher_quality: float | None = None
    # measurement uncertainty (random, systematic, machine), J: the run's own total, and
    # its upstream stages in full (analysis/energy_interval.py)
    own_unc: tuple[float, float, float] = (0.0, 0.0, 0.0)
    upstream_unc: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # idle power x seconds, and its error, J: own run, and upstream stages in full
    own_idle_j: float = 0.0
    own_idle_err_j: float = 0.0
    upstream_idle_j: float = 0.0
    upstream_idle_err_j: float = 0.0
    stage_unc: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    own_teacher_stages: frozenset[str] = frozenset()  # teacher-side work done per student
    # the carried part of the upstream (this student's training, from an interrupted
    # attempt): energy, uncertainty parts, idle part and its error, J
    carried_j: float = 0.0
    carried_unc: tuple[float, float, float] = (0.0, 0.0, 0.0)
    carried_idle_j: float = 0.0
    carried_idle_err_j: float = 0.0
    meter_overhead_j: float = 0.0  # the meter's own stages (left out of own_j), J
    meter_overhead_s: float = 0.0
    # why the run's totals are lower bounds (its upstream teacher work cannot be read)
    incomplete: tuple[str, ...] = ()

    def total_j(self, amortize: float = 1.0) -> float:
        """Own energy plus upstream energy, the shared part divided among ``amortize``
        students."""
        return self.own_j + self.carried_j + (self.upstream_j - self.carried_j) / amortize

    def side_j(self, side: str, amortize: float = 1.0) -> float:
        """Energy on one side (teacher, student, eval, setup, unattributed)."""
        up = self.upstream_by_side.get(side, 0.0)
        return self.own_by_side.get(side, 0.0) + (up if side == "student" else up / amortize)

    def shared_teacher_j(self, amortize: float = 1.0) -> float:
        """Teacher-side work that other students can share: the upstream stages (run once
        in their own run directory and named by every student that uses them)."""
        return self.upstream_by_side.get("teacher", 0.0) / amortize

    def marginal_j(self) -> float:
        """Energy of one more student when the shareable teacher-side work already exists:
        the total less the upstream (shared) stages. Teacher-side stages run inside the
        student's own run (a teacher scoring each student's samples) are work this student
        needs, so they stay in."""
        return self.total_j() - self.shared_teacher_j()

    def measured_total(self, amortize: float = 1.0) -> Measured:
        """``total_j`` with its measurement uncertainty (analysis/energy_interval.py): the
        upstream stages' whole uncertainty is common to every student that reuses them."""
        r, s, m = self.own_unc
        ur, us, um = self.upstream_unc
        cr, cs, cm = self.carried_unc  # this student's alone, as its own figures are
        return Measured(self.total_j(amortize), r + cr,
                        s + cs + (ur - cr + us - cs) / amortize, m + cm + (um - cm) / amortize)

    def active_j(self, amortize: float = 1.0) -> float:
        """Energy above idle: the total less idle power x time (own and upstream)."""
        carried = self.carried_j - self.carried_idle_j
        shared = self.upstream_j - self.upstream_idle_j - carried
        return self.own_j - self.own_idle_j + carried + shared / amortize

    def measured_active(self, amortize: float = 1.0) -> Measured:
        """``active_j`` with its uncertainty: the idle baseline's error enters here. An
        estimate's machine term falls on its idle part, which is subtracted: none left."""
        t = self.measured_total(amortize)
        return Measured(self.active_j(amortize), t.random, t.systematic, 0.0,
                        self.own_idle_err_j + self.carried_idle_err_j,
                        (self.upstream_idle_err_j - self.carried_idle_err_j) / amortize)

    def measured_marginal(self) -> Measured:
        """``marginal_j`` with the run's own uncertainty (no upstream work in it)."""
        r, s, m = self.own_unc
        return Measured(self.marginal_j(), r, s, m)

    def co2e_g(self, amortize: float = 1.0, grid: float | None = None,
               pue: float | None = None) -> float:
        """CO2e in grams: kWh x PUE x grid intensity (the report's, unless overridden)."""
        g = self.grid_gco2_per_kwh if grid is None else grid
        p = self.pue if pue is None else pue
        return self.total_j(amortize) / 3.6e6 * p * g

    def cost(self, price_per_kwh: float | None = None, amortize: float = 1.0,
             pue: float | None = None) -> float | None:
        """Electricity cost: kWh x PUE x price (the report's price unless given)."""
        price = self.price_per_kwh if price_per_kwh is None else price_per_kwh
        if price is None:
            return None
        p = self.pue if pue is None else pue
        return self.total_j(amortize) / 3.6e6 * p * price


def is_carried(stage_name: str) -> bool:
    """An upstream stage that is the student's own work (its training, measured by an
    interrupted attempt at the run), not teacher work other students share."""
    return stage_name.split(".", 1)[0] == "student"  # a report's names need not be valid


def _stage_total(stage: Any) -> float:
    e = stage.energy_j
    if "total" in e:
        return float(e["total"])
    return float(math.fsum(v for v in e.values()))


def _names(value: Any) -> list[str]:
    """Model names out of a hardware entry that may be a str, a dict or a list of either."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, dict):
        for k in ("name", "model", "model_name", "brand"):
            if isinstance(value.get(k), str) and value[k].strip():
                return [value[k]]
        return []
    if isinstance(value, (list, tuple)):
        out: list[str] = []
        for v in value:
            out.extend(_names(v))
        return out
    return []


def gpu_names(hardware: dict[str, Any]) -> list[str]:
    """The GPU model names a report's ``hardware`` block lists (one per GPU)."""
    for key in ("gpus", "gpu", "gpu_names", "gpu_name", "gpu_model"):
        names = _names(hardware.get(key))
        if names:
            return names
    return []


def cpu_name(hardware: dict[str, Any]) -> str | None:
    """The CPU model name in a report's ``hardware`` block, if any."""
    for key in ("cpu_model", "cpu", "cpu_name", "processor"):
        names = _names(hardware.get(key))
        if names:
            return names[0]
    return None


def hardware_label(hardware: dict[str, Any]) -> str:
    """A short label that separates machines: the GPU models (with count), else the CPU."""
    gpus = gpu_names(hardware)
    if gpus:
        counts: dict[str, int] = {}
        for g in gpus:
            counts[g] = counts.get(g, 0) + 1
        return " + ".join(f"{n}x {g}" for g, n in sorted(counts.items()))
    cpu = cpu_name(hardware)
    return cpu or "unknown hardware"


def config_key(report: Report) -> str:
    """The configuration a run belongs to: its ``config_id``, else its method and labels
    (seed and other per-run labels left out)."""
    if report.config_id:
        return str(report.config_id)
    labels = {k: v for k, v in sorted(report.labels.items()) if k not in _PER_RUN_LABELS}
    base = report.method or "unlabelled"
    if labels:
        base += "[" + ",".join(f"{k}={v}" for k, v in labels.items()) + "]"
    return base


def figures(report: Report, run_dir: str | None = None) -> RunFigures:
    """Extract a run's figures from its report."""
    own_by_side: dict[str, float] = {}
    stage_j: dict[str, float] = {}
    stage_tokens: dict[str, int] = {}
    meter = [st for st in report.stages if st.name in METER_STAGES]
    overhead_j = math.fsum(_stage_total(st) for st in meter)
    for st in _work(report.stages):
        e = _stage_total(st)
        own_by_side[st.side] = own_by_side.get(st.side, 0.0) + e
        stage_j[st.name] = stage_j.get(st.name, 0.0) + e
        stage_tokens[st.name] = stage_tokens.get(st.name, 0) + int(st.tokens)
    own_by_side["unattributed"] = float(report.totals.unattributed_j)
    up_by_side: dict[str, float] = {}
    up_stages: dict[tuple[str, str], float] = {}
    for st in _work(report.upstream):
        e = _stage_total(st)
        side = "student" if is_carried(st.name) else "teacher"
        up_by_side[side] = up_by_side.get(side, 0.0) + e
        stage_j[st.name] = stage_j.get(st.name, 0.0) + e
        stage_tokens[st.name] = stage_tokens.get(st.name, 0) + int(st.tokens)
        key = (st.run_id or "?", st.name)
        up_stages[key] = up_stages.get(key, 0.0) + e
    quality = metric = q = teacher_quality = quality_n = None
    if report.quality is not None:
        quality, metric = float(report.quality.value), report.quality.metric
        quality_n = int(report.quality.n) if report.quality.n else None
        details = report.quality.details or {}
        if isinstance(details.get("teacher_value"), (int, float)):
            teacher_quality = float(details["teacher_value"])
        if isinstance(details.get("q"), (int, float)):
            q = float(details["q"])
        elif teacher_quality:
            q = quality / teacher_quality
    return RunFigures(
        run_id=report.run_id,
        run_dir=run_dir or report.run_dir or "",
        method=report.method,
        seed=report.seed,
        config=config_key(report),
        task=report.task,
        hardware=hardware_label(report.hardware),
        own_j=float(report.totals.energy_j) - overhead_j,
        own_by_side=own_by_side,
        upstream_j=float(math.fsum(_stage_total(s) for s in _work(report.upstream))),
        upstream_by_side=up_by_side,
        upstream_stages=up_stages,
        stage_j=stage_j,
        stage_tokens=stage_tokens,
        upstream_stage_names=frozenset(s.name for s in _work(report.upstream)),
        quality=quality,
        metric=metric,
        q=q,
        grid_gco2_per_kwh=float(report.carbon.grid_gco2_per_kwh),
        pue=float(report.carbon.pue),
        price_per_kwh=report.cost.price_per_kwh,
        estimated=bool(report.estimated),
        has_student_stages=any(s.side == "student" for s in report.stages),
        labels=dict(report.labels),
        quality_n=quality_n,
        teacher_quality=teacher_quality,
        meter_overhead_j=overhead_j,
        meter_overhead_s=math.fsum(st.seconds for st in meter),
        incomplete=tuple(f.message for f in report.flags if f.kind == "incomplete"),
        **_uncertainty_fields(report),
    )


def _work(stages: list[Any]) -> list[Any]:
    """The stages that are the workload's: all but the meter's own."""
    return [st for st in stages if st.name not in METER_STAGES]


def _stage_parts(st: Any) -> tuple[float, float, float]:
    return parts_of(getattr(st, "uncertainty_parts", None), st.uncertainty_j, st.energy_j,
                    st.source)


def _uncertainty_fields(report: Report) -> dict[str, Any]:
    """The measurement uncertainty and idle figures of a run (analysis/energy_interval.py)."""
    t = report.totals
    own = parts_of(getattr(t, "uncertainty_parts", None), t.uncertainty_j,
                   {**t.by_device, "total": t.energy_j}, report.sources)
    up = [0.0, 0.0, 0.0]
    stage_unc: dict[str, tuple[float, float, float]] = {}
    for st in _work([*report.stages, *report.upstream]):
        p = _stage_parts(st)
        prev = stage_unc.get(st.name, (0.0, 0.0, 0.0))
        stage_unc[st.name] = (prev[0] + p[0], prev[1] + p[1], prev[2] + p[2])
    for st in _work(report.upstream):
        for i, x in enumerate(_stage_parts(st)):
            up[i] += x
    idle_w = math.fsum(report.idle_power_w.values())
    idle_err = getattr(report, "idle_uncertainty_w", None) or {
        d: IDLE_DRIFT_REL * w for d, w in report.idle_power_w.items()}
    err_w = math.fsum(idle_err.get(d, IDLE_DRIFT_REL * w)
                      for d, w in report.idle_power_w.items())
    rel = err_w / idle_w if idle_w > 0 else IDLE_DRIFT_REL
    up_idle = math.fsum(_stage_total(s) - s.active_energy_j for s in _work(report.upstream))
    carried = [s for s in _work(report.upstream) if is_carried(s.name)]
    c_parts = [_stage_parts(s) for s in carried]
    c_idle = math.fsum(_stage_total(s) - s.active_energy_j for s in carried)
    # idle power x the workload's time: the meter's idle window is not the workload's
    seconds = max(t.seconds - math.fsum(s.seconds for s in report.stages
                                        if s.name in METER_STAGES), 0.0)
    return {
        "own_unc": own, "upstream_unc": (up[0], up[1], up[2]),
        "own_idle_j": idle_w * seconds, "own_idle_err_j": err_w * seconds,
        "upstream_idle_j": up_idle, "upstream_idle_err_j": rel * abs(up_idle),
        "carried_j": math.fsum(_stage_total(s) for s in carried),
        "carried_unc": tuple(math.fsum(p[i] for p in c_parts) for i in range(3)),
        "carried_idle_j": c_idle, "carried_idle_err_j": rel * abs(c_idle),
        "stage_unc": stage_unc,
        "own_teacher_stages": frozenset(s.name for s in report.stages if s.side == "teacher"),
    }


def campaign_total_j(runs: list[RunFigures]) -> dict[str, float]:
    """Energy of everything the runs did, each upstream stage counted once: the runs' own
    energy (their workload; the meter's overhead apart, ``meter_overhead_j``) plus the
    upstream stages whose run is not among them, deduplicated by run_id and stage name (a
    teacher run that is present already holds its stages in its own energy)."""
    present = {r.run_id for r in runs}
    seen: dict[tuple[str, str], float] = {}
    for r in runs:
        for key, e in r.upstream_stages.items():
            if key[0] not in present:
                seen.setdefault(key, e)
    own = math.fsum(r.own_j for r in runs)
    extra = math.fsum(seen.values())
    return {"own_j": own, "external_upstream_j": extra, "energy_j": own + extra,
            "external_upstream_stages": len(seen),
            "meter_overhead_j": math.fsum(r.meter_overhead_j for r in runs)}
