"""The shapes every task shares: an example, a record as read from a data file, the task
interface, a task's data splits."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

from distillmeter.configbase import StrictModel


@dataclass(frozen=True)
class Example:
    """One labelled example. ``target`` is the completion to learn after ``prompt`` (worked
    steps + final answer), without special tokens: the tokenizer adds BOS, training adds EOS."""

    prompt: str
    target: str


@dataclass(frozen=True)
class RawRecord:
    """One record as read: a prompt (text, or chat messages) and its answer if any."""

    prompt: str | tuple[tuple[str, str], ...]
    answer: str | None
    where: str  # file:line (or file[record]) for messages

    @property
    def key(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else json.dumps(self.prompt)


@runtime_checkable
class Task(Protocol):
    """What the pipelines need from a task."""

    name: str
    alphabet: str  # every character prompts and targets use

    def final_answer(self, completion: str) -> str | None:
        """The final answer a completion states, or None."""
        ...

    def check(self, example_or_prompt: Example | str, completion: str) -> bool:
        """The verifier: is the completion's final answer correct for this prompt?"""
        ...


@dataclass
class TaskData:
    """A task and its disjoint splits.

    - ``labelled``: the small labelled set students may learn from (scarce on purpose);
    - ``pool``: unlabelled prompts (plentiful) for the teacher to answer;
    - ``test``: held-out labelled examples for evaluation;
    - ``teacher_train``: labelled examples for the built-in default's own teacher (it stands
      in for the large data a real teacher was trained on; students never see it).
    """

    task: Task
    labelled: list[Example]
    pool: list[str]
    test: list[Example]
    teacher_train: list[Example] = field(default_factory=list)
    params: dict = field(default_factory=dict)  # what built it, for the run's config


class TaskParams(StrictModel):
    """A built-in task's ``task.params``, checked when the config loads (each task has its
    own subclass, registered in ``tasks.TASK_PARAMS``): what a task needs to say whether
    the run's splits and models fit it before any work."""

    length_key: ClassVar[str] = ""  # the param that sets how long an example is

    def distinct_prompts(self) -> int:
        """How many distinct prompts these parameters give."""
        raise NotImplementedError

    def longest_example(self) -> int:
        """The longest prompt + target, in characters (one token each with the built-in
        character tokenizer; BOS and EOS come on top)."""
        raise NotImplementedError
