"""The built-in task: addition of two 2-3 digit numbers, written as short worked steps.

Numbers are written least-significant digit first ("reversed"), so 347 is ``743``. A
prompt states the sum with both operands zero-padded to the same width (3)::

    743+580=            (347 + 085)

The target (what a model learns to write after the prompt) is one worked step per column,
in the order the columns are added, then ``>`` and the answer, also least-significant
digit first::

    cd4>234             7+5 = 12 -> c, 4+8+1 = 13 -> d, 3+0+1 = 4 -> 4; answer 432

A step is the column's sum (digits plus incoming carry) as one character: ``0``-``9`` for
0-9, ``a``-``j`` for 10-19 (a letter means "carry 1"). The answer has one digit per column,
plus a final ``1`` when the last column carries.

Why this format: a tiny character-level transformer learns it within a few hundred steps
on a CPU (the plain left-to-right format takes several times longer; see
docs/components.md). Written this way, every character a step needs (the two digits of its
column, the previous step's carry) sits at a fixed distance from it, and an example is 15
characters long. The verifier reads the answer and checks it with integer arithmetic, on
any prompt of this shape, not only on known examples.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from pydantic import Field, model_validator

from distillmeter.tasks.types import Example, TaskParams

_DIGITS = "0123456789"
_SUMS = _DIGITS + "abcdefghij"  # a column sum 0..19 as one character
_ANSWER_MARK = ">"
# Every character a prompt or a target uses.
ALPHABET = _SUMS + "+=" + _ANSWER_MARK


def write_number(n: int, width: int = 0) -> str:
    """``n`` least-significant digit first, zero-padded to ``width`` digits: 347 -> '743'."""
    return f"{n:0{width}d}"[::-1]


def read_number(text: str) -> int:
    """Inverse of ``write_number``: '743' -> 347."""
    return int(text[::-1])


MAX_WIDTH = 9


class ArithmeticParams(TaskParams):
    """``task.params`` of the arithmetic task: operands of ``min_digits``..``width`` digits.
    At most 9 digits: the prompt space is then already 10^18 prompts, and an example of
    width w is 4w + 4 characters long, so the models' ``max_len`` bounds it first."""

    length_key = "width"
    width: int = Field(3, ge=1, le=MAX_WIDTH)
    min_digits: int = Field(2, ge=1, le=MAX_WIDTH)

    @model_validator(mode="after")
    def _min_within_width(self) -> ArithmeticParams:
        if self.min_digits > self.width:
            raise ValueError(f"min_digits ({self.min_digits}) must be at most width "
                             f"({self.width})")
        return self

    def distinct_prompts(self) -> int:
        lo = 0 if self.min_digits == 1 else 10 ** (self.min_digits - 1)
        n = 10**self.width - lo
        return n * n

    def longest_example(self) -> int:
        # prompt: two operands of width digits, '+' and '='; target: one step a column,
        # '>', and the answer's width digits plus a final carry
        return (2 * self.width + 2) + (2 * self.width + 2)


