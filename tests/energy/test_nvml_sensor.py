"""NvmlSensor against the pynvml stand-in replaying real H100 readings."""

from __future__ import annotations

import pytest
from nvml_standin import Gpu, ManualClock, Recording, StandinNVML, uuids

from distillmeter.energy.sensors.nvml import NvmlSensor, NvmlUnavailable, visible_gpu_indices

REC = Recording.load()


def make(n: int = 1, clock: ManualClock | None = None, **gpu_kw) -> tuple[StandinNVML, ManualClock]:
    clock = clock or ManualClock()
    return StandinNVML([Gpu(uuid=u, **gpu_kw) for u in uuids(n)], clock, REC), clock


def test_boundary_reads_the_counter_and_trace_reads_power_instant_not_the_average():
    nv, clock = make()
    sensor = NvmlSensor(nvml=nv, visible=None)
    assert sensor.devices == ["gpu:0"] and sensor.sources == {"gpu:0": "nvml_counter"}
    # Row 2 of the recording: the 1 s average says 74.2 W, POWER_INSTANT 125.8 W.
    clock.t = REC.t[2] - REC.t[0] + 1e-4
    assert REC.avg_field_mw[2] != REC.inst_field_mw[2]
    assert sensor.read_energy() == {"gpu:0": pytest.approx(REC.energy_mj[2] / 1000)}
    assert sensor.read_power() == {"gpu:0": pytest.approx(REC.inst_field_mw[2] / 1000)}
    assert nv.calls["nvmlDeviceGetPowerUsage"] == 0


def test_counter_delta_over_a_window_equals_the_recorded_energy():
    nv, clock = make()
    sensor = NvmlSensor(nvml=nv, visible=None)
    a, b = 100, 900
    clock.t = REC.t[a] - REC.t[0]
    e0 = sensor.read_energy()["gpu:0"]
    clock.t = REC.t[b] - REC.t[0]
    e1 = sensor.read_energy()["gpu:0"]
    assert e1 - e0 == pytest.approx((REC.energy_mj[b] - REC.energy_mj[a]) / 1000)
    assert e1 - e0 > 100  # real work happened in between: this is not a flat fixture


def test_sample_reads_the_counter_only_when_asked():
    nv, _ = make()
    sensor = NvmlSensor(nvml=nv, visible=None, counter_every=4)
    before = nv.calls["nvmlDeviceGetTotalEnergyConsumption"]
    e, p = sensor.sample(read_counter=False)["gpu:0"]
    assert e is None and p is not None
    assert nv.calls["nvmlDeviceGetTotalEnergyConsumption"] == before
    e, p = sensor.sample(read_counter=True)["gpu:0"]
    assert e is not None and p is not None


@pytest.mark.parametrize(
    ("cvd", "expected"),
    [
        (None, [0, 1, 2, 3]),
        ("", []),
        ("2,0", [2, 0]),
        ("1,1,3", [1, 3]),
        ("0,7,1", [0]),          # CUDA stops at the first invalid entry
        ("-1,0", []),
    ],
)
def test_cuda_visible_devices_indices(cvd, expected):
    nv, _ = make(4)
    nv.nvmlInit()
    assert visible_gpu_indices(nv, cvd)[0] == expected


def test_cuda_visible_devices_uuids_prefixes_and_mig():
    nv, _ = make(4)
    ids = uuids(4)
    nv.gpus[2].mig = ["MIG-5d1c0b1e-aaaa-bbbb-cccc-000000000001"]
    nv.nvmlInit()
    assert visible_gpu_indices(nv, f"{ids[3]},{ids[1]}")[0] == [3, 1]
    assert visible_gpu_indices(nv, ids[1][:12])[0] == [1]           # a unique UUID prefix
    assert visible_gpu_indices(nv, "GPU-")[0] == []                  # ambiguous prefix
    indices, notes = visible_gpu_indices(nv, nv.gpus[2].mig[0])
    assert indices == [2] and "MIG" in notes[0]
    assert visible_gpu_indices(nv, f"MIG-{ids[1]}/1/0")[0] == [1]    # pre-R470 MIG naming
    indices, notes = visible_gpu_indices(nv, f"{ids[0]},GPU-ffff-nope,{ids[1]}")
    assert indices == [0] and "GPU-ffff-nope" in notes[0]


def test_sensor_honours_cuda_visible_devices_from_the_environment(monkeypatch):
    nv, _ = make(4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{uuids(4)[2]},0")
    sensor = NvmlSensor(nvml=nv)
    assert sensor.devices == ["gpu:2", "gpu:0"]
    assert NvmlSensor(nvml=make(4)[0], select=["gpu:0"]).devices == ["gpu:0"]


def test_nvml_error_mid_run_gives_none_and_a_warning_never_zero():
    nv, _ = make()
    sensor = NvmlSensor(nvml=nv, visible=None)
    nv.fail("nvmlDeviceGetTotalEnergyConsumption", 15)
    nv.fail("nvmlDeviceGetFieldValues", 999)
    assert sensor.read_energy() == {"gpu:0": None}
    assert sensor.read_power() == {"gpu:0": None}
    warnings = sensor.pop_warnings()
    assert len(warnings) == 2 and all(dev == "gpu:0" for _, dev in warnings)
    assert "GPU is lost" in warnings[0][0]
    assert sensor.read_energy()["gpu:0"] == pytest.approx(REC.energy_mj[0] / 1000)  # recovers


def test_gpu_without_counter_uses_instant_power_and_gpu_with_neither_is_named():
    nv, _ = make(2)
    nv.gpus[0].counter = False
    nv.gpus[1].counter = nv.gpus[1].instant = False
    sensor = NvmlSensor(nvml=nv, visible=None)
    assert sensor.sources == {"gpu:0": "nvml_instant"}
    assert sensor.read_energy() == {"gpu:0": None}
    assert sensor.read_power()["gpu:0"] == pytest.approx(REC.inst_field_mw[0] / 1000)
    assert any(dev == "gpu:1" and "not metered" in msg for msg, dev in sensor.pop_warnings())


def test_describe_and_foreign_processes():
    nv, _ = make()
    nv.gpus[0].processes = [4242]
    sensor = NvmlSensor(nvml=nv, visible=None)
    info = sensor.describe()
    assert info["driver"] == "580.159.04"
    assert info["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert info["gpus"][0]["power_limit_mw"] == 700000
    assert sensor.foreign_processes() == {"gpu:0": [4242]}
    sensor.close()
    assert not nv.initialised


def test_unavailable_nvml_is_reported():
    nv, _ = make()
    nv.fail("nvmlInit", 12)  # library not found
    with pytest.raises(NvmlUnavailable):
        NvmlSensor(nvml=nv)
