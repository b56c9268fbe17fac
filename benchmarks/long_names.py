"""How long printing a run's stage table takes when a stage name is very long.

A ledger may hold any stage name (a hand-written one, a corrupted one): `show` must stay
quick whatever its length. This renames one stage of the recorded H100 run
(tests/data/h100-run-a) to ``eval.`` + N characters, accounts it, and times
``tables.print_report`` into an 80-column console, as `show` prints it when piped (the
median of ``--repeats``). Before the fix, rich's highlighter made this quadratic in N.

    python benchmarks/long_names.py --lengths 1000 10000 32000 100000 --repeats 3
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console

from distillmeter.accounting import account
from distillmeter.tables import print_report

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "h100-run-a"


def hostile_run(dest: Path, name: str) -> Path:
    shutil.copytree(FIXTURE, dest)
    lines = [json.loads(x) for x in (dest / "ledger.jsonl").read_text().splitlines()]
    for ev in lines:
        if ev.get("stage") == "eval.student":
            ev["stage"] = name
    (dest / "ledger.jsonl").write_text("".join(json.dumps(ev) + "\n" for ev in lines))
    return dest


def render_seconds(run_dir: Path, repeats: int) -> tuple[float, int]:
    """Median seconds to print the report, and the printed length in characters."""
    report = account(run_dir)
    times, size = [], 0
    for _ in range(repeats):
        buf = io.StringIO()
        t = time.perf_counter()
        print_report(report, Console(file=buf, width=80))
        times.append(time.perf_counter() - t)
        size = len(buf.getvalue())
    return statistics.median(times), size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[1000, 10000, 32000, 100000])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="long-names-"))
    try:
        for n in args.lengths:
            run = hostile_run(tmp / f"n{n}", "eval." + "a" * n)
            seconds, size = render_seconds(run, args.repeats)
            print(f"name of {n:>7,} characters: {seconds:8.3f} s, {size:>7,} characters "
                  "printed")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
