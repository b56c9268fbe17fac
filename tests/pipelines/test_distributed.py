"""Student training across processes: a real torchrun job of two CPU ranks (gloo) trains
the shared loop in DDP and in FSDP (FULL_SHARD) and must learn exactly what one process
learns from the same global batches; shards are deterministic and cover every batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from distillmeter.energy.ranks import RankInfo
from distillmeter.pipelines.data import collate, encode_pairs
from distillmeter.pipelines.scale.distributed import Distributed

HERE = Path(__file__).parent
TORCHRUN = (shutil.which("torchrun", path=str(Path(sys.executable).parent))
            or shutil.which("torchrun"))


def torchrun(script: Path, *args: str, nproc: int = 2, timeout: int = 300,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node N script args`` (a free port each time)."""
    if TORCHRUN is None:
        pytest.skip("torchrun not found next to this Python")
    target = ["-m", *args] if str(script) == "-m" else [str(script), *args]
    proc = subprocess.run([TORCHRUN, "--standalone", f"--nproc_per_node={nproc}", *target],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


@pytest.fixture(scope="module")
def ddp_job(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    torchrun(HERE / "ddp_worker.py", str(out))
    return out


@pytest.fixture(scope="module")
def alone():
    sys.path.insert(0, str(HERE))
    try:
        import ddp_worker
    finally:
        sys.path.remove(str(HERE))
    torch.set_num_threads(1)
    res = ddp_worker.run(Distributed.single())
    return res


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_ranks_learn_what_one_process_learns(ddp_job, alone, strategy):
    ranks = [json.loads((ddp_job / f"{strategy}.rank{k}.json").read_text()) for k in (0, 1)]
    # the budget is global: both ranks stop at the same step, with the same tokens
    assert ranks[0]["steps"] == ranks[1]["steps"] == alone.steps
    assert ranks[0]["tokens"] == alone.tokens
    assert ranks[0]["rank_tokens"] + ranks[1]["rank_tokens"] == alone.tokens
    assert 0 < ranks[1]["rank_tokens"] < alone.tokens
    # the global loss curve and the trained weights are the single process's
    assert ranks[0]["losses"] == pytest.approx(alone.losses, rel=1e-4, abs=1e-5)
    assert ranks[0]["losses"] == ranks[1]["losses"]
    state = torch.load(ddp_job / f"{strategy}.pt")
    ref = alone.model.state_dict()
    assert set(state) == set(ref)
    for k, v in ref.items():
        torch.testing.assert_close(state[k], v, rtol=1e-4, atol=1e-5, msg=k)
    # FSDP hands the gathered model to rank 0 only
    assert ranks[1]["model_is_none"] == (strategy == "fsdp")


def test_shards_are_deterministic_disjoint_and_weighted(tokenizer, task_data):
    seqs = encode_pairs(tokenizer, [(e.prompt, e.target) for e in task_data.labelled], 32)
    batch = collate(seqs, list(range(5)), tokenizer.pad_token_id)
    parts = [Distributed(RankInfo(rank=k, world_size=2, local_rank=k, local_world_size=2))
             .shard(batch) for k in (0, 1)]
    assert [p.index for p, _ in parts] == [[0, 2, 4], [1, 3]]
    positions = [int(p.loss_mask.sum()) for p, _ in parts]
    # weights = world x share of learned positions: they average to 1
    assert sum(w for _, w in parts) / 2 == pytest.approx(1.0)
    assert parts[0][1] == pytest.approx(2 * positions[0] / sum(positions))
    # a batch smaller than the world: the rank without rows runs one with weight 0
    one = collate(seqs, [7], tokenizer.pad_token_id)
    d1 = Distributed(RankInfo(rank=1, world_size=2, local_rank=1, local_world_size=2))
    rows, w = d1.shard(one)
    assert rows.index == [7] and w == 0.0
    alone = Distributed.single().shard(batch)
    assert alone[0] is batch and alone[1] == 1.0


# --------------------------------------------------------------------------- the pipeline


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory, tiny_run_dict):
    """``distributed_run(strategy)``: `torchrun --nproc_per_node 2 -m distillmeter.cli run`
    on the tiny config (cached KD), once per strategy: rank 0 makes the teacher side alone
    (rank 1 meters along), both ranks train the student, rank 0 evaluates."""
    import yaml

    done: dict[str, tuple] = {}

    def run(strategy: str):
        if strategy not in done:
            tmp = tmp_path_factory.mktemp(f"run-{strategy}")
            cfg = {**tiny_run_dict,
                   "methods": [{"name": "kd", "data": ["labelled"], "loss": "kd"}],
                   "meter": {"idle_seconds": 0.2, "sample_hz": 20.0},
                   "distributed": {"strategy": strategy}}
            (tmp / "tiny.yaml").write_text(yaml.safe_dump(cfg))
            proc = torchrun(Path("-m"), "distillmeter.cli", "run", str(tmp / "tiny.yaml"),
                            "--out", str(tmp / "runs"))
            done[strategy] = (tmp / "runs", proc)
        return done[strategy]

    return run


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_torchrun_pipeline_writes_ranks_and_one_merged_report_per_run(distributed_run,
                                                                      strategy):
    import math

    from distillmeter.protocol import load_report, read_ledger

    runs, proc = distributed_run(strategy)
    assert proc.stdout.count("students: ") == 1  # rank 0 speaks
    student, teacher = runs / "kd-s0", next(runs.glob("teacher-*"))
    for run in (teacher, student):
        assert sorted(p.name for p in (run / "ranks").iterdir()) == ["rank0", "rank1"]
        report = load_report(run)
        assert report.status == "ok", report.warnings
        t = report.totals
        assert math.isclose(t.stages_j + t.unattributed_j, t.energy_j, abs_tol=1e-6)
        # the node's CPU and DRAM once (rank 0's), not once per rank
        assert report.devices == ["cpu:0", "dram:0"]
        assert read_ledger(run / "ranks" / "rank1").run_start.devices == []
        ranks = report.model_extra["ranks"]
        assert [r["rank"] for r in ranks] == [0, 1]
        # every rank went through the same stages (rank 1 mirrored the teacher's), but
        # setup.idle: rank 1 meters no device, so it has no idle power to measure
        names = [[s["name"] for s in r["stages"]] for r in ranks]
        assert names[0] == [s.name for s in report.stages] and names[0][0] == "setup.idle"
        assert names[1] == names[0][1:]
        assert not any("was not run on rank" in w for w in report.warnings)
    rep = load_report(student)
    train = next(s for s in rep.stages if s.name == "student.train")
    per_rank = [next(s for s in r["stages"] if s["name"] == "student.train")["tokens"]
                for r in rep.model_extra["ranks"]]
    log = json.loads(next((student / "artifacts").glob("train-*/train.json")).read_text())
    assert log["world_size"] == 2 and train.tokens == sum(per_rank) == log["tokens"]
    assert all(n > 0 for n in per_rank)
    assert rep.quality is not None and rep.quality.details["teacher_value"] is not None
    assert next((student / "artifacts").glob("student-*/model.safetensors")).exists()
    teacher_rep = load_report(teacher)
    rank1 = teacher_rep.model_extra["ranks"][1]
    assert all(s["tokens"] == 0 for s in rank1["stages"])  # rank 0 did the teacher's work


@pytest.mark.slow
def test_torchrun_pipeline_resumes_and_report_sees_two_runs(distributed_run):
    from distillmeter.analysis.loading import find_run_dirs
    from distillmeter.protocol import read_ledger

    runs, _ = distributed_run("ddp")
    before = {p.name: (p / "ledger.jsonl").read_text() for p in runs.iterdir() if p.is_dir()}
    proc = torchrun(Path("-m"), "distillmeter.cli", "run",
                    str(runs.parent / "tiny.yaml"), "--out", str(runs), "--resume")
    # every run found done: nothing run again on any rank, the followers told to stop
    after = {p.name: (p / "ledger.jsonl").read_text() for p in runs.iterdir() if p.is_dir()}
    assert after == before
    assert "0 run, 1 already done" in proc.stdout and "(found, not run again)" in proc.stdout
    assert read_ledger(runs / "kd-s0").run_end.status == "ok"
    assert [p.name for p in find_run_dirs(runs)] == ["kd-s0", next(runs.glob("teacher-*")).name]
