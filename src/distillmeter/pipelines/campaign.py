"""The one campaign loop, shared by ``distillmeter run`` (``runner.py``) and ``distillmeter
sweep`` (``scale/sweep_jobs.py``, here or on Ray): the teacher's work, then the students,
each accounted where it lies.

    triage          the students already done are skipped (accounted if their report is
                    missing); an interrupted one is moved aside, whole, to
                    ``<run>.failed-<n>`` and accounted there, then run again
    make_teacher    the teacher-side artifacts the students need that are not found yet,
                    made in ``teacher-<hash>`` (``teacher_dir``), and accounted
    run_students    every student left, each from its last product (a student an
                    interrupted attempt trained and saved is evaluated, not trained
                    again), and accounted; with ``keep_going`` a failing student is
                    recorded and the next one goes on

``run`` calls them in that order over one config; a sweep calls ``make_teacher`` once per
distinct teacher plan and ``triage`` + ``run_students`` once per job (config, seed), where
its distributor (here, or a Ray task) puts the job. Nothing else decides what a campaign
does, so the two cannot differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from distillmeter import protocol
from distillmeter.errors import USER_ERRORS, OutputError, UserError, writing
from distillmeter.pipelines.artifact_plan import StudentRun, TeacherPlan, starting_run
from distillmeter.pipelines.config_machine import CarbonConfig
from distillmeter.pipelines.context import Context
from distillmeter.pipelines.student import locate_trained, run_student
from distillmeter.pipelines.teacher import TeacherOutputs, locate_existing, run_teacher
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


def account_run(run_dir: Path, carbon: CarbonConfig,
                note: Callable[[str], None] | None = None) -> protocol.Report | None:
    """Account ``run_dir`` and write its report.json. A run that cannot be accounted is
    kept as measured: with ``note``, it is said there and None returned; without, the
    error is raised."""
    from distillmeter.accounting import account, write_report

    try:
        report = account(run_dir, grid_gco2_per_kwh=carbon.grid_gco2_per_kwh,
                         country=carbon.country, pue=carbon.pue,
                         price_per_kwh=carbon.price_per_kwh)
        write_report(run_dir, report)
        return report
    except USER_ERRORS as exc:
        if note is None:
            raise
        note(f"[yellow]warning:[/] {literal(run_dir.name)}: cannot account: {literal(exc)}")
        return None


def valid_report(run_dir: Path) -> protocol.Report | None:
    try:
        return protocol.load_report(run_dir)
    except protocol.ProtocolError:
        return None


def _report(ctx: Context, run_dir: Path) -> protocol.Report | None:
    """The run's report.json, accounted now if it has none (or one that does not read)."""
    return valid_report(run_dir) or account_run(run_dir, ctx.cfg.carbon, ctx.ui.note)


def triage(ctx: Context, runs: list[StudentRun], dir_of: Callable[[StudentRun], Path],
           outcomes: list[RunOutcome], moved: list[Path]) -> list[StudentRun]:
    """The students still to run. Done ones (``ok`` under the same config_id) go to
    ``outcomes`` as skipped; a finished run of another configuration in the way is an
    error; interrupted ones are moved aside (appended to ``moved``) and run again."""
    todo: list[StudentRun] = []
    for run in runs:
        path = dir_of(run)
        if not (ctx.resume and path.exists()):
            todo.append(run)
            continue
        status, config_id = ledger_status(path)
        if status == "ok" and config_id != run.config_id:
            raise UserError(f"{path} holds a finished run of another configuration "
                            f"(config_id {config_id}, this config's is {run.config_id}); "
                            "use another --out directory for a different config")
        if status == "ok":
            outcomes.append(RunOutcome(run.name, path, "student", "skipped",
                                       _report(ctx, path), run.method.name, run.seed,
                                       "already done"))
            continue
        moved.append(move_aside(path))
        ctx.ui.note(f"[yellow]{literal(run.name)}[/]: interrupted earlier; kept as "
                    f"{literal(moved[-1].name)} (accounted), running it again")
        account_run(moved[-1], ctx.cfg.carbon, ctx.ui.note)
        todo.append(run)
    return todo


