"""A run's power over time, downsampled for plotting.

The downsampling is done while accounting streams the trace (``accounting/plotseries.py``):
a plot of a run that was just accounted costs no second read of its trace.
"""

from __future__ import annotations

from pathlib import Path

from distillmeter.accounting.plotseries import downsample, power_from_counter
from distillmeter.accounting.scan import run_trace, scan_trace
from distillmeter.accounting.series import Probes
from distillmeter.protocol import TRACE_FILE, Trace

Series = dict[str, tuple[list[float], list[float]]]

__all__ = ["downsample", "power_from_counter", "power_series", "run_power_series"]


def power_series(trace: Trace, max_points: int = 300) -> Series:
    """Each device's downsampled power from a trace in memory: its power column, else
    power from its counter."""
    return scan_trace(trace, Probes(plot_points=max_points)).plot()


def run_power_series(run_dir: Path | str, max_points: int = 300) -> Series:
    """The same for a run directory's trace.csv, streamed (or taken from the pass that
    accounted it)."""
    return run_trace(Path(run_dir) / TRACE_FILE, Probes(plot_points=max_points)).plot()
