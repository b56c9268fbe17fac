"""Device discovery, the one entry function: which sensors this machine can read (for the
devices asked for), and a warning for every device that cannot be read directly (so a
fallback to the estimate is never silent)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from distillmeter.energy.sensors.base import Sensor
from distillmeter.energy.sensors.cpu_estimate import CpuEstimateSensor
from distillmeter.energy.sensors.nvml import NvmlSensor, NvmlUnavailable
from distillmeter.energy.sensors.rapl import RaplSensor


def parse_device_selection(devices: str | Iterable[str] | None) -> list[str] | None:
    """``"auto"``/None -> None (everything found); ``"gpu,cpu:0"`` or a list -> selectors."""
    if devices is None or devices == "auto":
        return None
    items = devices.split(",") if isinstance(devices, str) else list(devices)
    out = [d.strip() for d in items if d and d.strip()]
    for d in out:
        kind = d.split(":", 1)[0]
        if kind not in ("gpu", "cpu", "dram") or (":" in d and not d.split(":", 1)[1].isdigit()):
            raise ValueError(
                f"unknown device selector {d!r}: use gpu, cpu, dram or a device name "
                "such as gpu:0 (or 'auto')"
            )
    return out


def _wanted(device: str, selectors: Sequence[str] | None) -> bool:
    """``selectors`` holds device names (``gpu:1``) or kinds (``gpu``); None keeps all."""
    if selectors is None:
        return True
    kind = device.split(":", 1)[0]
    return device in selectors or kind in selectors


def discover_sensors(
    devices: str | Iterable[str] | None = "auto",
    *,
    powercap_root: str | os.PathLike[str] | None = None,
) -> tuple[list[Sensor], list[tuple[str, str | None]]]:
    """Find what this machine can measure. Returns the sensors and warnings naming every
    device that could not be read directly (so a fallback is never silent).

    GPUs come from NVML; CPU packages and DRAM from RAPL where readable, else from the
    labelled estimate. Under ``torchrun`` only local rank 0 meters the node's CPU and DRAM,
    so a node's host energy is counted once."""
    selectors = parse_device_selection(devices)
    sensors: list[Sensor] = []
    notes: list[tuple[str, str | None]] = []

    if selectors is None or any(s.startswith("gpu") for s in selectors):
        try:
            nv = NvmlSensor(select=[s for s in selectors or ["gpu"] if s.startswith("gpu")])
        except NvmlUnavailable as exc:
            if selectors is not None:
                notes.append((f"GPUs requested but not metered: {exc}", None))
        else:
            if nv.devices:
                sensors.append(nv)
            else:
                nv.close()

    local_rank = os.environ.get("LOCAL_RANK")
    host_wanted = [k for k in ("cpu", "dram") if selectors is None or
                   any(s.split(":", 1)[0] == k for s in selectors)]
    if local_rank not in (None, "", "0") and selectors is None:
        notes.append((f"local rank {local_rank}: CPU and DRAM are metered by local rank 0 "
                      "only, so the node's host energy is counted once", None))
        host_wanted = []
    if not host_wanted:
        return sensors, notes

    rapl = RaplSensor(root=powercap_root)
    notes.extend(rapl.pop_warnings())
    rapl.devices = [d for d in rapl.devices if _wanted(d, selectors)
                    and d.split(":", 1)[0] in host_wanted]
    rapl.sources = {d: rapl.sources[d] for d in rapl.devices}
    if rapl.devices:
        sensors.append(rapl)
    # Whatever RAPL could not give (absent, unreadable, no dram zone) is estimated.
    sockets = rapl.socket_count()
    missing = [f"{k}:{s}" for k in host_wanted for s in range(sockets)
               if f"{k}:{s}" not in rapl.devices and _wanted(f"{k}:{s}", selectors)]
    if missing:
        est = CpuEstimateSensor(devices=missing, sockets=sockets)
        sensors.append(est)
        why = rapl.absence_reason()
        for d in missing:
            notes.append((f"{d}: {why}; its energy is an estimate ({est.method(d)})", d))
    return sensors, notes
