"""Metering one rank of a multi-process job (torchrun, accelerate, SLURM, ``mp.spawn``).

Each rank meters only what is its own, into its own protocol-v1 run directory::

    RUN_DIR/ranks/rank<k>/   ledger.jsonl, trace.csv, environment.json, rank.json

- GPUs: the rank's entry of ``CUDA_VISIBLE_DEVICES`` (indices, GPU-/MIG- UUIDs), or, where
  the launcher left every GPU visible, the one at position ``LOCAL_RANK`` (``gpus_per_rank``
  of them for a rank that drives several), mapped to its NVML index by the same rules as a
  single process (``nvml.visible_gpu_indices``).
- CPU and DRAM: by local rank 0 only, so a node's host energy is counted once. Where they
  are estimated (no RAPL) and the node runs several ranks, the estimate counts the CPU time
  of the launcher's whole process tree (every local rank), not only rank 0's; at close it
  warns about any local rank whose process was never in that tree.
- ``rank.json`` anchors the rank's clock (wall and monotonic time at ``t = 0``, host and
  boot id) so that :func:`distillmeter.energy.merge.merge_ranks` can put every rank on
  one clock and write the merged ``RUN_DIR/ledger.jsonl`` and ``trace.csv``.

Stages are collective: every rank opens and closes the same stages in the same order. A
``sync`` callable (e.g. ``torch.distributed.barrier``) called before each boundary reading
makes the ranks cross each boundary together; after the run ends, ``barrier`` lets rank 0
merge once every rank has closed. The meter itself never imports torch.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from distillmeter.energy.idle_baseline import IDLE_STAGE
from distillmeter.energy.meter import EnergyMeter
from distillmeter.energy.sensors.base import Sensor
from distillmeter.energy.sensors.discovery import discover_sensors, parse_device_selection
from distillmeter.protocol.names import RANK_FILE, RANKS_DIR
from distillmeter.storage.atomic import write_atomic

Sync = Callable[[str, "str | None"], None]  # (event, stage) before a boundary reading
ARRIVED_FILE = "arrived.json"  # ranks/rank<k>/: the rank has made its meter (see RankMeter)


def _env_int(env: dict[str, str], *names: str) -> int | None:
    for name in names:
        value = env.get(name, "").strip()
        if value.lstrip("-").isdigit():
            return int(value)
    return None


# (rank, world size, local rank, local world size, node rank variables) per launcher
_LAUNCHER_VARS = (
    ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", ("GROUP_RANK", "NODE_RANK")),
    ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS", ()),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     "OMPI_COMM_WORLD_LOCAL_SIZE", ()),
    ("MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_LOCAL_RANK",
     "MV2_COMM_WORLD_LOCAL_SIZE", ()),
    ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE",
     ("SLURM_NODEID",)),
)


@dataclass(frozen=True)
class RankInfo:
    """Where this process sits in the job. ``node`` is the launcher's node (group) rank."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    node: int = 0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> RankInfo:
        """From the first launcher whose rank and world size are both set: torchrun's and
        accelerate's (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``,
        ``GROUP_RANK``/``NODE_RANK``), MPI's (Intel MPI/MPICH ``PMI_*``, Open MPI
        ``OMPI_COMM_WORLD_*``, MVAPICH ``MV2_COMM_WORLD_*``: what accelerate itself reads),
        then SLURM's; a single process when none is."""
        env = dict(os.environ if environ is None else environ)
        for rank_v, world_v, local_v, local_world_v, node_vs in _LAUNCHER_VARS:
            rank, world = _env_int(env, rank_v), _env_int(env, world_v)
            if rank is None or world is None or world < 1:
                continue
            # without the local variables, assume one node (every rank local)
            local = _env_int(env, local_v)
            local = rank if local is None else local
            local_world = _env_int(env, local_world_v) or world
            node = _env_int(env, *node_vs)
            if node is None:
                node = rank // max(1, local_world)
            return cls(rank, world, local, max(1, local_world), node)
        return cls()

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def lone_process_note(info: RankInfo, environ: dict[str, str] | None = None) -> str | None:
    """A sentence for the user when a launcher asked for several processes but ``info``
    (this process's place, from :meth:`RankInfo.from_env`) says it runs alone; else None.

    ``accelerate launch --num_processes N`` without ``--multi_gpu`` (always with ``--cpu``)
    takes accelerate's simple launcher: it runs the script once, setting ``MASTER_ADDR`` and
    ``MASTER_PORT`` (only when N > 1 or several machines were asked for) and its
    ``ACCELERATE_*`` variables, but no ``RANK`` or ``WORLD_SIZE`` (accelerate 1.x,
    ``utils/launch.py: prepare_simple_launcher_cmd_env``)."""
    env = os.environ if environ is None else environ
    if info.distributed:
        return None
    if "ACCELERATE_MIXED_PRECISION" in env and env.get("MASTER_ADDR"):
        return ("accelerate launch asked for several processes (it set MASTER_ADDR) but "
                "started only this one (no RANK or WORLD_SIZE): with --cpu, or without "
                "--multi_gpu, accelerate runs its simple launcher, one process, so this run "
                "is not distributed. For N processes on CPU use `torchrun --nproc_per_node N` "
                "or `accelerate launch --multi_gpu --num_processes N` (docs/scale.md)")
    return None


