"""``trace.csv``: the sampled readings (``t,device,energy_j,power_w``), the row writer
(``trace_row``, ``TRACE_HEADER``) and the reader (``read_trace``)."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from distillmeter.protocol.names import TRACE_COLUMNS, TRACE_FILE, ProtocolError, is_device


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
