"""Rules and the verdict claim only what the intervals separate, state break-even and
payback only for candidate students, and read teacher-side work from the data."""

from __future__ import annotations

import re

import pytest
from reportfactory import T, report
from reportfactory import toy_campaign as campaign

from distillmeter.analysis.compare import dominance_separable, quality_difference
from distillmeter.analysis.rules import compare_sentence
from distillmeter.analysis.summary import analyse, summary_dict


def _student(run_id: str, method: str, seed: int, train: float, q: float, *,
             upstream: dict | None = None, extra: dict | None = None):
    stages = {"student.train": train, "eval.student": (100.0, 1000), **(extra or {})}
    return report(run_id, method=method, seed=seed, config_id=method, stages=stages,
                  upstream=upstream, quality=q, teacher_quality=0.8)


def _teacher():
    return report(T, method="teacher", stages={"teacher.logits": 3000.0,
                                              "teacher.generate": 2000.0,
                                              "eval.teacher": (500.0, 1000)},
                  quality=0.8)


def _campaign(kd: list[tuple[float, float]], sft: list[tuple[float, float]]):
    reps = [_teacher()]
    for i, (e, q) in enumerate([(990.0, 0.40), (1000.0, 0.42), (1010.0, 0.41)]):
        reps.append(_student(f"b{i}", "baseline", i, e, q))
    for i, (e, q) in enumerate(kd):
        reps.append(_student(f"k{i}", "kd", i, e, q, upstream={(T, "teacher.logits"): 3000.0}))
    for i, (e, q) in enumerate(sft):
        reps.append(_student(f"s{i}", "sft", i, e, q,
                             upstream={(T, "teacher.generate"): 2000.0}))
    return [(r.run_id, r) for r in reps]


def test_a_difference_the_intervals_do_not_separate_is_not_claimed() -> None:
    # sft costs clearly more for the same quality on the means, with spread between seeds:
    # dominated on the means, but its quality cannot be told apart from kd's
    a = analyse(_campaign(kd=[(2700.0, 0.74), (2750.0, 0.78), (2800.0, 0.72)],
                          sft=[(4690.0, 0.75), (4760.0, 0.79), (4720.0, 0.70)]))
    kd, sft = a.config("kd"), a.config("sft")
    assert kd.dominated_by is None and sft.dominated_by == "kd"  # on the means
    assert not sft.dominated_separably  # quality intervals overlap
    rules = a.rules["g1"]
    assert not any("dominates" in r for r in rules)
    line = next(r for r in rules if "sft" in r and "kd" in r and "more per student" in r)
    assert "their exact_match cannot be told apart" in line and "separable" in line
    assert summary_dict(a)["configs"][2]["dominated_separably"] is False


def test_dominance_is_said_when_both_axes_separate() -> None:
    a = analyse(_campaign(kd=[(2700.0, 0.95), (2710.0, 0.96), (2690.0, 0.955)],
                          sft=[(4790.0, 0.55), (4800.0, 0.56), (4810.0, 0.555)]))
    kd, sft = a.config("kd"), a.config("sft")
    assert dominance_separable(kd, sft) and sft.dominated_separably
    assert any(r.startswith("kd dominates sft") for r in a.rules["g1"])


def test_every_comparing_rule_says_whether_it_is_separable() -> None:
    for reps in (campaign(), _campaign(kd=[(2700.0, 0.74), (2750.0, 0.78), (2800.0, 0.72)],
                                       sft=[(4690.0, 0.75), (4760.0, 0.79),
                                            (4720.0, 0.70)])):
        a = analyse(reps, min_q=0.5)
        for r in a.rules["g1"]:
            if re.search(r"more per student|over baseline|less than|cheaper", r):
                assert "separable" in r or "cannot be told apart" in r, r


def test_no_payback_or_break_even_below_the_q_threshold() -> None:
    reps = campaign()
    strict = analyse(reps)  # min_q 0.9; every student here is at Q <= 0.78
    for e in strict.break_even["g1"]["configs"]:
        assert not e["candidate"]
        assert e["n_star"] is None and e["payback_tokens"] is None
        assert "below the 0.9 threshold" in e["statement"] or "unknown" in e["statement"]
    text = " ".join(strict.rules["g1"]) + " ".join(v["text"] for v in strict.verdict)
    assert "repays" not in text and "N* =" not in text
    assert "no break-even or payback stated" in text
    loose = analyse(reps, min_q=0.5)
    kd = next(e for e in loose.break_even["g1"]["configs"] if e["config"] == "kd")
    assert kd["candidate"] and kd["n_star"] and kd["payback_tokens"]
    v = next(v for v in loose.verdict if v["config"] == "kd")
    assert "N* = 10" in v["text"] and "repays" in v["text"] and v["candidate"]
    assert v["min_q"] == 0.5


