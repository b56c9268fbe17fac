"""Multi-process metering: each rank meters its own devices, CPU/DRAM once per node, and
the ranks merge into one protocol-v1 run. Real processes (a launcher and two ranks, like
torchrun's agent and its workers), real meters, real files; no torch (see
tests/pipelines/test_distributed.py for DDP under torchrun with gloo)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from distillmeter.accounting import account, write_report
from distillmeter.analysis.loading import find_run_dirs
from distillmeter.energy.merge import merge_ranks, write_merged
from distillmeter.energy.ranks import RankInfo, lone_process_note, rank_gpu_entries
from distillmeter.protocol import load_report, read_ledger, read_trace
from distillmeter.protocol.names import rank_dirs

WORKER = Path(__file__).with_name("rank_worker.py")

# torchrun's agent in miniature: start every rank with its variables, wait for all. A rank
# whose variables hold WRAP runs under a wrapper process of its own (a per-rank shell, say).
LAUNCHER = textwrap.dedent("""
    import json, os, subprocess, sys
    worker, run_dir, sync_dir, envs = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    wrap = [sys.executable, "-c", "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"]
    procs = [subprocess.Popen((wrap if e.get("WRAP") else []) + [sys.executable, worker, run_dir,
                              sync_dir], env={**os.environ, **e}) for e in envs]
    sys.exit(max(p.wait() for p in procs))
