"""Accounting protocol v1: the run directory's file formats, in one place.

The writers (``distillmeter.energy``) and the readers (``distillmeter.accounting``) both
import this module, so a format lives here and nowhere else. See DESIGN.md, "Accounting
protocol v1".

Readers never raise a bare parsing exception on user files: they raise
:class:`ProtocolError` naming the file and line, or return what could be read together with
warnings (a ledger whose last line was cut mid-write is read up to it).
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA = "distillmeter/1"
REPORT_SCHEMA = "distillmeter.report/1"

CONFIG_FILE = "config.yaml"
ENVIRONMENT_FILE = "environment.json"
LEDGER_FILE = "ledger.jsonl"
TRACE_FILE = "trace.csv"
REPORT_FILE = "report.json"
ARTIFACTS_DIR = "artifacts"

TRACE_COLUMNS = ("t", "device", "energy_j", "power_w")

SIDES = ("setup", "teacher", "student", "eval")
STANDARD_STAGES = (
    "setup.load",
    "teacher.train",
    "teacher.generate",
    "teacher.logits",
    "eval.teacher",
    "student.train",
    "eval.student",
)

Source = Literal["nvml_counter", "nvml_instant", "rapl", "estimate"]
SOURCES: tuple[str, ...] = ("nvml_counter", "nvml_instant", "rapl", "estimate")
# Sources that come from a model rather than a counter or a sensor reading.
ESTIMATED_SOURCES = frozenset({"estimate"})

EVENTS = (
    "run_start",
    "idle_baseline",
    "stage_start",
    "stage_end",
    "quality",
    "warning",
    "run_end",
)

_DEVICE_RE = re.compile(r"^(gpu|cpu|dram):(\d+)$")
_STAGE_RE = re.compile(r"^(setup|teacher|student|eval)\.[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class ProtocolError(ValueError):
    """A run directory file that does not follow the protocol. The message names the file
    and, where it applies, the line."""


# --------------------------------------------------------------------------- names


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


# --------------------------------------------------------------------------- ledger


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow")
    event: str
    t: float


class UpstreamRef(BaseModel):
    """A teacher-side run whose stages a student run uses (DESIGN: shared teacher work)."""

    model_config = ConfigDict(extra="allow")
    run_id: str
    run_dir: str
    stages: list[str]


class RunStart(_Event):
    """``run_start``. ``sources`` maps each device to how it is read; ``method``, ``seed``,
    ``config_id`` and ``task`` label the run for analysis across runs."""

    event: Literal["run_start"] = "run_start"
    run_id: str
    wall_time: str
    devices: list[str]
    schema_: str = Field(alias="schema")
    readings: dict[str, float | None] = {}
    sources: dict[str, str] = {}
    upstream: list[UpstreamRef] = []
    method: str | None = None
    seed: int | None = None
    config_id: str | None = None
    task: str | None = None
    labels: dict[str, Any] = {}


class IdleBaseline(_Event):
    event: Literal["idle_baseline"] = "idle_baseline"
    device: str
    power_w: float
    seconds: float


class StageStart(_Event):
    event: Literal["stage_start"] = "stage_start"
    stage: str
    readings: dict[str, float | None] = {}


class StageEnd(_Event):
    event: Literal["stage_end"] = "stage_end"
    stage: str
    readings: dict[str, float | None] = {}
    tokens: int = 0
    samples: int = 0
    status: Literal["ok", "failed"] = "ok"
    error: str | None = None
    # What ran in the stage, for the analysis (e.g. params, batch_size, backend).
    info: dict[str, Any] = {}


class QualityEvent(_Event):
    """``quality``: the run's quality figure (a protocol extension used by the pipelines)."""

    event: Literal["quality"] = "quality"
    metric: str
    value: float
    n: int
    details: dict[str, Any] = {}


class WarningEvent(_Event):
    """``warning``: something the meter noticed (a sensor fault, a contaminating process)."""

    event: Literal["warning"] = "warning"
    message: str
    device: str | None = None
    stage: str | None = None


