"""Seed stability of the built-in default's budget axis: each point's spread, and whether
the rules' choices and the plan's picks hold across seed sets and torch thread counts.

For each thread count (1 and 2 unless told), runs the real CLI, ``distillmeter run CONFIG
--out OUT/threads-T --quiet --no-report`` in a subprocess, on the config (the built-in
default unless told: every method at every token budget) with ``seeds: N`` and
``threads: T`` written out (OUT/threads-T.yaml). Then, from the runs' report.json files:

1. each point's spread (method x budget): exact match per seed, mean, std (ddof=1), 95%
   interval, and energy per student (mean and std over the seeds);
2. the choices the analysis makes, computed on every seed set (all seeds, and every subset
   of ``--subset K`` seeds) at every thread count:
   - checked: each method's cheapest point that reaches Q >= 0.9 (the verdict), the
     relations that hold "at every budget" (rules: "kd and synthetic cannot be told
     apart", "synthetic is separably above baseline"), and the plan's pick at each
     ``--plan-kwh`` budget (default: three budgets read off the reference analysis, all
     seeds at the first thread count: 1.25x the upper 95% energy bound of each distilled
     method's cheapest point reaching Q >= 0.9, and 1.5x the smallest point's);
   - shown, not checked: the frontier's points and where quality stops being separable
     (they move with a point that sits mid-rise, whose seeds spread widely).
   A checked choice that differs from the reference on any seed set or thread count fails
   the benchmark, and the table says where.

    .venv/bin/python benchmarks/seed_stability.py --out /tmp/seeds            # 5 seeds
    .venv/bin/python benchmarks/seed_stability.py --out /tmp/seeds --quick    # 3 seeds
    .venv/bin/python benchmarks/seed_stability.py --out /tmp/seeds --no-run   # again

Arguments:
  --out DIR        where the runs go (required): DIR/threads-T/ per thread count.
  --config FILE    a run config (YAML); default: the built-in default.
  --seeds N        seeds per point (default 5; overrides the config's ``seeds``).
  --threads T ...  torch thread counts (default: 1 2; overrides ``threads``).
  --quick          3 seeds and subsets of 2 (about 60% of the full benchmark's runs).
  --subset K       the size of the seed subsets analysed (default: N - 2, at least 2).
  --plan-kwh X ... the plan's budgets per student (kWh) to check the pick at.
  --resume         pass --resume to the CLI (finish an earlier OUT, or add seeds: each
                   seed's saved student is found in its own run directory only).
  --no-run         run nothing: read the reports already in OUT.

Exit status: 0 when every checked choice is the reference's on every seed set and thread
count, 1 otherwise; the CLI's status when a run fails. Wall times count whatever else
runs on the machine: run it on a quiet one, or read the runs' own seconds.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import yaml

from distillmeter.analysis.compare import energy_difference, quality_difference
from distillmeter.analysis.curverules import every_budget_rules, saturation_rule
from distillmeter.analysis.curves import curves_of_group
from distillmeter.analysis.grouping import budget_of
from distillmeter.analysis.planner import Budget, plan
from distillmeter.analysis.stats import summarize
from distillmeter.analysis.summary import Analysis, analyse
from distillmeter.protocol import Report, load_report


def write_config(source: Path | None, seeds: int, threads: int, dest: Path) -> None:
    """The config with ``seeds`` and ``threads`` set, every default written out."""
    from distillmeter.pipelines.config import builtin_default
    from distillmeter.pipelines.config_file import load_config

    cfg = load_config(source) if source is not None else builtin_default()
    cfg = cfg.model_copy(update={"seeds": seeds, "threads": threads})
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump(cfg.resolved(), sort_keys=False))


def run_cli(config: Path, out: Path, resume: bool) -> tuple[int, float]:
    """``distillmeter run`` in a subprocess: (exit status, wall seconds)."""
    cmd = [sys.executable, "-c", "import sys; from distillmeter.cli import main; "
           "sys.exit(main())", "run", str(config), "--out", str(out), "--quiet",
           "--no-report"] + (["--resume"] if resume else [])
    print(f"$ distillmeter run {config} --out {out} --quiet --no-report"
          + (" --resume" if resume else ""), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd, stdout=sys.stderr)  # stdout: only the tables
    return rc, time.perf_counter() - t0


def read_reports(out: Path) -> list[tuple[str, Report]]:
    return [(p.parent.name, load_report(p.parent)) for p in sorted(out.glob("*/report.json"))]


def subset(reports: list[tuple[str, Report]], seeds: set[int]) -> list[tuple[str, Report]]:
    """The teacher run(s) and the students whose seed is in ``seeds``."""
    return [(n, r) for n, r in reports if r.seed is None or r.method == "teacher"
            or r.seed in seeds]


def spread_table(a: Analysis) -> str:
    """Each point's exact match per seed and energy per student, over the seeds."""
    lines = ["| point | exact match per seed | mean | std | 95% t-interval | energy/student (J) |",
             "|---|---|---|---|---|---|"]
    for cv in curves_of_group(a, a.grouping.groups[0].id):
        for p in cv.points:
            c = p.config
            qs = [r.quality for r in c.runs]
            s = summarize(qs)
            e = summarize([r.measured_total(1.0).value for r in c.runs])
            per = ", ".join(f"s{r.seed} {r.quality:.3f}" if r.quality is not None else "-"
                            for r in c.runs)
            ci = "-" if s.lo is None else f"[{s.lo:.3f}, {s.hi:.3f}]"
            std = "-" if s.std is None else f"{s.std:.3f}"
            estd = "" if e.std is None else f" ± {e.std:.0f} (std)"
            lines.append(f"| {p.label} | {per} | {s.mean:.3f} | {std} | {ci} | "
                         f"{e.mean:.0f}{estd} |")
    return "\n".join(lines)


