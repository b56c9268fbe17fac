"""Seed stability of the built-in default: exact match per seed, per method, per thread count.

For each thread count (1 and 2 unless told), runs the real CLI, ``distillmeter run CONFIG
--out OUT/threads-T --quiet --no-report`` in a subprocess, on the config with ``seeds: N`` and
``threads: T`` written out (OUT/threads-T.yaml); then reads every run's report.json and
prints a markdown table: for each method (the teacher included), the exact match of every
seed, the mean, the sample std (ddof=1) and the 95% t-interval of the mean, and each run's
wall time (report ``totals.seconds``), plus the whole command's wall time. The CLI's own
output goes to stderr, the tables to stdout.

    .venv/bin/python benchmarks/seed_stability.py --out /tmp/seeds
    .venv/bin/python benchmarks/seed_stability.py --out /tmp/seeds --seeds 10 --threads 1
    .venv/bin/python benchmarks/seed_stability.py --config my.yaml --out runs-seeds
    .venv/bin/python benchmarks/seed_stability.py --out /tmp/seeds --no-run   # table again

Arguments:
  --out DIR        where the runs go (required): DIR/threads-T/ per thread count.
  --config FILE    a run config (YAML); default: the built-in default (configs/default.yaml).
  --seeds N        seeds per method (default 5; overrides the config's ``seeds``).
  --threads T ...  torch thread counts to run (default: 1 2; overrides ``threads``).
  --check M ...    the methods whose std is checked (default: kd synthetic).
  --max-std X      the largest std of exact match allowed for a checked method (default
                   0.03).
  --resume         pass --resume to the CLI (add seeds to, or finish, an earlier OUT).
  --no-run         run nothing: only read the reports already in OUT and print the table.

Exit status: 0 when every checked method has at least two seeds and a std of exact match of
at most --max-std at every thread count; 1 otherwise (the table marks which); the CLI's
own status when a run command fails. Run it on a quiet machine, or under ``nice``: the wall
times count whatever else runs there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import yaml

from distillmeter.analysis.stats import summarize


def write_config(source: Path | None, seeds: int, threads: int, dest: Path) -> None:
    """The config with ``seeds`` and ``threads`` set, every default written out."""
    from distillmeter.pipelines.config import RunConfig
    from distillmeter.pipelines.config_file import load_config

    cfg = load_config(source) if source is not None else RunConfig()
    cfg = cfg.model_copy(update={"seeds": seeds, "threads": threads})
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump(cfg.resolved(), sort_keys=False))


def run_cli(config: Path, out: Path, resume: bool) -> tuple[int, float]:
    """``distillmeter run`` in a subprocess: (exit status, wall seconds)."""
    cmd = [sys.executable, "-c", "import sys; from distillmeter.cli import main; "
           "sys.exit(main())", "run", str(config), "--out", str(out), "--quiet",
           "--no-report"]
    if resume:
        cmd.append("--resume")
    print(f"$ distillmeter run {config} --out {out} --quiet --no-report"
          + (" --resume" if resume else ""), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd, stdout=sys.stderr)  # stdout: only the tables
    return rc, time.perf_counter() - t0


def read_runs(out: Path) -> dict[str, list[tuple[int, float | None, float]]]:
    """method -> [(seed, exact match, run seconds)], from every report.json in ``out``."""
    by_method: dict[str, list[tuple[int, float | None, float]]] = {}
    for path in sorted(out.glob("*/report.json")):
        r = json.loads(path.read_text())
        quality = r.get("quality") or {}
        by_method.setdefault(r.get("method") or "?", []).append(
            (int(r.get("seed") or 0), quality.get("value"), float(r["totals"]["seconds"])))
    for rows in by_method.values():
        rows.sort()
    return by_method


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def table(threads: int, by_method: dict, check: list[str], max_std: float,
          wall: float | None) -> tuple[str, bool]:
    """A markdown table for one thread count, and whether the checked methods pass."""
    ok = True
    lines = [f"### threads: {threads}", "",
             "| method | exact match per seed | mean | std | 95% CI | seconds per run | check |",
             "|---|---|---|---|---|---|---|"]
    order = sorted(by_method, key=lambda m: (m != "teacher", m))
    for method in order:
        rows = by_method[method]
        s = summarize([q for _, q, _ in rows])
        per_seed = ", ".join(f"s{seed} {_f(q)}" for seed, q, _ in rows)
        secs = " ".join(f"{sec:.1f}" for _, _, sec in rows)
        verdict = ""
        if method in check:
            passed = s.std is not None and s.std <= max_std
            ok &= passed
            verdict = "ok" if passed else f"**FAIL** (std > {max_std})" if s.std is not None \
                else "**FAIL** (fewer than 2 seeds)"
        ci = "-" if s.lo is None else f"[{s.lo:.3f}, {s.hi:.3f}]"
        lines.append(f"| {method} | {per_seed} | {_f(s.mean)} | {_f(s.std)} | {ci} | {secs} "
                     f"| {verdict} |")
    for method in check:
        if method not in by_method:
            ok = False
            lines.append(f"| {method} | (no runs) | | | | | **FAIL** (missing) |")
    total = sum(sec for rows in by_method.values() for _, _, sec in rows)
    lines += ["", f"runs' own seconds, summed: {total:.1f}"
              + ("" if wall is None else f"; the command's wall time: {wall:.1f} s")]
    return "\n".join(lines), ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--check", nargs="+", default=["kd", "synthetic"])
    ap.add_argument("--max-std", type=float, default=0.03)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--no-run", action="store_true")
    args = ap.parse_args()
    if args.seeds < 1 or any(t < 1 for t in args.threads):
        ap.error("--seeds and --threads must be at least 1")

    walls: dict[int, float] = {}
    for threads in args.threads:
        out = args.out / f"threads-{threads}"
        if args.no_run:
            continue
        config = args.out / f"threads-{threads}.yaml"
        write_config(args.config, args.seeds, threads, config)
        rc, walls[threads] = run_cli(config, out, args.resume)
        if rc != 0:
            print(f"distillmeter run failed (exit status {rc}) for threads: {threads}",
                  file=sys.stderr)
            return rc

    ok = True
    cpu = platform.processor() or platform.machine()
    print(f"## Seed stability: {args.config or 'the built-in default'}, {args.seeds} seeds\n")
    print(f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, load average "
          f"{os.getloadavg()[0]:.2f}; checked: {', '.join(args.check)} "
          f"(std <= {args.max_std})\n")
    for threads in args.threads:
        text, passed = table(threads, read_runs(args.out / f"threads-{threads}"), args.check,
                             args.max_std, walls.get(threads))
        ok &= passed
        print(text + "\n")
    print("PASS" if ok else "FAIL: a checked method's std of exact match is over "
          f"{args.max_std} (or it has fewer than 2 seeds)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
