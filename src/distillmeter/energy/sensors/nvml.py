"""NVIDIA GPUs through NVML (the ``pynvml`` module of nvidia-ml-py).

What the H100 readout study (tests/data/h100-nvml-probe.json) showed, and what follows:
- the total-energy counter (mJ, Volta and later) is the ground truth at stage boundaries;
  it changes every ~100 ms and costs ~4 ms a call, so the trace reads it only every
  ``counter_every``-th sample;
- the trace's power is the POWER_INSTANT field (~10 us a call). ``nvmlDeviceGetPowerUsage``
  is a 1-second moving average: integrating it misplaces energy across boundaries (+66% on
  an idle stage after a load), so it is never read here.
Device names are ``gpu:<NVML index>``; CUDA_VISIBLE_DEVICES (indices, GPU-/MIG- UUIDs, UUID
prefixes) picks which NVML devices this process meters.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

from distillmeter.energy.sensors.base import Sensor

_POWER_INSTANT_FALLBACK_ID = 186  # NVML_FI_DEV_POWER_INSTANT in nvml.h (driver 535+)


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used here (no driver, no library, no GPU)."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _field_number(nvml: ModuleType, v: Any) -> float:
    """The number in an ``nvmlFieldValue_t``, by its value type."""
    kinds = {
        getattr(nvml, "NVML_VALUE_TYPE_DOUBLE", 0): "dVal",
        getattr(nvml, "NVML_VALUE_TYPE_UNSIGNED_INT", 1): "uiVal",
        getattr(nvml, "NVML_VALUE_TYPE_UNSIGNED_LONG", 2): "ulVal",
        getattr(nvml, "NVML_VALUE_TYPE_UNSIGNED_LONG_LONG", 3): "ullVal",
        getattr(nvml, "NVML_VALUE_TYPE_SIGNED_LONG_LONG", 4): "sllVal",
        getattr(nvml, "NVML_VALUE_TYPE_SIGNED_INT", 5): "siVal",
        getattr(nvml, "NVML_VALUE_TYPE_UNSIGNED_SHORT", 6): "usVal",
    }
    return float(getattr(v.value, kinds.get(int(v.valueType), "uiVal")))


def visible_gpu_indices(nvml: ModuleType, cuda_visible_devices: str | None
                        ) -> tuple[list[int], list[str]]:
    """NVML indices of the GPUs a CUDA program here can see, and notes about the mapping.

    Follows CUDA's rules: entries are indices, ``GPU-<uuid>`` (or a unique prefix of it) or
    ``MIG-<uuid>`` / ``MIG-GPU-<uuid>/<gi>/<ci>`` (mapped to the parent GPU); parsing stops
    at the first invalid entry; an empty value hides every GPU."""
    count = int(nvml.nvmlDeviceGetCount())
    if cuda_visible_devices is None:
        return list(range(count)), []
    uuids = [_text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i)))
             for i in range(count)]
    out: list[int] = []
    notes: list[str] = []
    for raw in cuda_visible_devices.split(","):
        item = raw.strip()
        idx: int | None = None
        if item.lstrip("-").isdigit():
            idx = int(item) if 0 <= int(item) < count else None
        elif item.upper().startswith("MIG-GPU-"):  # pre-R470 MIG naming
            parent = item[4:].split("/", 1)[0].lower()
            hits = [i for i, u in enumerate(uuids) if u.lower().startswith(parent)]
            idx = hits[0] if len(hits) == 1 else None
        elif item.upper().startswith("MIG-"):
            try:
                mig = nvml.nvmlDeviceGetHandleByUUID(item)
                idx = int(nvml.nvmlDeviceGetIndex(
                    nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)))
            except nvml.NVMLError:
                idx = None
        elif item.upper().startswith("GPU-"):
            hits = [i for i, u in enumerate(uuids) if u.lower().startswith(item.lower())]
            idx = hits[0] if len(hits) == 1 else None
        if idx is None:
            if item:
                notes.append(f"CUDA_VISIBLE_DEVICES entry {item!r} matches no GPU; "
                             "CUDA ignores it and every entry after it")
            break
        if item.upper().startswith("MIG-"):
            notes.append(f"gpu:{idx} runs MIG slices: its energy counter covers the whole "
                         "GPU, including other slices' work")
        if idx not in out:
            out.append(idx)
    return out, notes


class NvmlSensor(Sensor):
    """NVIDIA GPUs: counter at boundaries (source ``nvml_counter``), POWER_INSTANT in the
    trace; GPUs without a counter use the instant power alone (source ``nvml_instant``).

    ``nvml``: the pynvml module (tests pass a stand-in fed with recorded H100 readings).
    ``select``: ``["gpu"]`` or device names; ``visible``: CUDA_VISIBLE_DEVICES to honour
    (default: the environment's)."""

    kind = "nvml"

    def __init__(self, *, select: list[str] | None = None, nvml: ModuleType | None = None,
                 counter_every: int = 4, visible: str | None | bool = True) -> None:
        super().__init__()
        self.counter_every = max(1, int(counter_every))
        try:
            self.nvml = nvml or importlib.import_module("pynvml")
            self.nvml.nvmlInit()
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded
            raise NvmlUnavailable(f"NVML not available ({exc})") from None
        self._field = getattr(self.nvml, "NVML_FI_DEV_POWER_INSTANT", _POWER_INSTANT_FALLBACK_ID)
        cvd = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is True else visible or None
        try:
            indices, notes = visible_gpu_indices(self.nvml, cvd)
        except self.nvml.NVMLError as exc:
            self.nvml.nvmlShutdown()
            raise NvmlUnavailable(f"cannot enumerate GPUs ({exc})") from None
        for n in notes:
            self._warn(n)
        self._check_order(indices, cvd)
        self.cuda_order = list(indices)  # the NVML index of each CUDA ordinal
        self._handles: dict[str, Any] = {}
        self._instant: dict[str, bool] = {}
        for i in indices:
            device = f"gpu:{i}"
            if select is not None and "gpu" not in select and device not in select:
                continue
            self._add(device, self.nvml.nvmlDeviceGetHandleByIndex(i))
        self.devices = list(self._handles)

    def _check_order(self, indices: list[int], cvd: str | None) -> None:
        if not cvd or os.environ.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID":
            return
        if not any(x.strip().isdigit() for x in cvd.split(",")):
            return
        names = {_text(self.nvml.nvmlDeviceGetName(self.nvml.nvmlDeviceGetHandleByIndex(i)))
                 for i in range(int(self.nvml.nvmlDeviceGetCount()))}
        if len(names) > 1:
            self._warn("CUDA_VISIBLE_DEVICES holds indices but CUDA_DEVICE_ORDER is not "
                       "PCI_BUS_ID and the GPUs differ: CUDA may number them differently "
                       "from NVML; set CUDA_DEVICE_ORDER=PCI_BUS_ID or use GPU UUIDs")

    def _add(self, device: str, handle: Any) -> None:
        nv = self.nvml
        try:
            nv.nvmlDeviceGetTotalEnergyConsumption(handle)
            counter = True
        except nv.NVMLError:
            counter = False
        try:
            v = nv.nvmlDeviceGetFieldValues(handle, [self._field])[0]
            instant = int(v.nvmlReturn) == 0
        except nv.NVMLError:
            instant = False
        if not counter and not instant:
            self._warn(f"{device}: NVML gives neither an energy counter nor instant power "
                       "(GPU older than Volta or driver older than 535?); not metered", device)
            return
        if not instant:
            self._warn(f"{device}: POWER_INSTANT not supported (driver older than 535?); the "
                       "trace has counter readings only", device)
        self._handles[device] = handle
        self._instant[device] = instant
        self.sources[device] = "nvml_counter" if counter else "nvml_instant"

    def read_energy(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for d, h in self._handles.items():
            if self.sources[d] != "nvml_counter":
                out[d] = None
                continue
            try:
                out[d] = float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(h)) / 1000.0
            except self.nvml.NVMLError as exc:
                self._warn(f"NVML error reading the energy counter of {d} ({exc}); reading "
                           "recorded as missing", d)
                out[d] = None
        return out

    def read_power(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for d, h in self._handles.items():
            out[d] = None
            if not self._instant[d]:
                continue
            try:
                v = self.nvml.nvmlDeviceGetFieldValues(h, [self._field])[0]
            except self.nvml.NVMLError as exc:
                self._warn(f"NVML error reading POWER_INSTANT of {d} ({exc}); sample "
                           "recorded as missing", d)
                continue
            if int(v.nvmlReturn) != 0:
                self._warn(f"NVML returned error {int(v.nvmlReturn)} for POWER_INSTANT of "
                           f"{d}; sample recorded as missing", d)
                continue
            out[d] = _field_number(self.nvml, v) / 1000.0
        return out

    def foreign_processes(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for d, h in self._handles.items():
            try:
                out[d] = sorted({int(p.pid) for p in
                                 self.nvml.nvmlDeviceGetComputeRunningProcesses(h)})
            except self.nvml.NVMLError:
                continue
        return out

    def _try(self, fn: str, *args: Any) -> Any:
        try:
            return getattr(self.nvml, fn)(*args)
        except Exception:  # a missing function on an old driver, or NOT_SUPPORTED
            return None

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["driver"] = _text(self._try("nvmlSystemGetDriverVersion") or "") or None
        info["nvml_version"] = _text(self._try("nvmlSystemGetNVMLVersion") or "") or None
        info["cuda_driver_version"] = self._try("nvmlSystemGetCudaDriverVersion")
        info["counter_every"] = self.counter_every
        gpus = []
        for d, h in self._handles.items():
            mem = self._try("nvmlDeviceGetMemoryInfo", h)
            limits = {k: self._try(fn, h) for k, fn in (
                ("power_limit_mw", "nvmlDeviceGetPowerManagementLimit"),
                ("default_power_limit_mw", "nvmlDeviceGetPowerManagementDefaultLimit"),
                ("enforced_power_limit_mw", "nvmlDeviceGetEnforcedPowerLimit"))}
            gpus.append({
                "device": d,
                "name": _text(self._try("nvmlDeviceGetName", h) or "") or None,
                "uuid": _text(self._try("nvmlDeviceGetUUID", h) or "") or None,
                "memory_bytes": int(mem.total) if mem is not None else None,
                **limits,
                "source": self.sources[d],
                "power_instant": self._instant[d],
            })
        info["gpus"] = gpus
        return info

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # already shut down, or the driver went away
            pass
