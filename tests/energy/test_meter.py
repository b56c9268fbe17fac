"""The meter end to end on this CPU machine: a real workload, real files, read back with
the protocol's own readers."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import yaml

from distillmeter.energy import EnergyMeter
from distillmeter.protocol import read_ledger, read_trace


def work(seconds: float = 0.2) -> int:
    """A real CPU workload: small matrix products until ``seconds`` of wall time pass."""
    a = np.random.default_rng(0).standard_normal((96, 96))
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        a = np.tanh(a @ a.T / 96)
        n += 1
    return n


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished metered run: idle baseline, two stages (context manager, decorator),
    a Zeus-style window and a quality figure."""
    run_dir = tmp_path_factory.mktemp("meter") / "run"
    with EnergyMeter(run_dir, idle_seconds=0.2, sample_hz=40, method="kd", seed=3,
                     task="arith", labels={"note": "test"}, config={"lr": 1e-3}) as meter:
        with meter.stage("teacher.train", tokens=10) as st:
            st.add(tokens=work(), samples=4)

        @meter.stage("eval.student")
        def evaluate():
            meter.current_stage.add(samples=7)
            return work(0.1)

        evaluate()
        meter.begin_window("student.train")
        work(0.1)
        window = meter.end_window("student.train", tokens=5)
        meter.record_quality("exact_match", 0.5, n=20, details={"q": 0.9})
        power = meter.latest_power_w()
    return run_dir, meter, st, window, power


def test_files_follow_the_protocol(run):
    run_dir, meter, *_ = run
    ledger = read_ledger(run_dir)
    assert not ledger.warnings and not ledger.truncated
    kinds = [e.event for e in ledger.events]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end"
    # the idle baseline is measured first, in a stage of its own (setup.idle)
    assert [e.stage for e in ledger.of("stage_start")] == [
        "setup.idle", "teacher.train", "eval.student", "student.train"]
    # start/end alternate: no stage inside another
    boundaries = [(e.event, e.stage) for e in ledger.events if e.event.startswith("stage_")]
    assert boundaries == [(k, s) for s in ("setup.idle", "teacher.train", "eval.student",
                                           "student.train")
                          for k in ("stage_start", "stage_end")]
    times = [e.t for e in ledger.events]
    assert times == sorted(times) and times[0] >= 0
    trace = read_trace(run_dir)
    assert not trace.warnings
    assert set(trace.devices) == set(meter.devices) == set(ledger.run_start.devices)
    # The sampler ran on the ledger's clock, within the run.
    ts = trace.series("cpu:0")["t"]
    assert len(ts) >= 5 and times[0] - 0.01 <= ts[0] and ts[-1] <= times[-1] + 0.01
    assert (run_dir / "environment.json").exists()
    assert yaml.safe_load((run_dir / "config.yaml").read_text()) == {"lr": 1e-3}
    assert not (run_dir / ".distillmeter.lock").exists()


def test_run_start_carries_labels_and_sources(run):
    run_dir, meter, *_ = run
    start = read_ledger(run_dir).run_start
    assert start.run_id == meter.run_id and start.schema_ == "distillmeter/1"
    assert (start.method, start.seed, start.task) == ("kd", 3, "arith")
    assert start.labels == {"note": "test"}
    # No RAPL and no GPU here: every device is an estimate, and says so.
    assert start.sources["cpu:0"] in ("rapl", "estimate")
    warned = {e.device for e in read_ledger(run_dir).of("warning")}
    assert all(d in warned for d, src in start.sources.items() if src == "estimate")
    assert set(start.readings) == set(start.devices)


