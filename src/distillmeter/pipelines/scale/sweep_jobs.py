"""A sweep's jobs, as run here or in a Ray worker: the teacher-side work of one teacher plan
(``teacher_job``) and one student job, every method of a (config, seed) (``student_job``).
Each is a part of the one campaign loop (``pipelines/campaign.py``) that ``distillmeter
run`` goes through too; a job only says where its runs lie. Their results are plain data
(``JobRecord``), so they cross Ray."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillmeter.pipelines import campaign
from distillmeter.pipelines.config import RunConfig
from distillmeter.pipelines.scale.sweep_file import TEACHERS_DIR


@dataclass
class JobRecord:
    """What happened to one run directory of a job (plain data: it crosses Ray)."""

    point: str
    seed: int
    method: str
    run_dir: str
    status: str  # done | skipped | failed
    note: str = ""




def _context(cfg: RunConfig, out_dir: Path, quiet: bool, resume: bool,
             checks_said: bool = False):
    """The pipelines' context for a job's work in ``out_dir`` (a sweep's ``teachers/``,
    where its teacher-side artifacts are looked up and made, or a point's folder). The
    preflight checks run in every job (where its device is); ``checks_said``: do not print
    what they found again."""
    from distillmeter.pipelines import components
    from distillmeter.pipelines.context import Context
    from distillmeter.pipelines.preflight import preflight
    from distillmeter.pipelines.progress import StageProgress

    components.set_threads(cfg.threads)
    components.preload()
    ui = StageProgress(quiet=quiet)
    device = components.pick_device(cfg)
    # checkpoints found, tokenizers agree, memory suffices: before any work
    preflight(cfg, device, note=(lambda *_: None) if checks_said else ui.note)
    return Context(cfg, out_dir, ui, device, resume=resume)


def teacher_job(cfg: RunConfig, runs_dir: str, quiet: bool = True):
    """Make the teacher-side artifacts ``cfg`` needs that ``teachers/`` does not hold yet
    (the campaign's ``make_teacher``); return them located (a ``TeacherOutputs``)."""
    from distillmeter.pipelines.artifact_plan import plan_teacher

    ctx = _context(cfg, Path(runs_dir) / TEACHERS_DIR, quiet, resume=True)
    return campaign.make_teacher(ctx, plan_teacher(cfg), [], [])


def student_job(cfg: RunConfig, point: str, seed: int, teacher: Any, runs_dir: str,
                resume: bool, quiet: bool = True) -> list[JobRecord]:
    """Every student run of one (point, seed): the campaign's ``triage`` and
    ``run_students``, accounted. A run that fails is recorded (its directory kept and
    accounted) and the next one goes on."""
    from distillmeter.pipelines.artifact_plan import plan_students

    folder = Path(runs_dir) / point
    ctx = _context(cfg, folder, quiet, resume, checks_said=True)
    outcomes: list = []
    moved: list[Path] = []

    def dir_of(run) -> Path:
        return folder / run.name

    runs = [r for r in plan_students(cfg) if r.seed == seed]
    todo = campaign.triage(ctx, runs, dir_of, outcomes, moved)
    # the attempts moved aside, by the run they were: <run>.failed-<n>
    kept = {p.name.rsplit(".failed-", 1)[0]: p.name for p in moved}
    campaign.run_students(ctx, todo, teacher, dir_of, outcomes, keep_going=True,
                          label=lambda run: f"{point}/{run.name}", campaign=runs)
    records = []
    for o in outcomes:
        note = o.note
        if o.name in kept:
            note = f"interrupted earlier; kept as {kept[o.name]}" + note
        records.append(JobRecord(point, seed, o.method or "", str(o.path), o.status, note))
    return records
