"""``distillmeter run [CONFIG] [--out RUNS_DIR] [--seeds N] [--resume] [--quiet] [--no-report]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


@click.command("run")
@click.argument("config", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", default="runs", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Directory that receives one run directory per run.")
@click.option("--seeds", type=click.IntRange(min=1), default=None,
              help="Seeds per method (overrides the config's `seeds`).")
@click.option("--resume", is_flag=True,
              help="Continue in an OUT that already holds runs: finished runs and teacher "
                   "artifacts are reused, interrupted runs kept aside and done again.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars (for scripts).")
@click.option("--no-report", is_flag=True,
              help="Skip the analysis at the end (`distillmeter report OUT` does it later).")
def command(config: Path | None, out_dir: Path, seeds: int | None, resume: bool,
            quiet: bool, no_report: bool) -> None:
    """Run distillation pipelines, every stage metered, then account and summarise.

    With no CONFIG, the built-in default: a teacher trained here on an arithmetic task,
    distilled into a smaller student by baseline SFT, synthetic-data SFT and logit KD,
    each at 3 student token budgets (120k, 240k, 720k) over 3 seeds, one teacher run for
    all (see `distillmeter/configs/default.yaml`). At the end the runs in OUT are
    analysed as `distillmeter report OUT` does: the Pareto table and rules are printed and
    OUT/summary.json, OUT/summary.csv and OUT/report.html written, and the verdict (each
    method against the baseline) is printed last."""
    from distillmeter.pipelines.config import builtin_default
    from distillmeter.pipelines.config_file import load_config

    cfg = load_config(config) if config is not None else builtin_default()
    if seeds is not None:
        cfg = cfg.model_copy(update={"seeds": seeds})

    from distillmeter.errors import OutputError
    from distillmeter.pipelines.runner import run_all

    try:
        summary = run_all(cfg, out_dir, resume=resume, quiet=quiet)
    except OutputError as exc:
        exc.hint = resume_hint(exc)
        raise
    from distillmeter.energy.ranks import RankInfo

    if RankInfo.from_env().rank != 0:  # under torchrun, rank 0 speaks for the job
        return
    from distillmeter.terminal import get_console

    console = get_console()
    print_outcome(summary, console, analysed=not no_report)
    if not no_report:
        from distillmeter.render.outputs import report_runs

        console.print()
        report_runs(out_dir, console, browser_hint=True)


def resume_hint(exc: Any) -> str:
    """What to do after a file of a run could not be written (an ``OutputError``)."""
    if exc.full:
        return ("every ledger line written so far is kept: free some space, then the same "
                "command with --resume continues")
    return "choose another --out directory, or make this one writable"


def print_outcome(summary: Any, console: Any, *, analysed: bool) -> None:
    """What the run did, in a few lines: the teacher run(s) and interrupted attempts. The
    figures per configuration are the analysis's alone (printed after this)."""
    from distillmeter.terminal import literal

    students = summary.of_kind("student")
    done = sum(r.status == "done" for r in students)
    for t in summary.of_kind("teacher"):
        rep = t.report
        if rep is None:
            console.print(f"teacher {literal(t.name)}: not accounted", highlight=False)
            continue
        q = rep.quality
        em = f", {q.metric} {q.value:.3f}" if q is not None else ""
        if t.status == "skipped":
            console.print(f"teacher [bold]{literal(t.name)}[/] (found, not run again)"
                          f"{literal(em)}", highlight=False)
        else:
            console.print(f"teacher [bold]{literal(t.name)}[/]: {_energy(rep)} in "
                          f"{rep.totals.seconds:.1f} s{literal(em)}", highlight=False)
    axis = any(r.seed is not None and r.name != f"{r.method}-s{r.seed}" for r in students)
    pattern = "<method>-b<budget>-s<seed>" if axis else "<method>-s<seed>"
    console.print(f"students: {done} run, {len(students) - done} already done, in "
                  f"{literal(summary.out_dir)}/{pattern}/", highlight=False)
    for f in summary.of_kind("failed"):
        energy = _energy(f.report) if f.report else "not accounted"
        console.print(f"interrupted attempt {literal(f.name)}: {energy} (kept, accounted)",
                      highlight=False)
    if not analysed:
        console.print(f"`distillmeter report {literal(summary.out_dir)}` analyses them.",
                      highlight=False)


def _energy(report: Any) -> str:
    """A run's energy (its workload: the meter's own idle measurement apart), marked when
    any of it is an estimate."""
    t = report.totals
    work = t.workload_j if t.workload_j is not None else t.energy_j
    j = f"{work:,.0f} J"
    j = f"~{j} est." if report.estimated else j
    return j + (f" (+{t.meter_overhead_j:,.0f} J meter overhead)" if t.meter_overhead_j
                else "")