def test_the_verdict_has_one_sentence_per_method_with_its_numbers() -> None:
    a = analyse(campaign(), min_q=0.5)
    s = summary_dict(a)
    assert list(s)[:2] == ["schema", "verdict"]
    by = {v["config"]: v for v in s["verdict"]}
    assert set(by) == {"kd", "sft"}  # not the baseline itself
    kd = by["kd"]
    assert kd["energy_multiple"] == pytest.approx(3800.0 / 1100.0)
    assert kd["teacher_share"] == pytest.approx(3000.0 / 3800.0)
    assert kd["quality_gain"] == pytest.approx(0.61 - 0.41)
    dq = quality_difference(a.config("kd").quality, a.config("base").quality)
    assert kd["quality_gain_range"] == [pytest.approx(dq.lo), pytest.approx(dq.hi)]
    assert kd["energy_separable"]  # 3.8 kJ against 1.1 kJ, seeds 10 J apart
    # 0.61 against 0.41 on 100 items a seed, 3 seeds: the bounded intervals (t on 2 df)
    # still overlap, and the sentence says so instead of claiming the gain
    assert not kd["quality_separable"] and dq.lo < 0 < dq.hi
    assert kd["text"].startswith("kd: 3.45x the baseline's energy per student")
    assert "79% of it teacher-side" in kd["text"]
    assert "exact_match +0.2 over baseline" in kd["text"]
    assert "cannot be told apart" in kd["text"]


def test_teacher_work_inside_a_student_run_is_read_from_the_data() -> None:
    """A method whose teacher scores each student's samples inside the student's own run
    (no such method is named anywhere in the analysis): its teacher share counts it, it
    stays in the per-student energy, and it is named as work sharing cannot reduce."""
    reps = [(r.run_id, r) for r in [_teacher()]]
    for i, (e, q) in enumerate([(990.0, 0.40), (1000.0, 0.42), (1010.0, 0.41)]):
        r = _student(f"b{i}", "baseline", i, e, q)
        reps.append((r.run_id, r))
    for i, (e, q) in enumerate([(1000.0, 0.76), (1010.0, 0.77), (990.0, 0.75)]):
        r = _student(f"o{i}", "onpolicy", i, e, q, extra={"teacher.score": 1500.0})
        reps.append((r.run_id, r))
    a = analyse(reps, min_q=0.5)
    c = a.config("onpolicy")
    assert c.per_student_teacher_stages == ["teacher.score"]
    assert c.side_mean("teacher") == pytest.approx(1500.0)
    assert c.marginal_j.mean == pytest.approx(c.energy_j.mean)  # nothing to share
    be = next(e for e in a.break_even["g1"]["configs"] if e["config"] == "onpolicy")
    assert be["teacher_side_j"] == 0 and be["n_star"] is None
    v = next(v for v in a.verdict if v["config"] == "onpolicy")
    assert "teacher.score done per student" in v["text"]
    assert "no shared teacher-side work" in v["text"]


def test_compare_sentence_orders_by_energy() -> None:
    a = analyse(campaign())
    kd, base = a.config("kd"), a.config("base")
    assert compare_sentence(kd, base) == compare_sentence(base, kd)


def test_per_student_teacher_work_is_said_unamortisable_in_rules_and_plan() -> None:
    """On-policy's teacher.score (inside each student's run) beside upstream teacher work
    (the teacher's training, say): the rules say which part --amortize can divide, and the
    planner states its pick's teacher share with the same split."""
    from distillmeter.analysis.planner import Budget, plan

    reps = [(r.run_id, r) for r in [_teacher()]]
    for i, (e, q) in enumerate([(990.0, 0.40), (1000.0, 0.42), (1010.0, 0.41)]):
        r = _student(f"b{i}", "baseline", i, e, q)
        reps.append((r.run_id, r))
    for i, (e, q) in enumerate([(1000.0, 0.76), (1010.0, 0.77), (990.0, 0.75)]):
        r = _student(f"o{i}", "onpolicy", i, e, q, extra={"teacher.score": 1500.0},
                     upstream={(T, "teacher.generate"): 2000.0})
        reps.append((r.run_id, r))
    a = analyse(reps, min_q=0.5)
    line = next(r for r in a.rules["g1"] if "teacher runs inside" in r)
    assert "teacher.score: 1.5 kJ per student" in line and "cannot be amortised" in line
    assert "divides only its upstream part (2 kJ)" in line
    # what it says does not depend on N: the per-student part stays whole
    a10 = analyse(reps, min_q=0.5, amortize=10)
    line10 = next(r for r in a10.rules["g1"] if "teacher runs inside" in r)
    assert "teacher.score: 1.5 kJ per student" in line10
    assert "divides only its upstream part (200 J)" in line10
    p = plan(a, Budget(kwh=1.0))
    (g,) = p["groups"]
    assert g["choice_label"] == "onpolicy"
    share = next(w for w in g["why"] if "teacher-side" in w)
    assert share.startswith("76% of its energy per student is teacher-side")  # 3.5 of 4.6 kJ
    assert "2 kJ upstream, shareable among students (--amortize)" in share
    assert "1.5 kJ per student in teacher.score, not shareable" in share
