"""The most power a device of each class can draw (``data/device_limits.json``, each limit
with its basis, source and year): the bound beyond which a figure is impossible."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from distillmeter.protocol import parse_device

LIMITS_FILE = "data/device_limits.json"
# A window's boundary readings can each be one sensor update period (0.1 s) stale, so a
# window of s seconds may hold up to (s + 2 x 0.1 s) x the device's power.
WINDOW_SLACK_S = 0.2
_CLASS_NAMES = {"gpu": "GPU", "cpu": "CPU package", "dram": "DRAM domain"}


@lru_cache(maxsize=1)
def device_limits() -> dict[str, dict[str, Any]]:
    """``{class: {max_w, basis, source, year}}`` for ``gpu``, ``cpu`` and ``dram``."""
    text = resources.files("distillmeter").joinpath(LIMITS_FILE).read_text("utf-8")
    return json.loads(text)["limits"]


def max_power_w(device: str, speed: float = 1.0) -> float:
    """The most ``device`` (``gpu:N``, ``cpu:N``, ``dram:N``) can draw, in watts, on the
    meter's clock: a recorded trace replayed ``speed`` times faster (``ReplaySensor``)
    delivers its energy in 1/``speed`` of the time."""
    kind, _ = parse_device(device)
    return float(device_limits()[kind]["max_w"]) * max(speed, 1.0)


def limit_phrase(device: str, speed: float = 1.0) -> str:
    """``"2800 W, the most a GPU can draw (data/device_limits.json)"``."""
    kind, _ = parse_device(device)
    replay = f", x{speed:g} for a trace replayed {speed:g} times faster" if speed > 1 else ""
    return (f"{max_power_w(device, speed):g} W, the most a {_CLASS_NAMES.get(kind, kind)} "
            f"can draw ({LIMITS_FILE}{replay})")


def window_limit_j(device: str, seconds: float, speed: float = 1.0) -> float:
    """The most energy ``device`` can hold in a window of ``seconds``."""
    return max_power_w(device, speed) * (max(seconds, 0.0) + WINDOW_SLACK_S)
