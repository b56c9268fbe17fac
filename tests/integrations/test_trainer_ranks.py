"""DistillMeterCallback in a real multi-process Trainer job: ``torchrun --nproc_per_node 2``
(gloo, CPU) of a plain transformers ``Trainer`` on a tiny Llama built here
(trainer_ddp_worker.py), against the same work in one process, and the real
``accelerate launch --num_processes 2 --cpu``, which starts one process.

The job must end (a callback that left the ranks' collectives unequal hung here: rank 0
waited alone in the Trainer's token-count gather), write one merged report with the
tokens the Trainer was fed, and count both ranks' CPU time in the node's CPU estimate."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytest.importorskip("accelerate", reason="transformers' Trainer needs accelerate "
                    "(pip install 'distillmeter[trainer]')")

from distillmeter.analysis.loading import find_run_dirs  # noqa: E402
from distillmeter.protocol import load_report, read_ledger  # noqa: E402

pytestmark = pytest.mark.slow  # three Trainer processes start: ~10 s of imports each

WORKER = Path(__file__).with_name("trainer_ddp_worker.py")
BIN = Path(sys.executable).parent
STEPS, GLOBAL_BATCH, N_TRAIN = 144, 8, 96  # 12 epochs whichever way the batches are cut
TIMEOUT_S = 240  # the hang this guards against never ends; a good run takes ~20 s here


def run(cmd: list[str], out: Path, steps: int = STEPS) -> subprocess.CompletedProcess:
    """Run ``cmd WORKER OUT``; on timeout kill the launcher and every process under it
    (torchrun starts each rank in a session of its own) and fail saying it hung."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STEPS": str(steps)}
    proc = subprocess.Popen([*cmd, str(WORKER), str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        tree = psutil.Process(proc.pid).children(recursive=True)
        for p in [psutil.Process(proc.pid), *tree]:
            with contextlib.suppress(psutil.Error):
                p.kill()
        stdout, stderr = proc.communicate(timeout=60)
        pytest.fail(f"{' '.join(cmd)} hung: still running after {TIMEOUT_S} s\n"
                    f"{stderr[-4000:]}")
    assert proc.returncode == 0, stdout[-2000:] + stderr[-6000:]
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not found next to this Python")
    return path


def ranks(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two")
    run([tool("torchrun"), "--standalone", "--nproc_per_node=2"], out)
    return out


@pytest.fixture(scope="module")
def one(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one")
    run([sys.executable], out)
    return out


def cpu_estimate(run_dir: Path) -> dict:
    env = json.loads((run_dir / "environment.json").read_text())
    return next(s for s in env["sensors"] if s["kind"] == "estimate")


def counted_cpu_s(energy_j: float, seconds: float, est: dict) -> float:
    """The CPU seconds a CPU estimate counted, from its energy over ``seconds``:
    E = P_idle x t + (TDP - P_idle) x cpu_s / logical CPUs (energy/sensors/cpu_estimate.py)."""
    return ((energy_j - est["idle_w"] * seconds) * est["logical_cpus"]
            / (est["machine_tdp_w"] - est["idle_w"]))


def test_two_ranks_finish_with_one_merged_report_and_the_tokens_fed(two, one):
    r = ranks(two)
    assert [x["rank"] for x in r] == [0, 1] and all(x["world"] == 2 for x in r)
    assert all(x["steps"] == STEPS for x in r)
    assert [x["report"] for x in r] == [True, False]  # rank 0 accounts the merged run
    run_dir = two / "run"
    assert find_run_dirs(two) == [run_dir]  # one run, not one per rank
    report = load_report(run_dir)  # the merged report.json, validated
    assert report.status == "ok", report.warnings
    assert [x["rank"] for x in report.model_extra["ranks"]] == [0, 1]
    assert read_ledger(run_dir).run_end is not None  # merged by rank 0 once both ended
    assert [s.name for s in report.stages] == ["setup.idle", "setup.load", "student.train"]
    train = next(s for s in report.stages if s.name == "student.train")
    # the Trainer's count (gathered over ranks) recorded once: 12 epochs of the data set's
    # non-padding tokens, as the one-process run of the same work records
    fed = STEPS * GLOBAL_BATCH // N_TRAIN * r[0]["dataset_tokens"]
    assert train.tokens == r[0]["tokens_seen"] == fed
    alone = next(s for s in load_report(one / "run").stages if s.name == "student.train")
    assert alone.tokens == fed
    assert train.samples == alone.samples == STEPS * GLOBAL_BATCH
    assert "cpu:0" in report.devices and "dram:0" in report.devices  # the host, once


def test_the_node_cpu_estimate_counts_both_ranks_cpu_time(two):
    r = ranks(two)
    used = sum(x["cpu_s"] for x in r)
    assert min(x["cpu_s"] for x in r) > 0.3 * used  # both ranks worked
    # rank 0's estimate over its whole run (its own ledger: its own clock and counters)
    rank0 = two / "run" / "ranks" / "rank0"
    own = read_ledger(rank0)
    energy = own.run_end.readings["cpu:0"] - own.run_start.readings["cpu:0"]
    counted = counted_cpu_s(energy, own.run_end.t - own.run_start.t, cpu_estimate(rank0))
    # every rank's CPU seconds are in it (plus torchrun's own, a little); rank 0's alone
    # would be about half
    assert counted >= 0.85 * used, (counted, [x["cpu_s"] for x in r])
    assert counted <= 1.3 * used + 1.0, (counted, used)
    assert not any("never among them" in w.message for w in read_ledger(two / "run")
                   .of("warning"))


def test_cpu_joules_per_cpu_second_match_one_process(two, one):
    """The estimate's CPU energy above idle per CPU-second the processes used in training:
    the same in one process as in two. (The idle floor is per wall second, the same for
    one busy process as for two, so total J per CPU-second depends on how many cores were
    busy; above idle the model gives (TDP - idle) / logical CPUs per CPU-second.)"""
    figures = {}
    for name, out in (("one", one), ("two", two)):
        report = load_report(out / "run")
        train = next(s for s in report.stages if s.name == "student.train")
        cpu_j = train.energy_j["cpu:0"]
        active_j = cpu_j - report.idle_power_w["cpu:0"] * train.seconds
        used = sum(x["train_cpu_s"] for x in ranks(out))
        figures[name] = {"cpu_s": used, "J/cpu_s": cpu_j / used,
                         "active J/cpu_s": active_j / used}
    print(json.dumps(figures, indent=1))  # the figures the docs quote (pytest -s)
    ratio = figures["two"]["active J/cpu_s"] / figures["one"]["active J/cpu_s"]
    assert 0.7 <= ratio <= 1.3, figures


def test_accelerates_simple_launcher_runs_one_process_and_says_so(tmp_path):
    proc = run([tool("accelerate"), "launch", "--num_processes", "2", "--cpu",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"],
               tmp_path, steps=4)
    lines = [ln for ln in proc.stderr.splitlines()
             if ln.startswith("distillmeter: accelerate launch asked for several processes")]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "not distributed" in lines[0] and "torchrun --nproc_per_node" in lines[0]
    assert [x["world"] for x in ranks(tmp_path)] == [1]  # one process, and it knows it
    run_dir = tmp_path / "run"
    assert not (run_dir / "ranks").exists()
    report = load_report(run_dir)
    assert any("accelerate launch asked for several processes" in w for w in report.warnings)
