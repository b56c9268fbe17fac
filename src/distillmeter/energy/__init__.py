"""distillmeter.energy: measuring.

Sensors (NVML GPUs, RAPL, a labelled CPU/DRAM estimate, trace replay), the meter (stage
windows over synchronized counter readings, plus a sampler thread writing the trace), and
the environment snapshot. Measuring never computes the report; see
``distillmeter.accounting`` for that.
"""

from distillmeter.energy.cpu_estimate import CpuEstimateSensor, lookup_tdp
from distillmeter.energy.discovery import discover_sensors
from distillmeter.energy.environment import redact_argv, redact_env, redact_text
from distillmeter.energy.meter import EnergyMeter, Stage
from distillmeter.energy.nvml import NvmlSensor, NvmlUnavailable, visible_gpu_indices
from distillmeter.energy.rapl import RaplSensor
from distillmeter.energy.replay import ReplaySensor
from distillmeter.energy.sensors import Sensor

__all__ = [
    "CpuEstimateSensor",
    "EnergyMeter",
    "NvmlSensor",
    "NvmlUnavailable",
    "RaplSensor",
    "ReplaySensor",
    "Sensor",
    "Stage",
    "discover_sensors",
    "lookup_tdp",
    "redact_argv",
    "redact_env",
    "redact_text",
    "visible_gpu_indices",
]
