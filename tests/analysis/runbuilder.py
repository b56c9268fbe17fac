"""Build real run directories out of the measured H100 run (tests/data/h100-run-a).

Each built run directory is a time window of the recorded run: its trace.csv holds the
recorded samples of that window, and its ledger's boundary readings are the recorded
energy counter at each boundary (the last counter sample at or before it, which is what a
reading at that instant returned: the counter moves every ~100 ms). Labels (method, seed,
task, quality) are the test's; the energy is measured data, accounted by the real
accounting.
"""

from __future__ import annotations

import bisect
import json
from pathlib import Path
from typing import Any

from distillmeter.protocol import TRACE_HEADER, event_line

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "h100-run-a"
GPU = "NVIDIA H100 80GB HBM3"
TEACHER_PARAMS = 1100048384  # the probe's 1.1B teacher (tests/data/h100-nvml-probe.json)
STUDENT_PARAMS = 124668672


def _load_trace() -> list[tuple[float, str]]:
    rows = []
    with open(FIXTURE / "trace.csv", encoding="utf-8") as f:
        next(f)
        for line in f:
            rows.append((float(line.split(",", 1)[0]), line))
    return rows


_TRACE = _load_trace()
_TIMES = [t for t, _ in _TRACE]


def _counter_readings() -> list[tuple[float, float]]:
    # the trace's counter samples plus the recorded ledger's boundary readings (counter
    # reads taken at the stage boundaries, after a device synchronize)
    pts = [(t, float(line.split(",")[2])) for t, line in _TRACE if line.split(",")[2]]
    for line in (FIXTURE / "ledger.jsonl").read_text().splitlines():
        ev = json.loads(line)
        if "readings" in ev and "gpu:0" in ev["readings"]:
            pts.append((ev["t"], ev["readings"]["gpu:0"]))
    return sorted(pts)


_COUNTER = _counter_readings()
_COUNTER_T = [t for t, _ in _COUNTER]


def counter_at(t: float) -> float:
    """The recorded energy counter's value at time t (its last update at or before t)."""
    i = bisect.bisect_right(_COUNTER_T, t) - 1
    return _COUNTER[max(i, 0)][1]


def make_run(
    run_dir: Path,
    *,
    window: tuple[float, float],
    stages: list[tuple[str, float, float, int]],
    run_id: str,
    method: str | None = None,
    seed: int | None = None,
    config_id: str | None = None,
    task: str | None = "arithmetic",
    labels: dict[str, Any] | None = None,
    upstream: list[dict[str, Any]] | None = None,
    quality: tuple[str, float, int, dict[str, Any]] | None = None,
    gpu: str = GPU,
    idle: bool = True,
    source: str = "nvml_counter",
) -> Path:
    """Write RUN_DIR/{ledger.jsonl,trace.csv,environment.json} for a window of run a."""
    t0, t1 = window
    run_dir.mkdir(parents=True, exist_ok=True)
    events: list[dict[str, Any]] = [{
        "event": "run_start", "t": t0, "run_id": run_id,
        "wall_time": "2026-11-27T22:05:03+00:00", "devices": ["gpu:0"],
        "schema": "distillmeter/1", "readings": {"gpu:0": counter_at(t0)},
        "sources": {"gpu:0": source}, "upstream": upstream or [],
        "method": method, "seed": seed, "config_id": config_id, "task": task,
        "labels": labels or {},
    }]
    if idle:  # the recorded idle baseline (measured before the window's work)
        events.append({"event": "idle_baseline", "t": t0, "device": "gpu:0",
                       "power_w": 120.48380526174593, "seconds": 3.0026940070000023})
    for name, a, b, tokens in stages:
        events.append({"event": "stage_start", "t": a, "stage": name,
                       "readings": {"gpu:0": counter_at(a)}})
        events.append({"event": "stage_end", "t": b, "stage": name,
                       "readings": {"gpu:0": counter_at(b)}, "tokens": tokens,
                       "samples": 0, "status": "ok"})
    if quality is not None:
        metric, value, n, details = quality
        events.append({"event": "quality", "t": t1, "metric": metric, "value": value,
                       "n": n, "details": details})
    events.append({"event": "run_end", "t": t1, "readings": {"gpu:0": counter_at(t1)},
                   "status": "ok"})
    (run_dir / "ledger.jsonl").write_text(
        "".join(event_line(e) + "\n" for e in events), encoding="utf-8")
    lo, hi = bisect.bisect_left(_TIMES, t0), bisect.bisect_right(_TIMES, t1)
    (run_dir / "trace.csv").write_text(
        TRACE_HEADER + "".join(line for _, line in _TRACE[lo:hi]), encoding="utf-8")
    env = {"hardware": {"gpus": [{"index": 0, "name": gpu}],
                        "cpu": {"model": "Intel(R) Xeon(R) Processor"}}}
    (run_dir / "environment.json").write_text(json.dumps(env), encoding="utf-8")
    return run_dir


