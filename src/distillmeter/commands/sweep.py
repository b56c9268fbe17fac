"""``distillmeter sweep SWEEP.yaml [--out RUNS_DIR] [--ray ADDRESS] [--resume] [--quiet]``."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("sweep")
@click.argument("sweep_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", default="runs", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Directory that receives teachers/ and one directory per config.")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Run the jobs as Ray tasks: a cluster address (auto, ray://host:10001) "
                   "or `local` to start Ray here (extra [ray]).")
@click.option("--resume", is_flag=True,
              help="Continue a sweep in RUNS_DIR: finished runs are skipped, interrupted "
                   "ones kept aside and done again, teacher artifacts reused.")
@click.option("--dry-run", is_flag=True, help="Validate and list the jobs; run nothing.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars (for scripts).")
def command(sweep_file: Path, out_dir: Path, ray_address: str | None, resume: bool,
            dry_run: bool, quiet: bool) -> None:
    """Run a grid of configs x seeds, one run directory per (config, method, seed).

    SWEEP.yaml holds `base` (a config file, a packaged config's name or an inline config),
    `grid` (dotted config keys -> lists of values) and `seeds`; see docs/scale.md. Teacher
    work is done once and shared by every config that needs it. Analyse the results with
    `distillmeter report RUNS_DIR`."""
    from distillmeter.energy.ranks import RankInfo
    from distillmeter.errors import UserError
    from distillmeter.pipelines.scale.sweep_file import load_sweep
    from distillmeter.terminal import get_console, literal, printable

    if RankInfo.from_env().distributed:
        raise UserError("distillmeter sweep runs its own jobs: start it without torchrun "
                        "(use `distillmeter run` under torchrun for one config)")

    sweep = load_sweep(sweep_file)  # everything validated before any work
    console = get_console()
    if dry_run:
        for p, s in sweep.jobs():
            shown = ", ".join(f"{k}={v!r}" for k, v in p.overrides.items()) or "(base)"
            console.print(printable(f"{out_dir / p.name}  seed {s}  {shown}"), markup=False)
        console.print(f"{len(sweep.points)} configs x {len(sweep.seeds)} seeds = "
                      f"{len(sweep.jobs())} jobs", highlight=False)
        return

    from distillmeter.commands.run import resume_hint
    from distillmeter.errors import OutputError
    from distillmeter.pipelines.scale.sweep_run import run_sweep, summary_table
    from distillmeter.tables import fit

    try:
        records = run_sweep(sweep, out_dir, resume=resume, quiet=quiet,
                            ray_address=ray_address)
    except OutputError as exc:
        exc.hint = resume_hint(exc)
        raise
    console.print(fit(summary_table(records)))
    failed = [r for r in records if r.status == "failed"]
    for r in failed:
        console.print(f"[red]failed[/] {literal(r.point)}/{literal(r.method)}-s{r.seed}: "
                      f"{literal(r.note)}", highlight=False)
    console.print(printable(f"analyse with: distillmeter report {out_dir}"), style="dim",
                  markup=False)
    if failed:
        raise click.exceptions.Exit(1)
