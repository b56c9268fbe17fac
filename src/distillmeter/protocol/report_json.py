"""``report.json`` (schema ``distillmeter.report/1``): the models and the reader
(``load_report``). The report is written by ``distillmeter.accounting``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from distillmeter.protocol.names import (
    REPORT_FILE,
    REPORT_SCHEMA,
    ProtocolError,
    format_validation_error,
)


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
    # how uncertainty_j splits (accounting/uncertainty.py): "random" (boundary quantisation
    # and faults, independent between runs), "systematic" (an estimate's or an integral's
    # model error for this work: does not shrink with repeats) and "machine" (the part of
    # an estimate that is a machine constant x time: shared by every run on the machine)
    uncertainty_parts: dict[str, float] = {}
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
    uncertainty_parts: dict[str, float] = {}  # as StageReport's
    upstream_j: float = 0.0
    with_upstream_j: float
    by_side: dict[str, float]
    by_device: dict[str, float] = {}
    tokens: int = 0
    # the meter's own stages (names.METER_STAGES: its idle measurement), inside stages_j
    # and by_side["setup"]; workload_j = energy_j - meter_overhead_j is the run's work.
    # None in reports written before these fields (readers then sum the meter's stages)
    meter_overhead_j: float = 0.0
    meter_overhead_s: float = 0.0
    workload_j: float | None = None
    workload_with_upstream_j: float | None = None


class Flag(BaseModel):
    """A figure accounting found impossible, or work it could not read (docs/accounting.md,
    "Impossible figures"). ``kind`` ``impossible``: a number that cannot be real (the run's
    status becomes ``impossible`` and the analysis across runs leaves the run out, naming
    it); ``incomplete``: work the run needs is missing (an upstream teacher run that
    cannot be read): its totals are lower bounds, shown as such everywhere."""

    model_config = ConfigDict(extra="allow")
    kind: str
    code: str
    message: str
    stage: str | None = None
    device: str | None = None


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
    idle_uncertainty_w: dict[str, float] = {}  # +- watts of each idle baseline
    stages: list[StageReport]
    upstream: list[StageReport] = []
    totals: Totals
    carbon: Carbon
    cost: Cost
    quality: Quality | None = None
    estimated: bool = False
    status: str = "ok"
    warnings: list[str] = []
    flags: list[Flag] = []  # impossible figures and missing upstream work (Flag)
    # the independent check of the run total: counter vs trace integral, per device
    conservation: list[dict[str, Any]] = []

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
        raise ProtocolError(f"{path}: invalid report: {format_validation_error(exc)}") from None