# A choice's value on one analysis: what it says, plus what the comparison needs.
Choice = dict


def _verdict_choices(a: Analysis) -> dict[str, Choice]:
    by_id = {c.config: c for c in a.configs}
    out = {}
    for v in a.verdict:
        if v.get("curve"):
            c = by_id.get(v.get("config") or "")
            out[f"cheapest point reaching Q >= {a.min_q:g}: {v['curve']}"] = {
                "kind": "verdict", "value": v["label"] if v.get("reaches_min_q") else "none",
                "budget": budget_of(c) if c is not None and v.get("reaches_min_q") else None}
    return out


def _every_budget(a: Analysis) -> dict[str, Choice]:
    cvs = curves_of_group(a, a.grouping.groups[0].id)
    methods = [cv.method for cv in cvs]
    out = {f"at every budget: {x} vs {y}": {"kind": "relation",
                                             "value": "(no relation at every budget)"}
           for x, y in itertools.combinations(methods, 2)}
    for text in every_budget_rules(cvs):
        head = text.split(";")[0]
        for x, y in itertools.combinations(methods, 2):
            if f" {x} " in f" {head} " and f" {y} " in f" {head} ":
                out[f"at every budget: {x} vs {y}"]["value"] = head.split("), ", 1)[-1]
    return out


def choices(a: Analysis, kwh: list[float]) -> tuple[dict[str, Choice], dict[str, str]]:
    """(checked, shown) choices of one analysis."""
    checked = {**_verdict_choices(a), **_every_budget(a)}
    for b in kwh:
        g = plan(a, Budget(kwh=b))["groups"][0]
        labels = {c.config: c.label for c in a.configs}
        checked[f"plan pick at {b:.3g} kWh"] = {
            "kind": "plan", "value": g.get("choice_label") or "nothing fits",
            "fits": {labels[r["config"]] for r in g["candidates"] if r["fits"]}}
    gid = a.grouping.groups[0].id
    by_id = {c.config: c for c in a.configs}
    shown = {"frontier": " -> ".join(by_id[i].label for i in a.pareto[gid].frontier),
             "saturation": (saturation_rule(a, gid) or ["(none stated)"])[0].split(" no ")[0]}
    return checked, shown


def compare(ref: Choice, got: Choice, ref_analysis: Analysis) -> str:
    """``same``; ``weaker`` (fewer seeds claim less: a point no longer stated as reaching
    0.9 or a costlier one, a relation no longer separable, a plan whose reference pick no
    longer fits the budget on the wider interval); ``equivalent`` (another plan pick that
    the reference analysis cannot tell apart from its own on either axis); else
    ``CHANGES``: a claim the reference does not make."""
    if ref["value"] == got["value"]:
        return "same"
    if ref["kind"] == "verdict":
        if got["value"] == "none" or (ref["budget"] is not None and got["budget"] is not None
                                      and got["budget"] > ref["budget"]):
            return "weaker"
        return "CHANGES"
    if ref["kind"] == "relation":
        return "CHANGES" if "separably" in got["value"] else "weaker"
    if ref["value"] not in got["fits"]:
        return "weaker"
    by_label = {c.label: c for c in ref_analysis.configs}
    x, y = by_label.get(ref["value"]), by_label.get(got["value"])
    if x is not None and y is not None \
            and not quality_difference(x.quality, y.quality).separable \
            and not energy_difference(x.energy_j, y.energy_j).separable:
        return "equivalent"
    return "CHANGES"


