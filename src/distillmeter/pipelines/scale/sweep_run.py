"""Running a sweep: teacher-side work once, then every (config, seed) job, here one after
another or as Ray tasks.

Layout under ``RUNS_DIR``::

    sweep.yaml, sweep.json      the sweep as given; its points, overrides and results
    teachers/teacher-<hash>/    teacher-side runs shared by every point (found by hash)
    <point>/<method>-s<seed>/   one run directory per (config, method, seed)

1. Teacher side, before any fan-out, one distinct teacher plan at a time: artifacts are
   found by the hash of what produces them under ``teachers/``, so points that share a
   teacher (or its synthetic data, or a logit cache) share the work and its energy, which
   each student run names as upstream.
2. Student jobs, one per (point, seed), each in its own run directories. ``--resume`` skips
   runs that ended ``ok`` under the same config, and redoes interrupted ones after moving
   them aside (kept and accounted), as ``distillmeter run`` does.
3. On Ray (``--ray ADDRESS`` or ``local``) each job is a task asking for its GPUs (Ray sets
   ``CUDA_VISIBLE_DEVICES``, which the meter honours, so a task meters exactly its GPUs).
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from distillmeter import protocol
from distillmeter.errors import UserError, writing
from distillmeter.pipelines.campaign import has_data
from distillmeter.pipelines.config import RunConfig
from distillmeter.pipelines.scale.sweep_file import TEACHERS_DIR, Sweep
from distillmeter.pipelines.scale.sweep_jobs import JobRecord, student_job, teacher_job
from distillmeter.storage.atomic import write_atomic
from distillmeter.terminal import get_console, literal


def _check_fresh(sweep: Sweep, root: Path) -> None:
    taken = [root / TEACHERS_DIR] if has_data(root / TEACHERS_DIR) else []
    taken += [root / p.name for p in sweep.points if has_data(root / p.name)]
    if taken:
        shown = ", ".join(map(str, taken[:3])) + (" ..." if len(taken) > 3 else "")
        raise UserError(f"{shown}: already holds measured data; never overwritten: add "
                        "--resume to continue this sweep, or choose another --out")


def _write_state(sweep: Sweep, root: Path, records: list[JobRecord]) -> None:
    from distillmeter.pipelines.artifact_plan import plan_students

    def config_ids(cfg) -> dict[str, str]:
        # per configuration: the method's name, or <method>-b<budget> on a budget axis
        return {r.name.rsplit("-s", 1)[0]: r.config_id for r in plan_students(cfg)}

    doc = {"source": sweep.source, "seeds": sweep.seeds, "grid": sweep.grid,
           "points": [{"name": p.name, "overrides": p.overrides,
                       "config_ids": config_ids(p.config)} for p in sweep.points],
           "runs": [asdict(r) for r in records]}
    write_atomic(root / "sweep.json", json.dumps(doc, indent=1, default=str) + "\n",
                 fsync=False)


def run_sweep(sweep: Sweep, runs_dir: str | Path, *, resume: bool = False, quiet: bool = False,
              ray_address: str | None = None, console: Console | None = None
              ) -> list[JobRecord]:
    """Run every job of ``sweep`` under ``runs_dir``; returns what happened to each run."""
    from distillmeter.pipelines.artifact_plan import plan_teacher
    from distillmeter.storage.runlock import RunLock

    console = console or get_console(stderr=True)
    root = Path(runs_dir).resolve()
    with writing(root):
        root.mkdir(parents=True, exist_ok=True)
    lock = RunLock(root)  # one sweep per RUNS_DIR: two would move each other's runs aside
    taken = lock.acquire(f"distillmeter sweep (pid {os.getpid()})")
    try:
        if taken and not quiet:
            console.print(f"[yellow]{literal(root)}[/]: {literal(taken)}")
        if not resume:
            _check_fresh(sweep, root)
        src = Path(sweep.source)
        if src.is_file():
            with writing(root / "sweep.yaml"):
                (root / "sweep.yaml").write_text(src.read_text(encoding="utf-8"),
                                                 encoding="utf-8")
        _write_state(sweep, root, [])
        plans: dict[str, RunConfig] = {}
        for p in sweep.points:  # one teacher job per distinct teacher plan, in point order
            plans.setdefault(plan_teacher(p.config).run_name, p.config)
        if ray_address is None:
            runner = _Sequential(quiet)
        else:
            from distillmeter.pipelines.scale.sweep_ray import RayRunner, meters_host

            runner = RayRunner(ray_address, sweep.ray, quiet)
            if not quiet and any(meters_host(p.config.meter) for p in sweep.points):
                console.print("[yellow]note:[/] Ray tasks that share a node each meter its "
                              "CPU and DRAM, so host energy is counted once per task running "
                              "beside another; `meter.devices: gpu` meters GPUs only")
        with runner:
            if not quiet:
                console.print(f"sweep: {len(sweep.points)} configs x {len(sweep.seeds)} seeds, "
                              f"{len(plans)} teacher plan(s), {runner.where}")
            teachers = {name: runner.teacher(cfg, str(root)) for name, cfg in plans.items()}
            records = runner.students([(p.config, p.name, s,
                                        teachers[plan_teacher(p.config).run_name])
                                       for p, s in sweep.jobs()], str(root), resume)
        _write_state(sweep, root, records)
        return records
    finally:
        lock.release()


class _Sequential:
    """Jobs here, one after another, in this process."""

    where = "here, one after another"

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def __enter__(self) -> _Sequential:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def teacher(self, cfg: RunConfig, root: str):
        return teacher_job(cfg, root, self.quiet)

    def students(self, jobs: list[tuple], root: str, resume: bool) -> list[JobRecord]:
        out = []
        for cfg, point, seed, teacher in jobs:
            out += student_job(cfg, point, seed, teacher, root, resume, self.quiet)
        return out


def summary_table(records: list[JobRecord]) -> Table:
    """Per (config, method): runs, energy with upstream (mean over seeds), exact match."""
    groups: dict[tuple[str, str], list[JobRecord]] = {}
    for r in records:
        groups.setdefault((r.point, r.method), []).append(r)
    table = Table(title="sweep: energy (J, with the teacher stages used) and quality, mean "
                  "over seeds", title_justify="left")
    for col in ("config", "method", "runs", "energy J", "exact match", "status"):
        table.add_column(col, justify="right" if col in ("runs", "energy J", "exact match")
                         else "left")
    any_estimated = False
    for (point, method), recs in groups.items():
        energy, quality, estimated = [], [], False
        for r in recs:
            try:
                rep = protocol.load_report(r.run_dir)
            except protocol.ProtocolError:
                continue
            t = rep.totals  # the workload: the meter's own idle measurement left out
            energy.append(t.with_upstream_j if t.workload_with_upstream_j is None
                          else t.workload_with_upstream_j)
            estimated |= rep.estimated
            if rep.quality is not None:
                quality.append(rep.quality.value)
        statuses = sorted({r.status for r in recs})
        any_estimated |= estimated
        table.add_row(point, method, str(len(recs)),
                      ("~" if estimated else "") + f"{statistics.fmean(energy):,.0f}"
                      if energy else "-",
                      f"{statistics.fmean(quality):.3f}" if quality else "-",
                      ",".join(statuses))
    if any_estimated:
        table.caption = "~: estimated energy (a model, not a counter)"
    return table
