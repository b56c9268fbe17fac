"""By hand (not collected by pytest): kill -9 a real `distillmeter run` inside a stage, resume
it, and check the outcome; prints a transcript.

    python tests/reliability/crash_resume_check.py --out /tmp/crash            # the default
    python tests/reliability/crash_resume_check.py --out /tmp/crash --config my.yaml \\
        --run kd-s0 --stage student.train --after 5

Checks after the resume: every run directory accounts to a valid report that conserves
energy; each teacher-side stage finished exactly once across all ledgers; the interrupted
attempt is kept (moved aside) with its stage marked incomplete and its measured energy in its
report; no stage appears twice in a report. Exit status 0 when every check holds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

TEACHER_SIDE = ("teacher.train", "eval.teacher", "teacher.generate", "teacher.logits")


def _events(ledger: Path) -> list[dict]:
    out = []
    try:
        for line in ledger.read_text(encoding="utf-8").splitlines(keepends=True):
            if line.endswith("\n"):
                out.append(json.loads(line))
    except (FileNotFoundError, ValueError):
        pass
    return out


def _started(run_dir: Path, stage: str) -> float | None:
    for ev in _events(run_dir / "ledger.jsonl"):
        if ev.get("event") == "stage_start" and ev.get("stage") == stage:
            return ev["t"]
    return None


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "distillmeter.cli", *args]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--config", default=None, help="a config file (default: the built-in)")
    ap.add_argument("--run", default=None,
                    help="the run directory to kill in (default: the first student's)")
    ap.add_argument("--stage", default="student.train")
    ap.add_argument("--after", type=float, default=3.0,
                    help="seconds into the stage before the kill")
    args = ap.parse_args(argv)
    base = [args.config] if args.config else []

    from distillmeter.pipelines.artifact_plan import plan_students
    from distillmeter.pipelines.config import builtin_default
    from distillmeter.pipelines.config_file import load_config

    cfg = load_config(args.config) if args.config else builtin_default()
    target = args.run or plan_students(cfg)[0].name
    t0 = time.monotonic()
    shown = " ".join(["distillmeter", "run", *base, "--out", str(args.out)])
    print(f"$ {shown}", flush=True)
    proc = subprocess.Popen(_cli("run", *base, "--out", str(args.out), "--quiet"))
    start = None
    while proc.poll() is None:
        start = _started(args.out / target, args.stage)
        if start is not None:
            break
        time.sleep(0.05)
    if start is None:
        print(f"the run ended before {target}/{args.stage} began", file=sys.stderr)
        return 1
    time.sleep(args.after)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    print(f"# kill -9 {proc.pid} at {time.monotonic() - t0:.1f} s, {args.after:g} s into "
          f"{target}/{args.stage} (exit status {proc.returncode})")
    tail = (args.out / target / "ledger.jsonl").read_text().splitlines()[-2:]
    print(f"# last ledger lines of {target}:")
    for line in tail:
        print("#   " + line[:150] + (" ..." if len(line) > 150 else ""))
    print(f"$ {shown} --resume", flush=True)
    rc = subprocess.call(_cli("run", *base, "--out", str(args.out), "--resume"))
    print(f"# resume exited {rc} after {time.monotonic() - t0:.1f} s in all")
    return _check(args.out, target, args.stage) if rc == 0 else rc


def _check(out: Path, target: str, stage: str) -> int:
    from distillmeter import protocol

    problems = []
    ok_teacher = []
    for ledger in sorted(out.glob("*/ledger.jsonl")):
        run_dir = ledger.parent
        ends = [e for e in _events(ledger) if e["event"] == "stage_end"]
        ok_teacher += [e["stage"] for e in ends if e["stage"] in TEACHER_SIDE
                       and e["status"] == "ok"]
        try:
            report = protocol.load_report(run_dir)
        except protocol.ProtocolError as exc:
            problems.append(str(exc))
            continue
        stages = math.fsum(s.energy_j["total"] for s in report.stages)
        if abs(stages + report.totals.unattributed_j - report.totals.energy_j) > 1e-6:
            problems.append(f"{run_dir.name}: energy not conserved")
        names = [s.name for s in report.stages] + [s.name for s in report.upstream]
        if len(names) != len(set(names)):
            problems.append(f"{run_dir.name}: a stage counted twice")
        print(f"# {run_dir.name:28s} {report.status:10s} {report.totals.energy_j:12.1f} J  "
              + ", ".join(f"{s.name} {s.status}" for s in report.stages))
    for name in TEACHER_SIDE:
        n = ok_teacher.count(name)
        if n > 1:
            problems.append(f"{name} finished {n} times across the ledgers")
    failed = out / f"{target}.failed-1"
    if not failed.is_dir():
        problems.append(f"no {failed.name}: the interrupted attempt was not kept")
    else:
        last = protocol.load_report(failed).stages[-1]
        if last.name != stage or last.status != "incomplete" or not last.energy_j["total"] > 0:
            problems.append(f"{failed.name}: interrupted stage recorded as {last.name} "
                            f"{last.status} with {last.energy_j['total']} J")
        else:
            print(f"# {failed.name}: {stage} kept as incomplete with "
                  f"{last.energy_j['total']:.1f} J (+-{last.uncertainty_j:.1f} J)")
    for p in problems:
        print(f"FAILED: {p}")
    print("# all checks hold" if not problems else f"# {len(problems)} checks failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
