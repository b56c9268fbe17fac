"""A labelled CPU and DRAM energy estimate, for machines where RAPL cannot be read.

CPU power of the machine is modelled as linear in this process tree's CPU utilisation::

    P = TDP_m * (f_idle + (1 - f_idle) * u)
    TDP_m = TDP per hardware thread * logical CPUs the OS shows
    u = CPU seconds of this process and its descendants / (wall seconds * logical CPUs)

with TDP from ``distillmeter/data/cpu_tdp.json`` (vendor figures, sources named there) and
the idle floor f_idle = 0.12 (Teads' SPECpower-based curve). Being linear, the model's
energy is exact from the cumulative CPU-time counter: E = P_idle * t + (TDP_m - P_idle) *
cpu_seconds / logical_cpus, so the estimate has a counter like real hardware does and
boundary readings need no sampling. Per-thread scaling makes a VM's share of a big part
come out as that share of its TDP. DRAM is modelled as constant: W per GiB x RAM.
Other processes on the machine are not ours and are not counted (except in the idle floor).
Every device from here has source ``estimate``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillmeter.energy.sensors.base import Sensor
from distillmeter.energy.sensors.hostinfo import CpuInfo, cpu_info, memory_bytes

TABLE_PATH = Path(__file__).resolve().parents[2] / "data" / "cpu_tdp.json"
GIB = 1024**3


@dataclass(frozen=True)
class TdpMatch:
    """The TDP used for a CPU and where it came from (``how``: table, family (by cpuid
    generation, or the family's median for a name that gives only the family) or default;
    ``summary``: a few words for warnings; ``source``: the full provenance)."""

    cpu_model: str
    w_per_thread: float
    how: str
    matched: str | None
    source: str
    summary: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@functools.lru_cache(maxsize=4)
def load_table(path: str | None = None) -> dict[str, Any]:
    """The CPU TDP table (parsed JSON)."""
    return json.loads(Path(path or TABLE_PATH).read_text(encoding="utf-8"))


def _normalise(name: str) -> str:
    name = re.sub(r"\((r|tm|c)\)", " ", name, flags=re.I)
    name = re.sub(r"@.*$", " ", name)  # clock speed
    name = re.sub(r"\b(cpu|processor|\d+-core)\b", " ", name, flags=re.I)
    return re.sub(r"\s+", " ", name).strip().lower()


def _contains(haystack: str, needle: str) -> bool:
    """``needle`` occurs in ``haystack`` as whole tokens: "i9-13900k" must not match
    "i9-13900kf", nor "8480" match "8480+"."""
    pattern = r"(?<![\w+\-])" + re.escape(needle) + r"(?![\w+])"
    return re.search(pattern, haystack) is not None


# Words of a model name that name the maker, not the part.
_VENDOR_WORDS = {"amd", "intel", "apple", "genuineintel", "authenticamd"}


def _family_words(name: str) -> list[str]:
    """The leading words of a table name before its first word with a digit: "Xeon
    Platinum 8480+" -> ["xeon", "platinum"], "EPYC 7763" -> ["epyc"]."""
    words = []
    for w in _normalise(name).split():
        if any(ch.isdigit() for ch in w):
            break
        words.append(w)
    return words


def _bare_family(model: str, table: dict[str, Any]) -> tuple[str, list[dict]] | None:
    """``(family name, its table entries)`` when ``model`` (normalised) names a family and
    nothing more, as cloud VMs often show it ("AMD EPYC", "Intel(R) Xeon(R) CPU @ 2.2GHz"):
    no word with a digit, and its words lead the family words of some table entries."""
    words = [w for w in model.split() if w not in _VENDOR_WORDS]
    if not words or any(ch.isdigit() for w in words for ch in w):
        return None
    members = [c for c in table["cpus"] if _family_words(c["name"])[:len(words)] == words]
    if not members:
        return None
    return " ".join(members[0]["name"].split()[:len(words)]), members


def lookup_tdp(info: CpuInfo, table: dict[str, Any] | None = None) -> TdpMatch:
    """Find the TDP per hardware thread for ``info``: by model name (longest table name that
    occurs in it), else by cpuid generation for a name a hypervisor hides, else, for a name
    that gives only the family ("AMD EPYC"), the median W per thread of that family's
    entries, else the table's median W per thread (documented default)."""
    table = table or load_table()
    sources = table.get("sources", {})
    model = _normalise(info.model)
    by_name = {c["name"]: c for c in table["cpus"]}
    hits = [c for c in table["cpus"] if _contains(model, _normalise(c["name"]))]
    if hits:
        c = max(hits, key=lambda c: len(c["name"]))
        return TdpMatch(info.model, c["tdp_w"] / c["threads"], "table", c["name"],
                        f"{c['name']}: {c['tdp_w']} W, {c['threads']} threads "
                        f"({sources.get(c['source'], c['source'])})",
                        f"{c['name']}: {c['tdp_w']} W / {c['threads']} threads")
    for fam in table.get("families", []):
        if (info.vendor == fam["vendor"] and info.family == fam["family"]
                and info.model_id == fam["model"]
                and fam["name_contains"].lower() in model):
            c = by_name[fam["like"]]
            return TdpMatch(info.model, c["tdp_w"] / c["threads"], "family", c["name"],
                            f"model name hides the SKU; cpuid family {fam['family']} model "
                            f"{fam['model']} is {fam['generation']}, so {c['name']}: "
                            f"{c['tdp_w']} W, {c['threads']} threads "
                            f"({sources.get(c['source'], c['source'])})",
                            f"SKU hidden, cpuid says {fam['generation']}: as {c['name']}, "
                            f"{c['tdp_w']} W / {c['threads']} threads")
    family = _bare_family(model, table)
    if family is not None:
        name, members = family
        per_thread = statistics.median(c["tdp_w"] / c["threads"] for c in members)
        cited = "; ".join(dict.fromkeys(sources.get(c["source"], c["source"]) for c in members))
        return TdpMatch(info.model, per_thread, "family", name,
                        f"model name {info.model!r} names the family only (no model number, "
                        f"and no cpuid generation in the table): the median TDP per hardware "
                        f"thread of the table's {len(members)} {name} entries, "
                        f"{per_thread:.3f} W/thread ({cited})",
                        f"family only: median of {len(members)} {name} entries, "
                        f"{per_thread:.2f} W per thread")
    per_thread = statistics.median(c["tdp_w"] / c["threads"] for c in table["cpus"])
    return TdpMatch(info.model, per_thread, "default", None,
                    f"unknown CPU: {table['default']['rule']} ({per_thread:.3f} W/thread)",
                    f"unknown CPU: the table's median {per_thread:.2f} W per thread")


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# Linux with CONFIG_PROC_CHILDREN lists each thread's children under /proc.
_HAS_PROC_CHILDREN = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def _proc_children(pid: int) -> list[int] | None:
    """Descendants of ``pid`` from /proc/<pid>/task/*/children, or None where the kernel
    does not offer those files. Much cheaper than scanning every process on the machine."""
    if not _HAS_PROC_CHILDREN:
        return None
    out: list[int] = []
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue  # exited meanwhile
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children", "rb") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue  # the thread or process ended meanwhile
            out.extend(kids)
            stack.extend(kids)
    return out


def _proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime + cutime + cstime of a process from /proc/<pid>/stat, in seconds."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the command name: state is field 3, so utime..cstime (14..17) are [11:15].
    return sum(int(x) for x in fields[11:15]) / _CLK_TCK


class _ProcessTreeCpu:
    """Cumulative CPU seconds of this process and all its descendants, live or reaped.

    Our own times (reaped children included) come from one ``os.times()`` call. Live
    descendants are listed at most every ``refresh_s`` seconds in the sampler and on every
    boundary reading (``refresh=True``), so a boundary sees a child started just before it.
    """

    def __init__(self, refresh_s: float = 2.0, root: int | None = None) -> None:
        # root: another process whose tree to count instead of ours (a launcher's, so that
        # local rank 0 counts every rank on the node); None counts this process's tree
        self.root = root
        self._children: list[int] = []
        self._listed_at = -1e9
        self._refresh_s = refresh_s
        self._last = 0.0
        self._psutil_root: Any = None
        self.seen: set[int] = set()  # every descendant ever listed (which ranks were counted)

    def _list_children(self) -> list[int]:
        kids = _proc_children(self.root or os.getpid())
        if kids is None:
            import psutil

            self._psutil_root = self._psutil_root or psutil.Process(self.root)
            try:
                kids = [c.pid for c in self._psutil_root.children(recursive=True)]
            except psutil.Error:
                kids = []
        self.seen.update(kids)
        return kids

    @staticmethod
    def _child_seconds(pid: int) -> float | None:
        secs = _proc_cpu_seconds(pid)
        if secs is not None or os.path.exists("/proc/self/stat"):
            return secs
        import psutil

        try:
            c = psutil.Process(pid).cpu_times()
        except psutil.Error:
            return None
        return c.user + c.system + c.children_user + c.children_system

    def seconds(self, refresh: bool = False) -> float:
        now = time.monotonic()
        if refresh or now - self._listed_at >= self._refresh_s:
            self._children = self._list_children()
            self._listed_at = now
        # A process's children_* hold its reaped descendants; a live process's own times
        # hold the rest, so summing both over the live tree counts each CPU second once.
        if self.root is None:
            t = os.times()
            total = t.user + t.system + t.children_user + t.children_system
        else:
            total = self._child_seconds(self.root) or 0.0
        alive = []
        for pid in self._children:
            secs = self._child_seconds(pid)
            if secs is not None:
                alive.append(pid)
                total += secs
        self._children = alive
        # A child that exits between listing and reaping briefly drops out of the sum.
        self._last = max(self._last, total)
        return self._last


class CpuEstimateSensor(Sensor):
    """Estimated ``cpu:S`` and ``dram:S`` energy (source ``estimate``). The machine's
    estimate is split evenly over its sockets."""

    kind = "estimate"

    def __init__(self, devices: list[str] | None = None, *, sockets: int | None = None,
                 info: CpuInfo | None = None,
                 table: dict[str, Any] | None = None) -> None:
        super().__init__()
        table = table or load_table()
        self.info = info or cpu_info()
        self.sockets = sockets or self.info.sockets
        self.devices = list(devices) if devices is not None else [
            f"{k}:{s}" for k in ("cpu", "dram") for s in range(self.sockets)]
        self.sources = {d: "estimate" for d in self.devices}
        self.tdp = lookup_tdp(self.info, table)
        self.logical = self.info.logical or os.cpu_count() or 1
        self.tdp_w = self.tdp.w_per_thread * self.logical
        self.idle_fraction = float(table["idle_fraction"]["value"])
        self.idle_w = self.tdp_w * self.idle_fraction
        self.dram_w_per_gib = float(table["dram_w_per_gib"]["value"])
        mem = memory_bytes()
        self.dram_w = self.dram_w_per_gib * mem / GIB if mem else None
        if self.dram_w is None and any(d.startswith("dram") for d in self.devices):
            self._warn("DRAM size unknown: DRAM energy not measured")
        self._cpu = _ProcessTreeCpu()
        self._t0: float | None = None
        self._cpu0 = 0.0
        self._offset: dict[str, float] = {}
        self._last_sample: tuple[float, dict[str, float | None]] | None = None

    def count_process_tree(self, pid: int) -> None:
        """Count the CPU time of process ``pid`` and its descendants instead of this
        process's (call before the meter starts). Under a launcher (torchrun, accelerate,
        ``mp.spawn``) local rank 0 passes the launcher's pid, so that the node's estimate
        covers every local rank, not only its own."""
        self._cpu = _ProcessTreeCpu(root=int(pid))

    def counted_pids(self) -> set[int]:
        """The processes whose CPU time this estimate has counted so far: the root of the
        tree (this process, or the launcher given to :meth:`count_process_tree`) and every
        descendant seen at a listing (each boundary reading, and every 2 s while sampling)."""
        return {self._cpu.root or os.getpid(), *self._cpu.seen}

    def method(self, device: str) -> str:
        """One line saying how ``device`` is estimated."""
        if device.startswith("dram"):
            return (f"{self.dram_w_per_gib} W/GiB x RAM = {self.dram_w or 0:.2f} W for the "
                    "machine, constant")
        return (f"utilisation x TDP, {self.tdp_w:.2f} W for {self.logical} logical CPUs "
                f"({self.tdp.summary}), idle floor {self.idle_fraction:.0%}")

    def start(self, clock: Any) -> None:
        super().start(clock)
        self._t0 = time.monotonic()
        self._cpu0 = self._cpu.seconds(refresh=True)

    def resume_from(self, readings: dict[str, float | None]) -> None:
        self._offset = {d: v for d, v in readings.items() if d in self.devices and v}

    def read_energy(self) -> dict[str, float | None]:
        return self._energy(refresh=True)

    def _energy(self, refresh: bool) -> dict[str, float | None]:
        if self._t0 is None:
            self.start(self._clock)
        elapsed = time.monotonic() - self._t0
        busy = self._cpu.seconds(refresh) - self._cpu0
        cpu_j = self.idle_w * elapsed + (self.tdp_w - self.idle_w) * busy / self.logical
        out: dict[str, float | None] = {}
        for d in self.devices:
            if d.startswith("cpu"):
                out[d] = cpu_j / self.sockets + self._offset.get(d, 0.0)
            elif self.dram_w is not None:
                out[d] = self.dram_w * elapsed / self.sockets + self._offset.get(d, 0.0)
            else:
                out[d] = None
        return out

    def sample(self, read_counter: bool) -> dict[str, tuple[float | None, float | None]]:
        # Modelled power over the interval since the previous sample.
        now = time.monotonic()
        energy = self._energy(refresh=False)
        power: dict[str, float | None] = {d: None for d in self.devices}
        if self._last_sample is not None and now > self._last_sample[0]:
            dt = now - self._last_sample[0]
            for d, e in energy.items():
                prev = self._last_sample[1].get(d)
                if e is not None and prev is not None:
                    power[d] = (e - prev) / dt
        self._last_sample = (now, energy)
        return {d: (energy[d], power[d]) for d in self.devices}

    def read_power(self) -> dict[str, float | None]:
        return {d: v[1] for d, v in self.sample(True).items()}

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(tdp=self.tdp.as_dict(), machine_tdp_w=self.tdp_w, logical_cpus=self.logical,
                    idle_fraction=self.idle_fraction, idle_w=self.idle_w,
                    dram_w_per_gib=self.dram_w_per_gib, dram_w=self.dram_w,
                    methods={d: self.method(d) for d in self.devices})
        return info
