"""distillmeter.tasks: the built-in task, its data splits and quality metrics.

    data = load_task("arithmetic", seed=0)      # labelled, pool, test, teacher_train
    data.task.check("347+085=", "12,13,04>432")  # True: the verifier
    exact_match(data.task, data.test, completions)
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from pydantic import ValidationError

from distillmeter.errors import UserError
from distillmeter.tasks.arithmetic import ArithmeticParams, ArithmeticTask
from distillmeter.tasks.types import Example, Task, TaskData, TaskParams

__all__ = [
    "ArithmeticTask",
    "DEFAULT_TASK_PARAMS",
    "Example",
    "Task",
    "TaskData",
    "TASKS",
    "TASK_PARAMS",
    "TaskParams",
    "exact_match",
    "load_task",
    "unknown_task",
]

# The built-in tasks by name, each with the schema of its ``task.params``.
TASK_PARAMS: dict[str, type[TaskParams]] = {"arithmetic": ArithmeticParams}
TASKS = tuple(TASK_PARAMS)


def unknown_task(name: str) -> str | None:
    """Why ``name`` is not a built-in task (the close ones named), or None when it is."""
    if name in TASK_PARAMS:
        return None
    close = difflib.get_close_matches(name, TASKS, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return (f"unknown task {name!r} ({hint}built-in tasks: {', '.join(TASKS)}; for your own "
            "data give task.files)")

# The built-in default's sizes: labelled data scarce, unlabelled prompts plentiful (see
# docs/components.md for how these were chosen on a 2-core CPU).
DEFAULT_TASK_PARAMS: dict = {
    "name": "arithmetic",
    "width": 3,
    "min_digits": 2,
    "n_labelled": 128,
    "n_pool": 4000,
    "n_test": 256,
    "n_teacher": 20000,
}


def load_task(
    name: str = "arithmetic",
    *,
    seed: int = 0,
    n_labelled: int = DEFAULT_TASK_PARAMS["n_labelled"],
    n_pool: int = DEFAULT_TASK_PARAMS["n_pool"],
    n_test: int = DEFAULT_TASK_PARAMS["n_test"],
    n_teacher: int = DEFAULT_TASK_PARAMS["n_teacher"],
    **params: int,
) -> TaskData:
    """Build a task's splits, deterministically from ``seed``.

    The splits are disjoint (no prompt in two of them). ``params`` go to the task
    (arithmetic: ``width``, ``min_digits``). Unknown names or bad sizes raise UserError.
    """
    problem = unknown_task(name)
    if problem:
        raise UserError(problem)
    sizes = {"n_labelled": n_labelled, "n_pool": n_pool, "n_test": n_test,
             "n_teacher": n_teacher}
    for key, n in sizes.items():
        if not isinstance(n, int) or n < 0:
            raise UserError(f"task.{key} must be a non-negative integer, got {n!r}")
    try:
        checked = TASK_PARAMS[name].model_validate(params)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise UserError(f"task {name!r}: params{'.' + key if key else ''}: "
                        f"{first['msg'].removeprefix('Value error, ')}") from None
    try:
        task = ArithmeticTask(**checked.model_dump())
        labelled_p, pool, test_p, teacher_p = task.generate_split_prompts(
            seed, [n_labelled, n_pool, n_test, n_teacher]
        )
    except ValueError as e:
        raise UserError(f"task {name!r}: {e}") from e
    solve = task.solve
    return TaskData(
        task=task,
        labelled=[Example(p, solve(p)) for p in labelled_p],
        pool=pool,
        test=[Example(p, solve(p)) for p in test_p],
        teacher_train=[Example(p, solve(p)) for p in teacher_p],
        params={"name": name, "seed": seed, **sizes, "width": task.width,
                "min_digits": task.min_digits},
    )


def exact_match(task: Task, examples: Sequence[Example], completions: Sequence[str]) -> float:
    """Fraction of completions whose final answer equals the reference's final answer
    (string equality of ``task.final_answer``; a completion with no answer is wrong)."""
    if len(examples) != len(completions):
        raise ValueError(
            f"exact_match: {len(examples)} examples but {len(completions)} completions"
        )
    if not examples:
        raise ValueError("exact_match: no examples")
    hits = 0
    for ex, completion in zip(examples, completions, strict=True):
        ref = task.final_answer(ex.target)
        got = task.final_answer(completion)
        hits += got is not None and got == ref
    return hits / len(examples)
