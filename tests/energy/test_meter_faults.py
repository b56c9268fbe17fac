"""What the meter does when things go wrong: a second meter, a stale lock, NVML errors,
counter resets, foreign GPU processes, a dead sampler, a resumed run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from nvml_standin import Gpu, Recording, StandinNVML, uuids

from distillmeter.energy import EnergyMeter, NvmlSensor
from distillmeter.errors import UserError
from distillmeter.protocol import read_ledger, read_trace
from distillmeter.storage.runlock import LOCK_FILE

REC = Recording.load()


def standin(n: int = 1) -> StandinNVML:
    """GPUs replaying the recorded H100 readings in real time, from the start of its load
    phase (~1 s into the recording)."""
    t0 = time.monotonic()
    return StandinNVML([Gpu(uuid=u, offset=1.0) for u in uuids(n)],
                       lambda: time.monotonic() - t0, REC)


def warnings_of(run_dir, **match) -> list:
    return [w for w in read_ledger(run_dir).of("warning")
            if all(getattr(w, k) == v for k, v in match.items())]


# ----------------------------------------------------------------------------- the lock
def test_a_second_meter_on_the_same_run_dir_is_refused(tmp_path):
    with EnergyMeter(tmp_path, idle_seconds=0, sample_hz=0):
        with pytest.raises(UserError) as err:
            EnergyMeter(tmp_path, idle_seconds=0, sample_hz=0, resume=True).start()
    msg = str(err.value)
    assert f"pid {os.getpid()}" in msg and socket.gethostname() in msg and "started" in msg
    # The refused meter touched nothing: the first run's ledger is intact.
    assert read_ledger(tmp_path).run_end.status == "ok"


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_FILE).write_text(json.dumps({
        "pid": dead.pid, "host": socket.gethostname(), "started": time.time() - 60,
        "started_iso": "2026-01-01T00:00:00+00:00", "run_id": "old"}))
    with EnergyMeter(tmp_path, idle_seconds=0, sample_hz=0):
        pass
    assert any(f"pid {dead.pid}" in w.message and "stale" in w.message
               for w in warnings_of(tmp_path))


def test_a_lock_held_on_another_host_is_not_taken_over(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps(
        {"pid": 1, "host": "node-17", "started": 0, "started_iso": "then", "run_id": "x"}))
    with pytest.raises(UserError, match="node-17"):
        EnergyMeter(tmp_path, idle_seconds=0, sample_hz=0).start()


# ----------------------------------------------------------------------------- NVML
def test_gpu_run_reads_the_counter_at_boundaries_and_sparsely_in_the_trace(tmp_path):
    nv = standin()
    sensor = NvmlSensor(nvml=nv, visible=None, counter_every=4)
    with EnergyMeter(tmp_path, sensors=[sensor], idle_seconds=0.3, sample_hz=40) as meter:
        with meter.stage("teacher.logits") as st:
            time.sleep(0.5)
    recorded = {e / 1000 for e in REC.energy_mj}
    ledger = read_ledger(tmp_path)
    assert ledger.run_start.sources == {"gpu:0": "nvml_counter"}
    for ev in ledger.events:
        for value in (getattr(ev, "readings", None) or {}).values():
            assert value in recorded
    assert st.energy_j["gpu:0"] > 0
    idle = ledger.of("idle_baseline")[0]
    assert 50 < idle.power_w < 800  # an H100's draw, from the counter delta
    gpu = read_trace(tmp_path).series("gpu:0")
    with_counter = sum(1 for e in gpu["energy_j"] if e == e)
    assert len(gpu["t"]) >= 8 and with_counter == pytest.approx(len(gpu["t"]) / 4, abs=1)
    assert all(p == p for p in gpu["power_w"])  # POWER_INSTANT in every row
    assert nv.calls["nvmlDeviceGetPowerUsage"] == 0  # the 1 s average is never read


def test_nvml_error_at_a_boundary_is_none_and_a_warning_never_zero(tmp_path):
    nv = standin()
    with EnergyMeter(tmp_path, sensors=[NvmlSensor(nvml=nv, visible=None)], idle_seconds=0,
                     sample_hz=0) as meter:
        with meter.stage("student.train"):
            nv.fail("nvmlDeviceGetTotalEnergyConsumption", 15)
    end = read_ledger(tmp_path).of("stage_end")[0]
    assert end.readings == {"gpu:0": None}
    (w,) = warnings_of(tmp_path, device="gpu:0")
    assert "GPU is lost" in w.message and w.stage == "student.train"
    assert read_ledger(tmp_path).run_end.readings["gpu:0"] is not None  # it recovered


def test_a_counter_that_goes_backwards_is_named(tmp_path):
    nv = standin()
    with EnergyMeter(tmp_path, sensors=[NvmlSensor(nvml=nv, visible=None)], idle_seconds=0,
                     sample_hz=0) as meter:
        with meter.stage("student.train"):
            nv.gpus[0].counter_shift_mj = -10**9  # a driver reload resets the counter
    (w,) = warnings_of(tmp_path, device="gpu:0")
    assert "went backwards" in w.message


def test_other_processes_on_a_metered_gpu_are_named(tmp_path):
    nv = standin()
    nv.gpus[0].processes = [1, os.getpid()]  # pid 1 is not ours; our own pid is fine
    with EnergyMeter(tmp_path, sensors=[NvmlSensor(nvml=nv, visible=None)], idle_seconds=0,
                     sample_hz=0) as meter:
        with meter.stage("student.train"):
            pass
    (w,) = warnings_of(tmp_path, device="gpu:0")
    assert "pids 1)" in w.message and "contamination" in w.message


def test_a_dead_sampler_degrades_stages_but_the_run_goes_on(tmp_path):
    nv = standin()
    sensor = NvmlSensor(nvml=nv, visible=None)
    nv.fail("nvmlDeviceGetFieldValues", RuntimeError("driver crashed"))
    with EnergyMeter(tmp_path, sensors=[sensor], idle_seconds=0, sample_hz=50) as meter:
        deadline = time.monotonic() + 10
        while meter._sampler.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        with meter.stage("eval.student") as st:
            pass
    assert st.energy_j["gpu:0"] is not None  # boundary readings still work
    messages = [w.message for w in warnings_of(tmp_path)]
    assert any("sampler died" in m and "driver crashed" in m for m in messages)
    assert warnings_of(tmp_path, stage="eval.student")[0].message.startswith(
        "stage eval.student degraded")
    assert read_ledger(tmp_path).run_end.status == "ok"


# ----------------------------------------------------------------------------- resume
def test_resume_continues_the_same_run(tmp_path):
    with EnergyMeter(tmp_path, idle_seconds=0.1, sample_hz=40) as first:
        with first.stage("teacher.train"):
            time.sleep(0.1)
    last_t = read_ledger(tmp_path).events[-1].t
    with open(tmp_path / "ledger.jsonl", "a") as f:
        f.write('{"event": "stage_start", "t": 9')  # a crash mid-write
    with EnergyMeter(tmp_path, idle_seconds=0.1, sample_hz=40, resume=True) as second:
        with second.stage("student.train"):
            time.sleep(0.1)
    assert second.run_id == first.run_id
    ledger = read_ledger(tmp_path)
    assert not ledger.warnings and len(ledger.of("run_start")) == 1
    resumed = [e for e in ledger.of("warning") if e.message.startswith("resumed")]
    assert len(resumed) == 1 and resumed[0].t >= last_t
    # idle measured once, by the first session (in its setup.idle stage)
    assert [e.stage for e in ledger.of("stage_end")] == ["setup.idle", "teacher.train",
                                                         "student.train"]
    assert len(ledger.of("idle_baseline")) == len(first.devices)
    times = [e.t for e in ledger.events]
    assert times == sorted(times)
    assert not read_trace(tmp_path).warnings  # still in time order
    # Modelled counters continue instead of starting again from zero.
    end_first = ledger.of("run_end")[0].readings
    for d, v in ledger.of("stage_start")[-1].readings.items():
        assert v >= end_first[d]


def test_resume_under_another_run_id_is_refused(tmp_path):
    with EnergyMeter(tmp_path, idle_seconds=0, sample_hz=0):
        pass
    with pytest.raises(UserError, match="cannot resume"):
        EnergyMeter(tmp_path, idle_seconds=0, sample_hz=0, resume=True, run_id="other").start()
