"""The ``distillmeter`` command.

Each subcommand lives in ``distillmeter.commands.<name>`` as a click command called
``command``; they are imported only when used, so ``distillmeter show`` does not pay for
importing torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import sys

import click

from distillmeter import __version__
from distillmeter.energy import signals
from distillmeter.errors import STORAGE_ERRNOS, USER_ERRORS, OutputError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("distillmeter.commands.run",
            "Run distillation pipelines (the built-in default with no CONFIG)."),
    "measure": ("distillmeter.commands.measure",
                "Meter any command as one stage, like `perf stat` for energy."),
    "account": ("distillmeter.commands.account",
                "Account a run directory: write report.json and print it."),
    "show": ("distillmeter.commands.show", "Print a run's stage table and totals."),
    "report": ("distillmeter.commands.report",
               "Analyse all runs under a directory: summary and HTML report."),
    "estimate": ("distillmeter.commands.estimate",
                 "Forecast a config's energy and time from the runs measured here."),
    "plan": ("distillmeter.commands.plan",
             "Pick the best configuration that fits an energy, CO2 or money budget."),
    "sweep": ("distillmeter.commands.sweep",
              "Run a grid of configs x seeds, here or on a Ray cluster."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [n for n, (mod, _) in COMMANDS.items() if importlib.util.find_spec(mod)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module_name, _ = COMMANDS[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(n, COMMANDS[n][1]) for n in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="distillmeter")
def cli() -> None:
    """distillmeter: distil language models and account for every joule."""


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI; user mistakes print one clear line, not a traceback.

    Exit status: 0, or the command's own; 2 for a user mistake or a file that cannot be
    written (disk full, read-only directory: the line names the path); 130 on Ctrl-C, and
    128 + N on SIGTERM (143) or SIGHUP (129), which end the run as Ctrl-C does (the running
    stage failed, the ledger closed, the locks released)."""
    held = signals.install()
    try:
        return _main(argv)
    finally:
        if held:
            signals.release()


def _main(argv: list[str] | None) -> int:
    try:
        rv = cli.main(args=argv, prog_name="distillmeter", standalone_mode=False)
    except click.exceptions.Abort:
        _say("aborted")
        return 130
    except click.ClickException as exc:
        # click echoes what it could not parse ("unexpected extra argument (...)"), which
        # may be a secret pasted on the command line: redacted like everything we write
        buf = io.StringIO()
        exc.show(file=buf)
        click.echo(_redacted(buf.getvalue().rstrip("\n")), err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except signals.Terminated as exc:
        _say(f"terminated by {exc.name}: the running stage was ended as failed and the "
             "run closed; what was measured is kept")
        return exc.code
    except USER_ERRORS as exc:
        click.secho(f"error: {_redacted(str(exc))}", fg="red", err=True)
        return 2
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except OutputError as exc:  # a write failed for lack of space or permission
        click.secho(f"error: {_redacted(str(exc))}", fg="red", err=True)
        return 2
    except Exception as exc:
        stop = _terminated_in(exc)
        if stop is not None:  # cleanup after the signal failed too (a closed terminal)
            return stop.code
        if not (isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS):
            raise
        # the same failure where no write names its file: the OS's own words and file
        where = f"{exc.filename}: " if exc.filename else ""
        click.secho(f"error: {_redacted(where + str(exc.strerror))}", fg="red", err=True)
        return 2
    return rv if isinstance(rv, int) else 0


def _terminated_in(exc: BaseException) -> signals.Terminated | None:
    """The signal an exception was raised while handling, if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, signals.Terminated):
            return exc
        seen.add(id(exc))
        exc = exc.__context__
    return None


def _say(text: str) -> None:
    """A last line on stderr, which may be gone (SIGHUP: the terminal closed)."""
    try:
        click.echo(text, err=True)
    except OSError:
        pass


def _redacted(text: str) -> str:
    """A message as the terminal gets it: secrets redacted, and on each of its lines
    control characters shown as escapes (a message may quote a name or a path)."""
    from distillmeter.privacy.redact import redact_text
    from distillmeter.terminal import printable

    return "\n".join(printable(line) for line in redact_text(text).split("\n"))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