""")


def launch(tmp_path: Path, envs: list[dict[str, str]], name: str = "run") -> Path:
    run_dir, sync_dir = tmp_path / name, tmp_path / f"{name}-sync"
    sync_dir.mkdir()
    proc = subprocess.run([sys.executable, "-c", LAUNCHER, str(WORKER), str(run_dir),
                           str(sync_dir), json.dumps(envs)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return run_dir


def one_node(world: int = 2) -> list[dict[str, str]]:
    return [{"RANK": str(k), "WORLD_SIZE": str(world), "LOCAL_RANK": str(k),
             "LOCAL_WORLD_SIZE": str(world), "GROUP_RANK": "0"} for k in range(world)]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    return launch(tmp_path_factory.mktemp("ranks"), one_node())


def test_each_rank_writes_its_own_run_and_rank0_merges(two_ranks):
    assert [k for k, _ in rank_dirs(two_ranks)] == [0, 1]
    r0 = read_ledger(two_ranks / "ranks" / "rank0")
    r1 = read_ledger(two_ranks / "ranks" / "rank1")
    # no GPU here: rank 0 meters the node's CPU and DRAM, rank 1 nothing of the host
    assert r0.run_start.devices == ["cpu:0", "dram:0"]
    assert r1.run_start.devices == []
    assert any("metered by local rank 0 only" in w.message for w in r1.of("warning"))
    meta = json.loads((two_ranks / "ranks" / "rank0" / "rank.json").read_text())
    assert meta["rank"] == 0 and meta["world_size"] == 2 and meta["cpu_process_root"]
    merged = read_ledger(two_ranks)  # written by rank 0 after the final barrier
    assert merged.run_start.run_id == r0.run_start.run_id
    assert merged.run_start.devices == ["cpu:0", "dram:0"]
    assert [r["rank"] for r in merged.run_start.ranks] == [0, 1]
    assert merged.run_end is not None and merged.run_end.status == "ok"
    assert (two_ranks / "config.yaml").exists() and (two_ranks / "environment.json").exists()


def test_merged_stages_span_every_rank_and_add_their_counts(two_ranks):
    merged = read_ledger(two_ranks)
    starts = [e for e in merged.of("stage_start")]
    ends = {e.stage: e for e in merged.of("stage_end")}
    # each rank measured its idle power first (setup.idle, not a collective boundary)
    assert [e.stage for e in starts] == ["setup.idle", "setup.load", "student.train",
                                         "eval.student"]
    assert ends["student.train"].tokens == 100 + 200 and ends["student.train"].samples == 3
    offsets = {r["rank"]: r["offset_s"] for r in merged.run_start.ranks}
    for k in (0, 1):
        own = read_ledger(two_ranks / "ranks" / f"rank{k}")
        s = next(e for e in own.of("stage_start") if e.stage == "student.train")
        e = next(e for e in own.of("stage_end") if e.stage == "student.train")
        # the merged window holds every rank's own window (on the merged clock)
        m0 = next(x for x in starts if x.stage == "student.train").t
        assert m0 <= s.t + offsets[k] + 1e-9 and ends["student.train"].t >= e.t + offsets[k] - 1e-9
    # stages never overlap after merging
    times = [(s.t, ends[s.stage].t) for s in starts]
    assert all(a[1] <= b[0] for a, b in zip(times, times[1:], strict=False))


def test_merged_report_validates_conserves_and_counts_the_host_once(two_ranks, tmp_path):
    report = account(two_ranks)
    write_report(two_ranks, report)
    loaded = load_report(two_ranks)
    assert loaded.devices == ["cpu:0", "dram:0"]
    t = loaded.totals
    assert math.isclose(t.stages_j + t.unattributed_j, t.energy_j, rel_tol=0, abs_tol=1e-6)
    assert loaded.status == "ok", loaded.warnings
    # the merged run's energy is rank 0's host energy: counted once, not once per rank
    r0 = account(two_ranks / "ranks" / "rank0")
    assert math.isclose(t.energy_j, r0.totals.energy_j, rel_tol=1e-9)
    train = next(s for s in loaded.stages if s.name == "student.train")
    assert train.tokens == 300
    # per-rank detail is kept
    ranks = loaded.model_extra["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0]["devices"] == {"cpu:0": "cpu:0", "dram:0": "dram:0"}
    assert ranks[1]["devices"] == {}
    r_train = next(s for s in ranks[0]["stages"] if s["name"] == "student.train")
    assert math.isclose(r_train["energy_j"]["total"], train.energy_j["total"], rel_tol=1e-9)
    assert next(s for s in ranks[1]["stages"] if s["name"] == "student.train")["tokens"] == 200


def test_node_cpu_estimate_sees_the_work_of_other_local_ranks(two_ranks):
    """Rank 1 burned ~0.8 s of CPU in student.train while rank 0 slept: rank 0's estimate
    (utilisation x TDP over the launcher's process tree) must count it."""
    sync = two_ranks.with_name(two_ranks.name + "-sync")
    busy = json.loads((sync / "cpu.rank1.json").read_text())["train_cpu_s"]
    assert busy > 0.5
    env = json.loads((two_ranks / "ranks" / "rank0" / "environment.json").read_text())
    est = next(s for s in env["sensors"] if s["kind"] == "estimate")
    per_cpu_second = (est["machine_tdp_w"] - est["idle_w"]) / est["logical_cpus"]
    report = load_report(two_ranks) if (two_ranks / "report.json").exists() else account(two_ranks)
    train = next(s for s in report.stages if s.name == "student.train")
    above_idle = train.energy_j["cpu:0"] - est["idle_w"] * train.seconds
    # at least rank 1's busy seconds (rank 0's own ~0 s; the launcher's a little)
    assert above_idle >= 0.9 * per_cpu_second * busy


def test_a_rank_outside_the_launchers_tree_is_named_not_silently_missed(tmp_path):
    """Rank 0 under a wrapper of its own: its parent's tree holds rank 0 alone, so rank 1's
    0.8 s of CPU are not in the node's estimate, and the run says so."""
    envs = one_node()
    envs[0]["WRAP"] = "1"
    run = launch(tmp_path, envs)
    pid1 = json.loads((run / "ranks" / "rank1" / "rank.json").read_text())["pid"]
    warnings = [w.message for w in read_ledger(run).of("warning")]
    assert any(f"rank 1 (pid {pid1}) on this host was never among them" in w
               for w in warnings), warnings


def test_without_collectives_ranks_meet_at_the_idle_baseline_and_the_merge(tmp_path):
    """NO_SYNC: no barrier anywhere (the Trainer callback's way). Rank 1 starts 1 s late:
    rank 0 measures the node's idle power only after rank 1 has arrived, rank 1 works only
    after that idle window, and rank 0 still merges once rank 1 has ended."""
    envs = [{**e, "NO_SYNC": "1"} for e in one_node()]
    envs[1]["START_DELAY"] = "1.0"
    run = launch(tmp_path, envs)
    r0 = json.loads((run / "ranks" / "rank0" / "rank.json").read_text())
    arrived1 = (run / "ranks" / "rank1" / "arrived.json").stat().st_mtime
    assert r0["t0_unix"] >= arrived1 - 0.05  # rank 0's run (and idle) began after arrival
    merged = read_ledger(run)  # written by rank 0: it waited for rank 1's run_end
    assert merged.run_end is not None and merged.run_end.status == "ok"
    offsets = {r["rank"]: r["offset_s"] for r in merged.run_start.ranks}
    own0, own1 = (read_ledger(run / "ranks" / f"rank{k}") for k in (0, 1))
    idle_end = next(e.t for e in own0.of("stage_end") if e.stage == "setup.idle") + offsets[0]
    load1 = next(e.t for e in own1.of("stage_start") if e.stage == "setup.load") + offsets[1]
    assert load1 >= idle_end - 1e-6
    assert not any("had not" in w.message for w in merged.of("warning"))


def test_report_command_sees_one_run_not_three(two_ranks):
    assert find_run_dirs(two_ranks.parent) == [two_ranks]


def test_unmerged_ranks_are_merged_in_memory_by_accounting(two_ranks, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(two_ranks, copy)
    for name in ("ledger.jsonl", "trace.csv", "report.json"):
        (copy / name).unlink(missing_ok=True)
    assert find_run_dirs(tmp_path) == [copy]
    report = account(copy)
    full = account(two_ranks)
    assert math.isclose(report.totals.energy_j, full.totals.energy_j, rel_tol=1e-9)
    assert any("merged in memory" in w for w in report.warnings)
    # writing the merge gives the same files as rank 0 wrote
    write_merged(copy)
    assert (copy / "ledger.jsonl").read_text() == (two_ranks / "ledger.jsonl").read_text()


def test_two_nodes_rename_devices_and_align_by_wall_clock(tmp_path):
    """Two 'nodes' of one rank each: both meter cpu:0/dram:0. On one machine that is one
    device metered twice (kept once, with a warning); claimed to be on another machine
    (rank.json edited), node 1's become cpu:1/dram:1."""
    envs = [{"RANK": str(k), "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
             "GROUP_RANK": str(k), "BUSY_S": "0.2"} for k in range(2)]
    run = launch(tmp_path, envs)
    merged = read_ledger(run)
    assert merged.run_start.devices == ["cpu:0", "dram:0"]
    assert any("kept once" in w.message for w in merged.of("warning"))
    report = account(run)
    assert math.isclose(report.totals.energy_j, account(run / "ranks" / "rank0").totals.energy_j,
                        rel_tol=1e-9)

    meta_path = run / "ranks" / "rank1" / "rank.json"
    meta = json.loads(meta_path.read_text())
    meta.update(host="node-b", boot_id="another-boot", t0_monotonic=meta["t0_monotonic"] + 1e6)
    meta_path.write_text(json.dumps(meta))
    m = merge_ranks(run)
    ledger_lines = [json.loads(x) for x in m.ledger_lines]
    assert ledger_lines[0]["devices"] == ["cpu:0", "dram:0", "cpu:1", "dram:1"]
    rank1 = ledger_lines[0]["ranks"][1]
    assert rank1["node"] == 1 and rank1["clock"] == "wall"
    assert rank1["devices"] == {"cpu:1": "cpu:0", "dram:1": "dram:0"}
    # a wall-clock offset, not the 1e6 s monotonic jump the edit put in
    assert abs(rank1["offset_s"]) < 5
    write_merged(run)
    trace = read_trace(run)
    assert set(trace.devices) == {"cpu:0", "dram:0", "cpu:1", "dram:1"}
    report = account(run)
    t = report.totals
    assert math.isclose(t.stages_j + t.unattributed_j, t.energy_j, abs_tol=1e-6)
    both = sum(account(p).totals.energy_j for _, p in rank_dirs(run))
    assert math.isclose(t.energy_j, both, rel_tol=1e-9)


@pytest.mark.parametrize("cvd,local,expect", [
    (None, 1, ["1"]),                                   # all visible: LOCAL_RANK's
    ("4,5,6,7", 2, ["6"]),                              # the rank's entry of the list
    ("GPU-aaa,GPU-bbb", 1, ["GPU-bbb"]),                # UUIDs
    ("3", 1, ["3"]),                                    # pinned by the launcher
    ("0,1", 3, []),                                     # too few for 4 ranks: a note
])
def test_rank_gpu_entries(cvd, local, expect):
    info = RankInfo(rank=local, world_size=4, local_rank=local, local_world_size=4)
    mine, notes = rank_gpu_entries(info, cvd)
    assert mine == expect
    assert bool(notes) == (expect == [])


def test_rank_info_from_mpi_launchers_as_accelerate_reads_them():
    ompi = RankInfo.from_env({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4",
                              "OMPI_COMM_WORLD_LOCAL_RANK": "1",
                              "OMPI_COMM_WORLD_LOCAL_SIZE": "2"})
    assert (ompi.rank, ompi.world_size, ompi.local_rank, ompi.node) == (3, 4, 1, 1)
    pmi = RankInfo.from_env({"PMI_RANK": "1", "PMI_SIZE": "2"})
    assert (pmi.rank, pmi.local_rank, pmi.local_world_size) == (1, 1, 2)
    # torchrun's variables win over an MPI or SLURM environment around them
    both = RankInfo.from_env({"RANK": "0", "WORLD_SIZE": "2", "PMI_RANK": "5",
                              "PMI_SIZE": "8", "SLURM_PROCID": "7", "SLURM_NTASKS": "8"})
    assert (both.rank, both.world_size) == (0, 2)


def test_accelerates_simple_launcher_is_told_apart():
    # what `accelerate launch --num_processes 2 --cpu` sets (accelerate 1.15, this venv)
    simple = {"ACCELERATE_MIXED_PRECISION": "no", "ACCELERATE_USE_CPU": "True",
              "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    note = lone_process_note(RankInfo.from_env(simple), simple)
    assert note is not None and "not distributed" in note and "torchrun" in note
    # --num_processes 1 sets no MASTER_ADDR; a real multi-process launch sets RANK/WORLD_SIZE
    one = {k: v for k, v in simple.items() if not k.startswith("MASTER")}
    assert lone_process_note(RankInfo.from_env(one), one) is None
    multi = {**simple, "RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}
    assert lone_process_note(RankInfo.from_env(multi), multi) is None
    assert lone_process_note(RankInfo(), {}) is None


def test_rank_info_from_env():
    assert RankInfo.from_env({}) == RankInfo()
    info = RankInfo.from_env({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1",
                              "LOCAL_WORLD_SIZE": "4", "GROUP_RANK": "1"})
    assert (info.rank, info.local_rank, info.node, info.distributed) == (5, 1, 1, True)
    slurm = RankInfo.from_env({"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1",
                               "SLURM_NTASKS_PER_NODE": "2", "SLURM_NODEID": "1"})
    assert (slurm.rank, slurm.local_rank, slurm.local_world_size, slurm.node) == (3, 1, 2, 1)


def test_rank_sensors_pick_each_ranks_gpu_through_nvml(monkeypatch):
    """The NVML path with the recorded-H100 stand-in (no GPU here): 4 GPUs on the node."""
    from nvml_standin import Gpu, ManualClock, Recording, StandinNVML, uuids

    from distillmeter.energy.ranks import rank_sensors

    nv = StandinNVML([Gpu(uuid=u) for u in uuids(4)], ManualClock(), Recording.load())
    monkeypatch.setitem(sys.modules, "pynvml", nv)

    def devices(local: int, cvd: str | None, selectors="auto") -> tuple[list[str], dict]:
        info = RankInfo(rank=local, world_size=4, local_rank=local, local_world_size=4)
        sensors, _, facts = rank_sensors(info, selectors, cuda_visible=cvd)
        out = [d for s in sensors for d in s.devices]
        for s in sensors:
            s.close()
        return out, facts

    # every GPU visible: each rank takes the one at its local rank; host on local rank 0
    got, facts = devices(0, None)
    assert got[0] == "gpu:0" and "cpu:0" in got and facts["gpu_count"] == 4
    assert devices(2, None)[0] == ["gpu:2"]
    # a UUID list in another order: rank 1's entry is the NVML index of that UUID
    ids = uuids(4)
    assert devices(1, f"{ids[3]},{ids[1]},{ids[0]},{ids[2]}")[0] == ["gpu:1"]
    assert devices(0, f"{ids[3]},{ids[1]},{ids[0]},{ids[2]}", "gpu")[0] == ["gpu:3"]
    # pinned by the launcher: the one visible GPU is the rank's, whatever its local rank
    assert devices(3, "2")[0] == ["gpu:2"]
