"""How much does metering slow the program it meters?

Times a CPU training loop (a small torch MLP; numpy if torch is missing) bare and under an
EnergyMeter sampling at 20 Hz with a stage boundary (synchronize + counter read + fsynced
ledger line, twice) every N steps. Bare and metered runs alternate, several times; we
report the median of each, the overhead of the medians, the median of the paired
overheads. On a shared machine those wall-clock figures are dominated by other load, so we
also report the direct costs: the sampler thread's own CPU time as a share of wall time,
and the time one stage's two boundaries take the calling thread (fsync-dominated); their
sum over a run bounds what metering takes from the program. Target: under 0.5%.

    python benchmarks/meter_overhead.py [--steps 400] [--repeats 7] [--every 100]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from distillmeter.energy import EnergyMeter
from distillmeter.energy.sensors.hostinfo import cpu_info


def make_workload(threads: int, width: int) -> tuple[str, Callable[[], None]]:
    """One training step of a 3-layer MLP (forward, backward, SGD), or numpy's nearest
    equivalent when torch is not installed."""
    try:
        import torch
    except ImportError:
        import numpy as np

        rng = np.random.default_rng(0)
        w = [rng.standard_normal((width, width)) / width**0.5 for _ in range(3)]
        x = rng.standard_normal((64, width))

        def step_np() -> None:
            h = x
            for m in w:
                h = np.tanh(h @ m)
            g = h
            for m in reversed(w):
                m -= 1e-4 * (g.T @ g) / len(g)
                g = g @ m.T

        return f"numpy {np.__version__} MLP {width}x3, batch 64", step_np

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.GELU(),
                                torch.nn.Linear(width, width), torch.nn.GELU(),
                                torch.nn.Linear(width, 10))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x, y = torch.randn(64, width), torch.randint(0, 10, (64,))

    def step_torch() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    return f"torch {torch.__version__} MLP {width}x3, batch 64, {threads} threads", step_torch


def timed_bare(step: Callable[[], None], steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - t0


def timed_metered(step: Callable[[], None], steps: int, every: int, hz: float,
                  root: Path, k: int) -> tuple[float, float, int]:
    """Loop time under the meter, the sampler's CPU seconds, and its tick count."""
    meter = EnergyMeter(root / f"run{k}", idle_seconds=0, sample_hz=hz,
                        write_environment=False)
    with meter:
        t0 = time.perf_counter()
        done = 0
        while done < steps:
            with meter.stage("student.train") as st:
                for _ in range(min(every, steps - done)):
                    step()
                st.add(samples=64 * min(every, steps - done))
            done += every
        elapsed = time.perf_counter() - t0
    sampler = meter._sampler
    return elapsed, sampler.cpu_seconds if sampler else 0.0, sampler.ticks if sampler else 0


def boundary_cost(root: Path, n: int = 30) -> float:
    """Seconds one empty stage costs the calling thread: two synchronized boundary
    readings and two ledger lines, each flushed and fsynced."""
    with EnergyMeter(root / "boundaries", idle_seconds=0, sample_hz=0,
                     write_environment=False) as meter:
        t0 = time.perf_counter()
        for _ in range(n):
            with meter.stage("student.train"):
                pass
        return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--every", type=int, default=100, help="steps per stage (boundary rate)")
    ap.add_argument("--hz", type=float, default=20.0)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    desc, step = make_workload(args.threads, args.width)
    for _ in range(20):
        step()  # warm up allocators and kernels
    bare, metered, pairs, sampler_share, ticks = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        stage_s = boundary_cost(Path(tmp))
        for k in range(args.repeats):
            b = timed_bare(step, args.steps)
            m, cpu_s, n = timed_metered(step, args.steps, args.every, args.hz, Path(tmp), k)
            bare.append(b)
            metered.append(m)
            pairs.append((m - b) / b * 100)
            sampler_share.append(cpu_s / m * 100)
            ticks.append(n)
    mb, mm = statistics.median(bare), statistics.median(metered)
    cpu = cpu_info()
    print(f"date      {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"machine   {cpu.model}, {cpu.logical} logical CPUs, {platform.system()} "
          f"{platform.release()}, Python {platform.python_version()}")
    print(f"command   python {' '.join(sys.argv)}")
    print(f"workload  {desc}; {args.steps} steps per run, a stage every {args.every} steps, "
          f"sampler at {args.hz:g} Hz, {args.repeats} alternating repeats")
    print(f"bare      median {mb:.3f} s  (runs: {', '.join(f'{x:.3f}' for x in bare)})")
    print(f"metered   median {mm:.3f} s  (runs: {', '.join(f'{x:.3f}' for x in metered)})")
    print(f"overhead  {(mm - mb) / mb * 100:+.2f}% of the medians; paired median "
          f"{statistics.median(pairs):+.2f}% (pairs: {', '.join(f'{p:+.1f}' for p in pairs)})")
    share = statistics.median(sampler_share)
    stages = -(-args.steps // args.every)
    print(f"sampler   {share:.3f}% of one CPU (its own thread time / wall), "
          f"{statistics.median(ticks):.0f} ticks a run, {share * 10 / args.hz:.3f} ms a tick")
    print(f"stage     {stage_s * 1e3:.2f} ms per stage (2 boundary readings + 2 fsynced "
          f"ledger lines), {stages} stages a run = {stages * stage_s / mb * 100:.2f}% of a run")
    print(f"direct    sampler + boundaries = {share + stages * stage_s / mb * 100:.2f}% "
          "(an upper bound on what metering takes from the program, free of other load)")


if __name__ == "__main__":
    main()
