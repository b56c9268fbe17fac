"""How good are `distillmeter estimate`'s forecasts on a drifting machine? Forecast
configurations nobody has run from a campaign already run, then run them and compare, stage
by stage, with and without the machine's run-to-run drift in the intervals.

The reference campaign (``--runs``; without it, it is run first into the work directory):
the packaged default, or with ``--quick`` a small default-like config (every stage a few
seconds or less, 2 seeds on a budget axis; about 3 minutes on 2 cores). Two variants of
its config, forecast from it and then run, 1 seed each:

- ``other-budgets``: the students at budgets off the reference's axis (half its smallest,
  1.5x its largest): the forecast of a budget axis's points;
- ``kd-online``: another method config, KD from a live teacher (no logit cache), beside
  the baseline; forecast twice: from the reference alone, and from the reference and the
  ``other-budgets`` campaign together, whose repeated teacher carries the drift between
  campaigns (the seeds of one campaign, minutes apart, see only part of it).

Each is forecast with ``distillmeter estimate VARIANT --from RUNS --save OUT`` and then run
with ``distillmeter run VARIANT --out OUT`` (the real CLI, in subprocesses); every run
redoes the teacher's work, as a later campaign on the same machine does. Per long stage
(``--long-s``, default 5 s; 2 s with --quick) the table gives the forecast, its 95%
interval with the drift term and from the fit alone, the measurement, the error
(forecast / measured - 1) and whether it fell inside each; then the coverage of both, and
the drift estimated from the reference runs.

Then the recorded H100 run (``tests/data/h100-run-a``), leave one stage kind out: the
cost model is fitted on its other stages and forecasts the one left out.

    .venv/bin/python benchmarks/forecast_error.py --quick              # ~3 min
    .venv/bin/python benchmarks/forecast_error.py                      # the default: ~15 min
    .venv/bin/python benchmarks/forecast_error.py --runs runs/         # a finished default
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from distillmeter.analysis.costmodel import fit_cost_model
from distillmeter.analysis.drift import drift_line
from distillmeter.analysis.efficiency import load_floors
from distillmeter.analysis.forecast import predict_stage
from distillmeter.analysis.forecast_check import LONG_S, check_forecast
from distillmeter.analysis.loading import load_runs
from distillmeter.analysis.runs import hardware_label

ROOT = Path(__file__).resolve().parents[1]
H100 = ROOT / "tests" / "data" / "h100-run-a"
CLI = [sys.executable, "-m", "distillmeter.cli"]
DEFAULT = ROOT / "src" / "distillmeter" / "configs" / "default.yaml"
# the quick reference: the default's shapes, shorter budgets and pools, two seeds on an axis
QUICK = {"task": {"n_pool": 1500, "n_test": 128},
         "teacher": {"training": {"token_budget": 110000}},
         "budgets": [80000, 160000], "seeds": 2}


def _cli(*args: str, capture: bool = False) -> str:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = subprocess.run([*CLI, *args], check=True, text=True, env=env,
                         stdout=subprocess.PIPE if capture else None)
    return out.stdout if capture else ""


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) \
            else copy.deepcopy(v)
    return out


def reference_config(quick: bool) -> dict:
    base = yaml.safe_load(DEFAULT.read_text(encoding="utf-8"))
    return _merge(base, QUICK) if quick else base


def base_config(runs: Path) -> dict:
    """The config the reference runs were made with (a run directory's config.yaml)."""
    for path in sorted(runs.glob("*/config.yaml")):
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    raise SystemExit(f"{runs}: no run directory with a config.yaml")


def variants(base: dict) -> dict[str, dict]:
    """Budgets off the reference's axis, and KD from a live teacher, 1 seed each."""
    axis = base.get("budgets") or [base["training"]["token_budget"]]
    budgets = copy.deepcopy(base)
    budgets["budgets"] = sorted({int(min(axis) / 2), int(max(axis) * 1.5)})
    online = copy.deepcopy(base)
    kd = next(m for m in base["methods"] if m["loss"] == "kd")
    online["methods"] = [m for m in base["methods"] if m["name"] == "baseline"] + [
        {**kd, "name": "kd_online", "teacher_mode": "online"}]
    online["budgets"] = [int(sorted(axis)[len(axis) // 2])]
    out = {"other-budgets": budgets, "kd-online": online}
    for cfg in out.values():
        cfg["seeds"] = 1
    return out


def run_variant(name: str, cfg: dict, runs: Path, work: Path,
                also_from: Path | None = None) -> dict[str, dict | None]:
    """Forecast ``cfg`` from ``runs`` (and, given ``also_from``, from that directory too),
    run it, and check each forecast against the runs: {label: check}."""
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    out = work / name
    sources = {name: (runs, out)}
    if also_from is not None:
        sources[f"{name}, from 2 campaigns"] = (also_from, work / f"{name}-2c")
    t_est = {}
    for label, (src, save) in sources.items():
        t0 = time.perf_counter()
        _cli("estimate", str(path), "--from", str(src), "--save", str(save), "--json",
             capture=True)
        t_est[label] = time.perf_counter() - t0
    load = [os.getloadavg()[0]]
    _cli("run", str(path), "--out", str(out), "--quiet", "--no-report")
    load.append(os.getloadavg()[0])
    loaded, _ = load_runs(out)
    checks: dict[str, dict | None] = {}
    for label, (_, save) in sources.items():
        doc = json.loads((save / "forecast.json").read_text(encoding="utf-8"))
        check = check_forecast(doc, [(str(r.run_dir), r.report) for r in loaded])
        if check is not None:
            check["estimate_s"], check["load"] = t_est[label], load
        checks[label] = check
    return checks


def two_campaigns(work: Path, runs: Path, other: Path) -> Path:
    """A runs directory holding the reference and a later campaign of the same teacher
    (hard-linked copies): its repeated teacher shows the drift between campaigns."""
    both = work / "campaigns"
    for name, source in (("reference", runs), ("later", other)):
        if not (both / name).exists():
            shutil.copytree(source, both / name, copy_function=os.link)
    return both


def _pct(lo: float, hi: float, y: float) -> str:
    return f"{lo / y - 1:+.0%}..{hi / y - 1:+.0%}"


def print_check(name: str, check: dict, long_s: float) -> None:
    print(f"\n## {name} (estimate took {check['estimate_s']:.1f} s; 1-min load average "
          f"{check['load'][0]:.1f} before its runs, {check['load'][1]:.1f} after): stages of "
          f">= {long_s:g} s")
    print(f"{'run':<22} {'stage':<16} {'fcst J':>8} {'meas J':>8} {'error':>6} "
          f"{'interval, drift':>16} {'in?':>4} {'interval, fit':>14} {'in?':>4} "
          f"{'fcst s':>7} {'meas s':>7}")
    for r in check["rows"]:
        if r["measured_s"] < long_s:
            continue
        f = r["forecast_j"]
        print(f"{r['run']:<22} {r['stage']:<16} {f:>8.4g} {r['measured_j']:>8.4g} "
              f"{r['error']:>+6.0%} {_pct(*r['ci95'], f):>16} "
              f"{'yes' if r['inside'] else 'NO':>4} {_pct(*r['ci95_fit'], f):>14} "
              f"{'yes' if r['inside_fit'] else 'NO':>4} {r['forecast_s'] or 0:>7.3g} "
              f"{r['measured_s']:>7.3g}")


def h100_leave_one_out() -> list[dict]:
    """The recorded H100 run, each stage kind forecast from the others."""
    from distillmeter.accounting import account

    probe = json.loads((ROOT / "tests/data/h100-nvml-probe.json").read_text())
    truth = json.loads((H100 / "truth.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "h100-run-a"
        shutil.copytree(H100, run)
        report = account(run)
    # what the fixture records: tokens and samples per stage; what the probe records: the
    # two models' sizes. Not recorded: batch sizes (so no per-pass term) and generation's
    # decode steps (so teacher.generate cannot be mapped). eval.student's tokens are
    # exactly sequences x 512: a teacher-forced pass, read as scoring.
    report.hardware = {"gpus": [{"name": truth["gpu"]}]}
    info = {"teacher.logits": {"params": probe["teacher_params"]},
            "student.train": {"params": probe["student_params"]},
            "eval.student": {"params": probe["student_params"],
                             "score_batches": 0, "scored_tokens": None},
            "teacher.generate": {"params": probe["teacher_params"]}}
    for st in report.stages:
        st.info = dict(info.get(st.name, {}))
        if st.name == "eval.student":
            st.info["scored_tokens"] = st.tokens
    rows = []
    for left in ("teacher.logits", "student.train", "eval.student", "teacher.generate"):
        rest = report.model_copy(update={"stages": [s for s in report.stages
                                                    if s.name != left]})
        model = fit_cost_model([("h100-run-a", rest)], load_floors(),
                               hardware_label(report.hardware))
        st = next(s for s in report.stages if s.name == left)
        f = predict_stage(model, left, "student", st.tokens, st.samples, st.info)
        measured = st.energy_j["total"]
        row = {"stage": left, "measured_j": measured, "measured_s": st.seconds,
               "basis": f.basis, "cannot": f.cannot, "notes": f.notes}
        if f.energy_j is not None:
            row.update(forecast_j=f.energy_j, ci95=f.ci95, forecast_s=f.seconds,
                       error=f.energy_j / measured - 1.0,
                       inside=f.ci95[0] <= measured <= f.ci95[1],
                       seconds_error=f.seconds / st.seconds - 1.0 if f.seconds else None)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small default-like reference")
    ap.add_argument("--runs", type=Path, default=None,
                    help="a finished reference campaign (else it is run first)")
    ap.add_argument("--work", type=Path, default=None,
                    help="where the runs go (default: a temporary directory)")
    ap.add_argument("--long-s", type=float, default=None,
                    help=f"the stages judged (default {LONG_S:g} s; 2 s with --quick)")
    ap.add_argument("--h100-only", action="store_true", help="only the H100 repeat")
    args = ap.parse_args()
    long_s = args.long_s if args.long_s is not None else (2.0 if args.quick else LONG_S)
    print(f"load average at start: {os.getloadavg()}")
    if not args.h100_only:
        work = args.work or Path(tempfile.mkdtemp(prefix="forecast-error-"))
        work.mkdir(parents=True, exist_ok=True)
        runs = args.runs
        t0 = time.perf_counter()
        if runs is None:
            runs = work / "reference"
            ref = work / "reference.yaml"
            ref.write_text(yaml.safe_dump(reference_config(args.quick), sort_keys=False),
                           encoding="utf-8")
            print(f"running the reference into {runs} ...", flush=True)
            _cli("run", str(ref), "--out", str(runs), "--quiet", "--no-report")
        checks: dict[str, dict | None] = {}
        both = None
        for name, cfg in variants(base_config(runs)).items():
            print(f"{name}: forecast, then run ...", flush=True)
            checks.update(run_variant(name, cfg, runs, work, both))
            both = both or two_campaigns(work, runs, work / name)
        rows = []
        for name, check in checks.items():
            if check is None:
                print(f"\n## {name}: no run matched the forecast")
                continue
            print_check(name, check, long_s)
            print(drift_line(check["drift"]))
            for what in ("seconds", "energy"):
                for kind, part in (check["drift"] or {}).get("by_kind", {}).items():
                    if part.get(what):
                        p = part[what]
                        print(f"  {what} from {kind}: sd {p['rel_sd']:.1%}, upper "
                              f"{p['upper95']:.1%} ({p['dof']} dof, {p['groups']} group(s))")
            if "2 campaigns" not in name:
                rows += [{**r, "variant": name} for r in check["rows"]]
        print()
        for name, check in checks.items():
            if check is None:
                continue
            lg = [r for r in check["rows"] if r["measured_s"] >= long_s]
            print(f"{name}: long stages inside with the drift term "
                  f"{sum(r['inside'] for r in lg)}/{len(lg)}, from the fit alone "
                  f"{sum(r['inside_fit'] for r in lg)}/{len(lg)}")
        long = [r for r in rows if r["measured_s"] >= long_s]
        drift = next((c["drift"] for c in checks.values() if c), None)
        print(f"from the reference alone, stages of >= {long_s:g} s: {len(long)}; inside "
              f"their 95% interval with the drift term {sum(r['inside'] for r in long)}/"
              f"{len(long)}, from the fit alone "
              f"{sum(r['inside_fit'] for r in long)}/{len(long)}; largest |error| "
              f"{max((abs(r['error']) for r in long), default=float('nan')):.0%}")
        timed = [r for r in long if r["seconds_inside"] is not None]
        print(f"their seconds: inside with the drift term "
              f"{sum(bool(r['seconds_inside']) for r in timed)}/{len(timed)}, from the fit "
              f"alone {sum(bool(r['seconds_inside_fit']) for r in timed)}/{len(timed)}")
        print(f"all stages: inside with drift {sum(r['inside'] for r in rows)}/{len(rows)}, "
              f"fit alone {sum(r['inside_fit'] for r in rows)}/{len(rows)}")
        (work / "results.json").write_text(json.dumps(
            {"long_s": long_s, "drift": drift, "rows": rows, "checks": checks}, indent=1),
            encoding="utf-8")
        print(f"load average at end: {os.getloadavg()}; {time.perf_counter() - t0:.0f} s; "
              f"work directory {work} (results.json)")
    print("\n## H100 (tests/data/h100-run-a): each stage kind forecast from the others")
    for r in h100_leave_one_out():
        if r.get("cannot") or "forecast_j" not in r:
            print(f"{r['stage']:<18} not forecast: {r['cannot']}")
            continue
        lo, hi = r["ci95"]
        se = "" if r["seconds_error"] is None else f"{r['seconds_error']:+.0%}"
        print(f"{r['stage']:<18} forecast {r['forecast_j']:8.4g} J ({lo:.4g}-{hi:.4g}), "
              f"measured {r['measured_j']:8.4g} J, error {r['error']:+.0%}, "
              f"{'inside' if r['inside'] else 'OUTSIDE'}; time {r['forecast_s']:.3g} s vs "
              f"{r['measured_s']:.3g} s ({se}); basis {r['basis']}")


if __name__ == "__main__":
    main()
