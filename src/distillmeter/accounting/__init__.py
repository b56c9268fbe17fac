"""distillmeter.accounting: pure functions from a run directory's raw files to its report.

``account(run_dir, ...)`` builds a ``protocol.Report``; ``write_report`` writes it as
``RUN_DIR/report.json``. The pieces are public for reuse (the analysis re-accounts runs
with shifted boundaries, for example):

- ``windows``: stage windows from the ledger, and shifting them;
- ``series``: a device's trace as arrays and its cumulative energy functions;
- ``energy``: a device's energy over a window or over the whole run;
- ``uncertainty``: the error model, with its justification;
- ``idle``, ``carbon``, ``upstream``, ``hardware``.
"""

from distillmeter.accounting.carbon import carbon, cost, grid_intensity, grid_table
from distillmeter.accounting.core import (
    account,
    load_inputs,
    run_energy,
    stage_report,
    write_report,
)
from distillmeter.accounting.idle import idle_power, measured_idle_w
from distillmeter.accounting.windows import StageWindow, shift_windows, stage_windows

__all__ = [
    "StageWindow",
    "account",
    "carbon",
    "cost",
    "grid_intensity",
    "grid_table",
    "idle_power",
    "load_inputs",
    "measured_idle_w",
    "run_energy",
    "shift_windows",
    "stage_report",
    "stage_windows",
    "write_report",
]
