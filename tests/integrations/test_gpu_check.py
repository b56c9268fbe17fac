"""scripts/gpu_check.py: the comparison and floors on recorded H100 data, the reader's
failure reporting with the real pynvml (no driver here), and the whole script in its
--cpu-smoke mode as a subprocess."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from distillmeter.accounting import account
from distillmeter.protocol import load_report, read_ledger

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
RUN_A = ROOT / "tests" / "data" / "h100-run-a"
FLOORS = json.loads((ROOT / "tests" / "data" / "h100-floors.json").read_text())


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


lib = _load("gpu_check_lib")


def _recorded_reader():
    """The recorded run's counter readings (trace.csv) as a reader would have them."""
    s = lib.Samples()
    with open(RUN_A / "trace.csv") as f:
        for row in csv.DictReader(f):
            if row["energy_j"]:
                t = float(row["t"])
                s.add(t, t, float(row["energy_j"]))
    return s.sort()


def _windows(report, scale: dict[str, float] | None = None):
    scale = scale or {}
    return [lib.Window(st.name, st.t_start, st.t_end,
                       st.energy_j["gpu:0"] * scale.get(st.name, 1.0)) for st in report.stages]


def test_recorded_run_passes_against_its_counter_readings():
    report = account(RUN_A)
    rows = lib.compare(_windows(report), _recorded_reader(), origin=0.0)
    by = {r["stage"]: r for r in rows}
    long = [r for r in rows if r["seconds"] >= 2.0]
    assert {r["stage"] for r in long} == {"teacher.logits", "student.train", "eval.student",
                                          "teacher.generate"}
    assert all(r["ok"] for r in long), [r["why"] for r in long]
    assert all(abs(r["error_pct"]) < 3 for r in long)
    assert by["setup.load"]["checked"] is False and by["setup.load"]["ok"] is None
    truth = json.loads((RUN_A / "truth.json").read_text())["stages"]
    for t in truth:  # the report is the counter delta the truth file records
        assert by[t["stage"]]["report_j"] == pytest.approx(t["energy_j"], abs=1e-6)


def test_misaligned_clock_or_wrong_energy_fails():
    report = account(RUN_A)
    for offset in (0.05, 0.3):  # seconds between the meter's clock and the reader's
        shifted = lib.compare(_windows(report), _recorded_reader(), origin=offset)
        assert not all(r["ok"] for r in shifted if r["checked"]), offset
    wrong = lib.compare(_windows(report, {"student.train": 1.02}), _recorded_reader(), 0.0)
    bad = [r for r in wrong if r["ok"] is False]
    assert [r["stage"] for r in bad] == ["student.train"]
    assert "outside the reader's bracket" in bad[0]["why"]


def test_counter_at_brackets_and_picks_the_nearest_reading():
    s = lib.Samples()
    for t, e in [(0.0, 10.0), (0.05, 10.0), (0.10, 12.0), (0.15, 12.0), (0.20, 15.0)]:
        s.add(t, t + 0.004, e)
    assert lib.counter_at(s, 0.075, margin=0.005) == (10.0, 12.0, 10.0)
    assert lib.counter_at(s, 0.13, margin=0.005) == (12.0, 12.0, 12.0)
    assert lib.counter_at(s, 0.0, margin=0.005) is None  # nothing read before it
    assert lib.counter_at(s, 0.30, margin=0.005) is None  # nothing read after it
    w = lib.compare([lib.Window("x", 0.02, 0.17, 2.0)], s, origin=0.0)[0]
    assert (w["reader_j"], w["checked"]) == (2.0, False)


def test_no_readings_around_a_boundary_fails():
    s = lib.Samples()
    s.add(0.0, 0.004, 1.0)
    s.add(1.0, 1.004, 2.0)
    row = lib.compare([lib.Window("x", 0.5, 5.0, 3.0)], s, origin=0.0)[0]
    assert row["ok"] is False and "no readings" in row["why"]


def test_floors_reproduce_the_recorded_generation_study():
    f = FLOORS
    for g in f["generate"]:
        floor, bound = lib.floor_per_token(
            "teacher.generate", f["params"], j_per_flop=f["matmul"]["pj_per_flop"] * 1e-12,
            j_per_byte=f["copy"]["pj_per_byte"] * 1e-12, batch_tokens=g["batch"])
        assert floor == pytest.approx(g["floor_j_per_tok"], rel=1e-9)
        assert bound == ("weight streaming" if g["batch"] < 128 else "compute")
    train, bound = lib.floor_per_token("student.train", 1e8, j_per_flop=1e-12,
                                       j_per_byte=1e-10, batch_tokens=1)
    assert (train, bound) == (pytest.approx(6e-4), "compute")


def test_reader_reports_a_missing_nvml_instead_of_hanging(tmp_path):
    pytest.importorskip("pynvml")
    if os.path.exists("/dev/nvidiactl"):
        pytest.skip("an NVIDIA driver is present: NVML would start")
    stop, ready = threading.Event(), threading.Event()
    out = tmp_path / "reader.csv"
    lib.reader_main([0], str(out), stop, ready, 0.0)
    assert ready.is_set()
    assert "NVML" in (tmp_path / "reader.csv.error").read_text()
    assert out.read_text().splitlines() == [",".join(lib.CSV_HEADER)]


