"""The idle baseline: measured before work starts, or reused from a per-host cache.

Measuring idle power takes seconds of doing nothing (3 s by default), which doubles the
wall time of a short metered program. A host's idle draw changes slowly, so the meter keeps
the last measurement per host and device set in a small JSON file and reuses it while it is
fresh; the ``idle_baseline`` event then says so (``cached``: when it was measured and how
old it is).

The cache file: ``$DISTILLMETER_IDLE_CACHE`` if set (``off`` disables the cache), else
``$XDG_CACHE_HOME/distillmeter/idle.json``, else ``~/.cache/distillmeter/idle.json``.
An entry is keyed by the host's identity (host name, ``/etc/machine-id``, CPU model), the
metered devices with their sources, and the GPUs' UUIDs: another machine, another device
selection or a swapped GPU is measured afresh. Entries older than ``max_age_s`` (default
24 h, ``$DISTILLMETER_IDLE_MAX_AGE`` in seconds) are measured afresh too.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from distillmeter.energy.sensors.hostinfo import cpu_info
from distillmeter.errors import UserError
from distillmeter.storage.atomic import write_atomic

ENV_CACHE = "DISTILLMETER_IDLE_CACHE"
ENV_MAX_AGE = "DISTILLMETER_IDLE_MAX_AGE"
DEFAULT_MAX_AGE_S = 24 * 3600.0
IDLE_STAGE = "setup.idle"  # the stage a fresh measurement runs in
CACHE_SCHEMA = "distillmeter.idle-cache/1"
_OFF = ("", "0", "off", "no", "false", "none")

Reading = Callable[[], tuple[float, dict[str, float | None]]]


def default_cache_path() -> Path | None:
    """Where the idle cache lives (None: the user turned it off)."""
    value = os.environ.get(ENV_CACHE)
    if value is not None:
        return None if value.strip().lower() in _OFF else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "distillmeter" / "idle.json"


def default_max_age_s() -> float:
    """``$DISTILLMETER_IDLE_MAX_AGE`` (seconds), else 24 h."""
    try:
        value = float(os.environ.get(ENV_MAX_AGE, DEFAULT_MAX_AGE_S))
    except ValueError:
        return DEFAULT_MAX_AGE_S
    return value if value >= 0 else DEFAULT_MAX_AGE_S


def _machine_id() -> str | None:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            return Path(path).read_text(encoding="utf-8").strip() or None
        except OSError:
            continue
    return None


def host_identity(sensors: Sequence[Any], sources: dict[str, str]) -> dict[str, Any]:
    """What a cached baseline must match: host, CPU, metered devices and their sources,
    and the UUIDs of the GPUs (a swapped card is another device)."""
    gpus = {}
    for s in sensors:
        if getattr(s, "kind", None) == "nvml":
            gpus.update({g["device"]: g.get("uuid") for g in s.describe().get("gpus", [])})
    return {"host": socket.gethostname(), "machine_id": _machine_id(),
            "cpu": cpu_info().model, "devices": dict(sorted(sources.items())),
            "gpu_uuids": dict(sorted(gpus.items()))}


def identity_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class CachedIdle:
    """A baseline read back from the cache."""

    power_w: dict[str, float]
    seconds: float          # how long the original measurement was
    measured_at: str        # ISO 8601, UTC
    age_s: float

    def ledger_field(self, path: Path) -> dict[str, Any]:
        """The ``cached`` field of the ``idle_baseline`` events it becomes."""
        return {"measured_at": self.measured_at, "age_s": round(self.age_s, 1),
                "path": str(path)}


class IdleCache:
    """The cache file (see the module docstring). Reading never raises: a missing,
    unreadable or corrupt file is an empty cache; writing returns an error text instead
    of raising (the run must not fail because a cache could not be written)."""

    def __init__(self, path: Path, max_age_s: float = DEFAULT_MAX_AGE_S) -> None:
        self.path = Path(path)
        self.max_age_s = float(max_age_s)

    def _entries(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("schema") != CACHE_SCHEMA:
            return {}
        entries = data.get("entries")
        return entries if isinstance(entries, dict) else {}

    def lookup(self, identity: dict[str, Any], now: float | None = None) -> CachedIdle | None:
        """The cached baseline for ``identity`` if there is one for every device and it
        is younger than ``max_age_s``; else None."""
        entry = self._entries().get(identity_key(identity))
        if not isinstance(entry, dict) or entry.get("identity") != identity:
            return None
        try:
            power = {str(d): float(w) for d, w in entry["power_w"].items()}
            measured_unix = float(entry["measured_unix"])
            seconds = float(entry["seconds"])
            measured_at = str(entry["measured_at"])
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        age = (time.time() if now is None else now) - measured_unix
        if not (0 <= age <= self.max_age_s) or set(power) != set(identity["devices"]):
            return None
        return CachedIdle(power, seconds, measured_at, age)

    def store(self, identity: dict[str, Any], power_w: dict[str, float],
              seconds: float) -> str | None:
        """Keep a fresh measurement (written atomically). Returns an error text, or None."""
        entries = self._entries()
        entries[identity_key(identity)] = {
            "identity": identity, "power_w": power_w, "seconds": seconds,
            "measured_unix": time.time(),
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps({"schema": CACHE_SCHEMA, "entries": entries},
                                               indent=1) + "\n", fsync=False)
        except (OSError, UserError) as exc:
            return f"could not write the idle-baseline cache {self.path}: {exc}"
        return None


def measure_idle(read: Reading, collect: Callable[[bool], dict[str, list[float]] | None],
                 seconds: float, devices: Sequence[str]
                 ) -> tuple[float, float, dict[str, float], list[str]]:
    """Measure idle power over ``seconds``: counter delta between two boundary readings
    where a device has a counter, else the mean of the power samples the sampler collected
    meanwhile (``collect(True)`` starts collecting, ``collect(False)`` returns them).
    Returns (t_start, t_end, {device: watts}, devices with no reading)."""
    t_a, e_a = read()
    collect(True)
    time.sleep(seconds)
    collected = collect(False) or {}
    t_b, e_b = read()
    power: dict[str, float] = {}
    missing: list[str] = []
    for d in devices:
        a, b = e_a.get(d), e_b.get(d)
        if a is not None and b is not None and t_b > t_a:
            power[d] = (b - a) / (t_b - t_a)
        elif collected.get(d):
            power[d] = statistics.fmean(collected[d])
        else:
            missing.append(d)
    return t_a, t_b, power, missing


def write_idle_baseline(meter: Any) -> None:
    """One ``idle_baseline`` event per device of ``meter`` (an ``EnergyMeter`` starting
    up): from the cache while it holds a fresh one for this host and device set, else
    measured now over ``meter.idle_seconds``, inside a ``setup.idle`` stage (and then kept
    in the cache)."""
    cache = None
    if meter.idle_cache is not False:
        path = default_cache_path() if meter.idle_cache in (None, True) else meter.idle_cache
        cache = IdleCache(Path(path), meter.idle_max_age_s) if path is not None else None
    identity = host_identity(meter.sensors, meter.sources) if cache is not None else {}
    hit = cache.lookup(identity) if cache is not None and not meter.idle_refresh else None
    if hit is not None:
        cached, t = hit.ledger_field(cache.path), meter.now()
        meter.idle_cached = cached
        for d in meter.devices:
            meter._write({"event": "idle_baseline", "t": t, "device": d,
                          "power_w": hit.power_w[d], "seconds": hit.seconds, "cached": cached})
        return
    # Seconds of doing nothing: a stage of its own, so that the time is attributed and
    # named rather than left in the run's unattributed energy (a cached baseline takes none)
    meter.begin_window(IDLE_STAGE)
    t_a, t_b, power, missing = measure_idle(meter._read, meter._collect_idle,
                                            meter.idle_seconds, meter.devices)
    for d in missing:
        meter.warn(f"{d}: no idle reading (no counter and no power samples); its idle "
                   "baseline is unknown", device=d)
    for d, w in power.items():
        meter._write({"event": "idle_baseline", "t": t_b, "device": d, "power_w": w,
                      "seconds": t_b - t_a})
    meter.end_window(IDLE_STAGE)
    if cache is not None and not missing:
        problem = cache.store(identity, power, t_b - t_a)
        if problem:
            meter.warn(problem)