def default_budgets(a: Analysis) -> list[float]:
    """1.25x each distilled method's cheapest reaching point's upper energy bound, and
    1.5x the smallest point's (kWh)."""
    by_id = {c.config: c for c in a.configs}
    out = []
    for v in a.verdict:
        c = by_id.get(v.get("config") or "")
        if v.get("reaches_min_q") and c is not None and c.energy_j.hi is not None \
                and v.get("baseline"):
            out.append(1.25 * c.energy_j.hi / 3.6e6)
    his = [c.energy_j.hi for c in a.configs if c.energy_j.hi is not None]
    if his:
        out.append(1.5 * min(his) / 3.6e6)
    return sorted(set(out))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--subset", type=int, default=None)
    ap.add_argument("--plan-kwh", type=float, nargs="+", default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--no-run", action="store_true")
    args = ap.parse_args()
    seeds = args.seeds or (3 if args.quick else 5)
    k = args.subset or max(2, seeds - 2)
    if seeds < 2 or any(t < 1 for t in args.threads) or not 2 <= k <= seeds:
        ap.error("--seeds must be at least 2, --threads at least 1, 2 <= --subset <= seeds")

    walls: dict[int, float] = {}
    for threads in ([] if args.no_run else args.threads):
        config = args.out / f"threads-{threads}.yaml"
        write_config(args.config, seeds, threads, config)
        rc, walls[threads] = run_cli(config, args.out / f"threads-{threads}", args.resume)
        if rc != 0:
            print(f"distillmeter run failed (exit status {rc}) for threads: {threads}",
                  file=sys.stderr)
            return rc

    cpu = platform.processor() or platform.machine()
    print(f"## Seed stability of the budget axis: {args.config or 'the built-in default'}, "
          f"{seeds} seeds, subsets of {k}\n")
    print(f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, load average "
          f"{os.getloadavg()[0]:.2f}\n")
    rows: dict[str, dict[str, Choice]] = {}  # choice -> {analysis: value}
    shown: dict[str, dict[str, str]] = {}
    reference: dict[str, Choice] = {}
    ref_analysis: Analysis | None = None
    kwh = args.plan_kwh
    for threads in args.threads:
        reports = read_reports(args.out / f"threads-{threads}")
        all_seeds = sorted({r.seed for _, r in reports if r.seed is not None
                            and r.method != "teacher"})
        full = analyse(reports)
        print(f"### threads: {threads}\n")
        print(spread_table(full) + "\n")
        secs = sum(r.totals.seconds for _, r in reports)
        wall = f"; the command's wall time {walls[threads]:.1f} s" if threads in walls else ""
        print(f"runs' own seconds, summed: {secs:.1f}{wall}\n")
        if kwh is None:
            kwh = default_budgets(full)
        ref_analysis = ref_analysis or full
        sets = [tuple(all_seeds)] + list(itertools.combinations(all_seeds, k))
        for s in sets:
            name = f"t{threads} seeds {','.join(map(str, s))}"
            a = full if len(s) == len(all_seeds) else analyse(subset(reports, set(s)))
            checked, info = choices(a, kwh)
            if not reference:
                reference = dict(checked)
            for key, v in checked.items():
                rows.setdefault(key, {})[name] = v
            for key, v in info.items():
                shown.setdefault(key, {})[name] = v
    ok = True
    print(f"### choices (reference: all seeds, threads {args.threads[0]}; plan budgets "
          f"{', '.join(f'{b:.3g}' for b in kwh or [])} kWh per student)\n")
    print("same: the reference's choice; weaker: fewer seeds claim less; equivalent: a "
          "pick the reference cannot tell apart from its own; CHANGES: a claim the "
          "reference does not make (fails)\n")
    print("| choice | reference | same | weaker / equivalent | CHANGES |\n|---|---|---|---|---|")
    for key, by in rows.items():
        ref = reference.get(key)
        if ref is None or ref_analysis is None:
            continue
        verdicts = {n: compare(ref, v, ref_analysis) for n, v in by.items()}
        bad = [f"{n}: {by[n]['value']}" for n, w in verdicts.items() if w == "CHANGES"]
        soft = [f"{n}: {w} ({by[n]['value']})" for n, w in verdicts.items()
                if w in ("weaker", "equivalent")]
        ok &= not bad
        same = sum(w == "same" for w in verdicts.values())
        print(f"| {key} | {ref['value']} | {same}/{len(by)} | {'; '.join(soft) or '-'} | "
              f"{'; '.join(bad) or '-'} |")
    print("\nshown, not checked:\n")
    for key, by in shown.items():
        values: dict[str, list[str]] = {}
        for n, v in by.items():
            values.setdefault(v, []).append(n)
        print(f"- {key}: " + "; ".join(f"{v} ({len(ns)}/{len(by)})"
                                       for v, ns in values.items()))
    print("\nPASS" if ok else "\nFAIL: a checked choice changes with the seed set or the "
          "thread count beyond what fewer seeds explain (the table says where)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