def rank_dir(run_dir: str | os.PathLike[str], rank: int) -> Path:
    """``RUN_DIR/ranks/rank<k>``: where rank ``k`` writes its ledger and trace."""
    return Path(run_dir) / RANKS_DIR / f"rank{rank}"


def rank_gpu_entries(info: RankInfo, cuda_visible: str | None, gpus_per_rank: int = 1
                     ) -> tuple[list[str], list[str]]:
    """This rank's ``CUDA_VISIBLE_DEVICES`` entries (indices or UUIDs) and notes.

    A launcher either pins each rank to its GPUs (the variable then holds only them) or
    leaves the node's GPUs visible and each rank takes the one at ``LOCAL_RANK`` (the
    torchrun/accelerate convention; ``gpus_per_rank`` consecutive ones for a rank that
    drives several)."""
    g = max(1, int(gpus_per_rank))
    if cuda_visible is None:
        return [str(info.local_rank * g + i) for i in range(g)], []
    entries = []
    for item in cuda_visible.split(","):
        if not item.strip():
            break  # CUDA stops at the first empty entry
        entries.append(item.strip())
    if not entries:
        return [], []
    if len(entries) <= g or info.local_world_size == 1:
        return entries, []  # pinned by the launcher: everything visible is this rank's
    mine = entries[info.local_rank * g:(info.local_rank + 1) * g]
    if len(mine) < g:
        return mine, [f"rank {info.rank} (local rank {info.local_rank}): CUDA_VISIBLE_DEVICES "
                      f"lists {len(entries)} GPUs, too few for {info.local_world_size} local "
                      f"ranks x {g}; this rank meters {mine or 'no GPU'}"]
    return mine, []


def launcher_pid(info: RankInfo) -> int | None:
    """The process whose tree holds every local rank (torchrun's agent, accelerate,
    ``mp.spawn``'s parent, slurmstepd): this process's parent, when the node runs several
    ranks. None when this rank is alone on its node."""
    if info.local_world_size <= 1:
        return None
    ppid = os.getppid()
    return ppid if ppid > 1 else None


