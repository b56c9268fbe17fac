"""distillmeter.energy: measuring.

Laid out as a device layer with the meter on top:

- ``sensors/``: one module per kind of sensor (NVML GPUs, RAPL, a labelled CPU/DRAM
  estimate, trace replay) behind one interface (``sensors.base.Sensor``), found by one
  entry function (``discover_sensors``);
- the meter (``meter.py``: stage windows over synchronized counter readings), its stage
  (``stage.py``), its sampler thread writing the trace (``sampler.py``), the checks on
  what the sensors report (``checks.py``), its run files and environment snapshot, the
  idle baseline, resume, device sync, signals;
- rank metering under torchrun (``ranks.py``) and merging the ranks (``merge.py``).

Measuring never computes the report; see ``distillmeter.accounting`` for that.
"""

from distillmeter.energy.meter import EnergyMeter, Stage
from distillmeter.energy.sensors import (
    CpuEstimateSensor,
    NvmlSensor,
    NvmlUnavailable,
    RaplSensor,
    ReplaySensor,
    Sensor,
    discover_sensors,
    lookup_tdp,
    visible_gpu_indices,
)

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
    "visible_gpu_indices",
]
