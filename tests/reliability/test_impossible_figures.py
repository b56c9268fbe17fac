"""Impossible figures and missing upstream work, as an adversary would plant them.

Each test builds a real campaign of run directories out of the recorded H100 run
(tests/analysis/runbuilder.py: a teacher run and three methods x three seeds, real
readings), corrupts one file the way a broken sensor, a bad merge or a hand edit would,
and runs the real CLI. What must hold (docs/accounting.md, "Impossible figures"): the
figure is refused with one line and exit 2, or accounted with a flag that `show`, the
report's `flags`, `report` (console, summary.json, report.html, the verdict) and `plan`
all show; a flagged run is left out of every statistic and never fits a budget; a student
whose teacher run cannot be read is shown as incomplete wherever its total appears."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from reliability_support import ROOT, load_test_module

from distillmeter.cli import main
from distillmeter.protocol import TRACE_HEADER, event_line

runbuilder = load_test_module("runbuilder", ROOT / "tests/analysis/runbuilder.py")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return runbuilder.build_campaign(tmp_path_factory.mktemp("pristine") / "runs")


@pytest.fixture
def camp(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "runs"))


def cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def edit_ledger(run: Path, fn: Callable[[list[dict]], list[dict] | None]) -> None:
    path = run / "ledger.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    events = fn(events) or events
    path.write_text("".join(event_line(e) + "\n" for e in events))


def edit_trace(run: Path, fn: Callable[[list[str]], list[str]]) -> None:
    path = run / "trace.csv"
    rows = [r.split(",") for r in path.read_text().splitlines()[1:]]
    path.write_text(TRACE_HEADER + "".join(",".join(fn(r)) + "\n" for r in rows))


def first(events: list[dict], kind: str, stage: str | None = None) -> dict:
    return next(e for e in events if e["event"] == kind
                and (stage is None or e.get("stage") == stage))


def shown_and_left_out(capsys, camp: Path, run: str, code: str, phrase: str) -> dict:
    """`show` flags it, its report.json carries the flag, `report` leaves the run out
    (console, summary.json, report.html, the verdict) and `plan` names it."""
    rc, out, err = cli(capsys, "show", str(camp / run))
    assert rc == 0, err
    flat = " ".join(out.split())  # the table wraps long lines: join them back
    assert "flags (" in out and phrase in flat and "status: impossible" in flat
    rc, out, err = cli(capsys, "account", str(camp / run), "--json")
    assert rc == 0, err
    rep = json.loads(out)
    assert rep["status"] == "impossible"
    assert code in [f["code"] for f in rep["flags"] if f["kind"] == "impossible"]
    rc, out, err = cli(capsys, "report", str(camp), "--no-sensitivity")
    assert rc == 0, err
    assert f"skipped (impossible) {run}: impossible figures" in " ".join(out.split())
    summary = json.loads((camp / "summary.json").read_text())
    left = [s for s in summary["skipped"] if s["run_dir"] == run]
    assert left and left[0]["kind"] == "impossible" and phrase in left[0]["reason"]
    assert all(run not in c["run_dirs"] for c in summary["configs"])
    method = run.split("-s")[0]
    said = next(v for v in summary["verdict"] if v.get("label") == method)
    assert run in said["left_out"] and "left out for impossible figures" in said["text"]
    html = (camp / "report.html").read_text()
    assert f"skipped {run}: impossible figures" in html
    rc, out, err = cli(capsys, "plan", str(camp), "--budget-kwh", "1")
    assert rc == 0, err
    assert f"left out {run}: impossible figures" in " ".join(out.split())
    return rep


def to_cpu(events: list[dict]) -> None:
    """The run's device becomes cpu:0 read by RAPL (the readings stay the recorded ones)."""
    for e in events:
        if "readings" in e and "gpu:0" in e["readings"]:
            e["readings"] = {"cpu:0": e["readings"]["gpu:0"]}
        if e["event"] == "run_start":
            e["devices"], e["sources"] = ["cpu:0"], {"cpu:0": "rapl"}
        if e.get("device") == "gpu:0":
            e["device"] = "cpu:0"


def test_a_single_1e15_j_reading_on_the_cpu_is_flagged(capsys, camp):
    run = camp / "kd-s0"
    edit_ledger(run, lambda ev: (to_cpu(ev), first(ev, "run_end")["readings"].update(
        {"cpu:0": 1e15})) and None)
    edit_trace(run, lambda r: [r[0], "cpu:0", r[2], r[3]])
    rep = shown_and_left_out(capsys, camp, "kd-s0", "power_over_limit",
                             "more than 1500 W, the most a CPU package can draw")
    assert rep["totals"]["kwh"] > 2e8  # the figure is kept, flagged, never passed on


