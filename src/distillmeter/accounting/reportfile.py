"""Writing ``RUN_DIR/report.json``: validated, atomically."""

from __future__ import annotations

from pathlib import Path

from distillmeter.protocol import REPORT_FILE, ProtocolError, Report
from distillmeter.storage.atomic import write_atomic


def write_report(run_dir: Path | str, report: Report) -> Path:
    """Write ``RUN_DIR/report.json`` atomically (temp file + rename), after checking that
    it reads back as a valid ``protocol.Report``. Returns the path written."""
    run_dir = Path(run_dir)
    text = report.to_json()
    try:
        Report.model_validate_json(text)
    except Exception as exc:  # a bug here, not a user mistake: say what failed
        raise ProtocolError(f"refusing to write an invalid report for {run_dir}: {exc}") from None
    return write_atomic(run_dir / REPORT_FILE, text + "\n")
