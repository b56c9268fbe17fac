"""A sweep's jobs, as run here or in a Ray worker: the teacher-side work of one teacher plan
(``teacher_job``) and one student job, every method of a (config, seed) (``student_job``).
Their results are plain data (``JobRecord``), so they cross Ray."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillmeter import protocol
from distillmeter.errors import USER_ERRORS, OutputError, UserError
from distillmeter.pipelines.config import RunConfig
from distillmeter.pipelines.runner import has_data, ledger_status
from distillmeter.pipelines.scale.sweep import TEACHERS_DIR


@dataclass
class JobRecord:
    """What happened to one run directory of a job (plain data: it crosses Ray)."""

    point: str
    seed: int
    method: str
    run_dir: str
    status: str  # done | skipped | failed
    note: str = ""




def _account(run_dir: Path, cfg: RunConfig) -> None:
    from distillmeter.accounting import account, write_report

    c = cfg.carbon
    write_report(run_dir, account(run_dir, grid_gco2_per_kwh=c.grid_gco2_per_kwh,
                                  country=c.country, pue=c.pue, price_per_kwh=c.price_per_kwh))


def _context(cfg: RunConfig, runs_dir: Path, quiet: bool, checks_said: bool = False):
    """The pipelines' context for work under ``runs_dir``: artifacts are looked up (and
    teacher runs made) under ``teachers/``. The preflight checks run in every job (where
    its device is); ``checks_said``: do not print what they found again."""
    from distillmeter.pipelines import components
    from distillmeter.pipelines.context import Context
    from distillmeter.pipelines.progress import StageProgress

    components.set_threads(cfg)
    components.preload()
    ui = StageProgress(quiet=quiet)
    device = components.pick_device(cfg)
    try:  # checkpoints found, tokenizers agree, memory suffices: before any work
        from distillmeter.pipelines.preflight import preflight
    except ImportError:
        preflight = None
    if preflight is not None:
        preflight(cfg, device, note=(lambda *_: None) if checks_said else ui.note)
    return Context(cfg, runs_dir / TEACHERS_DIR, ui, device, resume=True)


def _teacher_dir(path: Path) -> Path:
    """Where new teacher work goes: ``path``, unless it holds a run already: an interrupted
    one is moved aside (its finished artifacts are still found there), a finished one is
    kept and the new work goes to ``<path>-<n>``."""
    from distillmeter.pipelines.runner import move_aside

    if not has_data(path):
        return path
    if ledger_status(path)[0] != "ok":
        move_aside(path)
        return path
    n = 2
    while has_data(path.with_name(f"{path.name}-{n}")):
        n += 1
    return path.with_name(f"{path.name}-{n}")


def teacher_job(cfg: RunConfig, runs_dir: str, quiet: bool = True):
    """Make the teacher-side artifacts ``cfg`` needs that ``teachers/`` does not hold yet;
    return them located (a ``TeacherOutputs``)."""
    from distillmeter.pipelines.plan import plan_teacher
    from distillmeter.pipelines.teacher import TeacherOutputs, locate_existing, run_teacher

    ctx = _context(cfg, Path(runs_dir), quiet)
    plan = plan_teacher(cfg)
    located = locate_existing(ctx, plan)
    if len(located) == len(plan.artifacts()):
        return TeacherOutputs(plan, located)
    path = _teacher_dir(ctx.out_dir / plan.run_name)
    out = run_teacher(ctx, plan, path)
    if out.run_dir is not None:
        _account(out.run_dir, cfg)
    return out


def student_job(cfg: RunConfig, point: str, seed: int, teacher: Any, runs_dir: str,
                resume: bool, quiet: bool = True) -> list[JobRecord]:
    """Every method's student run of one (point, seed), accounted. A run that fails is
    recorded (its directory kept and accounted) and the next one goes on."""
    from distillmeter.pipelines.plan import plan_students
    from distillmeter.pipelines.runner import move_aside
    from distillmeter.pipelines.student import locate_trained, run_student

    root = Path(runs_dir)
    ctx = _context(cfg, root, quiet, checks_said=True)
    records = []
    for run in (r for r in plan_students(cfg) if r.seed == seed):
        path = root / point / run.name
        rec = JobRecord(point, seed, run.method.name, str(path), "done")
        if has_data(path):
            status, config_id = ledger_status(path)
            if resume and status == "ok" and config_id == run.config_id:
                if not (path / protocol.REPORT_FILE).exists():
                    _account(path, cfg)
                records.append(JobRecord(point, seed, run.method.name, str(path), "skipped",
                                         "already done"))
                continue
            if status == "ok" or not resume:
                raise UserError(f"{path} holds measured data of another run (config_id "
                                f"{config_id}, this one's is {run.config_id}); never "
                                "overwritten: use another RUNS_DIR")
            moved = move_aside(path)
            rec.note = f"interrupted earlier; kept as {moved.name}"
            try:
                _account(moved, cfg)
            except USER_ERRORS:
                pass  # a run that cannot be accounted is still kept; `report` lists it
        ctx.ui.note(f"[bold]{point}/{run.name}[/]: {run.method.name}, seed {seed}")
        # a student an interrupted attempt trained and saved: evaluated, not trained again
        trained = locate_trained(root / point, run, warn=ctx.ui.note) if resume else None
        try:
            run_student(ctx, run, teacher, path, trained)
        except OutputError:  # a full disk stops every config alike: stop here
            raise
        except Exception as exc:  # one failing config must not stop the sweep
            rec.status, rec.note = "failed", f"{type(exc).__name__}: {exc}"
        try:
            _account(path, cfg)
        except USER_ERRORS as exc:
            rec.note += f" (not accounted: {exc})"
        records.append(rec)
    return records


# --------------------------------------------------------------------------- the driver
