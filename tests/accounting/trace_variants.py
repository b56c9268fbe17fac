"""Run directories made from the recorded H100 run (tests/data/h100-run-a) by deterministic
edits, each reaching a different path of the trace reading and the accounting: rows out of
time order, a counter reset, a trace with only power or only counter samples, a crashed run
(no run_end), lost boundary readings, two devices, and a trace.csv the fast parser hands to
the csv module (CRLF line ends, quoted cells, a cut-off last row).

``build(name, dest)`` writes one; ``VARIANTS`` names them all. The accounting of each was
recorded from the in-memory implementation (``streaming-golden.json``) before the trace was
streamed, so the streaming accounting is checked against it to 1e-9.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "h100-run-a"


def _events() -> list[dict]:
    return [json.loads(x) for x in (FIXTURE / "ledger.jsonl").read_text().splitlines() if x]


def _rows() -> list[list[str]]:
    lines = (FIXTURE / "trace.csv").read_text().splitlines()[1:]
    return [line.split(",") for line in lines]


def _write(dest: Path, events: list[dict], rows: list[list[str]], *, newline: str = "\n",
           tail: str = "") -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "ledger.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    body = "".join(",".join(r) + newline for r in rows)
    with open(dest / "trace.csv", "w", encoding="utf-8", newline="") as f:
        f.write("t,device,energy_j,power_w" + newline + body + tail)
    return dest


def recorded(dest: Path) -> Path:
    return _write(dest, _events(), _rows())


def unsorted(dest: Path) -> Path:
    rows = _rows()
    rows[1000:1040] = rows[1000:1040][::-1]  # a block written out of order
    rows[5000], rows[5003] = rows[5003], rows[5000]
    return _write(dest, _events(), rows)


def counter_reset(dest: Path) -> Path:
    """The counter drops by 9000 J at t = 30 s (after student.train ends) in the trace and
    the ledger alike."""
    events, rows = _events(), _rows()
    for e in events:
        if e["t"] > 30.0 and "readings" in e:
            e["readings"] = {d: v - 9000.0 for d, v in e["readings"].items()}
    for r in rows:
        if r[2] and float(r[0]) > 30.0:
            r[2] = f"{float(r[2]) - 9000.0:.3f}"
    return _write(dest, events, rows)


def power_only(dest: Path) -> Path:
    """No counter anywhere: every figure is the integral of power_w."""
    events, rows = _events(), _rows()
    for e in events:
        if "readings" in e:
            e["readings"] = {}
    for r in rows:
        r[2] = ""
    return _write(dest, events, rows)


def counter_only(dest: Path) -> Path:
    """No power column; two boundary readings lost, so the sampled counter fills them."""
    events, rows = _events(), _rows()
    for e in events:
        if e.get("stage") in ("teacher.logits", "student.burst2") and "readings" in e:
            e["readings"] = {}
    for r in rows:
        r[3] = ""
    rows = [r for r in rows if r[2]]
    return _write(dest, events, rows)


def crashed(dest: Path) -> Path:
    """No run_end and no end for the last stage: accounted up to the last sample."""
    events = [e for e in _events() if e["event"] != "run_end"]
    events = events[:-1]  # teacher.generate's stage_end
    return _write(dest, events, _rows())


def lost_readings(dest: Path) -> Path:
    """student.train lost its end reading; eval.student its start reading."""
    events = _events()
    for e in events:
        if (e["event"], e.get("stage")) in (("stage_end", "student.train"),
                                            ("stage_start", "eval.student")):
            e["readings"] = {}
    return _write(dest, events, _rows())


def two_devices(dest: Path) -> Path:
    """gpu:1 draws 0.6 times gpu:0 (samples interleaved, its own counter)."""
    events, rows = _events(), _rows()
    for e in events:
        if e["event"] == "run_start":
            e["devices"] = ["gpu:0", "gpu:1"]
        if "readings" in e and "gpu:0" in e["readings"]:
            e["readings"]["gpu:1"] = round(0.6 * e["readings"]["gpu:0"], 3)
    out = []
    for r in rows:
        out.append(r)
        e1 = f"{0.6 * float(r[2]):.3f}" if r[2] else ""
        p1 = f"{0.6 * float(r[3]):.3f}" if r[3] else ""
        out.append([f"{float(r[0]) + 0.000013:.6f}", "gpu:1", e1, p1])
    return _write(dest, events, out)


def csv_quirks(dest: Path) -> Path:
    """CRLF line ends, a quoted cell, spaces around a number and a cut-off last row."""
    rows = _rows()
    rows[10][3] = f'"{rows[10][3]}"'
    rows[20][3] = f" {rows[20][3]} "
    return _write(dest, _events(), rows, newline="\r\n", tail="49.3,gpu:0,14")


VARIANTS: dict[str, Callable[[Path], Path]] = {
    "recorded": recorded, "unsorted": unsorted, "counter_reset": counter_reset,
    "power_only": power_only, "counter_only": counter_only, "crashed": crashed,
    "lost_readings": lost_readings, "two_devices": two_devices, "csv_quirks": csv_quirks,
}

# account() options each variant is accounted with: the sensitivity analysis' shifts,
# a widened window and a user idle figure
OPTIONS: dict[str, dict] = {
    "base": {}, "shift+": {"boundary_shift": 0.05}, "shift-": {"boundary_shift": -0.05},
    "widen": {"boundary_widen": 0.1, "idle_w": 100.0},
}


def build(name: str, dest: Path) -> Path:
    return VARIANTS[name](dest)


def figures(report, run_dir: Path) -> dict:
    """What the comparison keeps of a report: every number and message, the run directory
    replaced by RUN so that the figures do not depend on where the run was written."""
    data = json.loads(report.to_json())
    keep = {k: data[k] for k in ("stages", "totals", "conservation", "idle_power_w",
                                 "idle_uncertainty_w", "sources", "status", "estimated",
                                 "warnings")}
    text = json.dumps(keep).replace(str(run_dir), "RUN")
    return json.loads(text)
