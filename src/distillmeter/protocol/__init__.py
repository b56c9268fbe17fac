"""Accounting protocol v1: the run directory's file formats, in one place.

The writers (``distillmeter.energy``) and the readers (``distillmeter.accounting``) both
import this package, so a format lives here and nowhere else: ``names`` (file names,
stage and device names, constants), ``ledger`` (ledger.jsonl), ``trace`` (trace.csv),
``report`` (report.json). Everything public is importable from here (merging the ranks of a
multi-process run is measuring: ``energy.merge``).
See DESIGN.md, "Accounting protocol v1".

Readers never raise a bare parsing exception on user files: they raise
:class:`ProtocolError` naming the file and line, or return what could be read together with
warnings (a ledger whose last line was cut mid-write is read up to it).
"""

from __future__ import annotations

from distillmeter.protocol.ledger import (
    EVENT_MODELS,
    IdleBaseline,
    Ledger,
    QualityEvent,
    RunEnd,
    RunStart,
    StageEnd,
    StageStart,
    UpstreamRef,
    WarningEvent,
    event_line,
    parse_ledger_lines,
    read_ledger,
)
from distillmeter.protocol.names import (
    ARTIFACTS_DIR,
    CONFIG_FILE,
    ENVIRONMENT_FILE,
    ESTIMATED_SOURCES,
    EVENTS,
    LEDGER_FILE,
    METER_STAGES,
    RANK_FILE,
    RANKS_DIR,
    REPORT_FILE,
    REPORT_SCHEMA,
    SCHEMA,
    SIDES,
    SOURCES,
    STANDARD_STAGES,
    TRACE_COLUMNS,
    TRACE_FILE,
    ProtocolError,
    Source,
    check_stage_name,
    has_ranks,
    is_device,
    parse_device,
    rank_dirs,
    stage_side,
)
from distillmeter.protocol.report_json import (
    Carbon,
    Cost,
    Flag,
    Quality,
    Report,
    StageReport,
    Totals,
    load_report,
)
from distillmeter.protocol.trace import (
    TRACE_HEADER,
    Trace,
    parse_trace_lines,
    read_trace,
    trace_row,
)

__all__ = [
    "ARTIFACTS_DIR", "CONFIG_FILE", "ENVIRONMENT_FILE", "ESTIMATED_SOURCES", "EVENTS",
    "EVENT_MODELS", "Flag", "LEDGER_FILE", "METER_STAGES", "RANK_FILE", "RANKS_DIR",
    "REPORT_FILE", "REPORT_SCHEMA",
    "SCHEMA", "SIDES",
    "SOURCES", "STANDARD_STAGES", "TRACE_COLUMNS", "TRACE_FILE", "TRACE_HEADER", "Carbon",
    "Cost", "IdleBaseline", "Ledger", "ProtocolError", "Quality", "QualityEvent", "Report",
    "RunEnd", "RunStart", "Source", "StageEnd", "StageReport", "StageStart", "Totals",
    "Trace", "UpstreamRef", "WarningEvent", "check_stage_name", "event_line", "has_ranks",
    "is_device", "rank_dirs",
    "load_report", "parse_device", "parse_ledger_lines", "parse_trace_lines", "read_ledger",
    "read_trace", "stage_side", "trace_row",
]
