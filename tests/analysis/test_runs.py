"""One run's figures: what --amortize divides."""

from __future__ import annotations

import pytest
from reportfactory import report

from distillmeter.analysis.runs import figures


def test_amortize_divides_upstream_teacher_work_never_a_runs_own():
    """An on-policy student's own teacher.score windows are per student: only the shared
    upstream stages (teacher.train, eval.teacher) are divided among N students."""
    rep = report("op", method="onpolicy", stages={"student.train": 100.0,
                                                  "teacher.score": 40.0},
                 upstream={("t", "teacher.train"): 500.0, ("t", "eval.teacher"): 50.0})
    windows = [s.model_copy(update={"energy_j": {"gpu:0": e, "total": e}})
               for s, e in ((rep.stages[1], 15.0), (rep.stages[1], 25.0))]
    rep = rep.model_copy(update={"stages": [rep.stages[0], *windows]})  # two windows
    f = figures(rep)
    assert f.stage_j["teacher.score"] == pytest.approx(40.0)  # windows summed by name
    assert f.side_j("teacher") == pytest.approx(590.0)
    assert f.side_j("teacher", amortize=10) == pytest.approx(40.0 + 55.0)
    assert f.total_j(amortize=10) == pytest.approx(140.0 + 55.0)
