"""The hardware summary a report carries, from the run's ``environment.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distillmeter.protocol import ENVIRONMENT_FILE

# Keys of environment.json that describe the machine (the rest is software and settings).
HARDWARE_KEYS = (
    "gpus", "gpu", "gpu_names", "gpu_count", "nvidia_driver", "driver_version", "cuda",
    "cpu", "cpu_model", "cpu_count", "cpu_sockets", "cpu_tdp_w", "memory_gb", "ram_gb",
    "platform", "machine", "accelerator", "node",
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
