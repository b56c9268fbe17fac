"""Writing ``RUN_DIR/report.json``: validated, atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from distillmeter.errors import cannot_write
from distillmeter.protocol import REPORT_FILE, ProtocolError, Report


def write_report(run_dir: Path | str, report: Report) -> Path:
    """Write ``RUN_DIR/report.json`` atomically (temp file + rename), after checking that
    it reads back as a valid ``protocol.Report``. Returns the path written."""
    run_dir = Path(run_dir)
    text = report.to_json()
    try:
        Report.model_validate_json(text)
    except Exception as exc:  # a bug here, not a user mistake: say what failed
        raise ProtocolError(f"refusing to write an invalid report for {run_dir}: {exc}") from None
    target = run_dir / REPORT_FILE
    try:
        fd, tmp = tempfile.mkstemp(prefix=".report.", suffix=".tmp", dir=run_dir)
    except OSError as exc:
        raise cannot_write(exc, target) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is meant to be shared
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise cannot_write(exc, target) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
