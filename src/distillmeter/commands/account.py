"""``distillmeter account RUN_DIR``: account a run, write RUN_DIR/report.json, print it."""

from __future__ import annotations

from pathlib import Path

import click

from distillmeter.errors import UserError


def parse_idle_w(values: tuple[str, ...]) -> float | dict[str, float] | None:
    """``--idle-w 80`` (every device) or ``--idle-w gpu:0=80 --idle-w cpu:0=15``."""
    if not values:
        return None
    bare = [v for v in values if "=" not in v]
    pairs = [v for v in values if "=" in v]
    if bare and (pairs or len(bare) > 1):
        raise UserError(
            "--idle-w takes one number of watts for every device, or DEVICE=W once per "
            f"device (for example --idle-w gpu:0=80); got {' '.join(values)}"
        )
    if bare:
        return _watts(bare[0], "--idle-w")
    out: dict[str, float] = {}
    for v in pairs:
        dev, _, w = v.partition("=")
        out[dev.strip()] = _watts(w, f"--idle-w {v}")
    return out


def _watts(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{what}: {text!r} is not a number of watts") from None


@click.command("account")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--idle-w", "idle_w", multiple=True, metavar="W|DEVICE=W",
              help="Idle power in watts instead of the measured baseline: one number for "
                   "every device, or DEVICE=W (repeatable).")
@click.option("--grid", "grid", type=float, metavar="GCO2_PER_KWH",
              help="Grid carbon intensity in gCO2e/kWh (instead of a country's average).")
@click.option("--country", metavar="CC",
              help="ISO country code for the grid intensity table (default: "
                   "$DISTILLMETER_COUNTRY, else the world average).")
@click.option("--pue", type=float, help="Data-centre PUE (default 1.0: devices only).")
@click.option("--price-per-kwh", type=float, metavar="P", help="Electricity price per kWh.")
@click.option("--currency", metavar="C", help="Currency of --price-per-kwh (default USD).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def command(
    run_dir: Path,
    idle_w: tuple[str, ...],
    grid: float | None,
    country: str | None,
    pue: float | None,
    price_per_kwh: float | None,
    currency: str | None,
    as_json: bool,
) -> None:
    """Account RUN_DIR from its raw files: write RUN_DIR/report.json and print it."""
    from distillmeter.accounting import account, write_report
    from distillmeter.tables import print_report
    from distillmeter.terminal import get_console, json_text, plain_text

    if grid is not None and country:
        raise UserError("give --grid (a number) or --country (a code), not both")
    report = account(
        run_dir, idle_w=parse_idle_w(idle_w), grid_gco2_per_kwh=grid, country=country,
        pue=pue, price_per_kwh=price_per_kwh, currency=currency,
    )
    path = write_report(run_dir, report)
    if as_json:
        click.echo(json_text(report.to_json()))
        return
    console = get_console()
    print_report(report, console)
    console.print(plain_text(f"wrote {path}"))
