"""Protocol v1's names and constants: schema ids, the run directory's file names (and its
rank directories), trace
columns, sides and standard stages, device sources, event kinds; device and stage name
checks; ProtocolError."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

SCHEMA = "distillmeter/1"
REPORT_SCHEMA = "distillmeter.report/1"

CONFIG_FILE = "config.yaml"
ENVIRONMENT_FILE = "environment.json"
LEDGER_FILE = "ledger.jsonl"
TRACE_FILE = "trace.csv"
REPORT_FILE = "report.json"
ARTIFACTS_DIR = "artifacts"
RANKS_DIR = "ranks"  # RUN_DIR/ranks/rank<k>/: what each rank of a multi-process run metered
RANK_FILE = "rank.json"  # in each rank directory: its clock anchors, host and devices
_RANK_RE = re.compile(r"^rank(\d+)$")

TRACE_COLUMNS = ("t", "device", "energy_j", "power_w")

SIDES = ("setup", "teacher", "student", "eval")
STANDARD_STAGES = (
    "setup.idle",
    "setup.load",
    "teacher.train",
    "teacher.generate",
    "teacher.logits",
    "eval.teacher",
    "student.train",
    "eval.load",
    "eval.student",
)

# The meter's own stages: measuring, not the workload's work. ``setup.idle`` is the idle
# baseline measured at start (energy/idle_baseline.py). Accounting keeps their energy in the run's
# stages and total and names it ``totals.meter_overhead_j``; every figure of the workload
# (per student, per method, verdict, rules, plan, forecasts) leaves it out.
METER_STAGES = frozenset({"setup.idle"})

Source = Literal["nvml_counter", "nvml_instant", "rapl", "estimate"]
SOURCES: tuple[str, ...] = ("nvml_counter", "nvml_instant", "rapl", "estimate")
# Sources that come from a model rather than a counter or a sensor reading.
ESTIMATED_SOURCES = frozenset({"estimate"})

EVENTS = (
    "run_start",
    "run_labels",
    "idle_baseline",
    "stage_start",
    "stage_end",
    "quality",
    "warning",
    "run_end",
)

# \Z, not $: '$' also matches before a final newline ("student.x\n" would pass)
_DEVICE_RE = re.compile(r"^(gpu|cpu|dram):(\d+)\Z")
_STAGE_RE = re.compile(r"^(setup|teacher|student|eval)\.[A-Za-z0-9_][A-Za-z0-9_.\-]*\Z")


class ProtocolError(ValueError):
    """A run directory file that does not follow the protocol. The message names the file
    and, where it applies, the line."""


def parse_device(device: str) -> tuple[str, int]:
    """Split ``"gpu:0"`` into ``("gpu", 0)``; raise ProtocolError for anything else."""
    m = _DEVICE_RE.match(device)
    if not m:
        raise ProtocolError(
            f"unknown device {device!r}: expected gpu:<index>, cpu:<socket> or dram:<socket>"
        )
    return m.group(1), int(m.group(2))


def is_device(device: str) -> bool:
    """True when ``device`` is a valid protocol device name."""
    return bool(_DEVICE_RE.match(device))


def check_stage_name(name: str) -> str:
    """Return ``name`` if it is a valid dotted stage name, else raise ValueError."""
    if not isinstance(name, str) or not _STAGE_RE.match(name):
        raise ValueError(
            f"invalid stage name {name!r}: stage names are <side>.<what> with side one of "
            f"{', '.join(SIDES)} (for example 'student.train')"
        )
    return name


def stage_side(name: str) -> str:
    """The side of a dotted stage name: ``"teacher.logits"`` -> ``"teacher"``."""
    return check_stage_name(name).split(".", 1)[0]


def format_validation_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = []
        for err in errors():
            loc = ".".join(str(x) for x in err.get("loc", ())) or "(event)"
            parts.append(f"{loc}: {err.get('msg')}")
        return "; ".join(parts)
    return str(exc)


def rank_dirs(run_dir: Path | str) -> list[tuple[int, Path]]:
    """``(rank, RUN_DIR/ranks/rank<k>)`` for every rank directory holding a ledger."""
    root = Path(run_dir) / RANKS_DIR
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = _RANK_RE.match(p.name)
        if m and (p / LEDGER_FILE).is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def has_ranks(run_dir: Path | str) -> bool:
    """True when ``run_dir`` is a multi-process run (it has ``ranks/rank<k>/ledger.jsonl``)."""
    return bool(rank_dirs(run_dir))
