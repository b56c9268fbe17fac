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
from distillmeter.pipelines.distributed import Distributed

HERE = Path(__file__).parent
TORCHRUN = (shutil.which("torchrun", path=str(Path(sys.executable).parent))
            or shutil.which("torchrun"))


def torchrun(script: Path, *args: str, nproc: int = 2, timeout: int = 300,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node N script args`` (a free port each time)."""
    if TORCHRUN is None:
        pytest.skip("torchrun not found next to this Python")
    proc = subprocess.run([TORCHRUN, "--standalone", f"--nproc_per_node={nproc}", str(script),
                           *args], capture_output=True, text=True, timeout=timeout,
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
