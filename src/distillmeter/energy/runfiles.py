"""The run directory's side files: config.yaml, environment.json, crash repair on resume."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from distillmeter.energy.environment import redact_values, snapshot
from distillmeter.protocol import CONFIG_FILE, ENVIRONMENT_FILE


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """``config.yaml`` (plain YAML; secret-looking values redacted), unless one exists."""
    path = run_dir / CONFIG_FILE
    if path.exists():
        return
    plain = json.loads(json.dumps(config, default=str))
    path.write_text(yaml.safe_dump(redact_values(plain), sort_keys=False), encoding="utf-8")


def write_environment(run_dir: Path, sensors: Sequence[Any], notes: Sequence[str]) -> None:
    """``environment.json``, unless one exists (a resumed run keeps its first)."""
    path = run_dir / ENVIRONMENT_FILE
    if path.exists():
        return
    env = snapshot(sensors, notes=notes)
    path.write_text(json.dumps(env, indent=2, default=str) + "\n", encoding="utf-8")


def trim_partial_line(path: Path) -> bool:
    """Cut a last line that a crash left without its newline. True if one was cut."""
    with open(path, "rb+") as f:
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
