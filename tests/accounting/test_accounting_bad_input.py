"""Broken run directories: a clear error naming file and line, or an accounting that says
what it could not do."""

from __future__ import annotations

import json

import pytest

from distillmeter.accounting import account
from distillmeter.errors import UserError
from distillmeter.protocol import ProtocolError, event_line


def _text(events: list[dict]) -> str:
    return "".join(event_line(e) + "\n" for e in events)


def test_missing_run_dir(tmp_path):
    with pytest.raises(ProtocolError, match="no such run directory"):
        account(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ProtocolError, match="not a directory"):
        account(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProtocolError, match="no ledger"):
        account(tmp_path / "empty")


def test_malformed_line_in_the_middle_names_it(run_copy, ledger_events):
    lines = _text(ledger_events).splitlines(keepends=True)
    lines[5] = '{"event": "stage_end", "t": 21.9, "stage": \n'
    d = run_copy(ledger_text="".join(lines))
    with pytest.raises(ProtocolError, match=r"ledger\.jsonl:6: not valid JSON"):
        account(d)


def test_bad_event_content_names_the_line(run_copy, ledger_events):
    ledger_events[3]["tokens"] = "many"
    with pytest.raises(ProtocolError, match=r"ledger\.jsonl:4: bad stage_end event: tokens"):
        account(run_copy(events=ledger_events))


def test_truncated_last_line_is_accounted_with_a_warning(run_copy, ledger_events, truth):
    text = _text(ledger_events)
    cut = text[: text.rindex('"readings"')]  # run_end cut mid-write
    report = account(run_copy(ledger_text=cut))
    assert any("last line is cut off" in w for w in report.warnings)
    assert report.status == "incomplete"
    assert any("no run_end" in w for w in report.warnings)
    # every stage finished before the crash, so each still matches the counter truth
    for st, tr in zip(report.stages, truth["stages"], strict=True):
        assert st.energy_j["total"] == pytest.approx(tr["energy_j"], rel=1e-3)
    # the run runs to the last trace sample; the tail after the last reading is integrated
    assert report.totals.seconds > truth["stages"][-1]["t1"] - ledger_events[0]["t"]
    t = report.totals
    assert t.energy_j == pytest.approx(truth["run_energy_j"], rel=0.01)
    assert t.stages_j + t.unattributed_j == pytest.approx(t.energy_j, abs=1e-6)


def test_crash_inside_a_stage(run_copy, ledger_events):
    # drop everything after teacher.generate started: a crash mid-stage
    idx = next(i for i, e in enumerate(ledger_events)
               if e["event"] == "stage_start" and e["stage"] == "teacher.generate")
    report = account(run_copy(events=ledger_events[: idx + 1]))
    gen = report.stages[-1]
    assert gen.name == "teacher.generate"
    assert gen.status == "incomplete"
    assert any("never ended" in n for n in gen.notes)
    assert gen.source == {"gpu:0": "nvml_instant"}  # no end reading: from the trace
    assert gen.energy_j["total"] > 1000  # 15 s of generation at 100+ W, not dropped
    assert report.status == "incomplete"


def test_unknown_device_in_trace(run_copy, fixture_dir):
    text = (fixture_dir / "trace.csv").read_text()
    extra = "".join(f"{t:.6f},gpu:7,,100.0\n" for t in (1.0, 2.0, 3.0))
    report = account(run_copy("a", trace_text=text + extra))
    assert any("gpu:7" in w and "does not list" in w for w in report.warnings)
    assert report.devices == ["gpu:0"]
    bad = text + "4.0,tpu:0,,100.0\n5.0,gpu:0,,100.0\n"
    with pytest.raises(ProtocolError, match=r"trace\.csv:8602: unknown device 'tpu:0'"):
        account(run_copy("b", trace_text=bad))


def test_unknown_device_in_ledger(run_copy, ledger_events):
    ledger_events[0]["devices"] = ["gpu:0", "npu:1"]
    with pytest.raises(ProtocolError, match=r"ledger\.jsonl:1: run_start lists unknown device"):
        account(run_copy("a", events=ledger_events))
    ledger_events[0]["devices"] = ["gpu:0"]
    ledger_events[2]["readings"]["gpu:3"] = 5.0
    report = account(run_copy("b", events=ledger_events))
    assert any("ledger.jsonl:3: reading for 'gpu:3'" in w for w in report.warnings)


def _reset_counter_in_student_train(events: list[dict]) -> None:
    """A counter reset inside student.train: every reading from its end on drops by 8000 J,
    so its end reading is below its start reading and stays low."""
    after = False
    for e in events:
        if e["event"] == "stage_end" and e["stage"] == "student.train":
            after = True
        if after and "readings" in e:
            e["readings"]["gpu:0"] -= 8000.0


