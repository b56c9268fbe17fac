"""A directory of runs, analysed, written and printed: the one sequence behind
``distillmeter report RUNS_DIR`` and the end of ``distillmeter run``.

:func:`report_runs` analyses (``analysis.directory``), reads the saved forecast once,
writes summary.json, summary.csv and report.html (each atomically), then prints the
summary tables, forecast vs measured, the files written and, last, the verdict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from distillmeter.analysis.breakeven import DEFAULT_MIN_Q
from distillmeter.analysis.directory import analyse_dir, forecast_check
from distillmeter.analysis.result import Analysis
from distillmeter.analysis.summary import summary_csv, summary_dict
from distillmeter.protocol import ProtocolError
from distillmeter.render.console import print_summary
from distillmeter.render.forecast_tables import print_check
from distillmeter.render.html import render_html
from distillmeter.render.timeline import run_power_series
from distillmeter.render.verdict_text import print_verdict
from distillmeter.storage.atomic import write_atomic
from distillmeter.terminal import get_console, printable


def timelines(a: Analysis, max_points: int = 300) -> dict:
    """Each run's downsampled power per device, read from its trace.csv (runs whose trace
    cannot be read are left out; the page says which)."""
    out = {}
    for r in a.runs:
        path = Path(a.run_paths[r.run_id]) if r.run_id in a.run_paths else None
        if path is None or not (path / "trace.csv").exists():
            continue
        try:
            out[r.run_id] = run_power_series(path, max_points)
        except ProtocolError:
            continue
    return out


def write_outputs(a: Analysis, runs_dir: Path, check: dict[str, Any] | None
                  ) -> dict[str, Path]:
    """Write summary.json, summary.csv and report.html into ``runs_dir`` (with forecast vs
    measured, ``check``, when a forecast was saved there)."""
    summary = summary_dict(a, str(runs_dir))
    if check is not None:
        summary["forecast_check"] = check
    paths = {"json": runs_dir / "summary.json", "csv": runs_dir / "summary.csv",
             "html": runs_dir / "report.html"}
    write_atomic(paths["json"], json.dumps(summary, indent=2) + "\n")
    write_atomic(paths["csv"], summary_csv(summary))
    html = render_html(a, timelines=timelines(a), floors=a.floors,
                       runs_dir=str(runs_dir), forecast_check=check)
    write_atomic(paths["html"], html)
    return paths


def report_runs(runs_dir: Path, console: Console | None = None, *, browser_hint: bool = False,
                amortize: float = 1.0, grid: float | None = None, pue: float | None = None,
                baseline_method: str | None = None, with_sensitivity: bool = True,
                min_q: float = DEFAULT_MIN_Q, country: str | None = None
                ) -> tuple[Analysis, dict[str, Path]]:
    """Analyse every run below ``runs_dir``, write its outputs and print them; returns the
    analysis and the files written. ``browser_hint``: name report.html first, to open."""
    console = console or get_console()
    a = analyse_dir(runs_dir, amortize=amortize, grid=grid, pue=pue,
                    baseline_method=baseline_method, with_sensitivity=with_sensitivity,
                    min_q=min_q, country=country)
    check = forecast_check(runs_dir, a)
    paths = write_outputs(a, runs_dir, check)
    print_summary(a, console)
    if check is not None:  # `estimate --save RUNS_DIR` made a forecast for these runs
        print_check(check, console)
    if browser_hint:
        wrote = f"wrote {paths['html']} (open it in a browser), {paths['json']}, {paths['csv']}"
    else:
        wrote = "wrote " + ", ".join(str(p) for p in paths.values())
    console.print(printable(wrote), markup=False, highlight=False)
    print_verdict(a, console)
    return a, paths
