"""A campaign's teacher run is never compared as a configuration, even when no student
names it as upstream (only label-trained students)."""

from __future__ import annotations

from distillmeter.analysis.directory import analyse_dir
from distillmeter.cli import main
from tiny_config import BASELINE_ONLY, write_tiny


def test_an_unreferenced_teacher_run_is_no_configuration(tmp_path):
    path = tmp_path / "labels-only.yaml"
    write_tiny(path, methods=BASELINE_ONLY)
    out = tmp_path / "runs"
    assert main(["run", str(path), "--out", str(out), "--quiet", "--no-report"]) == 0
    a = analyse_dir(out, with_sensitivity=False)
    assert [c.method for c in a.grouping.configs] == ["baseline"]
    assert [str(r.run_dir).rsplit("/", 1)[-1][:8] for r in a.grouping.teacher_runs] == ["teacher-"]
    assert all(e.get("config") != "teacher" and "teacher:" not in str(e.get("text", ""))
               for e in a.verdict)