def test_a_stage_reading_beyond_any_gpu_is_flagged_on_that_stage(capsys, camp):
    run = camp / "sft_synth-s1"
    edit_ledger(run, lambda ev: first(ev, "stage_end", "student.train")["readings"].update(
        {"gpu:0": first(ev, "stage_end", "student.train")["readings"]["gpu:0"] + 1e9}))
    rep = shown_and_left_out(capsys, camp, "sft_synth-s1", "power_over_limit",
                             "more than 2800 W, the most a GPU can draw")
    train = next(s for s in rep["stages"] if s["name"] == "student.train")
    assert train["status"] == "impossible"


def test_run_end_before_run_start_is_refused_and_never_planned(capsys, camp):
    for seed in range(3):  # kd, the best quality, would be picked with -727 J per student
        edit_ledger(camp / f"kd-s{seed}",
                    lambda ev: first(ev, "run_end").update(t=first(ev, "run_start")["t"] - 5))
    rc, out, err = cli(capsys, "show", str(camp / "kd-s0"))
    assert rc == 2 and err.count("\n") == 1
    assert "ledger.jsonl:" in err and "is before run_start" in err
    rc, out, err = cli(capsys, "account", str(camp / "kd-s0"))
    assert rc == 2 and "time runs backwards" in err
    rc, out, err = cli(capsys, "plan", str(camp), "--budget-kwh", "1")
    assert rc == 0, err
    assert "pick kd" not in out and "fits: its upper 95% bound per student is -" not in out
    flat = " ".join(out.split())
    assert all(f"left out kd-s{s}: " in flat for s in range(3))


def test_run_end_a_million_years_out_is_flagged(capsys, camp):
    edit_ledger(camp / "baseline-s2", lambda ev: first(ev, "run_end").update(t=1e12))
    shown_and_left_out(capsys, camp, "baseline-s2", "run_in_future", "ending after the present")


def test_negative_tokens_are_flagged_and_counted_as_zero(capsys, camp):
    edit_ledger(camp / "kd-s1",
                lambda ev: first(ev, "stage_end", "student.train").update(tokens=-876544))
    rep = shown_and_left_out(capsys, camp, "kd-s1", "negative_count",
                             "a count cannot be negative")
    train = next(s for s in rep["stages"] if s["name"] == "student.train")
    assert train["tokens"] == 0 and train["j_per_token"] is None


def test_negative_power_gives_flagged_negative_energy(capsys, camp):
    run = camp / "baseline-s0"

    def instant(ev: list[dict]) -> None:  # no counter: the stages come from the trace
        for e in ev:
            e.pop("readings", None)
        first(ev, "run_start")["sources"] = {"gpu:0": "nvml_instant"}

    edit_ledger(run, instant)
    edit_trace(run, lambda r: [r[0], r[1], "", f"-{r[3]}"])
    rep = shown_and_left_out(capsys, camp, "baseline-s0", "negative_energy",
                             "energy cannot be negative")
    assert "power_sample_out_of_range" in [f["code"] for f in rep["flags"]]


@pytest.mark.parametrize("watts", [-500.0, 1e6])
def test_an_idle_baseline_outside_the_device_range_is_flagged_and_unused(capsys, camp, watts):
    edit_ledger(camp / "sft_synth-s0",
                lambda ev: first(ev, "idle_baseline").update(power_w=watts))
    rep = shown_and_left_out(capsys, camp, "sft_synth-s0", "idle_out_of_range",
                             "outside [0, 2800 W")
    assert "gpu:0" not in rep["idle_power_w"]


@pytest.mark.parametrize("offset", [1000.0, -1000.0])
def test_a_trace_clock_1000_s_off_the_ledger_is_flagged(capsys, camp, offset):
    edit_trace(camp / "kd-s2", lambda r: [f"{float(r[0]) + offset:.6f}", *r[1:]])
    shown_and_left_out(capsys, camp, "kd-s2", "trace_clock",
                       "the trace's clock disagrees with the ledger's by about 1e+03 s")


def test_a_second_run_start_of_the_same_run_is_flagged(capsys, camp):
    edit_ledger(camp / "baseline-s1", lambda ev: ev[:2] + [dict(ev[0])] + ev[2:])
    shown_and_left_out(capsys, camp, "baseline-s1", "duplicate_run_start",
                       "a second run_start of run baseline-s1")


def test_a_second_run_start_of_another_run_is_refused(capsys, camp):
    edit_ledger(camp / "baseline-s1",
                lambda ev: ev[:2] + [{**ev[0], "run_id": "someone-else"}] + ev[2:])
    rc, out, err = cli(capsys, "show", str(camp / "baseline-s1"))
    assert rc == 2 and err.count("\n") == 1 and "two runs' events in one ledger" in err
    rc, out, err = cli(capsys, "report", str(camp), "--no-sensitivity")
    assert rc == 0
    assert "skipped (unaccounted) baseline-s1: " in " ".join(out.split())


def test_time_running_backwards_inside_the_ledger_is_flagged(capsys, camp):
    edit_ledger(camp / "kd-s0", lambda ev: first(ev, "stage_end", "eval.student").update(
        t=first(ev, "stage_start", "student.train")["t"] - 0.5))
    shown_and_left_out(capsys, camp, "kd-s0", "time_backwards", "time runs backwards")


