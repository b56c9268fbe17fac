"""The built-in arithmetic task: worked steps, verifier, splits, exact match."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distillmeter.errors import UserError
from distillmeter.tasks import ArithmeticTask, Example, Task, exact_match, load_task
from distillmeter.tasks.arithmetic import read_number, write_number


def test_worked_steps_for_a_known_sum():
    task = ArithmeticTask()
    ex = task.example(347, 85)
    assert ex.prompt == "743+580="  # least-significant digit first, zero-padded
    # columns: 7+5=12 -> c, 4+8+1=13 -> d, 3+0+1=4 -> 4; answer 432 written "234"
    assert ex.target == "cd4>234"
    assert task.example(999, 999).target == "ijj>8991"
    assert task.example(10, 10).target == "020>020"
    assert write_number(347) == "743" and read_number("0021") == 1200


@given(st.integers(0, 999), st.integers(0, 999))
def test_reference_target_passes_the_verifier_and_only_the_right_sum_does(a, b):
    task = ArithmeticTask()
    ex = task.example(a, b)
    assert set(ex.prompt + ex.target) <= set(task.alphabet)
    assert task.check(ex, ex.target)
    assert task.check(ex.prompt, ex.target)
    assert task.answer_value(ex.target) == a + b
    steps, answer = ex.target.split(">")
    # each step is a column's sum (with carry in): recompute it from the digits
    carry = 0
    for col, step in enumerate(steps):
        s = (a // 10**col) % 10 + (b // 10**col) % 10 + carry
        assert step == "0123456789abcdefghij"[s]
        assert answer[col] == str(s % 10)
        carry = s // 10
    assert len(answer) == 3 + carry
    wrong = steps + ">" + write_number(a + b + 1, 3)
    assert not task.check(ex, wrong)


def test_verifier_checks_arithmetic_on_unseen_prompts_and_is_strict():
    task = ArithmeticTask()
    assert task.check("005+005=", "anything at all>0001")  # only the answer counts
    assert task.check("21+3=", ">51")  # any width of prompt parses: 12 + 3 = 15
    assert task.check("005+005=", "000a>00010")  # numeric comparison (trailing zeros)
    assert not task.check("005+005=", "00a>0001,1")  # trailing text after the answer
    assert not task.check("005+005=", "00a")  # no answer
    assert not task.check("005+005=", "00a>")
    assert task.final_answer("x>١٢") is None  # non-ASCII digits are not an answer
    with pytest.raises(ValueError, match="not an arithmetic prompt"):
        task.check("five plus five", ">01")


def test_splits_are_deterministic_disjoint_and_sized():
    a = load_task(seed=3, n_labelled=50, n_pool=300, n_test=80, n_teacher=500)
    b = load_task(seed=3, n_labelled=50, n_pool=300, n_test=80, n_teacher=500)
    c = load_task(seed=4, n_labelled=50, n_pool=300, n_test=80, n_teacher=500)
    assert a.labelled == b.labelled and a.pool == b.pool and a.test == b.test
    assert a.teacher_train == b.teacher_train
    assert a.test != c.test
    assert (len(a.labelled), len(a.pool), len(a.test), len(a.teacher_train)) == (50, 300, 80, 500)
    groups = [
        {e.prompt for e in a.labelled}, set(a.pool), {e.prompt for e in a.test},
        {e.prompt for e in a.teacher_train},
    ]
    assert sum(len(g) for g in groups) == len(set().union(*groups))  # distinct and disjoint
    assert isinstance(a.task, Task)
    for e in a.labelled + a.test:
        assert a.task.check(e, e.target)
    # 2-3 digit operands, zero-padded to width 3
    for p in a.pool:
        x, y = a.task.parse_prompt(p)
        assert 10 <= x <= 999 and 10 <= y <= 999 and len(p) == 8


def test_sequences_are_short():
    data = load_task(seed=0, n_labelled=0, n_pool=0, n_test=0, n_teacher=2000)
    assert max(len(e.prompt) + len(e.target) for e in data.teacher_train) <= 16


def test_task_params_and_mistakes():
    data = load_task(width=2, min_digits=1, n_labelled=5, n_pool=5, n_test=5, n_teacher=0)
    assert all(len(p) == 6 for p in data.pool)
    assert data.params["width"] == 2
    with pytest.raises(UserError, match="unknown task"):
        load_task("chess")
    with pytest.raises(UserError, match="widht"):
        load_task(widht=3)
    with pytest.raises(UserError, match="n_pool"):
        load_task(n_pool=-1)
    with pytest.raises(UserError, match="only has"):
        load_task(width=1, min_digits=1, n_labelled=100, n_pool=0, n_test=0, n_teacher=0)


def test_exact_match():
    task = ArithmeticTask()
    exs = [task.example(1, 2), task.example(30, 40), task.example(999, 1)]
    assert exact_match(task, exs, [e.target for e in exs]) == 1.0
    assert exact_match(task, exs, ["300>300", "garbage", ">0001"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        exact_match(task, exs, ["x"])
    with pytest.raises(ValueError):
        exact_match(task, [], [])
    rng = random.Random(0)
    exs = [task.example(*task.sample_operands(rng)) for _ in range(20)]
    assert exact_match(task, exs, [">0"] * 20) == 0.0
    assert exact_match(task, [Example("1+1=", ">2")], ["junk>2"]) == 1.0
    # exact match is on the answer as written: a trailing zero is a different answer
    assert exact_match(task, [Example("1+1=", ">2")], [">20"]) == 0.0
