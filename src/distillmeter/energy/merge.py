"""Merging the ranks of a multi-process run into one protocol-v1 run directory.

Merging is part of measuring: raw files in (each rank's), raw files out (the run's), written
by rank 0's meter when every rank has ended (``energy/ranks.py``), as a one-process meter
writes its own. The accounting reads a merged run like any other, and merges in memory only
a run whose ranks were never merged (a crash). The run directory's rank layout
(``ranks/rank<k>/``, ``rank.json``) is a format and lives in ``protocol.names``.

Each rank ``k`` of a torchrun/accelerate job meters its own devices into
``RUN_DIR/ranks/rank<k>/`` (see ``energy/ranks.py``). Merging writes ``RUN_DIR/ledger.jsonl``
and ``trace.csv`` (plus ``environment.json`` and ``config.yaml``), which any reader accounts
like a single-process run. The rules:

- **One clock.** Every rank's ``t`` is moved onto one clock by its ``rank.json`` anchors:
  ranks on one machine (same boot id) through the shared monotonic clock, exactly; ranks on
  other machines through wall time (as good as NTP, typically a few ms, well under the
  sensors' 100 ms update period). The earliest-starting rank keeps ``t`` as it is.
- **Devices.** Single node: names stay ``gpu:<NVML index>``, ``cpu:S``, ``dram:S``. Several
  nodes (hosts, in order of their lowest rank): ``gpu:<node x G + index>``, with ``G`` the
  most GPUs any node has (likewise ``cpu``/``dram`` with sockets), so ``gpu:9`` is node 1's
  ``gpu:1`` on 8-GPU nodes. The merged ``run_start.ranks`` maps every name back to (rank,
  host, local name). A device two ranks of one host both metered is kept once (lowest rank)
  with a warning: it would otherwise be counted twice.
- **Stages** are collective: the n-th ``student.train`` of every rank is one merged stage.
  Its window runs from the earliest rank's start to the latest rank's end (clamped so that
  consecutive stages never overlap: ranks may disagree by a barrier's skew), and each
  boundary event carries every rank's own boundary readings. So each device's stage energy
  is still its own counter delta between its own rank's boundaries, and the run total per
  device still telescopes from its ``run_start`` to its ``run_end`` reading: stages +
  unattributed = total, exactly, as for one process. Tokens and samples add up over ranks;
  a stage failed on any rank is failed. A stage some rank never ran is a warning (those
  devices then fall back to the trace integral over the merged window).
- ``warning`` events keep their rank (``rank 3: ...``); ``quality`` events are kept (rank 0
  records the run's); ``run_end`` is written only when every rank ended, with the worst status.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from distillmeter.protocol.ledger import Ledger, event_line, parse_ledger_lines, read_ledger
from distillmeter.protocol.names import (
    CONFIG_FILE,
    ENVIRONMENT_FILE,
    LEDGER_FILE,
    RANK_FILE,
    RANKS_DIR,
    TRACE_FILE,
    ProtocolError,
    parse_device,
    rank_dirs,
)
from distillmeter.protocol.trace import (
    TRACE_HEADER,
    Trace,
    parse_trace_lines,
    read_trace,
    trace_row,
)
from distillmeter.storage.atomic import write_atomic


def ranks_finished(run_dir: Path | str, world_size: int) -> bool:
    """True when ranks 0..world_size-1 all wrote their ``run_end``."""
    found = dict(rank_dirs(run_dir))
    for k in range(world_size):
        try:
            if k not in found or read_ledger(found[k]).run_end is None:
                return False
        except ProtocolError:
            return False
    return True


@dataclass
class RankPart:
    """One rank's files and where it sits on the merged clock and device names."""

    rank: int
    path: Path
    ledger: Ledger
    trace: Trace
    meta: dict[str, Any]
    offset: float = 0.0
    clock: str = "monotonic"
    node: int = 0
    names: dict[str, str] = field(default_factory=dict)  # local device -> merged name
    dropped: list[str] = field(default_factory=list)  # local devices another rank meters

    @property
    def host_key(self) -> str:
        return str(self.meta.get("boot_id") or self.meta.get("host") or f"rank{self.rank}")


@dataclass
class MergedRun:
    """The merged files' content, plus the parts they came from."""

    ledger_lines: list[str]
    trace_lines: list[str]
    parts: list[RankPart]
    environment: dict[str, Any] | None


