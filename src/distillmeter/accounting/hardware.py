"""The hardware summary a report carries, from the run's ``environment.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distillmeter.protocol import ENVIRONMENT_FILE

# Keys of environment.json that describe the machine (the rest is software and settings);
# the meter's snapshot (energy/environment.py) writes cpu, memory_bytes, gpus, gpu_driver
# and nvml_version; the others are accepted from hand-written or older files.
HARDWARE_KEYS = (
    "cpu", "memory_bytes", "gpus", "gpu_driver", "nvml_version",
    "gpu", "gpu_names", "gpu_count", "cpu_model", "cpu_count", "memory_gb", "machine", "node",
)


def read_hardware(run_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """(hardware summary, warnings). The environment's ``hardware`` section when it has
    one, else its machine-describing keys. A missing or unreadable file is a warning."""
    path = run_dir / ENVIRONMENT_FILE
    if not path.exists():
        return {}, [f"{path}: missing; the report names no hardware"]
    try:
        env = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {}, [f"{path}: unreadable ({exc}); the report names no hardware"]
    if not isinstance(env, dict):
        return {}, [f"{path}: not a JSON object; the report names no hardware"]
    if isinstance(env.get("hardware"), dict):
        return dict(env["hardware"]), []
    return {k: env[k] for k in HARDWARE_KEYS if k in env}, []


def replay_speeds(run_dir: Path) -> dict[str, float]:
    """``{device: speed}`` for the devices a replayed trace fed faster than recorded
    (environment.json's ``sensors`` of kind ``replay``): their power on the meter's clock is
    ``speed`` times the recording's, which the impossible-figure checks allow for."""
    try:
        env = json.loads((run_dir / ENVIRONMENT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out: dict[str, float] = {}
    sensors = env.get("sensors") if isinstance(env, dict) else None
    for s in sensors if isinstance(sensors, list) else []:
        if not isinstance(s, dict) or s.get("kind") != "replay":
            continue
        speed = s.get("speed")
        if isinstance(speed, (int, float)) and speed > 1 and isinstance(s.get("devices"), list):
            out.update({str(d): float(speed) for d in s["devices"]})
    return out
