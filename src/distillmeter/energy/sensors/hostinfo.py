"""What CPU and memory this host has (model name, cpuid family/model, sockets, cores)."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CpuInfo:
    """The host's CPU as far as the OS tells. ``family``/``model_id`` are x86 cpuid values
    (used to recognise a CPU whose name a hypervisor hides, e.g. "AMD EPYC")."""

    model: str
    vendor: str | None
    family: int | None
    model_id: int | None
    sockets: int
    cores: int | None
    logical: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_cpuinfo(text: str) -> CpuInfo:
    """Parse the text of ``/proc/cpuinfo``."""
    model, vendor, family, model_id = "", None, None, None
    sockets: set[str] = set()
    cores_per_socket: dict[str, set[str]] = {}
    logical = 0
    phys = "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            logical += 1
        elif key == "model name" and not model:
            model = value
        elif key == "vendor_id" and vendor is None:
            vendor = value
        elif key == "cpu family" and family is None and value.isdigit():
            family = int(value)
        elif key == "model" and model_id is None and value.isdigit():
            model_id = int(value)
        elif key == "physical id":
            phys = value
            sockets.add(value)
        elif key == "core id":
            cores_per_socket.setdefault(phys, set()).add(value)
    cores = sum(len(c) for c in cores_per_socket.values()) or None
    return CpuInfo(
        model=model or platform.processor() or "unknown",
        vendor=vendor,
        family=family,
        model_id=model_id,
        sockets=max(1, len(sockets)),
        cores=cores,
        logical=logical or (os.cpu_count() or 1),
    )


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This host's CPU (Linux: /proc/cpuinfo; macOS: sysctl; else platform)."""
    path = Path("/proc/cpuinfo")
    if path.exists():
        try:
            return parse_cpuinfo(path.read_text(errors="replace"))
        except OSError:
            pass
    model = platform.processor() or "unknown"
    if platform.system() == "Darwin":
        try:
            model = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True, text=True, timeout=5, check=False,
            ).stdout.strip() or model
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
    except Exception:  # psutil cannot always tell (containers, odd platforms)
        cores = None
    return CpuInfo(model=model, vendor=None, family=None, model_id=None, sockets=1,
                   cores=cores, logical=os.cpu_count() or 1)


def memory_bytes() -> int | None:
    """Total RAM visible to this OS (a VM's or container host's, not a cgroup limit)."""
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:
        return None