@dataclass(frozen=True)
class ArithmeticTask:
    """Addition of two numbers of ``min_digits``..``width`` digits (operands zero-padded to
    ``width`` in the prompt). Deterministic: the same numbers always give the same text."""

    width: int = 3
    min_digits: int = 2
    name: str = "arithmetic"
    alphabet: str = ALPHABET

    def __post_init__(self) -> None:
        if not 1 <= self.min_digits <= self.width <= 9:
            raise ValueError(
                f"arithmetic task needs 1 <= min_digits <= width <= 9, got "
                f"min_digits={self.min_digits}, width={self.width}"
            )

    # -- text <-> numbers -------------------------------------------------------------
    def prompt_for(self, a: int, b: int) -> str:
        """The prompt asking for ``a + b``."""
        hi = 10**self.width
        if not (0 <= a < hi and 0 <= b < hi):
            raise ValueError(f"operands must be in [0, {hi}), got {a} and {b}")
        return f"{write_number(a, self.width)}+{write_number(b, self.width)}="

    def parse_prompt(self, prompt: str) -> tuple[int, int]:
        """The two operands of a prompt; ValueError naming the prompt if it is not one."""
        a, b, _ = _parse(prompt)
        return a, b

    def solve(self, prompt: str) -> str:
        """The reference target (worked steps + answer) for any well-formed prompt."""
        a, b, width = _parse(prompt)
        steps, digits, carry = [], [], 0
        for col in range(width):
            s = (a // 10**col) % 10 + (b // 10**col) % 10 + carry
            steps.append(_SUMS[s])
            digits.append(_DIGITS[s % 10])
            carry = s // 10
        if carry:
            digits.append("1")
        return "".join(steps) + _ANSWER_MARK + "".join(digits)

    def example(self, a: int, b: int) -> Example:
        """The labelled example for ``a + b``."""
        prompt = self.prompt_for(a, b)
        return Example(prompt=prompt, target=self.solve(prompt))

    # -- verifier ---------------------------------------------------------------------
    def final_answer(self, completion: str) -> str | None:
        """The answer a completion states (as written: least-significant digit first), or
        None if it states none.

        Strict: the completion must end with ``>`` followed by digits and nothing else
        (surrounding whitespace aside), so a model that keeps writing after its answer
        does not get credit for it."""
        text = completion.strip()
        idx = text.find(_ANSWER_MARK)
        if idx < 0:
            return None
        answer = text[idx + 1 :]
        if not answer or not all(c in _DIGITS for c in answer):
            return None
        return answer

    def answer_value(self, completion: str) -> int | None:
        """The number a completion's answer states, or None."""
        answer = self.final_answer(completion)
        return None if answer is None else read_number(answer)

    def check(self, example_or_prompt: Example | str, completion: str) -> bool:
        """True if ``completion``'s answer is the correct sum for the prompt.

        Checked arithmetically (works on any prompt of this task's shape, seen or not);
        the worked steps are not graded, only the answer."""
        prompt = (
            example_or_prompt.prompt if isinstance(example_or_prompt, Example)
            else example_or_prompt
        )
        a, b = self.parse_prompt(prompt)
        return self.answer_value(completion) == a + b

    # -- data -------------------------------------------------------------------------
    def sample_operands(self, rng: random.Random) -> tuple[int, int]:
        """Two operands, each with a number of digits drawn uniformly from
        ``min_digits..width`` and then a value uniform among numbers of that length."""

        def one() -> int:
            digits = rng.randint(self.min_digits, self.width)
            lo = 0 if digits == 1 else 10 ** (digits - 1)
            return rng.randint(lo, 10**digits - 1)

        return one(), one()

    def n_distinct_prompts(self) -> int:
        """How many distinct prompts the task can produce."""
        return ArithmeticParams(width=self.width, min_digits=self.min_digits).distinct_prompts()

    def generate_split_prompts(self, seed: int, sizes: list[int]) -> list[list[str]]:
        """Disjoint lists of distinct prompts of the given sizes, deterministic in ``seed``."""
        total = sum(sizes)
        if total > self.n_distinct_prompts() // 2:
            # Rejection sampling slows to a crawl as the space fills up; half is plenty.
            raise ValueError(
                f"asked for {total} distinct prompts, but this task (width={self.width}, "
                f"min_digits={self.min_digits}) only has {self.n_distinct_prompts()}; "
                "ask for fewer or widen the task"
            )
        rng = random.Random(seed)
        seen: set[str] = set()
        ordered: list[str] = []
        while len(ordered) < total:
            prompt = self.prompt_for(*self.sample_operands(rng))
            if prompt not in seen:
                seen.add(prompt)
                ordered.append(prompt)
        out, start = [], 0
        for n in sizes:
            out.append(ordered[start : start + n])
            start += n
        return out


def _parse(prompt: str) -> tuple[int, int, int]:
    """(a, b, number of columns) of a prompt like '743+580='."""
    m = re.fullmatch(r"([0-9]+)\+([0-9]+)=", prompt)
    if m is None:
        raise ValueError(f"not an arithmetic prompt (expected like '743+580='): {prompt!r}")
    x, y = m.group(1), m.group(2)
    return read_number(x), read_number(y), max(len(x), len(y))
