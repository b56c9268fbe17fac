"""``ledger.jsonl``: the typed events, the line writer (``event_line``) and the reader
(``read_ledger``), which reads a ledger cut mid-line by a crash up to the cut."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from distillmeter.protocol.names import (
    LEDGER_FILE,
    ProtocolError,
    format_validation_error,
)


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


class RunLabels(_Event):
    """``run_labels``: labels learnt after ``run_start`` was written (a Trainer callback
    starts metering before the model exists, and learns the seed and the model's size when
    training begins). :attr:`Ledger.run_start` applies them: a field given here replaces
    run_start's, ``labels`` are merged in, later events win."""

    event: Literal["run_labels"] = "run_labels"
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
    # Set when the baseline came from the meter's idle cache instead of being measured in
    # this run: {"measured_at": ISO 8601, "age_s": seconds since, "path": the cache file}.
    cached: dict[str, Any] | None = None


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
    # incomplete: written by a resumed meter for a stage a crash left open (energy/resume.py)
    status: Literal["ok", "failed", "incomplete"] = "ok"
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
    "run_labels": RunLabels,
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

    def of(self, kind: str) -> list[Any]:
        """Events of one kind, in file order."""
        return [e for e in self.events if e.event == kind]

    @property
    def run_start(self) -> RunStart:
        """The first ``run_start``, with any later ``run_labels`` events applied."""
        starts = self.of("run_start")
        if not starts:
            raise ProtocolError(f"{self.path}: no run_start event")
        updates = self.of("run_labels")
        if not updates:
            return starts[0]
        merged = starts[0].model_copy(deep=True)
        for u in updates:
            for key in ("method", "seed", "config_id", "task"):
                if getattr(u, key) is not None:
                    setattr(merged, key, getattr(u, key))
            merged.labels = {**merged.labels, **u.labels}
        return merged

    @property
    def run_end(self) -> RunEnd | None:
        ends = self.of("run_end")
        return ends[-1] if ends else None


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
                f"{path}:{lineno}: bad {kind} event: {format_validation_error(exc)}"
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