def _t0_unix(part: RankPart) -> float:
    if isinstance(part.meta.get("t0_unix"), (int, float)):
        return float(part.meta["t0_unix"])
    rs = part.ledger.run_start  # no rank.json (a crash before it was written): wall time
    try:
        return datetime.fromisoformat(rs.wall_time).timestamp() - rs.t
    except ValueError:
        return 0.0


def _align_clocks(parts: list[RankPart]) -> None:
    """Set each part's offset onto the clock of the earliest-starting rank."""
    first_of: dict[str, RankPart] = {}
    for p in parts:
        first_of.setdefault(p.host_key, p)
    ref = parts[0]
    for p in parts:
        lead = first_of[p.host_key]
        base = 0.0 if lead.host_key == ref.host_key else _t0_unix(lead) - _t0_unix(ref)
        mono_p, mono_l = p.meta.get("t0_monotonic"), lead.meta.get("t0_monotonic")
        if isinstance(mono_p, (int, float)) and isinstance(mono_l, (int, float)) \
                and p.meta.get("boot_id") is not None:
            p.offset = base + (mono_p - mono_l)
        else:
            p.offset = base + _t0_unix(p) - _t0_unix(lead)
            p.clock = "wall"
        if lead.host_key != ref.host_key:
            p.clock = "wall"
    low = min(p.offset for p in parts)
    for p in parts:
        p.offset -= low


def _name_devices(parts: list[RankPart]) -> list[str]:
    """Give every kept device its merged name; return warnings about devices dropped."""
    hosts = list(dict.fromkeys(p.host_key for p in parts))
    for p in parts:
        p.node = hosts.index(p.host_key)
    per_node: dict[str, int] = {"gpu": 0, "cpu": 0, "dram": 0}
    for p in parts:
        per_node["gpu"] = max(per_node["gpu"], int(p.meta.get("gpu_count") or 0))
        per_node["cpu"] = max(per_node["cpu"], int(p.meta.get("sockets") or 0))
        for d in p.ledger.run_start.devices:
            kind, idx = parse_device(d)
            per_node[kind] = max(per_node[kind], idx + 1)
    per_node["dram"] = max(per_node["dram"], per_node["cpu"])
    per_node["cpu"] = per_node["dram"]
    owner: dict[tuple[int, str], int] = {}
    warnings = []
    for p in parts:
        for d in p.ledger.run_start.devices:
            if (p.node, d) in owner:
                p.dropped.append(d)
                warnings.append(f"{d} on {p.meta.get('host') or p.host_key} is metered by "
                                f"ranks {owner[(p.node, d)]} and {p.rank}; kept once, from "
                                f"rank {owner[(p.node, d)]} (is each rank's GPU mapped right?)")
                continue
            owner[(p.node, d)] = p.rank
            kind, idx = parse_device(d)
            p.names[d] = d if len(hosts) == 1 else f"{kind}:{p.node * per_node[kind] + idx}"
    return warnings


def _readings(part: RankPart, ev: Any) -> dict[str, float | None]:
    return {part.names[d]: v for d, v in (getattr(ev, "readings", None) or {}).items()
            if d in part.names}


def _stage_occurrences(part: RankPart) -> dict[tuple[str, int], list[Any]]:
    """``(name, n) -> [stage_start, stage_end or None]`` for the n-th stage of that name."""
    seen: dict[str, int] = {}
    out: dict[tuple[str, int], list[Any]] = {}
    open_: dict[str, list[tuple[str, int]]] = {}
    for ev in part.ledger.events:
        if ev.event == "stage_start":
            n = seen.get(ev.stage, 0)
            seen[ev.stage] = n + 1
            out[(ev.stage, n)] = [ev, None]
            open_.setdefault(ev.stage, []).append((ev.stage, n))
        elif ev.event == "stage_end" and open_.get(ev.stage):
            out[open_[ev.stage].pop()][1] = ev
    return out