TEACHER_ID = "teacher-0001"
# stage boundaries of the recorded run (its ledger)
LOAD = (15.610433820000004, 15.911215034999998)
LOGITS = (15.915457379000003, 21.942432819000004)
TRAIN = (23.945507867000003, 29.960776412999998)
EVAL = (29.964764717999998, 32.975464688)
GENERATE = (34.227458526, 47.278098414999995)


def build_campaign(root: Path, *, seeds: int = 3, source: str = "nvml_counter") -> Path:
    """A directory of runs like the default pipeline writes: one teacher run and student
    runs of three methods (kd, sft_synth, baseline) over ``seeds`` seeds each, the students
    naming the teacher run's stages as upstream. ``source="estimate"`` declares the GPU's
    (same, measured) readings an estimate, as a machine without a counter would."""
    teacher_dir = root / "teacher-0001"
    make_run(teacher_dir, window=(0.0, 49.28), run_id=TEACHER_ID, method="teacher",
             source=source,
             labels={"teacher_params": TEACHER_PARAMS, "teacher_batch_size": 48},
             stages=[("setup.load", *LOAD, 0),
                     ("teacher.logits", *LOGITS, 663552),
                     ("eval.teacher", TRAIN[0], EVAL[1], 462848),
                     ("teacher.generate", *GENERATE, 6144)],
             quality=("exact_match", 0.80, 200, {}))
    labels = {"teacher_params": TEACHER_PARAMS, "student_params": STUDENT_PARAMS}

    def up(*stages: str) -> list[dict[str, Any]]:
        return [{"run_id": TEACHER_ID, "run_dir": "../teacher-0001", "stages": list(stages)}]

    # (method, upstream stages, quality by seed, windows by seed); a window is (run
    # window, student.train start, student.train end = eval.student start, eval end)
    plans = {
        "kd": (("teacher.logits",), (0.62, 0.60, 0.64),
               [((23.0, 33.0), *TRAIN, EVAL[1]),
                ((22.5, 33.2), 23.9000, 30.5000, 32.9755),
                ((23.0, 34.1), 23.9455, 29.9608, 34.0723)]),
        "sft_synth": (("teacher.generate",), (0.50, 0.53, 0.51),
                      [((22.8, 33.1), 24.0000, 29.9608, 32.9755),
                       ((23.2, 33.3), 24.1000, 30.2000, 33.1000),
                       ((23.0, 33.0), 23.9455, 29.7000, 32.9000)]),
        "baseline": ((), (0.40, 0.43, 0.41),
                     [((23.5, 31.0), 24.5000, 29.9608, 30.9000),
                      ((23.4, 31.5), 24.6000, 29.9608, 31.4000),
                      ((23.6, 30.9), 24.4000, 29.5000, 30.8000)]),
    }
    for method, (up_stages, qualities, windows) in plans.items():
        for seed in range(seeds):
            window, a, b, c = windows[seed]
            q = qualities[seed]
            make_run(root / f"{method}-s{seed}", window=window, run_id=f"{method}-s{seed}",
                     method=method, seed=seed, config_id=f"{method}-cfg", labels=labels,
                     source=source,
                     upstream=up(*up_stages) if up_stages else None,
                     stages=[("student.train", a, b, 876544),
                             ("eval.student", b, c, 1851392)],
                     quality=("exact_match", q, 200, {"teacher_value": 0.80, "q": q / 0.80}))
    return root
