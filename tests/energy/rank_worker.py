"""One rank of a multi-process job for test_ranks.py: the real RankMeter, a file barrier
(no torch, so the job starts in a second), or with ``NO_SYNC`` none at all. Rank 1 burns
CPU in student.train while rank 0 sleeps: the node's CPU estimate, read by rank 0 alone,
must still see rank 1's work.

    python rank_worker.py RUN_DIR SYNC_DIR      (RANK, WORLD_SIZE, LOCAL_RANK, ... set)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from distillmeter.energy.ranks import RankMeter

run_dir, sync_dir = Path(sys.argv[1]), Path(sys.argv[2])
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
crossed = 0


def barrier() -> None:
    """Every rank touches a file, then waits for the others' (a real cross-process sync)."""
    global crossed
    crossed += 1
    (sync_dir / f"{crossed}.{rank}").touch()
    deadline = time.monotonic() + 60
    while not all((sync_dir / f"{crossed}.{k}").exists() for k in range(world)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank {rank}: barrier {crossed} timed out")
        time.sleep(0.002)


def busy(seconds: float) -> float:
    """Burn ``seconds`` of this process's CPU time; return what it really took."""
    t0 = time.process_time()
    x = 0
    while time.process_time() - t0 < seconds:
        x += 1
    return time.process_time() - t0


train_cpu = 0.0
time.sleep(float(os.environ.get("START_DELAY", "0")))  # a rank slower to start (imports)
# NO_SYNC: no collective at all (as the Trainer callback runs it): the ranks meet through
# their files, with bounded waits
ranks_meet = ({"host_wait_s": 30, "merge_wait_s": 30} if os.environ.get("NO_SYNC")
              else {"sync": lambda event, stage: barrier(), "barrier": barrier})
with RankMeter(run_dir, idle_seconds=0.3, sample_hz=50, method="kd", seed=0, config_id="c1",
               config={"job": "rank test"}, **ranks_meet) as meter:
    with meter.stage("setup.load"):
        time.sleep(0.1)
    with meter.stage("student.train") as st:
        if rank == 1:
            train_cpu = busy(float(os.environ.get("BUSY_S", "0.8")))
        else:
            time.sleep(0.3)
        st.add(tokens=100 * (rank + 1), samples=rank + 1)
    with meter.stage("eval.student"):
        time.sleep(0.1)
    if rank == 0:
        meter.record_quality("exact_match", 0.5, n=10)
(sync_dir / f"cpu.rank{rank}.json").write_text(json.dumps({"train_cpu_s": train_cpu,
                                                           "merged": meter.merged}))
