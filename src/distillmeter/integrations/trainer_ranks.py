"""Where a Trainer callback's process sits in its job, and the meter each process runs.

A multi-process Trainer job (torchrun, ``accelerate launch --multi_gpu``, MPI, SLURM) runs
the callback in every process. Each process meters its own devices with a
:class:`~distillmeter.energy.ranks.RankMeter` into ``RUN_DIR/ranks/rank<k>/`` (CPU and DRAM
by each node's local rank 0, its estimate counting every local rank's CPU time), and rank
0 merges them into ``RUN_DIR`` when every rank has ended. The callback never calls a
collective: the ranks meet only through their files, each wait bounded (at start a node's
local rank 0 waits for its other local ranks to arrive before it measures the node's idle
power, and they wait for it; at the end rank 0 waits for the other ranks' ``run_end``
before merging). So nothing the meter does can make one rank wait forever for another,
and every rank does the same Trainer-visible things.

No transformers or torch import at module level.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from distillmeter.energy.ranks import RankInfo, RankMeter, lone_process_note

# Bounded waits between ranks (seconds). Ranks reach the end of training together (the last
# optimizer step is collective), so rank 0 normally waits a fraction of a second; the
# bound only matters when another rank died or never meters.
MERGE_WAIT_S = 120.0
# Beyond the idle measurement itself: how far the ranks' starts may lie apart (imports on a
# loaded machine).
HOST_WAIT_S = 120.0


def launch_rank() -> RankInfo:
    """This process's place in the job as known before the Trainer exists: an initialised
    ``torch.distributed`` process group when there is one (its rank and world size), else
    the launcher's variables (:meth:`RankInfo.from_env`)."""
    env = RankInfo.from_env()
    dist = sys.modules.get("torch.distributed")
    try:
        ready = dist is not None and dist.is_available() and dist.is_initialized()
    except Exception:  # a broken or partial torch: the launcher's variables decide
        ready = False
    if not ready:
        return env
    rank, world = int(dist.get_rank()), int(dist.get_world_size())
    if (env.rank, env.world_size) == (rank, world):
        return env
    return RankInfo(rank, world, rank, world, 0)  # no variables: one node assumed


def trainer_rank(args: Any, info: RankInfo) -> RankInfo:
    """``info`` (the launcher's word) unless the Trainer's arguments (accelerate's state:
    ``process_index``, ``world_size``, ``local_process_index``) say this process is one of
    several that ``info`` does not know of; then the Trainer's word, one node assumed."""
    rank = int(getattr(args, "process_index", 0) or 0)
    world = max(1, int(getattr(args, "world_size", 1) or 1))
    if world == 1 or (info.rank, info.world_size) == (rank, world):
        return info
    local = int(getattr(args, "local_process_index", rank) or 0)
    return RankInfo(rank, world, local, world, 0)


def rank_of(meter: Any) -> RankInfo | None:
    """Where a ``RankMeter`` sits in its job; None for a one-process meter."""
    return meter.info if isinstance(meter, RankMeter) else None


def reconcile_world(meter: Any, args: Any) -> str | None:
    """When a ``RankMeter``'s world (from the launcher's variables) is not the Trainer's:
    make it the Trainer's (so that rank 0 merges as many ranks as there are) and return a
    sentence for the user; else None."""
    info = rank_of(meter)
    world = max(1, int(getattr(args, "world_size", 1) or 1))
    if info is None or world == info.world_size:
        return None
    note = world_note(info, world)
    meter.info = dataclasses.replace(info, world_size=world,
                                     local_world_size=min(info.local_world_size, world))
    return note


def make_meter(run_dir: Path, info: RankInfo, idle_seconds: float = 3.0,
               **kwargs: Any) -> Any:
    """The meter this process runs: an ``EnergyMeter`` in ``run_dir`` when it runs alone, a
    ``RankMeter`` writing ``run_dir/ranks/rank<k>/`` when it is one rank of several
    (``merge_wait_s``/``host_wait_s`` in ``kwargs`` override the bounded waits)."""
    merge_wait = float(kwargs.pop("merge_wait_s", MERGE_WAIT_S))
    host_wait = float(kwargs.pop("host_wait_s", idle_seconds + HOST_WAIT_S))
    if not info.distributed:
        from distillmeter.energy import EnergyMeter

        return EnergyMeter(run_dir, idle_seconds=idle_seconds, **kwargs)
    return RankMeter(run_dir, rank=info, idle_seconds=idle_seconds, merge_wait_s=merge_wait,
                     host_wait_s=host_wait, **kwargs)


def world_note(info: RankInfo, trainer_world: int | None = None) -> str | None:
    """A sentence for the user when a launcher asked for several processes but there is one:
    accelerate's simple launcher (:func:`lone_process_note`), or launcher variables that
    promise ``info.world_size`` processes while the Trainer sees ``trainer_world``."""
    if trainer_world is None or trainer_world == info.world_size:
        return lone_process_note(info)
    if trainer_world == 1 and info.world_size > 1:
        return (f"the launcher's variables say {info.world_size} processes (this is rank "
                f"{info.rank}), but the Trainer runs this one alone: the run is not "
                "distributed (a SLURM allocation of several tasks running the script without "
                "srun, say)")
    return (f"the launcher's variables say {info.world_size} processes but the Trainer sees "
            f"{trainer_world}; rank 0 merges {trainer_world}")