def load_parts(run_dir: Path | str) -> tuple[list[RankPart], list[str]]:
    """Read every rank's ledger, trace and rank.json; align clocks and name devices."""
    parts, warnings = [], []
    for rank, path in rank_dirs(run_dir):
        try:
            ledger, trace = read_ledger(path), read_trace(path)
        except ProtocolError as exc:
            warnings.append(f"rank {rank}: cannot be read ({exc}); its devices are left out")
            continue
        try:
            meta = json.loads((path / RANK_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
            warnings.append(f"rank {rank}: no readable {RANK_FILE}; its clock is aligned by "
                            "wall time and its host is taken to be its own")
        warnings.extend(f"rank {rank}: {w}" for w in ledger.warnings + trace.warnings)
        parts.append(RankPart(rank, path, ledger, trace, meta if isinstance(meta, dict) else {}))
    if not parts:
        raise ProtocolError(f"{Path(run_dir) / RANKS_DIR}: no readable rank ledger")
    _align_clocks(parts)
    warnings.extend(_name_devices(parts))
    return parts, warnings


def _ev(kind: str, t: float, **fields: Any) -> dict[str, Any]:
    return {"event": kind, "t": t, **fields}


def merge_parts(parts: list[RankPart], notes: list[str]) -> tuple[list[dict], list[str]]:
    """The merged ledger events (dicts) and trace lines of aligned, named parts."""
    lead = parts[0] if parts[0].rank == 0 else min(parts, key=lambda p: p.rank)
    rs0 = lead.ledger.run_start
    starts = [(p.ledger.run_start.t + p.offset) for p in parts]
    head = rs0.model_dump(by_alias=True, exclude={"event", "t", "readings", "devices",
                                                   "sources"})
    devices = [n for p in parts for n in p.names.values()]
    run_start = _ev("run_start", min(starts), **head, devices=devices,
                    readings={k: v for p in parts for k, v in _readings(p, p.ledger.run_start)
                              .items()},
                    sources={p.names[d]: s for p in parts
                             for d, s in p.ledger.run_start.sources.items() if d in p.names},
                    world_size=max(int(p.meta.get("world_size") or 0) for p in parts)
                    or len(parts),
                    ranks=[{"rank": p.rank, "node": p.node, "host": p.meta.get("host"),
                            "local_rank": p.meta.get("local_rank"),
                            "run_id": p.ledger.run_start.run_id,
                            "offset_s": p.offset, "clock": p.clock,
                            "devices": {n: d for d, n in p.names.items()},
                            "dropped": list(p.dropped)} for p in parts])
    body: list[tuple[float, int, dict]] = []
    for p in parts:
        for ev in p.ledger.events:
            t = ev.t + p.offset
            if ev.event == "idle_baseline" and ev.device in p.names:
                body.append((t, 2, {**ev.model_dump(), "t": t, "device": p.names[ev.device]}))
            elif ev.event == "warning":
                d = ev.model_dump(exclude_none=True)
                d.update(t=t, message=f"rank {p.rank}: {ev.message}")
                if ev.device in p.names:
                    d["device"] = p.names[ev.device]
                else:
                    d.pop("device", None)
                body.append((t, 2, d))
            elif ev.event == "quality":
                body.append((t, 2, {**ev.model_dump(), "t": t}))
    t_last = max([run_start["t"]] + [t for t, _, _ in body])
    occurrences = [(p, _stage_occurrences(p)) for p in parts]
    keys = {k for _, occ in occurrences for k in occ}
    order = sorted(keys, key=lambda k: min(o[k][0].t + p.offset
                                           for p, o in occurrences if k in o))
    prev_end = -math.inf
    for key in order:
        have = [(p, o[key]) for p, o in occurrences if key in o]
        # a rank that meters no device (CPU and DRAM go to local rank 0) has no energy to
        # miss: it measures no idle baseline either
        missing = [p.rank for p, o in occurrences if key not in o and p.names]
        t0 = max(min(s.t + p.offset for p, (s, _) in have), prev_end)
        body.append((t0, 3, _ev("stage_start", t0, stage=key[0], readings={
            k: v for p, (s, _) in have for k, v in _readings(p, s).items()})))
        if missing:
            notes.append(f"stage {key[0]} (#{key[1] + 1}) was not run on rank(s) "
                         f"{', '.join(map(str, missing))}: their devices' energy in it comes "
                         "from the trace")
        ended = [(p, e) for p, (_, e) in have if e is not None]
        if not ended:
            prev_end = t0
            continue
        t1 = max(t0, max(e.t + p.offset for p, e in ended))
        prev_end = t1
        failed = [(p, e) for p, e in ended if e.status != "ok"]
        end = _ev("stage_end", t1, stage=key[0], readings={
            k: v for p, e in ended for k, v in _readings(p, e).items()},
            tokens=sum(e.tokens for _, e in ended), samples=sum(e.samples for _, e in ended),
            status="failed" if failed else "ok")
        if failed:
            end["error"] = "; ".join(f"rank {p.rank}: {e.error or 'failed'}" for p, e in failed)
        body.append((t1, 1, end))
        t_last = max(t_last, t1)
    ends = [(p, p.ledger.run_end) for p in parts]
    t_end = max([t_last] + [e.t + p.offset for p, e in ends if e is not None])
    for n in notes:
        body.append((t_end, 4, _ev("warning", t_end, message=f"merge: {n}")))
    tail = []
    if all(e is not None for _, e in ends):
        bad = [e.status for _, e in ends if e.status != "ok"]
        tail.append(_ev("run_end", t_end, readings={k: v for p, e in ends
                                                    for k, v in _readings(p, e).items()},
                        status=bad[0] if bad else "ok"))
    body.sort(key=lambda x: (x[0], x[1]))
    return [run_start] + [e for _, _, e in body] + tail, _trace_lines(parts)


def _trace_lines(parts: list[RankPart]) -> list[str]:
    rows: list[tuple[float, str]] = []
    for p in parts:
        for d, s in p.trace.devices.items():
            if d not in p.names:
                continue
            name = p.names[d]
            for t, e, w in zip(s["t"], s["energy_j"], s["power_w"], strict=True):
                rows.append((t + p.offset, trace_row(t + p.offset, name,
                                                     None if math.isnan(e) else e,
                                                     None if math.isnan(w) else w)))
    rows.sort(key=lambda r: r[0])
    return [TRACE_HEADER] + [r for _, r in rows]


def _environment(parts: list[RankPart]) -> dict[str, Any] | None:
    envs = {}
    for p in parts:
        try:
            envs[p.rank] = json.loads((p.path / ENVIRONMENT_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    if not envs:
        return None
    env = dict(envs[min(envs)])
    gpus = []
    for p in parts:
        for g in (envs.get(p.rank) or {}).get("gpus", []) or []:
            if g.get("device") in p.names:
                gpus.append({**g, "device": p.names[g["device"]], "local_device": g["device"],
                             "rank": p.rank, "host": p.meta.get("host")})
    env["gpus"] = gpus
    env["ranks"] = [{"rank": p.rank, "node": p.node, "host": (envs.get(p.rank) or {}).get("host"),
                     "devices": {n: d for d, n in p.names.items()}} for p in parts]
    return env


def merge_ranks(run_dir: Path | str) -> MergedRun:
    """Merge ``RUN_DIR/ranks/rank*/`` in memory (nothing is written)."""
    parts, notes = load_parts(run_dir)
    events, trace = merge_parts(parts, notes)
    return MergedRun([event_line(e) + "\n" for e in events], trace, parts, _environment(parts))


def merged_inputs(run_dir: Path | str) -> tuple[Ledger, Trace]:
    """The merged ledger and trace, parsed, without writing them (for accounting a run whose
    ranks were never merged: a crash, or ranks without a barrier)."""
    run_dir = Path(run_dir)
    m = merge_ranks(run_dir)
    ledger = parse_ledger_lines(m.ledger_lines, run_dir / RANKS_DIR / f"(merged){LEDGER_FILE}")
    ledger.warnings.append(f"{run_dir}: ranks merged in memory (no merged {LEDGER_FILE}); "
                           f"`distillmeter.energy.merge.write_merged` writes it")
    return ledger, parse_trace_lines(m.trace_lines, run_dir / RANKS_DIR / f"(merged){TRACE_FILE}")


def write_merged(run_dir: Path | str) -> Path:
    """Merge the ranks and write ``RUN_DIR/ledger.jsonl``, ``trace.csv``, ``environment.json``
    and ``config.yaml`` (rank 0's); a merge done again replaces them. Returns RUN_DIR."""
    run_dir = Path(run_dir)
    m = merge_ranks(run_dir)
    write_atomic(run_dir / TRACE_FILE, "".join(m.trace_lines))
    if m.environment is not None:
        write_atomic(run_dir / ENVIRONMENT_FILE, json.dumps(m.environment, indent=2,
                                                             default=str) + "\n")
    config = m.parts[0].path / CONFIG_FILE
    if config.exists() and not (run_dir / CONFIG_FILE).exists():
        shutil.copyfile(config, run_dir / CONFIG_FILE)
    write_atomic(run_dir / LEDGER_FILE, "".join(m.ledger_lines))  # last: marks it done
    return run_dir
