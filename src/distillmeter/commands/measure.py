"""``distillmeter measure [OPTIONS] -- CMD ARGS...``: meter any command as one stage.

Like ``perf stat`` for energy: runs CMD (its output passes through untouched), meters it
as one stage, accounts the run directory and prints the stage table on stderr, then exits
with CMD's exit status.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import click

from distillmeter.energy.signals import Terminated
from distillmeter.errors import UserError
from distillmeter.terminal import printable

DEFAULT_STAGE = "student.command"


def default_run_dir() -> Path:
    """``runs/measure-<local timestamp>``."""
    return Path("runs") / f"measure-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _resolve(cmd: tuple[str, ...]) -> None:
    if not cmd:
        raise UserError("no command to measure: distillmeter measure [OPTIONS] -- CMD ARGS...")
    prog = cmd[0]
    if os.sep in prog or (os.altsep and os.altsep in prog):
        if not (os.path.isfile(prog) and os.access(prog, os.X_OK)):
            raise UserError(f"cannot run {prog!r}: no such executable file")
    elif shutil.which(prog) is None:
        raise UserError(f"command not found: {prog!r} (not on PATH)")


def run_command(cmd: tuple[str, ...]) -> tuple[int, Terminated | None]:
    """Run ``cmd`` in the foreground; return its exit status, shell-style (128 + N for a
    command killed by signal N), and the SIGTERM/SIGHUP that stopped distillmeter, if one
    did. Ctrl-C reaches the command directly (same process group); SIGTERM and SIGHUP sent
    to distillmeter alone are passed on to it. Either way we wait for it to finish (up to
    10 s, or until asked a second time, then it is killed) so its energy stays inside the
    stage."""
    proc = subprocess.Popen(list(cmd))
    stopped: Terminated | None = None
    try:
        rc = proc.wait()
    except KeyboardInterrupt:
        rc = _finish(proc)
    except Terminated as exc:
        stopped = exc
        proc.send_signal(exc.signum)
        rc = _finish(proc)
    return (128 + -rc if rc < 0 else rc), stopped


def _finish(proc: subprocess.Popen, grace_s: float = 10.0) -> int:
    """Wait for a command that was asked to stop; kill it after ``grace_s`` or when asked
    again."""
    try:
        return proc.wait(timeout=grace_s)
    except (subprocess.TimeoutExpired, KeyboardInterrupt, Terminated):
        proc.kill()
        return proc.wait()


@click.command("measure", context_settings={"ignore_unknown_options": True,
                                            "allow_interspersed_args": False})
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory to write (default: runs/measure-<timestamp>).")
@click.option("--stage", "stage", default=DEFAULT_STAGE, show_default=True,
              help="Stage name for the command: <side>.<what>, side one of setup, teacher, "
                   "student, eval.")
@click.option("--idle-seconds", type=float, default=3.0, show_default=True,
              help="Measure idle power this long before the command (0 skips).")
@click.option("--fresh-idle", is_flag=True,
              help="Measure idle power now even if this host's baseline is cached "
                   "(it is reused for a day; DISTILLMETER_IDLE_CACHE=off disables the cache).")
@click.option("--sample-hz", type=float, default=20.0, show_default=True,
              help="Trace sampling rate (0: boundary readings only).")
@click.option("--devices", default="auto", show_default=True,
              help="Devices to meter: auto, or a comma list such as gpu,cpu or gpu:0.")
@click.option("--tokens", type=int, default=0, help="Tokens the command processes (for J/token).")
@click.option("--no-report", is_flag=True, help="Only write the raw files; do not account.")
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED)
def command(out: Path | None, stage: str, idle_seconds: float, fresh_idle: bool,
            sample_hz: float, devices: str, tokens: int, no_report: bool,
            cmd: tuple[str, ...]) -> int:
    """Run CMD as one metered stage; exit with its exit status.

    \b
    Example:
      distillmeter measure --out runs/gen -- python generate.py --batch 64
    """
    from distillmeter.energy import EnergyMeter
    from distillmeter.energy.stage import checked_stage_name
    from distillmeter.privacy.redact import redact_argv

    _resolve(cmd)
    try:
        checked_stage_name(stage)
    except ValueError as exc:
        raise UserError(f"--stage: {exc}") from None
    if idle_seconds < 0 or sample_hz < 0:
        raise UserError("--idle-seconds and --sample-hz must be 0 or more")
    run_dir = out or default_run_dir()
    settings = {"command": redact_argv(cmd), "stage": stage, "idle_seconds": idle_seconds,
                "fresh_idle": fresh_idle,
                "sample_hz": sample_hz, "devices": devices, "tokens": tokens}
    try:
        meter = EnergyMeter(run_dir, devices=devices, sample_hz=sample_hz,
                            idle_seconds=idle_seconds, task="measure",
                            config={"measure": settings}, idle_refresh=fresh_idle)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if idle_seconds:
        click.echo(f"distillmeter: idle power: measuring for {idle_seconds:g} s unless this "
                   "host's baseline is cached ...", err=True)
    meter.start()
    if meter.idle_cached is not None:
        click.echo(f"distillmeter: idle baseline reused from "
                   f"{printable(meter.idle_cached['path'])} "
                   f"(measured {meter.idle_cached['measured_at']}; --fresh-idle measures "
                   "it again)", err=True)
    rc, status, stopped = 1, "failed", None
    try:
        with meter.stage(stage, tokens=tokens) as st:
            rc, stopped = run_command(cmd)
            if stopped is not None:
                st.fail(f"distillmeter received {stopped.name}, passed it on to the command, "
                        f"which exited with status {rc}")
            elif rc != 0:
                st.fail(f"command exited with status {rc}")
        status = "ok" if rc == 0 and stopped is None else "failed"
    finally:
        meter.close(status)
    click.echo(f"distillmeter: {printable(redact_argv(cmd[:1])[0])} exited with status {rc}; "
               f"run directory {printable(run_dir)}", err=True)
    if not no_report:
        _report(run_dir)
    return rc


def _report(run_dir: Path) -> None:
    """Account the run and print its tables on stderr (stdout belongs to the command)."""
    from distillmeter.accounting import account, write_report
    from distillmeter.errors import USER_ERRORS
    from distillmeter.privacy.redact import redact_text
    from distillmeter.tables import print_report
    from distillmeter.terminal import get_console

    console = get_console(stderr=True)  # the tables fit its width (80 columns when piped)
    try:
        report = account(run_dir)
        write_report(run_dir, report)
    except USER_ERRORS as exc:
        click.secho(f"error: could not account {printable(run_dir)}: "
                    f"{printable(redact_text(str(exc)))}", fg="red", err=True)
        return
    print_report(report, console=console)

