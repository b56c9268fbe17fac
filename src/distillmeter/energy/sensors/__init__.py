"""distillmeter.energy.sensors: the device layer, one module per kind of sensor behind one
interface (``base.Sensor``), and one entry function (``discover_sensors``).

- ``nvml``: NVIDIA GPUs (the driver's energy counter, and its power field for the trace);
- ``rapl``: CPU packages and DRAM through Linux powercap;
- ``cpu_estimate``: a labelled estimate for a CPU or DRAM that RAPL cannot read;
- ``replay``: a recorded trace played back (tests, demonstrations);
- ``hostinfo``: what the sensors need to know about the host (CPU model, sockets, memory).

The meter, its stage windows and its sampler (``distillmeter.energy``) sit on top and read
sensors through :class:`Sensor` alone.
"""

from distillmeter.energy.sensors.base import Clock, Reading, Sensor
from distillmeter.energy.sensors.cpu_estimate import CpuEstimateSensor, lookup_tdp
from distillmeter.energy.sensors.discovery import discover_sensors, parse_device_selection
from distillmeter.energy.sensors.nvml import NvmlSensor, NvmlUnavailable, visible_gpu_indices
from distillmeter.energy.sensors.rapl import RaplSensor
from distillmeter.energy.sensors.replay import ReplaySensor

__all__ = [
    "Clock",
    "CpuEstimateSensor",
    "NvmlSensor",
    "NvmlUnavailable",
    "RaplSensor",
    "Reading",
    "ReplaySensor",
    "Sensor",
    "discover_sensors",
    "lookup_tdp",
    "parse_device_selection",
    "visible_gpu_indices",
]
