"""The GPU check's parts that need no torch: the independent reader of the NVML energy
counter, the comparison with the report, the floors, and the text summary.

``reader_main`` runs in its own process (multiprocessing "spawn": no state shared with the
metered program, its own NVML session): it polls ``nvmlDeviceGetTotalEnergyConsumption``
as fast as the call allows (~4 ms on an H100) and keeps, for every reading, the
``time.monotonic()`` just before and just after the call. On Linux ``time.monotonic`` is
CLOCK_MONOTONIC, one clock for every process on the machine, so these times and the
meter's (``t`` = monotonic - the meter's origin) line up once the origin is known.

The counter changes about every 100 ms. A boundary reading taken by the meter at time T
returns the value the counter holds at T; the reader brackets it between its last reading
finished before T - margin (``lo``) and its first reading begun after T + margin (``hi``),
and its reading nearest to T is the point estimate. A stage's energy from the reader is
the difference of the point estimates at its two boundaries, with a bracket from the
``lo``/``hi`` values. Only this module's standard-library imports run at import time, so
the spawned process starts fast.
"""

from __future__ import annotations

import bisect
import csv
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CSV_HEADER = ("nvml_index", "t_before", "t_after", "energy_j")


def reader_main(indices: list[int], out_csv: str, stop: Any, ready: Any,
                poll_s: float = 0.001) -> None:
    """Poll the energy counters of the GPUs at NVML ``indices`` (NVML numbers every GPU,
    whatever CUDA_VISIBLE_DEVICES says) until ``stop`` is set; write every reading to
    ``out_csv``. ``ready`` is set after the first round. Errors go to
    ``out_csv + ".error"`` (the parent reports them)."""
    rows: list[tuple[int, float, float, float]] = []
    try:
        import pynvml

        pynvml.nvmlInit()
        handles = []
        for i in indices:
            handles.append((int(i), pynvml.nvmlDeviceGetHandleByIndex(int(i))))

        def poll() -> None:
            for idx, h in handles:
                a = time.monotonic()
                mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
                b = time.monotonic()
                rows.append((idx, a, b, mj / 1000.0))

        poll()
        ready.set()
        while not stop.is_set():
            poll()
            if poll_s > 0:
                time.sleep(poll_s)
        poll()
        pynvml.nvmlShutdown()
    except BaseException:
        Path(out_csv + ".error").write_text(traceback.format_exc(), encoding="utf-8")
        ready.set()
    finally:
        with open(out_csv, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(CSV_HEADER)
            w.writerows((i, f"{a:.6f}", f"{b:.6f}", f"{e:.3f}") for i, a, b, e in rows)


@dataclass
class Samples:
    """One device's counter readings, in time order: the monotonic times just before and
    just after each call, and the counter in joules."""

    t_before: list[float] = field(default_factory=list)
    t_after: list[float] = field(default_factory=list)
    energy_j: list[float] = field(default_factory=list)

    def add(self, t_before: float, t_after: float, energy_j: float) -> None:
        self.t_before.append(t_before)
        self.t_after.append(t_after)
        self.energy_j.append(energy_j)

    def sort(self) -> Samples:
        order = sorted(range(len(self.t_before)), key=lambda i: self.t_before[i])
        return Samples([self.t_before[i] for i in order], [self.t_after[i] for i in order],
                       [self.energy_j[i] for i in order])

    def __len__(self) -> int:
        return len(self.t_before)


def read_samples(path: str | Path) -> dict[int, Samples]:
    """The reader's CSV, per NVML index, sorted by time."""
    out: dict[int, Samples] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out.setdefault(int(row["nvml_index"]), Samples()).add(
                float(row["t_before"]), float(row["t_after"]), float(row["energy_j"]))
    return {k: v.sort() for k, v in out.items()}


def counter_at(s: Samples, t: float, margin: float) -> tuple[float, float, float] | None:
    """The counter at monotonic time ``t`` as the reader saw it: (lo, hi, nearest), or None
    when the reader has no reading on both sides of ``t``."""
    if not s.t_before or s.t_after[0] > t - margin or s.t_before[-1] < t + margin:
        return None
    # last reading finished before t - margin (t_after is sorted as t_before is: the calls
    # do not overlap), first reading begun after t + margin
    i_lo = bisect.bisect_right(s.t_after, t - margin) - 1
    i_hi = bisect.bisect_left(s.t_before, t + margin)
    mids = [(a + b) / 2 for a, b in zip(s.t_before[i_lo: i_hi + 1], s.t_after[i_lo: i_hi + 1],
                                         strict=True)]
    i_near = i_lo + min(range(len(mids)), key=lambda i: abs(mids[i] - t))
    return s.energy_j[i_lo], s.energy_j[i_hi], s.energy_j[i_near]


@dataclass(frozen=True)
class Window:
    """A stretch of the meter's clock with the energy the report gives it on one device."""

    name: str
    t_start: float
    t_end: float
    report_j: float


def compare(windows: list[Window], s: Samples, origin: float, *, min_seconds: float = 2.0,
            tolerance: float = 0.01, margin: float = 0.005) -> list[dict[str, Any]]:
    """Each window's reported energy against the reader's. ``origin``: the monotonic time
    of the meter's t = 0. A window of ``min_seconds`` or more passes when the report is
    within ``tolerance`` of the reader's point estimate, or inside the reader's bracket
    (a counter update fell within ``margin`` of a boundary, so the reader cannot say on
    which side of the boundary reading it landed). Shorter windows are listed, unchecked."""
    rows = []
    for w in windows:
        row: dict[str, Any] = {"stage": w.name, "seconds": w.t_end - w.t_start,
                               "report_j": w.report_j}
        a = counter_at(s, origin + w.t_start, margin)
        b = counter_at(s, origin + w.t_end, margin)
        if a is None or b is None:
            row.update(checked=True, ok=False,
                       why="the reader has no readings around a boundary of this stage")
            rows.append(row)
            continue
        reader = b[2] - a[2]
        lo, hi = b[0] - a[1], b[1] - a[0]
        err = (w.report_j - reader) / reader if reader > 0 else float("inf")
        row.update(reader_j=reader, reader_lo_j=lo, reader_hi_j=hi, error_pct=100 * err)
        if row["seconds"] < min_seconds:
            row.update(checked=False, ok=None, why=f"shorter than {min_seconds:g} s: not checked")
        elif abs(err) <= tolerance:
            row.update(checked=True, ok=True, why=f"within {100 * tolerance:g}%")
        elif lo <= w.report_j <= hi:
            row.update(checked=True, ok=True,
                       why="inside the reader's bracket (a counter update fell at a boundary)")
        else:
            row.update(checked=True, ok=False,
                       why=f"off by {100 * err:+.2f}%, outside the reader's bracket "
                           f"[{lo:.1f}, {hi:.1f}] J")
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- the checks


def stage_rows(report) -> list[dict]:
    return [{"name": s.name, "seconds": s.seconds, "energy_j": s.energy_j["total"],
             "gpu_j": sum(v for k, v in s.energy_j.items() if k.startswith("gpu:")),
             "tokens": s.tokens, "j_per_token": s.j_per_token,
             "source": ",".join(sorted(set(s.source.values()))), "status": s.status}
            for s in report.stages]


def reader_check(report, run_dir: Path, out: Path, index: int, origin: float, *,
                 min_seconds: float = 2.0, tolerance: float = 0.01) -> dict:
    """(a): every stage, and the whole run, against the independent reader."""
    from distillmeter.protocol import read_ledger

    err = out / "reader.csv.error"
    if err.exists():
        return {"device": f"gpu:{index}", "error": err.read_text(), "rows": [], "ok": False,
                "tolerance_pct": 100 * tolerance, "min_seconds": min_seconds}
    samples = read_samples(out / "reader.csv").get(index, Samples())
    dev = f"gpu:{index}"
    windows = [Window(s.name, s.t_start, s.t_end, s.energy_j[dev])
               for s in report.stages if dev in s.energy_j]
    ledger = read_ledger(run_dir / "ledger.jsonl")
    run_end = next(e for e in reversed(ledger.events) if e.event == "run_end")
    windows.append(Window("(whole run)", ledger.run_start.t, run_end.t,
                              report.totals.by_device.get(dev, 0.0)))
    rows = compare(windows, samples, origin, min_seconds=min_seconds, tolerance=tolerance)
    checked = [r for r in rows if r["checked"]]
    return {"device": dev, "origin_monotonic": origin, "reader_samples": len(samples),
            "tolerance_pct": 100 * tolerance, "min_seconds": min_seconds, "rows": rows,
            "ok": bool(checked) and all(r["ok"] for r in checked)}


# --------------------------------------------------------------------------- floors

FLOOR_STAGES = ("teacher.logits", "teacher.generate", "student.train", "eval.student")


def floor_per_token(stage: str, params: float, *, j_per_flop: float,
                    j_per_byte: float | None, batch_tokens: float | None,
                    bytes_per_param: float = 2.0) -> tuple[float, str]:
    """The energy floor of one token of ``stage`` and what bounds it: training 6 x params
    x J/FLOP; inference max(2 x params x J/FLOP, weight bytes / batch x J/byte), where the
    batch is the tokens one pass over the weights serves (sequences per decoding step;
    all tokens of a forward batch)."""
    if stage.split(".", 1)[1].startswith("train"):
        return 6.0 * params * j_per_flop, "compute"
    compute = 2.0 * params * j_per_flop
    if j_per_byte and batch_tokens:
        weights = params * bytes_per_param / batch_tokens * j_per_byte
        if weights > compute:
            return weights, "weight streaming"
    return compute, "compute"


def efficiency(report: dict[str, Any], params: dict[str, float], batches: dict[str, float],
               floor: dict[str, Any] | None, *, gpu: bool) -> list[dict[str, Any]]:
    """Energy per token of the floor stages against their floors. ``report``: report.json
    as a dict; ``params``: {"teacher": n, "student": n}; ``batches``: tokens per weight pass
    per stage; ``floor``: the floors-table entry for the device (None: unknown)."""
    rows = []
    for name in FLOOR_STAGES:
        stages = [s for s in report["stages"] if s["name"] == name]
        if not stages:
            continue
        energy = sum(v for s in stages for k, v in s["energy_j"].items()
                     if (k.startswith("gpu:") if gpu else k == "total"))
        tokens = sum(s["tokens"] for s in stages)
        p = params["teacher" if name.startswith("teacher.") else "student"]
        row: dict[str, Any] = {"stage": name, "seconds": sum(s["seconds"] for s in stages),
                               "energy_j": energy, "tokens": tokens, "params": p,
                               "j_per_token": energy / tokens if tokens else None,
                               "floor_j_per_token": None, "x_floor": None, "bound": None}
        if floor is not None and tokens:
            f, bound = floor_per_token(name, p, j_per_flop=floor["pj_per_flop"] * 1e-12,
                                       j_per_byte=(floor.get("pj_per_byte") or 0) * 1e-12,
                                       batch_tokens=batches.get(name))
            row.update(floor_j_per_token=f, x_floor=row["j_per_token"] / f, bound=bound)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- summary


def _fmt(x: Any, spec: str = ".4g") -> str:
    if x is None:
        return "-"
    return format(x, spec) if isinstance(x, (int, float)) else str(x)


def _count(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(int(n))


def summary(results: dict[str, Any]) -> str:
    """The human-readable summary (gpu_check.txt)."""
    lines = [f"distillmeter GPU check, {results['date']}",
             f"device: {results['device']}; torch {results['torch']}, transformers "
             f"{results['transformers']}; mode: {results['mode']}",
             f"teacher {_count(results['params']['teacher'])} params, student "
             f"{_count(results['params']['student'])} params, {results['dtype']}",
             f"elapsed: {results['elapsed_s']:.0f} s", ""]
    lines.append("stages (report.json):")
    lines.append(f"  {'stage':<18}{'seconds':>9}{'energy J':>12}{'tokens':>10}{'J/token':>11}"
                 f"  source")
    for s in results["stages"]:
        lines.append(f"  {s['name']:<18}{s['seconds']:>9.2f}{s['energy_j']:>12.1f}"
                     f"{s['tokens']:>10}{_fmt(s['j_per_token'], '.3g'):>11}  {s['source']}")
    lines.append("")
    rc = results["reader_check"]
    if "skipped" in rc:
        lines.append(f"(a) independent NVML reader: skipped ({rc['skipped']})")
    else:
        lines.append(f"(a) report vs independent NVML reader on {rc['device']} "
                     f"(tolerance {rc['tolerance_pct']:g}% for stages >= {rc['min_seconds']:g} s):")
        lines.append(f"  {'stage':<18}{'seconds':>9}{'report J':>12}{'reader J':>12}"
                     f"{'error %':>9}  result")
        if rc.get("error"):
            lines.append("  the reader failed: " + rc["error"].strip().splitlines()[-1])
        for r in rc["rows"]:
            verdict = {True: "ok", False: "FAIL", None: "-"}[r["ok"]]
            lines.append(f"  {r['stage']:<18}{r['seconds']:>9.2f}{r['report_j']:>12.1f}"
                         f"{_fmt(r.get('reader_j'), '.1f'):>12}"
                         f"{_fmt(r.get('error_pct'), '+.3f'):>9}  {verdict}: {r['why']}")
    lines.append("")
    fl = results["floor"]
    lines.append("(b) energy per token vs floor" + (
        f" ({fl['name']}: {fl['pj_per_flop']} pJ/FLOP, {fl.get('pj_per_byte', '-')} pJ/byte, "
        f"{fl['basis']})" if fl else " (no floor known for this device)") + ":")
    lines.append(f"  {'stage':<18}{'tokens':>10}{'J/token':>11}{'floor J/tok':>13}"
                 f"{'x floor':>9}  bound")
    for r in results["efficiency"]:
        lines.append(f"  {r['stage']:<18}{r['tokens']:>10}{_fmt(r['j_per_token'], '.3g'):>11}"
                     f"{_fmt(r['floor_j_per_token'], '.3g'):>13}{_fmt(r['x_floor'], '.1f'):>9}"
                     f"  {r['bound'] or '-'}")
    if results.get("error"):
        lines += ["", "the pipeline failed: " + results["error"].strip().splitlines()[-1]]
    lines += ["", f"result: {results['status'].upper()}"]
    return "\n".join(lines) + "\n"