def rank_sensors(info: RankInfo, devices: str | Iterable[str] | None = "auto", *,
                 gpus_per_rank: int = 1, cuda_visible: str | None | bool = True,
                 powercap_root: str | None = None
                 ) -> tuple[list[Sensor], list[tuple[str, str | None]], dict[str, Any]]:
    """The sensors rank ``info`` reads, warnings, and facts for ``rank.json`` (the GPUs'
    CUDA_VISIBLE_DEVICES entries, the node's GPU count and sockets, the CPU process root)."""
    from distillmeter.energy.sensors.cpu_estimate import CpuEstimateSensor
    from distillmeter.energy.sensors.nvml import NvmlSensor, NvmlUnavailable

    selectors = parse_device_selection(devices)
    sensors: list[Sensor] = []
    notes: list[tuple[str, str | None]] = []
    facts: dict[str, Any] = {"gpu_entries": [], "gpu_count": None, "sockets": None,
                             "cpu_process_root": None}
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES") if cuda_visible is True else (
        cuda_visible or None)
    if selectors is None or any(s.startswith("gpu") for s in selectors):
        mine, gpu_notes = rank_gpu_entries(info, cvd, gpus_per_rank)
        notes.extend((n, None) for n in gpu_notes)
        facts["gpu_entries"] = mine
        if mine:
            try:
                nv = NvmlSensor(select=[s for s in selectors or ["gpu"] if s.startswith("gpu")],
                                visible=",".join(mine))
            except NvmlUnavailable as exc:
                if selectors is not None or cvd:
                    notes.append((f"GPUs requested but not metered: {exc}", None))
            else:
                facts["gpu_count"] = int(nv.nvml.nvmlDeviceGetCount())
                if nv.devices:
                    sensors.append(nv)
                else:
                    nv.close()
    host = [k for k in ("cpu", "dram") if selectors is None
            or any(s.split(":", 1)[0] == k for s in selectors)]
    if info.local_rank != 0:
        if host:
            notes.append((f"rank {info.rank} (local rank {info.local_rank}): CPU and DRAM are "
                          "metered by local rank 0 only, so the node's host energy is counted "
                          "once", None))
        return sensors, notes, facts
    if not host:
        return sensors, notes, facts
    host_sel = [s for s in (selectors or host) if s.split(":", 1)[0] in host]
    found, host_notes = discover_sensors(host_sel, powercap_root=powercap_root)
    notes.extend(host_notes)
    root = launcher_pid(info)
    for s in found:
        if isinstance(s, CpuEstimateSensor):
            facts["sockets"] = s.sockets
            if root is not None and any(d.startswith("cpu") for d in s.devices):
                s.count_process_tree(root)
                facts["cpu_process_root"] = root
                notes.append((f"the CPU estimate counts the CPU time of process {root} (the "
                              "launcher) and its descendants: every rank on this node", None))
        elif hasattr(s, "socket_count"):
            facts["sockets"] = max(facts["sockets"] or 0, int(s.socket_count()))
    sensors.extend(found)
    return sensors, notes, facts


def _wait(done: Callable[[], bool], seconds: float, poll_s: float = 0.05) -> bool:
    """Poll ``done`` until it is true (True) or ``seconds`` have passed (False)."""
    deadline = time.monotonic() + max(0.0, seconds)
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
    return True


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


