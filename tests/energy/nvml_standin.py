"""A stand-in for the ``pynvml`` module, fed by real readings recorded on an NVIDIA H100
(tests/data/h100-nvml-trace.csv: energy counter, GetPowerUsage, POWER_AVERAGE and
POWER_INSTANT fields, read together every ~30 ms).

This is the one test double in the energy tests: no NVML device exists on a CPU machine.
It answers the calls NvmlSensor makes with the recorded value at or before the current
replay time, and can inject the faults seen in practice (an NVMLError on a call, a counter
reset, a foreign process). It also counts calls, so tests can check what the meter never
calls (GetPowerUsage, the 1 s average).
"""

from __future__ import annotations

import bisect
import csv
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
PROBE = json.loads((DATA / "h100-nvml-probe.json").read_text())

NVML_SUCCESS = 0
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999
NVML_FI_DEV_POWER_AVERAGE = 185
NVML_FI_DEV_POWER_INSTANT = 186
NVML_VALUE_TYPE_DOUBLE = 0
NVML_VALUE_TYPE_UNSIGNED_INT = 1

_MESSAGES = {2: "Invalid Argument", 3: "Not Supported", 6: "Not Found", 15: "GPU is lost",
             999: "Unknown Error"}


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML error {self.value}")


@dataclass
class Recording:
    """The recorded H100 readings, as columns."""

    t: list[float]
    energy_mj: list[int]
    power_mw: list[int]
    avg_field_mw: list[int]
    inst_field_mw: list[int]

    @classmethod
    def load(cls, path: Path = DATA / "h100-nvml-trace.csv") -> Recording:
        rows = list(csv.DictReader(path.open()))
        return cls([float(r["t"]) for r in rows], [int(r["energy_mJ"]) for r in rows],
                   [int(r["power_mW"]) for r in rows], [int(r["avg_field_mW"]) for r in rows],
                   [int(r["inst_field_mW"]) for r in rows])

    def index_at(self, t: float) -> int:
        """Row in effect at recording time ``t`` (the last at or before it; the first row
        before the recording starts)."""
        return max(0, bisect.bisect_right(self.t, t) - 1)


@dataclass
class Gpu:
    uuid: str
    name: str = PROBE["name"]
    offset: float = 0.0          # seconds into the recording at replay time 0
    counter: bool = True         # Volta+ energy counter
    instant: bool = True         # POWER_INSTANT field (driver 535+)
    mig: list[str] = field(default_factory=list)
    processes: list[int] = field(default_factory=list)
    counter_shift_mj: int = 0    # added to the counter (a reset makes it negative)


@dataclass(frozen=True)
class Handle:
    index: int
    mig: str | None = None


class _Value:
    def __init__(self, ui: int) -> None:
        self.uiVal = ui
        self.dVal = float(ui)


class _FieldValue:
    def __init__(self, field_id: int, ret: int, value: int) -> None:
        self.fieldId = field_id
        self.nvmlReturn = ret
        self.valueType = NVML_VALUE_TYPE_UNSIGNED_INT
        self.value = _Value(value)


class _Process:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.usedGpuMemory = 1 << 30