def test_missing_packages_are_named(tmp_path, monkeypatch, capsys):
    gc = _load("gpu_check")
    monkeypatch.setitem(gc.NEEDED, "no_such_module_xyz", "no-such-package")
    assert gc.main(["--cpu-smoke", "--out", str(tmp_path)]) == 2
    assert "pip install no-such-package" in capsys.readouterr().err
    assert json.loads((tmp_path / "gpu_check.json").read_text())["missing"] == [
        "no-such-package"]


@pytest.mark.slow
def test_cpu_smoke_runs_the_whole_script(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "PYTHONPATH")}
    proc = subprocess.run([sys.executable, str(SCRIPTS / "gpu_check.py"), "--cpu-smoke",
                           "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert res["status"] == "pass" and res["mode"] == "cpu-smoke"
    assert res["reader_check"] == {"skipped": "no NVML in --cpu-smoke mode"}
    names = [s["name"] for s in res["stages"]]
    assert names == ["setup.load", "teacher.logits", "teacher.generate", "student.train",
                     "eval.student"]
    report = load_report(tmp_path / "run")
    assert report.run_id == res["run_id"]
    by = {s.name: s for s in report.stages}
    plan = res["plan"]
    assert by["teacher.logits"].tokens == plan["n_seq"] * plan["seq_len"]
    assert by["teacher.generate"].samples == plan["n_prompts"]
    assert by["student.train"].tokens >= plan["train_tokens"]
    assert [r["stage"] for r in res["efficiency"]] == ["teacher.logits", "teacher.generate",
                                                       "student.train", "eval.student"]
    labels = read_ledger(tmp_path / "run" / "ledger.jsonl").run_start.labels
    assert labels["teacher_params"] == res["params"]["teacher"]
    assert "result: PASS" in (tmp_path / "gpu_check.txt").read_text()


# A pynvml for the spawned reader: the energy tests' stand-in, replaying the recorded H100
# readings on the machine's monotonic clock from a start time both processes read from a
# file, so the meter (in this process) and the reader (in another) see one counter.
FAKE_PYNVML = '''
import os, sys, time
sys.path.insert(0, os.environ["DM_STANDIN_DIR"])
from nvml_standin import Gpu, StandinNVML

_state = {}


def _clock():
    if "t0" not in _state:
        try:
            _state["t0"] = float(open(os.environ["DM_STANDIN_T0"]).read())
        except (FileNotFoundError, ValueError):
            return 0.0
    return time.monotonic() - _state["t0"]


sys.modules[__name__] = StandinNVML(
    [Gpu(uuid="GPU-standin-0", offset=float(os.environ["DM_STANDIN_OFFSET"]))], _clock)
'''


def test_spawned_reader_lines_up_with_the_meter(tmp_path, monkeypatch):
    from distillmeter.energy import EnergyMeter, NvmlSensor

    fake_dir = tmp_path / "fake"
    fake_dir.mkdir()
    (fake_dir / "pynvml.py").write_text(FAKE_PYNVML)
    t0_file = tmp_path / "t0"
    monkeypatch.setenv("DM_STANDIN_DIR", str(ROOT / "tests" / "energy"))
    monkeypatch.setenv("DM_STANDIN_T0", str(t0_file))
    # 3 s into the recording: idle, then full load from 0.7 s on (recording t = 42.6 s)
    monkeypatch.setenv("DM_STANDIN_OFFSET", "3.0")
    monkeypatch.syspath_prepend(str(SCRIPTS))
    monkeypatch.syspath_prepend(str(fake_dir))  # the spawned reader imports this pynvml
    gc = _load("gpu_check")
    spec = importlib.util.spec_from_file_location("dm_fake_pynvml", fake_dir / "pynvml.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    nvml = sys.modules.pop("dm_fake_pynvml")  # the meter's own instance, same clock

    out = tmp_path / "out"
    out.mkdir()
    proc, stop = gc.start_reader(0, out)
    try:
        (tmp_path / "t0.tmp").write_text(repr(time.monotonic()))
        (tmp_path / "t0.tmp").replace(t0_file)
        meter = EnergyMeter(tmp_path / "run", sensors=[NvmlSensor(nvml=nvml, visible=None)],
                            idle_seconds=0, sample_hz=20, write_environment=False)
        with meter:
            origin = gc.meter_origin(meter)
            for name, seconds in [("setup.load", 0.4), ("teacher.logits", 0.8),
                                  ("student.train", 0.8)]:
                with meter.stage(name):
                    time.sleep(seconds)
    finally:
        gc.stop_reader(proc, stop)
    assert proc.exitcode == 0 and not (out / "reader.csv.error").exists()
    report = account(tmp_path / "run")
    res = lib.reader_check(report, tmp_path / "run", out, 0, origin, min_seconds=0.3)
    assert [r["stage"] for r in res["rows"]] == ["setup.load", "teacher.logits",
                                                 "student.train", "(whole run)"]
    assert res["ok"], json.dumps(res["rows"], indent=1)
    assert res["reader_samples"] > 100
    late = lib.reader_check(report, tmp_path / "run", out, 0, origin + 0.2, min_seconds=0.3)
    assert not late["ok"]  # a clock 0.2 s off moves the load transition across a boundary