class RunEnd(_Event):
    event: Literal["run_end"] = "run_end"
    readings: dict[str, float | None] = {}
    status: str = "ok"


EVENT_MODELS: dict[str, type[_Event]] = {
    "run_start": RunStart,
    "idle_baseline": IdleBaseline,
    "stage_start": StageStart,
    "stage_end": StageEnd,
    "quality": QualityEvent,
    "warning": WarningEvent,
    "run_end": RunEnd,
}


def event_line(event: dict[str, Any]) -> str:
    """Serialise one ledger event as a JSON line (no trailing newline). Non-finite floats
    are written as null, since JSON has no NaN."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(event), separators=(", ", ": "))


@dataclass
class Ledger:
    """A parsed ledger: typed events in file order and what went wrong reading it."""

    path: Path
    events: list[_Event] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    truncated: bool = False
    # 1-based line number of each event in ``events`` (same order), so that readers can
    # name the line when an event's content is inconsistent.
    lines: list[int] = field(default_factory=list)

    def line_of(self, event: Any) -> int | None:
        """The ledger line an event was read from (None if it was not read from a file)."""
        for ev, lineno in zip(self.events, self.lines, strict=False):
            if ev is event:
                return lineno
        return None

    def of(self, kind: str) -> list[Any]:
        """Events of one kind, in file order."""
        return [e for e in self.events if e.event == kind]

    @property
    def run_start(self) -> RunStart:
        starts = self.of("run_start")
        if not starts:
            raise ProtocolError(f"{self.path}: no run_start event")
        return starts[0]

    @property
    def run_end(self) -> RunEnd | None:
        ends = self.of("run_end")
        return ends[-1] if ends else None


def _format_validation_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = []
        for err in errors():
            loc = ".".join(str(x) for x in err.get("loc", ())) or "(event)"
            parts.append(f"{loc}: {err.get('msg')}")
        return "; ".join(parts)
    return str(exc)


def parse_ledger_lines(lines: Iterable[str], path: Path | str = LEDGER_FILE) -> Ledger:
    """Parse ledger lines. A malformed last line (a crash mid-write) is dropped with a
    warning; a malformed line elsewhere raises ProtocolError naming the line."""
    path = Path(path)
    ledger = Ledger(path=path)
    raw = list(lines)
    # A file that ends without a newline was cut mid-write if its last line does not parse.
    last_idx = max((i for i, s in enumerate(raw) if s.strip()), default=-1)
    for i, line in enumerate(raw):
        lineno = i + 1
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            if i == last_idx:
                ledger.truncated = True
                ledger.warnings.append(
                    f"{path}:{lineno}: last line is cut off (a crash mid-write?); "
                    "read up to it"
                )
                break
            raise ProtocolError(f"{path}:{lineno}: not valid JSON ({exc})") from None
        kind = obj.get("event")
        model = EVENT_MODELS.get(kind) if isinstance(kind, str) else None
        if model is None:
            ledger.warnings.append(f"{path}:{lineno}: unknown event {kind!r} ignored")
            continue
        try:
            ev = model.model_validate(obj)
        except Exception as exc:  # pydantic.ValidationError
            if i == last_idx and not line.endswith("\n"):
                ledger.truncated = True
                ledger.warnings.append(
                    f"{path}:{lineno}: last line is incomplete; read up to it"
                )
                break
            raise ProtocolError(
                f"{path}:{lineno}: bad {kind} event: {_format_validation_error(exc)}"
            ) from None
        if not math.isfinite(ev.t):
            raise ProtocolError(f"{path}:{lineno}: t is not a finite number")
        ledger.events.append(ev)
        ledger.lines.append(lineno)
    if not ledger.events:
        raise ProtocolError(f"{path}: the ledger holds no events")
    if ledger.events[0].event != "run_start":
        raise ProtocolError(f"{path}:1: the first event must be run_start")
    return ledger


def read_ledger(path: Path | str) -> Ledger:
    """Read and validate ``ledger.jsonl`` (or a run directory's ledger)."""
    path = Path(path)
    if path.is_dir():
        path = path / LEDGER_FILE
    if not path.exists():
        raise ProtocolError(f"{path}: no ledger (is this a distillmeter run directory?)")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ProtocolError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_ledger_lines(text.splitlines(keepends=True), path)


# --------------------------------------------------------------------------- trace


@dataclass
class Trace:
    """Samples per device, columns as arrays: ``t``, ``energy_j`` and ``power_w`` (NaN
    where empty), sorted by ``t``."""

    path: Path
    devices: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def series(self, device: str) -> dict[str, list[float]]:
        return self.devices.get(device, {"t": [], "energy_j": [], "power_w": []})


def _cell(value: str, path: Path, lineno: int, column: str) -> float:
    if value is None or value.strip() == "":
        return math.nan
    try:
        x = float(value)
    except ValueError:
        raise ProtocolError(
            f"{path}:{lineno}: column {column} is not a number ({value!r})"
        ) from None
    if not math.isfinite(x):
        raise ProtocolError(f"{path}:{lineno}: column {column} is not finite ({value!r})")
    return x


def parse_trace_lines(lines: Iterable[str], path: Path | str = TRACE_FILE) -> Trace:
    """Parse trace.csv text. The header must be exactly ``t,device,energy_j,power_w``. A
    cut-off last row is dropped with a warning; other bad rows raise ProtocolError."""
    path = Path(path)
    trace = Trace(path=path)
    rows = list(lines)
    if not rows:
        raise ProtocolError(f"{path}: empty trace (no header)")
    header = rows[0].strip().split(",")
    if tuple(h.strip() for h in header) != TRACE_COLUMNS:
        raise ProtocolError(
            f"{path}:1: header is {rows[0].strip()!r}, expected {','.join(TRACE_COLUMNS)}"
        )
    last = len(rows) - 1
    reader = csv.reader(rows[1:])
    unsorted: set[str] = set()
    for i, rec in enumerate(reader, start=2):
        if not rec:
            continue
        try:
            if len(rec) != 4:
                raise ProtocolError(f"{path}:{i}: expected 4 columns, found {len(rec)}")
            t = _cell(rec[0], path, i, "t")
            if math.isnan(t):
                raise ProtocolError(f"{path}:{i}: t is empty")
            dev = rec[1].strip()
            if not is_device(dev):
                raise ProtocolError(
                    f"{path}:{i}: unknown device {dev!r} (expected gpu:N, cpu:N or dram:N)"
                )
            e = _cell(rec[2], path, i, "energy_j")
            p = _cell(rec[3], path, i, "power_w")
        except ProtocolError:
            if i - 1 == last and not rows[-1].endswith("\n"):
                trace.warnings.append(f"{path}:{i}: last row is cut off; read up to it")
                break
            raise
        s = trace.devices.setdefault(dev, {"t": [], "energy_j": [], "power_w": []})
        if s["t"] and t < s["t"][-1]:
            unsorted.add(dev)
        s["t"].append(t)
        s["energy_j"].append(e)
        s["power_w"].append(p)
    for dev in unsorted:
        s = trace.devices[dev]
        order = sorted(range(len(s["t"])), key=s["t"].__getitem__)
        for k in ("t", "energy_j", "power_w"):
            s[k] = [s[k][j] for j in order]
        trace.warnings.append(f"{path}: samples of {dev} were out of time order; sorted")
    return trace


def read_trace(path: Path | str) -> Trace:
    """Read ``trace.csv`` (or a run directory's trace). A missing trace is an empty one."""
    path = Path(path)
    if path.is_dir():
        path = path / TRACE_FILE
    if not path.exists():
        t = Trace(path=path)
        t.warnings.append(f"{path}: no trace; energy comes from boundary readings only")
        return t
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ProtocolError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_trace_lines(text.splitlines(keepends=True), path)


def trace_row(t: float, device: str, energy_j: float | None, power_w: float | None) -> str:
    """One trace.csv row (with newline); None becomes an empty cell."""
    e = "" if energy_j is None else f"{energy_j:.3f}"
    p = "" if power_w is None else f"{power_w:.3f}"
    return f"{t:.6f},{device},{e},{p}\n"


TRACE_HEADER = ",".join(TRACE_COLUMNS) + "\n"


# --------------------------------------------------------------------------- report


class StageReport(BaseModel):
    """One stage's accounting. ``energy_j`` holds one entry per device plus ``total``."""

    model_config = ConfigDict(extra="allow")
    name: str
    side: str
    t_start: float
    t_end: float
    seconds: float
    energy_j: dict[str, float]
    active_energy_j: float
    uncertainty_j: float
    tokens: int = 0
    samples: int = 0
    j_per_token: float | None = None
    source: dict[str, str] = {}
    status: str = "ok"
    notes: list[str] = []
    info: dict[str, Any] = {}  # from stage_end.info: params, batch_size, backend ...
    run_id: str | None = None  # set on upstream stages: the run they were measured in


class Totals(BaseModel):
    """Run totals. ``energy_j`` is this run directory's own energy (first to last reading)
    and conserves: sum of stage totals + ``unattributed_j`` == ``energy_j``. ``by_side``
    counts upstream teacher stages in full; ``with_upstream_j`` adds them to the total."""

    model_config = ConfigDict(extra="allow")
    energy_j: float
    kwh: float
    seconds: float
    stages_j: float
    unattributed_j: float
    uncertainty_j: float
    upstream_j: float = 0.0
    with_upstream_j: float
    by_side: dict[str, float]
    by_device: dict[str, float] = {}
    tokens: int = 0


class Carbon(BaseModel):
    model_config = ConfigDict(extra="allow")
    grid_gco2_per_kwh: float
    grid_source: str
    country: str | None = None
    pue: float = 1.0
    co2e_g: float
    co2e_g_with_upstream: float | None = None


class Cost(BaseModel):
    model_config = ConfigDict(extra="allow")
    price_per_kwh: float | None = None
    currency: str = "USD"
    total: float | None = None
    total_with_upstream: float | None = None


class Quality(BaseModel):
    model_config = ConfigDict(extra="allow")
    metric: str
    value: float
    n: int
    details: dict[str, Any] = {}


class Report(BaseModel):
    """``report.json``, schema ``distillmeter.report/1``."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    schema_: str = Field(default=REPORT_SCHEMA, alias="schema")
    run_id: str
    run_dir: str | None = None
    wall_time: str | None = None
    method: str | None = None
    seed: int | None = None
    config_id: str | None = None
    task: str | None = None
    labels: dict[str, Any] = {}
    hardware: dict[str, Any] = {}
    devices: list[str] = []
    sources: dict[str, str] = {}
    idle_power_w: dict[str, float] = {}
    stages: list[StageReport]
    upstream: list[StageReport] = []
    totals: Totals
    carbon: Carbon
    cost: Cost
    quality: Quality | None = None
    estimated: bool = False
    status: str = "ok"
    warnings: list[str] = []

    def to_json(self) -> str:
        """The report as pretty JSON, with the ``schema`` key spelled as in the protocol."""
        return self.model_dump_json(by_alias=True, indent=2)


def load_report(path: Path | str) -> Report:
    """Read and validate a ``report.json`` (or a run directory's)."""
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_FILE
    if not path.exists():
        raise ProtocolError(f"{path}: no report.json (run `distillmeter account` first)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProtocolError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"{path}: not a JSON object")
    if data.get("schema") != REPORT_SCHEMA:
        raise ProtocolError(
            f"{path}: schema is {data.get('schema')!r}, expected {REPORT_SCHEMA!r}"
        )
    try:
        return Report.model_validate(data)
    except Exception as exc:
        raise ProtocolError(f"{path}: invalid report: {_format_validation_error(exc)}") from None