class StandinNVML:
    """Use an instance where the ``pynvml`` module is expected. ``clock()`` gives the replay
    time in seconds; GPU ``i`` reads the recording at ``t0 + gpu.offset + clock()``."""

    NVMLError = NVMLError

    def __init__(self, gpus: list[Gpu], clock: Callable[[], float],
                 recording: Recording | None = None) -> None:
        self.gpus = gpus
        self.clock = clock
        self.rec = recording or Recording.load()
        self.calls: Counter[str] = Counter()
        self.failures: dict[str, list[int | Exception]] = {}
        self.initialised = False
        for name, value in globals().items():
            if name.startswith("NVML_"):
                setattr(self, name, value)

    # -- fault injection
    def fail(self, call: str, *errors: int | Exception) -> None:
        """The next calls of ``call`` raise these (an NVML error code, or any exception)."""
        self.failures.setdefault(call, []).extend(errors)

    def _enter(self, call: str) -> None:
        self.calls[call] += 1
        if not self.initialised and call != "nvmlInit":
            raise NVMLError(1)
        pending = self.failures.get(call)
        if pending:
            err = pending.pop(0)
            raise err if isinstance(err, Exception) else NVMLError(err)

    def _row(self, h: Handle) -> int:
        gpu = self.gpus[h.index]
        return self.rec.index_at(self.rec.t[0] + gpu.offset + self.clock())

    # -- library
    def nvmlInit(self) -> None:
        self._enter("nvmlInit")
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialised = False

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return PROBE["driver"]

    def nvmlSystemGetNVMLVersion(self) -> str:
        self._enter("nvmlSystemGetNVMLVersion")
        return PROBE["nvml_version"]

    # -- devices
    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> Handle:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= i < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return Handle(i)

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> Handle:
        self._enter("nvmlDeviceGetHandleByUUID")
        for i, g in enumerate(self.gpus):
            if g.uuid == uuid:
                return Handle(i)
            if uuid in g.mig:
                return Handle(i, mig=uuid)
        raise NVMLError(NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, h: Handle) -> Handle:
        self._enter("nvmlDeviceGetDeviceHandleFromMigDeviceHandle")
        if h.mig is None:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return Handle(h.index)

    def nvmlDeviceGetIndex(self, h: Handle) -> int:
        self._enter("nvmlDeviceGetIndex")
        return h.index

    def nvmlDeviceGetUUID(self, h: Handle) -> str:
        self._enter("nvmlDeviceGetUUID")
        return self.gpus[h.index].uuid

    def nvmlDeviceGetName(self, h: Handle) -> str:
        self._enter("nvmlDeviceGetName")
        return self.gpus[h.index].name

    def nvmlDeviceGetPowerManagementLimit(self, h: Handle) -> int:
        self._enter("nvmlDeviceGetPowerManagementLimit")
        return PROBE["power_limit_mW"]

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h: Handle) -> int:
        self._enter("nvmlDeviceGetPowerManagementDefaultLimit")
        return PROBE["power_limit_default_mW"]

    def nvmlDeviceGetEnforcedPowerLimit(self, h: Handle) -> int:
        self._enter("nvmlDeviceGetEnforcedPowerLimit")
        return PROBE["enforced_limit_mW"]

    # -- readings
    def nvmlDeviceGetTotalEnergyConsumption(self, h: Handle) -> int:
        self._enter("nvmlDeviceGetTotalEnergyConsumption")
        gpu = self.gpus[h.index]
        if not gpu.counter:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return self.rec.energy_mj[self._row(h)] + gpu.counter_shift_mj

    def nvmlDeviceGetPowerUsage(self, h: Handle) -> int:
        self._enter("nvmlDeviceGetPowerUsage")
        return self.rec.power_mw[self._row(h)]

    def nvmlDeviceGetFieldValues(self, h: Handle, ids: list[int]) -> list[_FieldValue]:
        self._enter("nvmlDeviceGetFieldValues")
        row = self._row(h)
        out = []
        for fid in ids:
            if fid == NVML_FI_DEV_POWER_INSTANT and self.gpus[h.index].instant:
                out.append(_FieldValue(fid, NVML_SUCCESS, self.rec.inst_field_mw[row]))
            elif fid == NVML_FI_DEV_POWER_AVERAGE:
                out.append(_FieldValue(fid, NVML_SUCCESS, self.rec.avg_field_mw[row]))
            else:
                out.append(_FieldValue(fid, NVML_ERROR_NOT_SUPPORTED, 0))
        return out

    def nvmlDeviceGetComputeRunningProcesses(self, h: Handle) -> list[_Process]:
        self._enter("nvmlDeviceGetComputeRunningProcesses")
        return [_Process(p) for p in self.gpus[h.index].processes]


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def uuids(n: int) -> list[str]:
    """n distinct GPU UUIDs in NVML's format."""
    return [f"GPU-{i:x}{i:x}3f2a1c-8b7e-4d2a-9c1f-{i:012x}" for i in range(n)]