def test_backwards_readings_are_integrated_and_flagged(run_copy, ledger_events, truth):
    _reset_counter_in_student_train(ledger_events)
    report = account(run_copy(events=ledger_events))
    st = next(s for s in report.stages if s.name == "student.train")
    assert st.status == "degraded"
    assert any("went backwards" in n and "ledger.jsonl:7" in n and "ledger.jsonl:8" in n
               for n in st.notes)
    assert st.source == {"gpu:0": "nvml_instant"}
    assert st.energy_j["total"] == pytest.approx(truth["stages"][2]["energy_j"], rel=0.03)
    assert report.status == "degraded"
    assert any("went backwards" in w for w in report.warnings)
    # the run total skips over the reset instead of going negative
    t = report.totals
    assert t.energy_j == pytest.approx(truth["run_energy_j"], rel=0.01)
    assert t.stages_j + t.unattributed_j == pytest.approx(t.energy_j, abs=1e-6)


def test_a_single_misread_reading_is_left_out(run_copy, ledger_events, truth):
    for e in ledger_events:
        if e["event"] == "stage_end" and e["stage"] == "student.train":
            e["readings"]["gpu:0"] = 100.0  # one glitched value; later readings are fine
    report = account(run_copy(events=ledger_events))
    st = next(s for s in report.stages if s.name == "student.train")
    assert st.status == "degraded"
    assert st.energy_j["total"] == pytest.approx(truth["stages"][2]["energy_j"], rel=0.03)
    assert any("ledger.jsonl:8" in w and "left out of the run total" in w
               for w in report.warnings)
    # the neighbours' delta spans the glitch, so the run total is still the counter's
    assert report.totals.energy_j == pytest.approx(truth["run_energy_j"], rel=1e-9)


def test_stage_end_without_start_and_overlaps(run_copy, ledger_events):
    ledger_events.insert(3, {"event": "stage_end", "t": 15.8, "stage": "eval.ghost",
                             "readings": {}, "tokens": 0, "samples": 0, "status": "ok"})
    report = account(run_copy("a", events=ledger_events))
    assert any("ledger.jsonl:4: stage_end for 'eval.ghost' without a stage_start" in w
               for w in report.warnings)
    assert "eval.ghost" not in [s.name for s in report.stages]


def test_overlapping_stages_are_reported(run_copy, ledger_events):
    # a second window spanning the whole run: stages now add up to more than the run
    ledger_events.insert(1, {"event": "stage_start", "t": 0.01, "stage": "student.all",
                             "readings": {"gpu:0": 2643.6}})
    ledger_events.insert(-1, {"event": "stage_end", "t": 49.0, "stage": "student.all",
                              "readings": {"gpu:0": 14100.0}, "tokens": 0, "samples": 0,
                              "status": "ok"})
    report = account(run_copy(events=ledger_events))
    assert report.totals.unattributed_j < 0
    assert any("do stages overlap" in w for w in report.warnings)
    assert report.status == "degraded"


def test_device_without_any_data_is_named_not_zeroed_silently(run_copy, ledger_events):
    ledger_events[0]["devices"] = ["gpu:0", "cpu:0"]
    report = account(run_copy(events=ledger_events))
    assert report.totals.by_device["cpu:0"] == 0.0
    assert any("cpu:0 could not be read" in w for w in report.warnings)
    assert report.status == "degraded"


def test_bad_options_are_user_errors(fixture_dir):
    with pytest.raises(UserError, match="idle power"):
        account(fixture_dir, idle_w=-5)
    with pytest.raises(UserError, match="not a device"):
        account(fixture_dir, idle_w={"gpu": 5})
    with pytest.raises(UserError, match="boundary shift"):
        account(fixture_dir, boundary_shift=float("nan"))


def test_bad_trace_row_names_the_line(run_copy, fixture_dir):
    lines = (fixture_dir / "trace.csv").read_text().splitlines(keepends=True)
    lines[100] = "1.0,gpu:0,abc,5\n"
    with pytest.raises(ProtocolError, match=r"trace\.csv:101: column energy_j"):
        account(run_copy(trace_text="".join(lines)))


def test_report_json_round_trips_for_broken_runs(run_copy, ledger_events):
    _reset_counter_in_student_train(ledger_events)
    d = run_copy(events=ledger_events[:-1])
    from distillmeter.accounting import write_report
    from distillmeter.protocol import load_report

    write_report(d, account(d))
    data = json.loads((d / "report.json").read_text())
    assert data["status"] == "incomplete"
    assert load_report(d).warnings == data["warnings"]


def test_run_without_trace_uses_readings_but_cannot_shift(run_copy, truth):
    d = run_copy()
    (d / "trace.csv").unlink()
    report = account(d)
    assert any("no trace" in w for w in report.warnings)
    for st, tr in zip(report.stages, truth["stages"], strict=True):
        assert st.energy_j["total"] == pytest.approx(tr["energy_j"], rel=1e-3)
        assert st.uncertainty_j > 0  # boundary term from the stage's mean power
    with pytest.raises(ProtocolError, match="cannot move the boundaries"):
        account(d, boundary_shift=0.05)
