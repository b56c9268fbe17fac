"""Peak memory and wall time of ``distillmeter account`` and ``report`` against trace size.

A large, realistic run is made from the recorded H100 run (tests/data/h100-run-a): every
stretch between two ledger events (each stage, each gap between stages) is repeated N times
on a shifted clock, its energy counter carried on from where the previous copy ended, so the
run keeps the recording's stage structure with every stage N times longer and its ledger
readings consistent with its trace. N is chosen for each target size of trace.csv.

For each size the script runs, each as a child process whose peak RSS comes from
``os.wait4``: ``distillmeter account RUN_DIR`` (report.json written), then
``distillmeter report RUNS_DIR`` (report.json present: the sensitivity re-accounts and the
timeline plot read the trace), and prints a table.

    .venv/bin/python benchmarks/trace_scale.py --sizes 25 50 100 200
    .venv/bin/python benchmarks/trace_scale.py --sizes 200 --make-only --out /tmp/big
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "tests" / "data" / "h100-run-a"
_READING_EVENTS = ("run_start", "stage_start", "stage_end", "run_end")


def _interp(ts: list[float], vs: list[float], x: float) -> float:
    """Linear interpolation of a sorted series, held beyond its ends."""
    i = bisect.bisect_right(ts, x)
    if i == 0:
        return vs[0]
    if i == len(ts):
        return vs[-1]
    t0, t1 = ts[i - 1], ts[i]
    return vs[i - 1] + (vs[i] - vs[i - 1]) * (x - t0) / (t1 - t0)


def make_run(out: Path, repeats: int, source: Path = RECORDED) -> Path:
    """Write ``out/ledger.jsonl`` and ``out/trace.csv``: the recorded run with each stretch
    between ledger events repeated ``repeats`` times. Returns ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    events = [json.loads(x) for x in (source / "ledger.jsonl").read_text().splitlines() if x]
    with open(source / "trace.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    devices = sorted({r[1] for r in rows})
    counter = {d: ([float(r[0]) for r in rows if r[1] == d and r[2]],
                   [float(r[2]) for r in rows if r[1] == d and r[2]]) for d in devices}
    bounds = [float(ev["t"]) for ev in events]
    # each stretch i = [bounds[i], bounds[i + 1]): its length and its energy per device
    dt = [b - a for a, b in zip(bounds, bounds[1:], strict=False)]
    de = [{d: _interp(*counter[d], b) - _interp(*counter[d], a) for d in devices}
          for a, b in zip(bounds, bounds[1:], strict=False)]
    extra = repeats - 1
    shift_t = [0.0]  # clock shift of each event (and of the first copy after it)
    shift_e = [dict.fromkeys(devices, 0.0)]
    for i in range(len(dt)):
        shift_t.append(shift_t[-1] + extra * dt[i])
        shift_e.append({d: shift_e[-1][d] + extra * de[i][d] for d in devices})
    with open(out / "ledger.jsonl", "w", encoding="utf-8") as f:
        for i, ev in enumerate(events):
            ev = dict(ev, t=ev["t"] + shift_t[i])
            if ev["event"] in _READING_EVENTS:
                ev["readings"] = {d: round(v + shift_e[i].get(d, 0.0), 3)
                                  for d, v in ev.get("readings", {}).items()}
            f.write(json.dumps(ev) + "\n")
    with open(out / "trace.csv", "w", encoding="utf-8") as f:
        f.write("t,device,energy_j,power_w\n")
        by_stretch: list[list[list[str]]] = [[] for _ in range(len(bounds) + 1)]
        for r in rows:
            by_stretch[bisect.bisect_right(bounds, float(r[0]))].append(r)
        for k, part in enumerate(by_stretch):
            i = k - 1  # the stretch after event i (-1: before the first event)
            copies = repeats if 0 <= i < len(dt) else 1
            base_t = shift_t[max(i, 0)] if i >= 0 else 0.0
            base_e = shift_e[max(i, 0)] if i >= 0 else dict.fromkeys(devices, 0.0)
            for j in range(copies):
                ot = base_t + (j * dt[i] if copies > 1 else 0.0)
                lines = []
                for t, d, e, p in part:
                    oe = base_e[d] + (j * de[i][d] if copies > 1 else 0.0)
                    ec = f"{float(e) + oe:.3f}" if e else ""
                    lines.append(f"{float(t) + ot:.6f},{d},{ec},{p}\n")
                f.write("".join(lines))
    return out


def measure(cmd: list[str]) -> tuple[float, float, int]:
    """Run ``cmd``; its wall seconds, peak RSS (MiB, from os.wait4) and exit status."""
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty child never blocks
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
        err.seek(0)
        if rc != 0:
            tail = err.read().decode(errors="replace").strip()[-500:]
            print(f"  {' '.join(cmd)} exited {rc}: {tail}", file=sys.stderr)
    peak_kib = usage.ru_maxrss  # kilobytes on Linux
    return seconds, peak_kib / 1024, rc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[25, 50, 100, 200],
                    help="target sizes of trace.csv, MB (1e6 bytes)")
    ap.add_argument("--out", type=Path, default=None,
                    help="where to write the runs (default: a temporary directory, removed)")
    ap.add_argument("--make-only", action="store_true", help="write the runs, measure nothing")
    ap.add_argument("--distillmeter", default=str(Path(sys.executable).parent / "distillmeter"),
                    help="the distillmeter executable to measure")
    args = ap.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="trace-scale-"))
    per_copy = (RECORDED / "trace.csv").stat().st_size
    table = []
    try:
        for size in args.sizes:
            repeats = max(1, round(size * 1e6 / per_copy))
            runs = root / f"runs-{size:g}mb"
            if runs.exists():
                shutil.rmtree(runs)
            run = make_run(runs / "run", repeats)
            mb = (run / "trace.csv").stat().st_size / 1e6
            rows = sum(1 for _ in open(run / "trace.csv", "rb")) - 1
            print(f"{size:g} MB: {repeats} copies, trace.csv {mb:.1f} MB, {rows:,} rows",
                  flush=True)
            if args.make_only:
                continue
            acc = measure([args.distillmeter, "account", str(run)])
            rep = measure([args.distillmeter, "report", str(runs)])
            print(f"  account {acc[0]:.1f} s {acc[1]:.0f} MiB; report {rep[0]:.1f} s "
                  f"{rep[1]:.0f} MiB", flush=True)
            table.append((mb, rows, acc, rep))
    finally:
        if args.out is None:
            shutil.rmtree(root, ignore_errors=True)
    if table:
        print("\n| trace.csv | rows | account: s | account: peak RSS | report: s "
              "| report: peak RSS |")
        print("|---|---|---|---|---|---|")
        for mb, rows, acc, rep in table:
            flag = "" if acc[2] == 0 and rep[2] == 0 else " (failed)"
            print(f"| {mb:.0f} MB | {rows / 1e6:.2f} M | {acc[0]:.1f} | {acc[1]:.0f} MiB "
                  f"| {rep[0]:.1f} | {rep[1]:.0f} MiB |{flag}")


if __name__ == "__main__":
    main()
