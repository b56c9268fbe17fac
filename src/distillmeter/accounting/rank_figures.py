"""Per-rank figures of a multi-process run (``report.ranks``): each rank directory accounted
on its own, its stages put on the merged clock and device names (``energy.merge``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distillmeter.energy.merge import RankPart, load_parts
from distillmeter.protocol import ProtocolError


def rank_detail(run_dir: Path | str, account_fn: Callable[[Path], Any]
                ) -> list[dict[str, Any]]:
    """Per-rank figures for ``report.ranks``: each rank directory accounted on its own
    (``account_fn``), its stages on the merged clock and device names."""
    parts, _ = load_parts(run_dir)
    out = []
    for p in parts:
        try:
            rep = account_fn(p.path)
        except (ProtocolError, ValueError) as exc:
            out.append({"rank": p.rank, "node": p.node, "host": p.meta.get("host"),
                        "status": "unreadable", "error": str(exc)})
            continue

        def named(energy: dict[str, float], p: RankPart = p) -> dict[str, float]:
            kept = {p.names[d]: v for d, v in energy.items() if d in p.names}
            return {**kept, "total": math.fsum(kept.values())}

        out.append({
            "rank": p.rank, "node": p.node, "host": p.meta.get("host"),
            "local_rank": p.meta.get("local_rank"), "run_id": rep.run_id,
            "status": rep.status, "offset_s": p.offset, "clock": p.clock,
            "devices": {n: d for d, n in p.names.items()}, "dropped": list(p.dropped),
            "energy_j": named(rep.totals.by_device),
            "stages": [{"name": s.name, "t_start": s.t_start + p.offset,
                        "seconds": s.seconds, "energy_j": named(s.energy_j),
                        "tokens": s.tokens, "samples": s.samples, "status": s.status}
                       for s in rep.stages]})
    return out
