"""How good are `distillmeter estimate`'s forecasts? Forecast configurations nobody has run,
then run them and compare, stage by stage.

From a finished run of the default (``--runs``; without it, the default is run first into
a temporary directory), three variants of its config, 1 seed each:

- ``student-2x-wide``: the student's d_model and d_ff doubled;
- ``budget-1.5x``: the students' token budget x 1.5;
- ``pool-1.5x``: the prompt pool x 1.5 (more synthetic data: a longer teacher.generate,
  a bigger logit cache, more sequences for the students).

Each is forecast with ``distillmeter estimate VARIANT --from RUNS --save OUT`` and then run
with ``distillmeter run VARIANT --out OUT`` (both through the real CLI, in subprocesses);
the table gives per stage the forecast, its 95% interval, the measurement, the error and
whether the measurement fell inside. The target: error <= 25% on every stage of >= 5 s,
and most measurements inside their interval.

Then the recorded H100 run (``tests/data/h100-run-a``), leave one stage kind out: the
cost model is fitted on its other stages and forecasts the one left out.

    .venv/bin/python benchmarks/forecast_error.py --runs runs/          # a finished default
    .venv/bin/python benchmarks/forecast_error.py                       # runs the default too
"""

from __future__ import annotations

import argparse
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
from distillmeter.analysis.efficiency import load_floors
from distillmeter.analysis.forecast import predict_stage
from distillmeter.analysis.forecast_check import LONG_S, check_forecast
from distillmeter.analysis.loading import load_runs
from distillmeter.analysis.runs import hardware_label

ROOT = Path(__file__).resolve().parents[1]
H100 = ROOT / "tests" / "data" / "h100-run-a"
CLI = [sys.executable, "-m", "distillmeter.cli"]


def _cli(*args: str, capture: bool = False) -> str:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = subprocess.run([*CLI, *args], check=True, text=True, env=env,
                         stdout=subprocess.PIPE if capture else None)
    return out.stdout if capture else ""


def base_config(runs: Path) -> dict:
    """The config the reference runs were made with (a run directory's config.yaml)."""
    for path in sorted(runs.glob("*/config.yaml")):
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    raise SystemExit(f"{runs}: no run directory with a config.yaml")


def variants(base: dict) -> dict[str, dict]:
    out = {}
    wide = json.loads(json.dumps(base))
    arch = wide["student"]["model"]["arch"]
    arch["d_model"], arch["d_ff"] = 2 * arch["d_model"], 2 * arch["d_ff"]
    out["student-2x-wide"] = wide
    budget = json.loads(json.dumps(base))
    budget["training"]["token_budget"] = int(1.5 * budget["training"]["token_budget"])
    out["budget-1.5x"] = budget
    pool = json.loads(json.dumps(base))
    pool["task"]["n_pool"] = int(1.5 * pool["task"]["n_pool"])
    out["pool-1.5x"] = pool
    for cfg in out.values():
        cfg["seeds"] = 1
    return out


def run_variant(name: str, cfg: dict, runs: Path, work: Path) -> dict | None:
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    out = work / name
    t0 = time.perf_counter()
    _cli("estimate", str(path), "--from", str(runs), "--save", str(out), "--json",
         capture=True)
    t_est = time.perf_counter() - t0
    _cli("run", str(path), "--out", str(out), "--quiet", "--no-report")
    doc = json.loads((out / "forecast.json").read_text(encoding="utf-8"))
    loaded, _ = load_runs(out)
    check = check_forecast(doc, [(str(r.run_dir), r.report) for r in loaded])
    if check is not None:
        check["estimate_s"] = t_est
    return check


def print_check(name: str, check: dict) -> None:
    print(f"\n## {name} (estimate took {check['estimate_s']:.1f} s)")
    print(f"{'run':<20} {'stage':<18} {'forecast J':>11} {'95% interval J':>19} "
          f"{'measured J':>11} {'error':>7} {'in?':>4} {'fcst s':>7} {'meas s':>7} "
          f"{'err s':>6}")
    for r in check["rows"]:
        lo, hi = r["ci95"]
        se = "" if r["seconds_error"] is None else f"{r['seconds_error']:+.0%}"
        print(f"{r['run']:<20} {r['stage']:<18} {r['forecast_j']:>11.4g} "
              f"{lo:>9.4g}-{hi:<9.4g} {r['measured_j']:>11.4g} {r['error']:>+7.0%} "
              f"{'yes' if r['inside'] else 'NO':>4} {r['forecast_s'] or 0:>7.3g} "
              f"{r['measured_s']:>7.3g} {se:>6}")


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
    ap.add_argument("--runs", type=Path, default=None,
                    help="a finished run of the default (else it is run first)")
    ap.add_argument("--work", type=Path, default=None,
                    help="where the variants run (default: a temporary directory)")
    ap.add_argument("--h100-only", action="store_true", help="only the H100 repeat")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    if not args.h100_only:
        work = args.work or Path(tempfile.mkdtemp(prefix="forecast-error-"))
        work.mkdir(parents=True, exist_ok=True)
        runs = args.runs
        if runs is None:
            runs = work / "default"
            print(f"running the default into {runs} ...", flush=True)
            _cli("run", "--out", str(runs), "--quiet", "--no-report")
        checks = {}
        for name, cfg in variants(base_config(runs)).items():
            print(f"{name}: forecast, then run ...", flush=True)
            checks[name] = run_variant(name, cfg, runs, work)
        long_errs, inside, n = [], 0, 0
        for name, check in checks.items():
            if check is None:
                print(f"\n## {name}: no run matched the forecast")
                continue
            print_check(name, check)
            long_errs += [abs(r["error"]) for r in check["rows"] if r["measured_s"] >= LONG_S]
            inside += check["summary"]["inside"]
            n += check["summary"]["n"]
        print(f"\nall variants: {inside}/{n} measured stages inside their 95% interval; "
              f"stages of >= {LONG_S:g} s: {len(long_errs)}, largest |error| "
              f"{max(long_errs, default=float('nan')):.0%} (target <= 25%)")
        print(f"load average at end: {os.getloadavg()}; work directory {work}")
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