def teacher_dir(ctx: Context, plan: TeacherPlan, moved: list[Path]) -> Path:
    """Where new teacher work goes: ``teacher-<hash>``. An interrupted one is moved aside
    first (its finished artifacts are reused from there); a finished one is never touched,
    so new work (a corrupted artifact remade) goes to ``teacher-<hash>-<n>``."""
    path = ctx.out_dir / plan.run_name
    if not (ctx.resume and has_data(path)):
        return path
    if len(locate_existing(ctx, plan)) == len(plan.artifacts()):
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


def make_teacher(ctx: Context, plan: TeacherPlan, moved: list[Path],
                 outcomes: list[RunOutcome], solo=None) -> TeacherOutputs:
    """The teacher-side artifacts of ``plan``: found (verified) or made now in
    ``teacher_dir``, accounted; the teacher runs go to ``outcomes``. ``solo``: a context
    manager in which rank 0 alone works under torchrun (``rank_jobs.Leader.solo``)."""
    from contextlib import nullcontext

    path = teacher_dir(ctx, plan, moved)
    with solo() if solo is not None else nullcontext():
        teacher = run_teacher(ctx, plan, path)
    if teacher.run_dir is not None:
        outcomes.append(RunOutcome(path.name, path, "teacher", "done",
                                   account_run(path, ctx.cfg.carbon, ctx.ui.note), "teacher"))
    else:
        for d in sorted({loc.run_dir for loc in teacher.located.values()}):
            outcomes.append(RunOutcome(d.name, d, "teacher", "skipped", _report(ctx, d),
                                       "teacher"))
    return teacher


def run_students(ctx: Context, todo: list[StudentRun], teacher: TeacherOutputs,
                 dir_of: Callable[[StudentRun], Path], outcomes: list[RunOutcome], *,
                 leader=None, keep_going: bool = False, label=None,
                 campaign: list[StudentRun] | None = None) -> None:
    """Every student of ``todo`` in ``dir_of(run)``, accounted, into ``outcomes``. A
    student an interrupted attempt trained and saved (found next to its run directory)
    is evaluated, not trained again. ``leader``: under torchrun, every rank runs each
    student (``rank_jobs.Leader.student``). ``keep_going``: a failing student is recorded
    (its directory kept and accounted) and the next one goes on; a full disk stops every
    one alike. ``label``: how a run is named in the notes (default: its name).
    ``campaign``: every student of the campaign (default ``todo``), where a student that
    starts from another's (``Method.starts_from``) finds it, trained before it or found
    done, its checkpoint verified."""
    from contextlib import nullcontext

    for run in todo:
        path = dir_of(run)
        m = run.method
        ctx.ui.note(f"[bold]{label(run) if label else run.name}[/]: {m.name} "
                    f"({', '.join(m.data)}, loss {m.loss}), seed {run.seed}")
        trained = locate_trained(path.parent, run, warn=ctx.ui.note) if ctx.resume else None
        if trained is not None:
            ctx.ui.note(f"  the student {trained.run_dir.name} trained is found and "
                        "verified: evaluating it, not training again")
        out = RunOutcome(run.name, path, "student", "done", None, m.name, run.seed)
        first = starting_run(run, campaign or todo)
        start = None
        if first is not None:
            start = locate_trained(dir_of(first).parent, first, warn=ctx.ui.note)
            if start is None:
                raise UserError(f"{run.name} starts from {first.name}'s trained student, "
                                "which is not there (its run failed?)")
        try:
            with (leader.student(run, teacher, path, trained, start) if leader is not None
                  else nullcontext()):  # every rank, under torchrun
                run_student(ctx, run, teacher, path, trained, start)
        except OutputError:
            raise
        except Exception as exc:  # with keep_going, one failing config must not stop all
            if not keep_going:
                raise
            out.status, out.note = "failed", f"{type(exc).__name__}: {exc}"
        if keep_going:
            try:
                out.report = account_run(path, ctx.cfg.carbon)
            except USER_ERRORS as exc:
                out.note += f" (not accounted: {exc})"
        else:
            out.report = account_run(path, ctx.cfg.carbon, ctx.ui.note)
        outcomes.append(out)


def failed_attempts(ctx: Context, moved: list[Path], outcomes: list[RunOutcome]) -> None:
    """Interrupted attempts under the output directory: accounted where they lie, listed."""
    for path in sorted(set(moved) | set(ctx.out_dir.glob("*.failed-*"))):
        if path.is_dir():
            outcomes.append(RunOutcome(path.name, path, "failed", "failed",
                                       _report(ctx, path)))
