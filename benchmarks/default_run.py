"""Time the built-in default (`distillmeter run` with no config) end to end.

Prints the wall time of every stage of every run (from the ledgers' boundary times), each
run's total, the whole command's wall time, and the per-method quality over seeds, so the
README can state "the default finishes in N minutes here, and the methods differ by ...".

    .venv/bin/python benchmarks/default_run.py                 # into a temporary directory
    .venv/bin/python benchmarks/default_run.py --out runs-bench --seeds 1
    .venv/bin/python benchmarks/default_run.py --config my.yaml

The budget on the 2-core development machine is 5 minutes; the figures depend on what else
runs there (see `load average` in the output).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from distillmeter import protocol


def stage_times(run_dir: Path) -> list[tuple[str, float, str]]:
    """(stage, seconds, status) from a run's ledger."""
    ledger = protocol.read_ledger(run_dir)
    starts: dict[str, float] = {}
    out = []
    for ev in ledger.events:
        if ev.event == "stage_start":
            starts[ev.stage] = ev.t
        elif ev.event == "stage_end" and ev.stage in starts:
            out.append((ev.stage, ev.t - starts.pop(ev.stage), ev.status))
    return out


def run_seconds(run_dir: Path) -> float:
    ledger = protocol.read_ledger(run_dir)
    return ledger.events[-1].t - ledger.events[0].t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="default: a temporary directory")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--progress", action="store_true", help="show the progress bars")
    args = ap.parse_args()

    from distillmeter.pipelines.config import builtin_default
    from distillmeter.pipelines.config_file import load_config
    from distillmeter.pipelines.runner import run_all

    cfg = load_config(args.config) if args.config else builtin_default()
    if args.seeds:
        cfg = cfg.model_copy(update={"seeds": args.seeds})
    out = args.out or Path(tempfile.mkdtemp(prefix="distillmeter-bench-"))
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    summary = run_all(cfg, out, quiet=not args.progress)
    wall = time.perf_counter() - t0
    load1 = os.getloadavg()

    print(f"\nper-stage wall time (s), {out}")
    for r in summary.runs:
        stages = stage_times(r.path)
        cells = "  ".join(f"{name} {sec:.1f}" + ("" if st == "ok" else f" [{st}]")
                          for name, sec, st in stages)
        print(f"  {r.name:<22} {run_seconds(r.path):6.1f}  | {cells}")
    print("\nquality by method and token budget (exact match on the test set, mean ± std "
          "over seeds):")
    by_method: dict[str, list] = {}
    for r in summary.of_kind("student"):
        if r.report is not None and r.report.quality is not None:
            budget = r.report.labels.get("token_budget")
            name = (r.method or "?") + ("" if budget is None else f" @{budget}")
            by_method.setdefault(name, []).append(r.report.quality)
    for method, qs in by_method.items():
        em = [q.value for q in qs]
        sd = statistics.stdev(em) if len(em) > 1 else 0.0
        ratios = [q.details["q"] for q in qs if q.details.get("q") is not None]
        q_txt = f", Q {statistics.fmean(ratios):.2f}" if ratios else ""
        print(f"  {method:<18} {statistics.fmean(em):.3f} ± {sd:.3f}  (n={len(em)}{q_txt})")
    print(f"\ntotal wall time: {wall:.1f} s ({wall / 60:.2f} min); threads: "
          f"{cfg.threads or 'auto'}; cores: {os.cpu_count()}; load average before "
          f"{load0[0]:.2f}, after {load1[0]:.2f}")


if __name__ == "__main__":
    main()