def test_an_upstream_entry_naming_the_run_itself_is_not_counted(capsys, camp):
    edit_ledger(camp / "sft_synth-s2", lambda ev: first(ev, "run_start").update(
        upstream=[*first(ev, "run_start")["upstream"],
                  {"run_id": "sft_synth-s2", "run_dir": ".", "stages": ["student.train"]}]))
    rep = shown_and_left_out(capsys, camp, "sft_synth-s2", "upstream_self",
                             "names this run itself as its upstream")
    assert all(s["name"] != "student.train" for s in rep["upstream"])  # not twice


def test_a_report_json_edited_by_hand_is_caught_by_the_analysis(capsys, camp):
    assert cli(capsys, "account", str(camp / "kd-s1"))[0] == 0
    path = camp / "kd-s1" / "report.json"
    rep = json.loads(path.read_text())
    rep["totals"]["by_device"]["gpu:0"] = 1e15
    path.write_text(json.dumps(rep))
    os.utime(path, (os.path.getmtime(camp / "kd-s1" / "ledger.jsonl") + 10,) * 2)
    rc, out, err = cli(capsys, "show", str(camp / "kd-s1"))
    assert rc == 0 and "status: impossible" in out and "1e+15 J" in " ".join(out.split())
    rc, out, err = cli(capsys, "report", str(camp), "--no-sensitivity")
    assert rc == 0, err
    assert "skipped (impossible) kd-s1: impossible figures: the run's total: gpu:0 drew " \
        "1e+15 J" in " ".join(out.split())


def test_a_student_whose_teacher_run_is_gone_is_incomplete_everywhere(capsys, camp):
    shutil.rmtree(camp / "teacher-0001")
    rc, out, err = cli(capsys, "show", str(camp / "kd-s0"))
    assert rc == 0 and "incomplete: teacher energy missing" in " ".join(out.split())
    rc, out, err = cli(capsys, "report", str(camp), "--no-sensitivity")
    assert rc == 0, err
    flat = " ".join(out.split())
    assert "kd !" in out and ">= " in out and "missing" in out  # the summary table
    assert "kd: INCOMPLETE: its teacher's energy is missing" in flat  # the verdict
    summary = json.loads((camp / "summary.json").read_text())
    kd = next(c for c in summary["configs"] if c["config"] == "kd-cfg")
    assert kd["incomplete"] and "upstream run teacher-0001" in kd["incomplete"][0]
    assert not kd["pareto"]
    said = next(v for v in summary["verdict"] if v.get("config") == "kd-cfg")
    assert said["energy_j_is_lower_bound"] and "n_star" not in said
    assert "kd-cfg" not in next(g for g in summary["groups"])["pareto_frontier"]
    assert "kd (INCOMPLETE)" in (camp / "report.html").read_text()
    assert "kd-cfg,kd" in (camp / "summary.csv").read_text()
    rc, out, err = cli(capsys, "plan", str(camp), "--budget-kwh", "1")
    assert rc == 0, err
    flat = " ".join(out.split())
    assert "pick kd" not in flat and "pick sft_synth" not in flat and "pick baseline" in flat
    assert "kd does not fit (incomplete, its cost is only a lower bound" in flat


def test_an_unknown_country_is_one_line_suggesting_close_matches(capsys, camp):
    for cmd in (["account", str(camp / "kd-s0")], ["report", str(camp)],
                ["plan", str(camp), "--budget-kwh", "1"]):
        rc, out, err = cli(capsys, *cmd, "--country", "UK")
        assert rc == 2 and err.count("\n") == 1, err
        assert "no grid intensity for country 'UK'; did you mean GB (United Kingdom)?" in err


def test_runs_that_cannot_be_accounted_are_named_never_given_the_world_average(capsys, camp):
    # the pipeline could not account this run (its config's country is unknown), so it
    # left no report.json: the analysis must not account it with the world average instead
    (camp / "kd-s0" / "config.yaml").write_text("carbon:\n  country: XX\n")
    (camp / "kd-s1" / "config.yaml").write_text("carbon:\n  country: DE\n")
    rc, out, err = cli(capsys, "report", str(camp), "--no-sensitivity")
    assert rc == 0, err
    flat = " ".join(out.split())
    assert "skipped (unaccounted) kd-s0: not accounted: no grid intensity for country 'XX'" \
        in flat
    assert not (camp / "kd-s0" / "report.json").exists()
    assert json.loads((camp / "kd-s1" / "report.json").read_text())["carbon"]["country"] == "DE"
    assert "use the table's world-average grid intensity (471 gCO2e/kWh) because none was " \
        "given" in flat
    summary = json.loads((camp / "summary.json").read_text())
    assert [s["kind"] for s in summary["skipped"] if s["run_dir"] == "kd-s0"] == ["unaccounted"]