class RankMeter(EnergyMeter):
    """The EnergyMeter of one rank: writes ``RUN_DIR/ranks/rank<k>/``; rank 0 merges.

    ``rank``: where this process sits (default: from the environment). ``sync(event,
    stage)``: called before each of this rank's boundary readings (``stage_start``,
    ``stage_end``, ``run_end``), e.g. a barrier, so that ranks cross boundaries together;
    not called on a failed stage or run (the other ranks may be elsewhere). ``barrier()``:
    called after this rank's ``run_end``; rank 0 then merges the ranks into ``RUN_DIR``.
    Without a barrier rank 0 merges only if every rank's ledger already has its
    ``run_end``; otherwise accounting merges the rank files when it reads the run.
    ``gpus_per_rank``: GPUs each rank drives (model parallel within a rank).

    Without collectives (no ``sync``, no ``barrier``: a program whose ranks must never wait
    on the meter), the ranks meet through their files instead, each wait bounded:
    ``host_wait_s``: at start, each rank marks its arrival (``ranks/rank<k>/arrived.json``);
    a node's local rank 0 waits up to this long for every local rank to arrive before it
    measures the node's idle power, and the other local ranks wait for it to have started,
    so that the idle baseline is measured while no rank of the node works yet;
    ``merge_wait_s``: rank 0 waits up to this long, at close, for every rank's ``run_end``
    before it merges. Other keyword arguments are :class:`EnergyMeter`'s."""

    def __init__(self, run_dir: str | os.PathLike[str], *, rank: RankInfo | None = None,
                 sync: Sync | None = None, barrier: Callable[[], None] | None = None,
                 gpus_per_rank: int = 1, merge: bool = True, host_wait_s: float = 0.0,
                 merge_wait_s: float = 0.0, **kwargs: Any) -> None:
        self.info = rank or RankInfo.from_env()
        self.base_dir = Path(run_dir)
        self.sync, self.barrier, self.merge = sync, barrier, merge
        self.host_wait_s, self.merge_wait_s = float(host_wait_s), float(merge_wait_s)
        self.gpus_per_rank = int(gpus_per_rank)
        self._facts: dict[str, Any] = {}
        self.merged: bool = False
        # every rank measures its idle fresh, so that each has the same setup.idle stage to
        # merge (a cache hit on one rank and not another would leave a stage some rank lacks)
        kwargs.setdefault("idle_cache", False)
        super().__init__(rank_dir(run_dir, self.info.rank), **kwargs)

    # -- lifecycle
    def start(self) -> None:
        if self._given_sensors is None:  # discover this rank's own devices
            sensors, notes, self._facts = rank_sensors(
                self.info, self.device_selection or "auto", gpus_per_rank=self.gpus_per_rank)
            self._given_sensors = sensors
            self._pending.extend((msg, dev, None) for msg, dev in notes)
        meet = self.sync is None and self.host_wait_s > 0 and self.info.local_world_size > 1
        if meet:
            self._arrive()
            if self.info.local_rank == 0 and not _wait(self._all_local_arrived,
                                                       self.host_wait_s):
                here = sorted(d.get("local_rank") for d in self._host_files(ARRIVED_FILE))
                self.warn(f"local ranks {here} of {self.info.local_world_size} had arrived "
                          f"after {self.host_wait_s:.0f} s; the node's idle baseline was "
                          "measured while the others may have been working")
        super().start()
        self._write_rank_file()
        if meet and self.info.local_rank != 0:
            if not _wait(lambda: self._host_lead() is not None, self.host_wait_s):
                self.warn(f"rank {self.info.rank}: local rank 0 of this node had not started "
                          f"its meter after {self.host_wait_s:.0f} s; the node's idle baseline "
                          "may include this rank's work")

    def _arrive(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        doc = {"rank": self.info.rank, "local_rank": self.info.local_rank, "pid": os.getpid(),
               "host": socket.gethostname(), "boot_id": _boot_id()}
        write_atomic(self.run_dir / ARRIVED_FILE, json.dumps(doc) + "\n", fsync=False)

    def _all_local_arrived(self) -> bool:
        from distillmeter.storage.runlock import pid_alive

        here = {d.get("local_rank") for d in self._host_files(ARRIVED_FILE)
                if pid_alive(int(d.get("pid") or 0), None)}
        return len(here) >= self.info.local_world_size

    def _sibling_files(self) -> list[dict[str, Any]]:
        """The rank.json of every rank of this run on this host, this one's included; a
        rank whose file is not written yet is not there."""
        return self._host_files(RANK_FILE)

    def _host_files(self, name: str) -> list[dict[str, Any]]:
        """The JSON file ``name`` of every rank directory of this run on this host (by boot
        id, else host name)."""
        me, host = _boot_id(), socket.gethostname()
        out = []
        for path in sorted((self.base_dir / RANKS_DIR).glob(f"rank*/{name}")):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # being written: seen at the next look
            if not isinstance(doc, dict):
                continue
            if (doc.get("boot_id") == me) if me and doc.get("boot_id") else (
                    doc.get("host") == host):
                out.append(doc)
        return out

    def _host_lead(self) -> dict[str, Any] | None:
        """Local rank 0's rank.json, once that process has started its meter (a file left by
        a process that is gone does not count)."""
        from distillmeter.storage.runlock import pid_alive

        for doc in self._sibling_files():
            if doc.get("local_rank") == 0 and pid_alive(int(doc.get("pid") or 0), None):
                return doc
        return None

    def _write_rank_file(self) -> None:
        now = self.now()
        gpus = {}
        for s in self.sensors:
            for g in s.describe().get("gpus", []):
                gpus[g["device"]] = {"uuid": g.get("uuid"), "name": g.get("name")}
        doc = {**asdict(self.info), "host": socket.gethostname(), "boot_id": _boot_id(),
               "pid": os.getpid(), "run_id": self.run_id,
               "t0_unix": time.time() - now, "t0_monotonic": time.monotonic() - now,
               "devices": list(self.devices), "gpus": gpus,
               "gpu_entries": self._facts.get("gpu_entries", []),
               "gpu_count": self._facts.get("gpu_count"),
               "sockets": self._facts.get("sockets"),
               "cpu_process_root": self._facts.get("cpu_process_root")}
        write_atomic(self.run_dir / RANK_FILE, json.dumps(doc, indent=2) + "\n", fsync=False)

    def close(self, status: str | None = None) -> None:
        running = self._state == "running"
        failed = (status or self.status) != "ok" or (
            self._stage is not None and self._stage.status != "ok")
        if running and self.sync is not None and not failed:
            self.sync("run_end", None)
        if running:
            self._check_cpu_coverage()
        super().close(status)
        if not running or not self.merge or failed:
            return
        if self.barrier is not None:
            self.barrier()
        if self.info.rank == 0:
            self.merged = self._merge()

    def _check_cpu_coverage(self) -> None:
        """On the rank whose CPU estimate counts the launcher's process tree: warn about any
        rank on this host whose process was never in that tree (a per-rank wrapper, a
        launcher that is not their common parent): its CPU time is then not in the node's
        estimate."""
        from distillmeter.energy.sensors.cpu_estimate import CpuEstimateSensor

        root = self._facts.get("cpu_process_root")
        est = next((s for s in self.sensors if isinstance(s, CpuEstimateSensor)), None)
        if root is None or est is None:
            return
        counted = est.counted_pids()
        missed = [d for d in self._sibling_files()
                  if d.get("pid") is not None and int(d["pid"]) not in counted]
        for d in missed:
            self.warn(f"the CPU estimate counts process {root} and its descendants, but rank "
                      f"{d.get('rank')} (pid {d['pid']}) on this host was never among them: "
                      "its CPU time is missing from the node's CPU energy")

    def _merge(self) -> bool:
        from distillmeter.energy.merge import ranks_finished, write_merged

        world = self.info.world_size
        if self.barrier is None and not _wait(lambda: ranks_finished(self.base_dir, world),
                                              self.merge_wait_s):
            return False
        write_merged(self.base_dir)
        return True

    # -- stage boundaries
    # (each rank measures its own devices' idle power when it starts: setup.idle is not a
    # collective boundary)
    def open_stage(self, st: Any) -> None:
        self._require_running()
        if self.sync is not None and self._stage is None and st.name != IDLE_STAGE:
            self.sync("stage_start", st.name)
        super().open_stage(st)

    def close_stage(self, st: Any) -> None:
        if (self.sync is not None and st.status == "ok" and self._stage is st
                and st.name != IDLE_STAGE):
            self.sync("stage_end", st.name)
        super().close_stage(st)
