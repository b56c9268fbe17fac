"""Each rank's meter under torchrun: in a run rank 0 does alone, the other ranks meter
their own devices along with it, boundary for boundary (``follow``); in a collective run
every boundary is a barrier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distillmeter.energy.ranks import RankMeter
from distillmeter.errors import UserError


class RankAborted(UserError):
    """Rank 0 stopped (its error is in its own output); this rank stops too."""


def open_rank_meter(ctx: Any, run_dir: Path, kwargs: dict[str, Any]) -> RankMeter:
    """This rank's meter for ``run_dir``. In a run rank 0 does alone (``ctx.solo``) it tells
    the others to follow and announces each boundary; otherwise every boundary is a
    barrier, so the ranks cross it together."""
    dist = ctx.dist
    if ctx.solo:
        dist.broadcast(("follow", str(run_dir), kwargs))
        return RankMeter(run_dir, rank=dist.info, barrier=dist.barrier,
                         sync=lambda event, stage: dist.broadcast((event, stage)), **kwargs)
    return RankMeter(run_dir, rank=dist.info, barrier=dist.barrier,
                     sync=lambda event, stage: dist.barrier(), **kwargs)


def follow(ctx: Any, run_dir: Path, kwargs: dict[str, Any]) -> None:
    """Meter this rank's devices in rank 0's solo run, boundary for boundary."""
    meter = RankMeter(run_dir, rank=ctx.dist.info, barrier=ctx.dist.barrier, **kwargs)
    meter.start()
    try:
        while True:
            kind, arg = ctx.dist.broadcast()[:2]
            if kind == "stage_start":
                meter.begin_window(arg)
            elif kind == "stage_end":
                meter.end_window(arg)
            elif kind == "run_end":
                meter.close()
                return
            else:  # abort
                raise RankAborted(f"rank 0 stopped: {arg}")
    except BaseException:
        meter.close("failed")
        raise
