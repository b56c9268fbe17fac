"""What wrapping a short piece of work in ``EnergyMeter`` costs, first time and after.

The meter's default idle baseline (3 s of idle measurement) is kept per host in the idle
cache (energy/idle_baseline.py), so only the first meter on a host (or the first after a day, or
after the devices changed) waits for it. This times 1 s of CPU work bare and inside
``with EnergyMeter(...)`` with a fresh cache file: run 1 measures the baseline, runs 2+
reuse it.

    python benchmarks/meter_open_cost.py --runs 4 --work 1.0
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from distillmeter.energy import EnergyMeter


def work(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--work", type=float, default=1.0, help="seconds of work inside")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="meter-open-cost-"))
    cache = tmp / "idle.json"
    t = time.perf_counter()
    work(args.work)
    bare = time.perf_counter() - t
    print(f"bare      {bare:.3f} s")
    for i in range(args.runs):
        t = time.perf_counter()
        with EnergyMeter(tmp / f"run{i}", idle_cache=cache) as meter:
            with meter.stage("student.train"):
                work(args.work)
        total = time.perf_counter() - t
        how = "cached" if meter.idle_cached else "measured"
        print(f"metered   {total:.3f} s  (+{total - bare:.3f} s; idle baseline {how})")


if __name__ == "__main__":
    main()
