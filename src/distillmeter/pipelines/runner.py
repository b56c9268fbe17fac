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
from pathlib import Path

from rich.console import Console

from distillmeter.errors import UserError, writing
from distillmeter.pipelines import campaign, components, methods
from distillmeter.pipelines.artifact_plan import StudentRun, plan_students, plan_teacher
from distillmeter.pipelines.campaign import (  # noqa: F401  (imported from here before)
    RunOutcome,
    Summary,
    has_data,
    ledger_status,
    move_aside,
)
from distillmeter.pipelines.config import RunConfig
from distillmeter.pipelines.context import Context
from distillmeter.pipelines.progress import StageProgress
from distillmeter.pipelines.scale.rank_jobs import Leader, serve
from distillmeter.pipelines.student import run_student
from distillmeter.terminal import literal


def _check_fresh(out_dir: Path, names: list[str]) -> None:
    taken = [n for n in names if has_data(out_dir / n)]
    if taken:
        shown = ", ".join(str(out_dir / n) for n in taken[:3]) + (" ..." if len(taken) > 3
                                                                 else "")
        raise UserError(f"{shown} already hold{'s' if len(taken) == 1 else ''} measured data; "
                        "never overwritten: add --resume to continue those runs, or choose "
                        "another --out directory")


def run_all(cfg: RunConfig, out_dir: Path | str = "runs", *, resume: bool = False,
            quiet: bool = False, console: Console | None = None) -> Summary:
    """Run the config's teacher and students under ``out_dir``; account every run."""
    from distillmeter.pipelines.scale.distributed import Distributed
    from distillmeter.storage.runlock import RunLock

    out_dir = Path(out_dir)
    components.set_threads(cfg.threads)
    components.preload()
    # under torchrun: join the job; rank 0 speaks for it (docs/scale.md)
    dist = Distributed.init(cfg.distributed, components.pick_device(cfg))
    single = sorted({methods.get(m).kind for m in cfg.methods if methods.get(m).one_process})
    if dist.active and single:
        raise UserError(f"method {', '.join(single)} runs in one process (its rounds are not "
                        "split across ranks); run it without torchrun")
    ui = StageProgress(console, quiet=quiet or not dist.is_main)
    ctx = Context(cfg, out_dir, ui, dist.device, resume, dist=dist)
    if not dist.active:  # a launcher that asked for N processes but started this one alone
        from distillmeter.energy.ranks import RankInfo, lone_process_note

        lone = lone_process_note(RankInfo.from_env())
        if lone:
            ui.note(f"[yellow]note:[/] {literal(lone)}")
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
    """The campaign (``campaign.py``): students already done need no teacher, so they are
    sorted out before anything is touched; then the teacher (made if a student still needs
    it; its score is always needed), then every student left, then the interrupted
    attempts, accounted where they lie."""
    leader = leader or Leader(ctx)
    summary = Summary(ctx.out_dir)
    moved: list[Path] = []

    def dir_of(run: StudentRun) -> Path:
        return ctx.out_dir / run.name

    todo = campaign.triage(ctx, students, dir_of, summary.runs, moved)
    teacher = campaign.make_teacher(ctx, t_plan, moved, summary.runs, solo=leader.solo)
    # -- a method whose teacher data came out empty would train as if it had some and pass
    # for a result: the whole campaign stops here, before any student (docs/pipelines.md)
    teacher.check_data([run.method for run in todo])
    campaign.run_students(ctx, todo, teacher, dir_of, summary.runs, leader=leader,
                          campaign=students)
    campaign.failed_attempts(ctx, moved, summary.runs)
    return summary
