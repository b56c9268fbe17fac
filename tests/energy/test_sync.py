"""The synchronize before a boundary reading covers every metered GPU this process uses.

No GPU exists here, so two stand-ins: the NVML stand-in fed with the recorded H100
readings (tests/data/h100-nvml-trace.csv), made into a multi-GPU node by replaying the
recording from a different point in time on each GPU (gpu:0 from its first full-load
phase, gpu:1 from its second: both busy); and a ``torch`` stand-in whose
``cuda.synchronize(i)`` waits for the work queued on device ``i`` by moving the replay
clock to the moment that work ends, as the real call blocks until it does."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
from nvml_standin import Gpu, ManualClock, Recording, StandinNVML, uuids

from distillmeter.energy import EnergyMeter
from distillmeter.energy.sensors.nvml import NvmlSensor
from distillmeter.energy.sync import devices_to_sync

REC = Recording.load()
OFFSETS = [5.0, 31.0]  # seconds into the recording: gpu:0 and gpu:1 both at full load


class QueuedCuda:
    """``torch.cuda`` as the meter uses it. ``queued[i]``: the replay time at which the
    work queued on device ``i`` finishes."""

    def __init__(self, clock: ManualClock, n: int, contexts: set[int]) -> None:
        self.clock, self.n, self.contexts = clock, n, contexts
        self.queued: dict[int, float] = {}
        self.synced: list[int] = []

    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return True

    def device_count(self) -> int:
        return self.n

    def current_device(self) -> int:
        return 0

    def synchronize(self, device: int) -> None:
        self.synced.append(device)
        self.clock.t = max(self.clock.t, self.queued.pop(device, 0.0))


def fake_torch(cuda: QueuedCuda) -> SimpleNamespace:
    return SimpleNamespace(cuda=cuda, _C=SimpleNamespace(
        _cuda_hasPrimaryContext=lambda j: j in cuda.contexts))


def counter_j(gpu: int, t: float) -> float:
    return REC.energy_mj[REC.index_at(REC.t[0] + OFFSETS[gpu] + t)] / 1000.0


def test_work_queued_on_another_gpu_stays_in_its_stage(tmp_path, monkeypatch):
    clock = ManualClock(0.0)
    nv = StandinNVML([Gpu(uuid=u, offset=o) for u, o in zip(uuids(2), OFFSETS, strict=True)],
                     clock)
    cuda = QueuedCuda(clock, n=2, contexts={0, 1})  # device_map="auto": both GPUs in use
    monkeypatch.setitem(sys.modules, "torch", fake_torch(cuda))
    sensor = NvmlSensor(nvml=nv, visible=None)
    with EnergyMeter(tmp_path / "run", sensors=[sensor], idle_seconds=0,
                     sample_hz=0) as meter:
        meter.begin_window("student.train")
        clock.t = 0.1            # the Python side returns at once...
        cuda.queued[1] = 0.9     # ...while gpu:1 still has 0.8 s of kernels queued
        cuda.synced.clear()
        window = meter.end_window("student.train")
        assert sorted(cuda.synced) == [0, 1]
    # the boundary waited for gpu:1: its energy up to the end of the queued work is in
    # the stage (synchronizing only the current device would have read it at t=0.1)
    assert window.energy_j["gpu:1"] == pytest.approx(counter_j(1, 0.9) - counter_j(1, 0.0))
    assert window.energy_j["gpu:1"] > counter_j(1, 0.1) - counter_j(1, 0.0) + 100  # joules


def test_only_metered_gpus_with_a_context_are_synchronized():
    cuda = QueuedCuda(ManualClock(), n=4, contexts={0, 1, 3})
    torch = fake_torch(cuda)
    assert devices_to_sync(torch, [0, 1, 2, 3], None) == [0, 1, 3]  # 2: never used here
    assert devices_to_sync(torch, [1], None) == [0, 1]  # the current device, always
    # CUDA_VISIBLE_DEVICES=3,2,1,0: CUDA ordinal j is NVML index 3 - j
    assert devices_to_sync(torch, [0], [3, 2, 1, 0]) == [0, 3]
    assert devices_to_sync(torch, [], None) == [0]  # no GPU metered: as before
    # a torch without the context query: only the current device (never create contexts)
    assert devices_to_sync(SimpleNamespace(cuda=cuda, _C=SimpleNamespace()), [0, 1], None) == [0]


def test_the_meter_maps_cuda_visible_devices_to_nvml_indices(tmp_path, monkeypatch):
    clock = ManualClock(0.0)
    nv = StandinNVML([Gpu(uuid=u, offset=5.0) for u in uuids(3)], clock)
    cuda = QueuedCuda(clock, n=2, contexts={0, 1})
    monkeypatch.setitem(sys.modules, "torch", fake_torch(cuda))
    # ordinal 0 = gpu:2, ordinal 1 = gpu:1; this meter reads gpu:2 only
    sensor = NvmlSensor(nvml=nv, visible="2,1", select=["gpu:2"])
    assert sensor.devices == ["gpu:2"]
    with EnergyMeter(tmp_path / "run", sensors=[sensor], idle_seconds=0,
                     sample_hz=0) as meter:
        cuda.synced.clear()
        with meter.stage("student.train"):
            pass
    assert set(cuda.synced) == {0}  # gpu:2 is CUDA ordinal 0; gpu:1 (ordinal 1) not metered
