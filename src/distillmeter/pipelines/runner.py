"""``distillmeter run``: the teacher once, then every (method, seed) student, each in its own
run directory, then accounting for every run directory and a per-method summary.

Output layout (``OUT`` defaults to ``runs/``)::

    OUT/teacher-<hash>/       setup.load, teacher.train, eval.teacher, teacher.generate,
                              teacher.logits; artifacts/ holds the checkpoint, eval, data, cache
    OUT/<method>-s<seed>/     setup.load, student.train, eval.student; upstream -> teacher
    OUT/<run>.failed-<n>/     an interrupted attempt, kept as measured and accounted

Resume (``--resume``): a student run whose ledger ended ``ok`` under the same config is
skipped (only accounted if its report is missing). An interrupted run directory (no
``run_end``, or ``failed``) is never appended to: it is moved aside, whole, to
``<run>.failed-<n>`` and accounted there, so its energy, the interrupted stage included, is
kept exactly once; the run is then done again in a fresh directory, from its last product:
a student an attempt trained and saved (its checkpoint verified by checksum) is evaluated,
not trained again, and the new run names that attempt's ``student.train`` as upstream, as
it names teacher work (``student.locate_trained``). Teacher
artifacts are found by the hash of what produced them, under any run directory (failed ones
included), and verified by checksum before use; a logit cache resumes from its last good
shard. Without ``--resume``, a run directory that already holds data is an error: measured
data is never overwritten.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from distillmeter import protocol
from distillmeter.errors import USER_ERRORS, UserError, writing
from distillmeter.pipelines import components
from distillmeter.pipelines.config import RunConfig
from distillmeter.pipelines.context import Context
from distillmeter.pipelines.plan import StudentRun, plan_students, plan_teacher
from distillmeter.pipelines.progress import StageProgress
from distillmeter.pipelines.scale.rank_jobs import Leader, serve
from distillmeter.pipelines.student import locate_trained, run_student
from distillmeter.pipelines.teacher import locate_existing, run_teacher
from distillmeter.terminal import literal


@dataclass
class RunOutcome:
    """What happened to one run directory."""

    name: str
    path: Path
    kind: str  # teacher | student | failed
    status: str  # done | skipped | failed
    report: protocol.Report | None = None
    method: str | None = None
    seed: int | None = None
    note: str = ""


@dataclass
class Summary:
    out_dir: Path
    runs: list[RunOutcome] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[RunOutcome]:
        return [r for r in self.runs if r.kind == kind]


def has_data(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def ledger_status(run_dir: Path) -> tuple[str, str | None]:
    """(``ok`` | ``failed`` | ``incomplete`` | ``unreadable``, config_id) of a run dir."""
    try:
        ledger = protocol.read_ledger(run_dir)
    except protocol.ProtocolError:
        return "unreadable", None
    end = ledger.run_end
    status = "incomplete" if end is None else ("ok" if end.status == "ok" else "failed")
    return status, ledger.run_start.config_id


def move_aside(run_dir: Path) -> Path:
    """Rename an interrupted run directory to ``<name>.failed-<n>`` (first free n)."""
    n = 1
    while (target := run_dir.with_name(f"{run_dir.name}.failed-{n}")).exists():
        n += 1
    with writing(run_dir):
        run_dir.rename(target)
    return target


def _check_fresh(out_dir: Path, names: list[str]) -> None:
    taken = [n for n in names if has_data(out_dir / n)]
    if taken:
        shown = ", ".join(str(out_dir / n) for n in taken[:3]) + (" ..." if len(taken) > 3
                                                                 else "")
        raise UserError(f"{shown} already hold{'s' if len(taken) == 1 else ''} measured data; "
                        "never overwritten: add --resume to continue those runs, or choose "
                        "another --out directory")


def _account(run_dir: Path, cfg: RunConfig, ui: StageProgress) -> protocol.Report | None:
    from distillmeter.accounting import account, write_report

    c = cfg.carbon
    try:
        report = account(run_dir, grid_gco2_per_kwh=c.grid_gco2_per_kwh, country=c.country,
                         pue=c.pue, price_per_kwh=c.price_per_kwh)
        write_report(run_dir, report)
        return report
    except USER_ERRORS as exc:
        ui.note(f"[yellow]warning:[/] {literal(run_dir.name)}: cannot account: {literal(exc)}")
        return None


def _valid_report(run_dir: Path) -> protocol.Report | None:
    try:
        return protocol.load_report(run_dir)
    except protocol.ProtocolError:
        return None


def run_all(cfg: RunConfig, out_dir: Path | str = "runs", *, resume: bool = False,
            quiet: bool = False, console: Console | None = None) -> Summary:
    """Run the config's teacher and students under ``out_dir``; account every run."""
    from distillmeter.pipelines.scale.distributed import Distributed
    from distillmeter.storage.runlock import RunLock

    out_dir = Path(out_dir)
    components.set_threads(cfg)
    components.preload()
    # under torchrun: join the job; rank 0 speaks for it (docs/scale.md)
    dist = Distributed.init(cfg.distributed, components.pick_device(cfg))
    if dist.active and cfg.has_onpolicy():
        raise UserError("method onpolicy runs in one process (its rounds are not split "
                        "across ranks); run it without torchrun")
    ui = StageProgress(console, quiet=quiet or not dist.is_main)
    ctx = Context(cfg, out_dir, ui, dist.device, resume, dist=dist)
    # Before any work: checkpoints found, tokenizers agree, data reads, memory suffices.
    from distillmeter.pipelines.preflight import preflight

    preflight(cfg, ctx.device, note=ui.note)
    t_plan, students = plan_teacher(cfg), plan_students(cfg)
    if not dist.is_main:
        serve(ctx, run_student)  # the other ranks do what rank 0 decides (scale/rank_jobs.py)
        dist.close()
        return Summary(out_dir)
    with writing(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(out_dir)  # two `distillmeter run` on one OUT would move each other's runs
    # Locked before anything else is checked, so that a run still going on in OUT is named
    # as such (pid, host, start), not taken for an earlier run's data.
    taken_over = lock.acquire(f"distillmeter run (pid {os.getpid()})")
    try:
        if taken_over:
            ui.note(f"[yellow]{literal(out_dir)}[/]: {literal(taken_over)}")
        if not resume:
            _check_fresh(out_dir, [t_plan.run_name] + [s.name for s in students])
        leader = Leader(ctx)
        try:
            summary = _run_locked(ctx, t_plan, students, leader)
        except BaseException as exc:
            leader.abort(exc)
            raise
        leader.done()
        dist.close()
        return summary
    finally:
        lock.release()


def _run_locked(ctx: Context, t_plan, students: list[StudentRun],
                leader: Leader | None = None) -> Summary:
    leader = leader or Leader(ctx)
    cfg, out_dir, ui = ctx.cfg, ctx.out_dir, ctx.ui
    summary = Summary(out_dir)
    moved: list[Path] = []

    # -- students already done need no teacher; decide before touching anything
    todo: list[StudentRun] = []
    for run in students:
        path = out_dir / run.name
        if not (ctx.resume and path.exists()):
            todo.append(run)
            continue
        status, config_id = ledger_status(path)
        if status == "ok" and config_id != run.config_id:
            raise UserError(f"{path} holds a finished run of another configuration "
                            f"(config_id {config_id}, this config's is {run.config_id}); "
                            "use another --out directory for a different config")
        if status == "ok":
            report = _valid_report(path) or _account(path, cfg, ui)
            summary.runs.append(RunOutcome(run.name, path, "student", "skipped", report,
                                           run.method.name, run.seed, "already done"))
            continue
        moved.append(move_aside(path))
        ui.note(f"[yellow]{literal(run.name)}[/]: interrupted earlier; kept as "
                f"{literal(moved[-1].name)} "
                "(accounted), running it again")
        todo.append(run)

    # -- the teacher: made if a student still needs it (and its score is always needed)
    teacher_dir = _teacher_dir(ctx, t_plan, moved)
    with leader.solo():  # under torchrun, rank 0 alone; the other ranks meter along
        teacher = run_teacher(ctx, t_plan, teacher_dir)
    if teacher.run_dir is not None:
        summary.runs.append(RunOutcome(teacher_dir.name, teacher_dir, "teacher", "done",
                                       _account(teacher_dir, cfg, ui), "teacher"))
    else:
        for d in sorted({loc.run_dir for loc in teacher.located.values()}):
            summary.runs.append(RunOutcome(d.name, d, "teacher", "skipped",
                                           _valid_report(d) or _account(d, cfg, ui),
                                           "teacher"))

    # -- a method whose teacher data came out empty would train as if it had some and pass
    # for a result: the whole campaign stops here, before any student (docs/pipelines.md)
    teacher.check_data([run.method for run in todo])

    # -- the students
    for run in todo:
        path = out_dir / run.name
        ui.note(f"[bold]{run.name}[/]: {run.method.name} ({', '.join(run.method.data)}, "
                f"loss {run.method.loss}), seed {run.seed}")
        trained = locate_trained(out_dir, run, warn=ui.note) if ctx.resume else None
        if trained is not None:
            ui.note(f"  the student {trained.run_dir.name} trained is found and verified: "
                    "evaluating it, not training again")
        with leader.student(run, teacher, path, trained):  # every rank, under torchrun
            run_student(ctx, run, teacher, path, trained)
        summary.runs.append(RunOutcome(run.name, path, "student", "done",
                                       _account(path, cfg, ui), run.method.name, run.seed))

    # -- interrupted attempts: accounted where they lie, listed
    for path in sorted(set(moved) | set(out_dir.glob("*.failed-*"))):
        if path.is_dir():
            summary.runs.append(RunOutcome(path.name, path, "failed", "failed",
                                           _valid_report(path) or _account(path, cfg, ui)))
    return summary


def _teacher_dir(ctx: Context, t_plan, moved: list[Path]) -> Path:
    """Where new teacher work goes: ``teacher-<hash>``. An interrupted one is moved aside
    first (its finished artifacts are reused from there); a finished one is never touched,
    so new work (a corrupted artifact remade) goes to ``teacher-<hash>-<n>``."""
    path = ctx.out_dir / t_plan.run_name
    if not (ctx.resume and has_data(path)):
        return path
    if ctx.resume and len(locate_existing(ctx, t_plan)) == len(t_plan.artifacts()):
        return path  # nothing to make: the path will not be used
    status, _ = ledger_status(path)
    if status != "ok":
        moved.append(move_aside(path))
        ctx.ui.note(f"[yellow]{literal(path.name)}[/]: interrupted earlier; kept as "
                    f"{literal(moved[-1].name)} "
                    "(accounted); its finished artifacts are reused")
        return path
    n = 2
    while has_data(path.with_name(f"{path.name}-{n}")):
        n += 1
    return path.with_name(f"{path.name}-{n}")

