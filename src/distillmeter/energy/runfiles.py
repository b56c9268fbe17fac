"""The run directory's files as the meter writes them: the ledger and trace it appends to
(``MeterFiles``), config.yaml, environment.json, and crash repair on resume."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from distillmeter.energy.environment import snapshot
from distillmeter.errors import OutputError, output_error, writing
from distillmeter.privacy.redact import redact_values
from distillmeter.protocol import (
    CONFIG_FILE,
    ENVIRONMENT_FILE,
    LEDGER_FILE,
    TRACE_FILE,
    TRACE_HEADER,
)


class MeterFiles:
    """The two files a running meter appends to.

    ``ledger.jsonl`` is opened unbuffered: each line goes to the file in one write call and
    is fsynced, so nothing is left in a buffer to be flushed (half) later. Once a line
    cannot be written (a full disk) nothing more is appended: the ledger holds every event
    before it, and at most that line cut short, which readers drop and a resume cuts.
    ``trace.csv`` is buffered (the sampler's rows, flushed about once a second); once it
    cannot be written it is left alone, and the run goes on with boundary readings."""

    def __init__(self, run_dir: Path) -> None:
        self.ledger_path, self.trace_path = run_dir / LEDGER_FILE, run_dir / TRACE_FILE
        self.ledger: Any = None
        self.trace: Any = None
        self.ledger_error: OutputError | None = None
        self.trace_failed = False

    def open(self) -> None:
        with writing(self.ledger_path):
            self.ledger = open(self.ledger_path, "ab", buffering=0)
        with writing(self.trace_path):
            if self.trace_path.exists() and self.trace_path.stat().st_size > 0:
                trim_partial_line(self.trace_path)
                self.trace = open(self.trace_path, "a", encoding="utf-8")
            else:
                self.trace = open(self.trace_path, "w", encoding="utf-8")
                self.trace.write(TRACE_HEADER)
                self.trace.flush()

    def append(self, line: str) -> None:
        """Write one ledger line (with its newline) and fsync it; OutputError if it cannot
        be, now and for every later line."""
        if self.ledger_error is not None:
            raise OutputError(self.ledger_error.errno, self.ledger_path)
        data = line.encode("utf-8")
        try:
            while data:
                data = data[self.ledger.write(data):]
            os.fsync(self.ledger.fileno())
        except OSError as exc:
            err = output_error(exc, self.ledger_path)
            if err is None:
                raise
            self.ledger_error = err
            raise err from exc

    def flush_trace(self) -> OutputError | None:
        """Flush the trace's rows; the OutputError the first time they cannot be written."""
        if self.trace is None or self.trace.closed or self.trace_failed:
            return None
        try:
            self.trace.flush()
        except OSError as exc:
            err = self.trace_error(exc)
            if err is None:
                raise
            return err
        return None

    def trace_error(self, exc: BaseException) -> OutputError | None:
        """``exc``, met writing the trace, as an OutputError naming it (the trace is then
        left alone), or None when it is another kind of failure."""
        err = output_error(exc, self.trace_path)
        self.trace_failed |= err is not None
        return err

    def close(self) -> None:
        for f in (self.trace, self.ledger):
            if f is not None and not f.closed:
                try:
                    f.close()
                except OSError:  # its last rows cannot be written (a full disk): said already
                    pass


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """``config.yaml`` (plain YAML; secret-looking values redacted), unless one exists."""
    path = run_dir / CONFIG_FILE
    if path.exists():
        return
    plain = json.loads(json.dumps(config, default=str))
    with writing(path):
        path.write_text(yaml.safe_dump(redact_values(plain), sort_keys=False), encoding="utf-8")


def write_environment(run_dir: Path, sensors: Sequence[Any], notes: Sequence[str]) -> None:
    """``environment.json``, unless one exists (a resumed run keeps its first)."""
    path = run_dir / ENVIRONMENT_FILE
    if path.exists():
        return
    env = snapshot(sensors, notes=notes)
    with writing(path):
        path.write_text(json.dumps(env, indent=2, default=str) + "\n", encoding="utf-8")


def trim_partial_line(path: Path) -> bool:
    """Cut a last line that a crash left without its newline. True if one was cut."""
    with writing(path), open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return False
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return False
        pos = max(0, size - 65536)
        f.seek(pos)
        tail = f.read()
        f.truncate(pos + tail.rfind(b"\n") + 1)
        return True




def _trace_tail(path: Path) -> list[str]:
    """The trace's last rows (its last 64 KiB), header excluded when it is in there."""
    if not path.exists():
        return []
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - 65536))
        lines = f.read().decode("utf-8", "replace").splitlines()
    return lines[1:]


def last_trace_energy(path: Path) -> dict[str, float]:
    """Each device's last energy counter value among a trace's last rows."""
    out: dict[str, float] = {}
    for line in _trace_tail(path):
        parts = line.split(",")
        if len(parts) != 4 or not parts[2]:
            continue
        try:
            out[parts[1]] = float(parts[2])
        except ValueError:
            continue
    return out


def last_trace_t(path: Path) -> float:
    """The largest ``t`` among a trace's last rows (0 if none): a resumed run's clock
    starts after it so the trace stays in time order."""
    best = 0.0
    for line in _trace_tail(path):
        try:
            best = max(best, float(line.split(",", 1)[0]))
        except ValueError:
            continue
    return best
