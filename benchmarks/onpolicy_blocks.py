"""On-policy block size: energy-measurement precision against on-policy freshness.

Runs the packaged ``onpolicy`` config's on-policy method once per block size (one method
per size, ``onpolicy-b<B>``, all on one shared teacher run), then reads each run's report,
trace and train.json:

- windows: how many windows each phase got, their mean length, the share under 1 s (the
  report flags those ``short stage``);
- boundary J: the windows' summed boundary uncertainty, each window's two edges x the
  sensor period x the power there (``accounting.uncertainty``), and its share of the
  rounds' energy; the report's full uncertainty adds the estimate's +-50% on this machine;
- freshness: how many optimizer steps old the samples are when the student learns from
  them (mean and max over the on-policy batches, from train.json);
- what it cost and bought: the rounds' energy (generate, score, train), J/token of each
  phase, exact match, the run's wall time.

    .venv/bin/python benchmarks/onpolicy_blocks.py                       # 32 64 256 1024
    .venv/bin/python benchmarks/onpolicy_blocks.py --blocks 64 256 --seeds 2 --out runs-b

Wall times and energies depend on what else runs on the machine (the load average is
printed); on a GPU each window lasts longer in energy terms but shorter in seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

from distillmeter import protocol

PHASES = ("student.generate", "teacher.score", "student.train")


def boundary_j(run_dir: Path, report: protocol.Report) -> float:
    """Summed boundary uncertainty of the run's phase windows (both edges, every device)."""
    from distillmeter.accounting.core import load_inputs
    from distillmeter.accounting.uncertainty import BOUNDARY_QUANTUM_S, edge_power

    inputs = load_inputs(run_dir)
    total = 0.0
    for st in report.stages:
        if st.name not in PHASES:
            continue
        for dev, src in st.source.items():
            q = BOUNDARY_QUANTUM_S.get(src, 0.1)
            mean_w = st.energy_j.get(dev, 0.0) / st.seconds if st.seconds > 0 else 0.0
            series = inputs.series[dev]
            total += q * (edge_power(series, st.t_start, q, mean_w)
                          + edge_power(series, st.t_end, q, mean_w))
    return total


def describe(run_dir: Path) -> dict:
    """One run's figures (see the module's docstring)."""
    report = protocol.load_report(run_dir)
    log = json.loads(next((run_dir / "artifacts").glob("train-*/train.json")).read_text())
    row: dict = {"run": run_dir.name, "seconds": report.totals.seconds,
                 "quality": report.quality.value if report.quality else None,
                 "with_upstream_j": report.totals.with_upstream_j, **log["onpolicy"]}
    rounds_j = 0.0
    for name in PHASES:
        ws = [s for s in report.stages if s.name == name]
        energy = math.fsum(s.energy_j["total"] for s in ws)
        tokens = sum(s.tokens for s in ws)
        rounds_j += energy
        row[name] = {"windows": len(ws), "mean_s": statistics.fmean(s.seconds for s in ws),
                     "short": sum(s.seconds < 1.0 for s in ws) / len(ws), "energy_j": energy,
                     "j_per_token": energy / tokens if tokens else None,
                     "uncertainty_j": math.fsum(s.uncertainty_j for s in ws)}
    row["rounds_j"] = rounds_j
    row["boundary_j"] = boundary_j(run_dir, report)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, nargs="+", default=[32, 64, 256, 1024])
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--config", default="onpolicy", help="config holding an onpolicy method")
    ap.add_argument("--out", type=Path, default=None, help="runs directory (default: temp)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()

    from distillmeter.pipelines.config_file import load_config
    from distillmeter.pipelines.runner import run_all

    cfg = load_config(args.config)
    base = next(m for m in cfg.methods if m.onpolicy)
    methods = [base.model_copy(update={"name": f"onpolicy-b{b}", "block_prompts": b})
               for b in args.blocks]
    cfg = cfg.model_copy(update={"methods": methods, "seeds": args.seeds})
    out = args.out or Path(tempfile.mkdtemp(prefix="onpolicy-blocks-"))
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    run_all(cfg, out, resume=out.exists() and any(out.iterdir()), quiet=True)
    wall = time.perf_counter() - t0
    load1 = os.getloadavg()
    rows = [describe(out / f"{m.name}-s{s}") for m in methods for s in range(args.seeds)]
    print(f"{out}: {wall:.0f} s wall; load average {load0[0]:.1f} before, {load1[0]:.1f} "
          f"after; training.batch_size {cfg.training.batch_size}, lmbda {base.lmbda}, "
          f"generation.batch_size {cfg.generation.batch_size}")
    print("| run | windows a phase | mean window s (gen / score / train) | under 1 s | "
          "boundary +-J (% of rounds) | sample age steps mean / max | rounds J | "
          "J/token gen / score / train | exact match | run s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        g, sc, tr = (r[p] for p in PHASES)
        short = (g["short"] * g["windows"] + sc["short"] * sc["windows"]
                 + tr["short"] * tr["windows"]) / (3 * g["windows"])
        print(f"| {r['run']} | {g['windows']} | {g['mean_s']:.2f} / {sc['mean_s']:.2f} / "
              f"{tr['mean_s']:.2f} | {short:.0%} | {r['boundary_j']:.1f} "
              f"({r['boundary_j'] / r['rounds_j']:.1%}) | {r['mean_sample_age_steps']:.1f} / "
              f"{r['max_sample_age_steps']} | {r['rounds_j']:.0f} | "
              f"{g['j_per_token']:.2e} / {sc['j_per_token']:.2e} / {tr['j_per_token']:.2e} | "
              f"{r['quality']:.3f} | {r['seconds']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