def test_idle_baseline_and_stage_readings(run):
    run_dir, meter, st, window, power = run
    ledger = read_ledger(run_dir)
    idle = {e.device: e for e in ledger.of("idle_baseline")}
    assert set(idle) == set(meter.devices)
    assert all(e.power_w > 0 and e.seconds == pytest.approx(0.2, abs=0.1) for e in idle.values())
    idle_end = ledger.of("stage_end")[0]  # the idle measurement's own stage
    assert idle_end.stage == "setup.idle" and idle_end.t == pytest.approx(
        next(iter(idle.values())).t, abs=0.05)
    end = ledger.of("stage_end")[1]
    assert end.tokens == st.tokens > 10 and end.samples == 4
    assert end.status == "ok"
    start = ledger.of("stage_start")[1]
    for d in meter.devices:
        assert end.readings[d] > start.readings[d]
        assert st.energy_j[d] == pytest.approx(end.readings[d] - start.readings[d])
    assert ledger.of("stage_end")[2].samples == 7
    assert window.tokens == 5 and ledger.of("stage_end")[3].tokens == 5
    q = ledger.of("quality")[-1]
    assert (q.metric, q.value, q.n, q.details) == ("exact_match", 0.5, 20, {"q": 0.9})
    assert power is not None and power > 0


def test_busy_stage_draws_more_than_the_idle_floor(run):
    run_dir, meter, st, *_ = run
    ledger = read_ledger(run_dir)
    idle_w = {e.device: e.power_w for e in ledger.of("idle_baseline")}
    assert st.energy_j["cpu:0"] > idle_w["cpu:0"] * st.seconds


def test_environment_snapshot(run):
    run_dir, meter, *_ = run
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["cpu"]["logical"] >= 1 and env["memory_bytes"] > 0
    assert env["packages"]["numpy"] == np.__version__
    assert "distillmeter" in env["packages"]
    assert env["sources"] == meter.sources
    assert env["command"]["argv"]
    assert env["git"] is None or len(env["git"]["commit"]) == 40


def test_nested_stages_are_refused_naming_both(tmp_path):
    with EnergyMeter(tmp_path, idle_seconds=0, sample_hz=0) as meter:
        with meter.stage("student.train"):
            with pytest.raises(ValueError, match="eval.student.*student.train"):
                with meter.stage("eval.student"):
                    pass
            with pytest.raises(ValueError, match="student.train"):
                meter.begin_window("teacher.generate")
        with pytest.raises(ValueError, match="no stage is running"):
            meter.end_window("student.train")
    assert [e.stage for e in read_ledger(tmp_path).of("stage_end")] == ["student.train"]


def test_bad_stage_name_is_a_clear_error(tmp_path):
    with EnergyMeter(tmp_path, idle_seconds=0, sample_hz=0) as meter:
        with pytest.raises(ValueError, match="side one of"):
            meter.stage("training")


def test_failing_stage_is_recorded_and_reraised(tmp_path):
    with pytest.raises(RuntimeError, match="out of memory"):
        with EnergyMeter(tmp_path, idle_seconds=0, sample_hz=0) as meter:
            with meter.stage("student.train"):
                raise RuntimeError("CUDA out of memory")
    ledger = read_ledger(tmp_path)
    end = ledger.of("stage_end")[-1]
    assert end.status == "failed" and "RuntimeError: CUDA out of memory" in end.error
    assert ledger.run_end.status == "failed"


def test_window_left_open_is_closed_as_failed(tmp_path):
    with EnergyMeter(tmp_path, idle_seconds=0, sample_hz=0) as meter:
        meter.begin_window("teacher.generate")
    ledger = read_ledger(tmp_path)
    assert ledger.of("stage_end")[-1].status == "failed"
    assert ledger.run_end.status == "failed"


def test_the_meter_refuses_to_overwrite_a_run(tmp_path):
    from distillmeter.errors import UserError

    with EnergyMeter(tmp_path, idle_seconds=0, sample_hz=0):
        pass
    with pytest.raises(UserError, match="already holds a run"):
        EnergyMeter(tmp_path, idle_seconds=0, sample_hz=0).start()


def test_repeated_warnings_are_written_once_and_counted(tmp_path):
    with EnergyMeter(tmp_path, idle_seconds=0, sample_hz=0) as meter:
        for _ in range(5):
            meter.warn("fan noise", device="cpu:0")
    messages = [e.message for e in read_ledger(tmp_path).of("warning") if "fan" in e.message]
    assert messages == ["fan noise", "repeated 5 times in all: fan noise"]
