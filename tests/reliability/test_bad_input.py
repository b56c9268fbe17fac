"""Inputs the fuzzers found crashing something, kept as plain regression tests (each with
the clear error or the valid result it now gets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distillmeter import protocol
from distillmeter.accounting import account
from distillmeter.cli import main


def _run(tmp_path: Path, events: list[dict], trace: str | None = None) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "ledger.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    if trace is not None:
        (run / "trace.csv").write_text(protocol.TRACE_HEADER + trace)
    return run


def _start(**kw) -> dict:
    return {"event": "run_start", "t": 0.0, "run_id": "r", "schema": protocol.SCHEMA,
            "wall_time": "2026-11-27T00:00:00+00:00", "devices": ["gpu:0"], **kw}


def test_an_upstream_directory_name_too_long_for_the_os_is_a_warning(tmp_path):
    run = _run(tmp_path, [
        _start(readings={"gpu:0": 0.0},
               upstream=[{"run_id": "u", "run_dir": "x" * 300, "stages": ["teacher.logits"]}]),
        {"event": "run_end", "t": 1.0, "readings": {"gpu:0": 100.0}}])
    report = account(run)
    assert report.totals.upstream_j == 0
    assert any("cannot look at" in w and "not counted" in w for w in report.warnings)


@pytest.mark.parametrize("power", ["1e308", "1.7e308"])
def test_readings_too_large_to_be_real_are_a_clear_error(tmp_path, capsys, power):
    """Power near the float maximum overflows its integral: one line naming the device and
    the stage, not a page of validation errors or numpy warnings."""
    run = _run(tmp_path, [
        _start(sources={"gpu:0": "nvml_instant"}),
        {"event": "stage_start", "t": 1.0, "stage": "student.train"},
        {"event": "stage_end", "t": 3.0, "stage": "student.train"},
        {"event": "run_end", "t": 4.0}],
        trace="".join(f"{t},gpu:0,,{power}\n" for t in range(5)))
    assert main(["account", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a finite number" in err
    assert "gpu:0 in stage 'student.train'" in err and "too large" in err


def test_counters_whose_sum_overflows_are_a_clear_error(tmp_path):
    events = [_start(devices=["gpu:0", "gpu:1"], readings={"gpu:0": 0.0, "gpu:1": 0.0}),
              {"event": "run_end", "t": 1.0, "readings": {"gpu:0": 1.5e308, "gpu:1": 1.5e308}}]
    with pytest.raises(protocol.ProtocolError, match="not finite"):
        account(_run(tmp_path, events))


def test_nan_quality_is_a_clear_error(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "ledger.jsonl").write_text(
        json.dumps(_start()) + "\n"
        + '{"event": "quality", "t": 0.5, "metric": "em", "value": NaN, "n": 3}\n'
        + '{"event": "run_end", "t": 1.0}\n')
    with pytest.raises(protocol.ProtocolError, match=r"quality\.value"):
        account(run)


def test_a_manifest_naming_a_file_outside_its_artifact_is_refused(tmp_path):
    from distillmeter.pipelines import artifacts

    folder = tmp_path / "synthetic-abc"
    folder.mkdir()
    (folder / "data.jsonl").write_text("{}\n")
    artifacts.write_manifest(folder, artifacts.ArtifactManifest(
        kind="synthetic", hash="abc", stage="teacher.generate"))
    manifest = json.loads((folder / "manifest.json").read_text())
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("{}\n")  # same bytes: only the path can tell
    manifest["files"]["../elsewhere.txt"] = manifest["files"]["data.jsonl"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(artifacts.ArtifactError, match="outside the artifact"):
        artifacts.load_verified(folder)


def test_an_unknown_config_key_with_a_bracket_is_named(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("'[': null\nseeds: 1\n")
    assert main(["run", str(path), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "c.yaml:1: unknown key '['" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()
