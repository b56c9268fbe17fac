"""CPU package and DRAM energy from Linux RAPL (``/sys/class/powercap/intel-rapl:*``).

Each package zone ``intel-rapl:N`` (name ``package-S``) gives ``cpu:S``; its subzone named
``dram`` gives ``dram:S``. ``energy_uj`` is a counter in microjoules that wraps to zero at
``max_energy_range_uj``; we unwrap it into a cumulative joule count, which is correct as
long as we read more often than once per wrap (minutes to hours; the sampler reads 20 times
a second). AMD Zen CPUs expose the same files through the same driver.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillmeter.energy.sensors.base import Sensor
from distillmeter.energy.sensors.hostinfo import cpu_info

DEFAULT_ROOT = "/sys/class/powercap"


@dataclass
class _Zone:
    path: Path
    max_uj: int
    last_raw: int | None = None
    total_uj: float = 0.0
    wraps: int = 0
    last_sample: tuple[float, float] | None = None  # (t, joules) of the previous sample


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


class RaplSensor(Sensor):
    """RAPL package (``cpu:S``) and DRAM (``dram:S``) zones under ``root``. Zones that
    exist but cannot be read (``energy_uj`` is root-only on most kernels since 2020) are
    left out, and :meth:`absence_reason` says why, so the caller can fall back loudly."""

    kind = "rapl"

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.root = Path(root or DEFAULT_ROOT)
        self._zones: dict[str, _Zone] = {}
        self._packages: set[int] = set()  # sockets seen, readable or not
        self._reason = f"no RAPL on this machine (no {self.root}/intel-rapl:*)"
        self._scan()
        self.devices = sorted(self._zones)
        self.sources = {d: "rapl" for d in self.devices}

    def _scan(self) -> None:
        if not self.root.is_dir():
            return
        # /sys/class/powercap lists every zone at the top level; some trees nest subzones.
        paths = {p.name: p for p in self.root.glob("intel-rapl:*")}
        for p in self.root.glob("intel-rapl:*/intel-rapl:*"):
            paths.setdefault(p.name, p)
        unreadable: list[str] = []
        for name, path in sorted(paths.items()):
            parts = name.split(":")[1:]
            try:
                zone_name = (path / "name").read_text().strip()
                if len(parts) == 1 and zone_name.startswith("package-"):
                    device = f"cpu:{int(zone_name.split('-', 1)[1])}"
                    self._packages.add(int(device[4:]))
                elif len(parts) == 2 and zone_name == "dram":
                    parent = paths.get(f"intel-rapl:{parts[0]}")
                    pkg = (parent / "name").read_text().strip() if parent else "package-0"
                    device = f"dram:{int(pkg.split('-', 1)[1])}"
                else:
                    continue  # psys, core, uncore: not what the protocol names
                zone = _Zone(path=path, max_uj=_read_int(path / "max_energy_range_uj"))
                _read_int(path / "energy_uj")  # readable at all?
            except PermissionError:
                unreadable.append(str(path / "energy_uj"))
                continue
            except (OSError, ValueError) as exc:
                self._warn(f"RAPL zone {path} ignored: {exc}")
                continue
            self._zones[device] = zone
        if unreadable:
            self._reason = (
                f"RAPL present but not readable ({', '.join(unreadable)}: permission denied; "
                "energy_uj is root-only on most kernels; `sudo chmod a+r` it to measure)"
            )
        elif paths:
            self._reason = "RAPL has no such zone on this machine"

    def absence_reason(self) -> str:
        """Why a cpu/dram device has no RAPL reading (for the fallback warning)."""
        return self._reason

    def socket_count(self) -> int:
        """CPU sockets on this host: RAPL's packages (readable or not) or cpuinfo's."""
        return max(len(self._packages), cpu_info().sockets)

    def _read_zone(self, device: str) -> float | None:
        zone = self._zones[device]
        try:
            raw = _read_int(zone.path / "energy_uj")
        except (OSError, ValueError) as exc:
            self._warn(f"cannot read RAPL counter of {device} ({exc}); reading recorded as "
                       "missing", device)
            return None
        if zone.last_raw is None:
            zone.total_uj = float(raw)
        elif raw >= zone.last_raw:
            zone.total_uj += raw - zone.last_raw
        else:  # the counter wrapped around at max_energy_range_uj
            zone.total_uj += raw + (zone.max_uj - zone.last_raw)
            zone.wraps += 1
        zone.last_raw = raw
        return zone.total_uj / 1e6

    def read_energy(self) -> dict[str, float | None]:
        return {d: self._read_zone(d) for d in self.devices}

    def sample(self, read_counter: bool) -> dict[str, tuple[float | None, float | None]]:
        # RAPL has no power register: power is the mean over the interval since the last
        # sample, from the same counter read (one file read per zone per sample).
        out: dict[str, tuple[float | None, float | None]] = {}
        now = time.monotonic()
        for d in self.devices:
            e = self._read_zone(d)
            zone = self._zones[d]
            p = None
            if e is not None:
                if zone.last_sample is not None and now > zone.last_sample[0]:
                    p = (e - zone.last_sample[1]) / (now - zone.last_sample[0])
                zone.last_sample = (now, e)
            out[d] = (e, p)
        return out

    def read_power(self) -> dict[str, float | None]:
        return {d: v[1] for d, v in self.sample(True).items()}

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["root"] = str(self.root)
        info["zones"] = {d: {"path": str(z.path), "max_energy_range_uj": z.max_uj,
                             "wraps": z.wraps} for d, z in self._zones.items()}
        return info
