"""protocol.Report objects with chosen numbers, for the pure-function tests (the
end-to-end tests account real run directories instead)."""

from __future__ import annotations

from typing import Any

from distillmeter.protocol import Carbon, Cost, Quality, Report, StageReport, Totals


def stage(name: str, energy: float, tokens: int = 0, run_id: str | None = None,
          t: float = 0.0, **extra: Any) -> StageReport:
    return StageReport(name=name, side=name.split(".")[0], t_start=t, t_end=t + 1.0,
                       seconds=1.0, energy_j={"gpu:0": energy, "total": energy},
                       active_energy_j=energy, uncertainty_j=0.0, tokens=tokens,
                       j_per_token=energy / tokens if tokens else None,
                       source={"gpu:0": "nvml_counter"}, run_id=run_id, **extra)


def report(run_id: str, *, method: str | None = None, seed: int | None = None,
           config_id: str | None = None, task: str | None = "arithmetic",
           stages: dict[str, float | tuple[float, int]] | None = None,
           upstream: dict[tuple[str, str], float | tuple[float, int]] | None = None,
           unattributed: float = 0.0, quality: float | None = None,
           teacher_quality: float | None = None, gpu: str = "NVIDIA H100 80GB HBM3",
           labels: dict[str, Any] | None = None, grid: float = 400.0, pue: float = 1.0,
           price: float | None = None, estimated: bool = False) -> Report:
    """A report whose stages, upstream stages and unattributed energy are as given;
    totals conserve (own energy = stages + unattributed)."""
    own = []
    for name, v in (stages or {}).items():
        e, tok = v if isinstance(v, tuple) else (v, 0)
        own.append(stage(name, e, tok))
    up = []
    for (rid, name), v in (upstream or {}).items():
        e, tok = v if isinstance(v, tuple) else (v, 0)
        up.append(stage(name, e, tok, run_id=rid))
    stages_j = sum(s.energy_j["total"] for s in own)
    up_j = sum(s.energy_j["total"] for s in up)
    energy = stages_j + unattributed
    by_side = {s: 0.0 for s in ("setup", "teacher", "student", "eval")}
    for s in own:
        by_side[s.side] += s.energy_j["total"]
    by_side["teacher"] += up_j
    q = None
    if quality is not None:
        details = {} if teacher_quality is None else {"teacher_value": teacher_quality}
        q = Quality(metric="exact_match", value=quality, n=100, details=details)
    return Report(
        run_id=run_id, method=method, seed=seed, config_id=config_id, task=task,
        labels=labels or {}, hardware={"gpus": [{"name": gpu}]} if gpu else {},
        devices=["gpu:0"], sources={"gpu:0": "estimate" if estimated else "nvml_counter"},
        stages=own, upstream=up,
        totals=Totals(energy_j=energy, kwh=energy / 3.6e6, seconds=10.0, stages_j=stages_j,
                      unattributed_j=unattributed, uncertainty_j=0.0, upstream_j=up_j,
                      with_upstream_j=energy + up_j, by_side=by_side),
        carbon=Carbon(grid_gco2_per_kwh=grid, grid_source="test", pue=pue,
                      co2e_g=energy / 3.6e6 * grid * pue),
        cost=Cost(price_per_kwh=price), quality=q, estimated=estimated)


T = "teacher-run"


def toy_campaign(with_teacher: bool = True) -> list[tuple[str, Report]]:
    """A teacher run (5 kJ of teacher work) and students: baseline (1100 J each), kd
    (800 J + 3 kJ of upstream logits), sft (1900 J + 2 kJ of upstream generation)."""
    reps = []
    if with_teacher:
        reps.append(report(T, method="teacher", stages={
            "teacher.logits": 3000.0, "teacher.generate": 2000.0,
            "eval.teacher": (500.0, 1000)}, unattributed=50.0, quality=0.8))
    for seed, (train, q) in enumerate([(990.0, 0.40), (1000.0, 0.42), (1010.0, 0.41)]):
        reps.append(report(f"base-{seed}", method="baseline", seed=seed, config_id="base",
                           stages={"student.train": train, "eval.student": (100.0, 1000)},
                           quality=q, teacher_quality=0.8))
    for seed, (train, q) in enumerate([(690.0, 0.60), (700.0, 0.62), (710.0, 0.61)]):
        reps.append(report(f"kd-{seed}", method="kd", seed=seed, config_id="kd",
                           stages={"student.train": train, "eval.student": (100.0, 1000)},
                           upstream={(T, "teacher.logits"): 3000.0}, quality=q,
                           teacher_quality=0.8))
    for seed in range(2):
        reps.append(report(f"sft-{seed}", method="sft_synth", seed=seed, config_id="sft",
                           stages={"student.train": 1800.0, "eval.student": (100.0, 1000)},
                           upstream={(T, "teacher.generate"): 2000.0}, quality=0.5,
                           teacher_quality=0.8))
    return [(r.run_id, r) for r in reps]
