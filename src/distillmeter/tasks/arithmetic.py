"""The built-in task: addition of two 2-3 digit numbers, written as short worked steps.

A prompt states the sum with both operands zero-padded to the same width::

    347+085=

The target (what a model learns to write after the prompt) gives one worked step per
column, least significant column first, each step being that column's sum written as two
digits (carry, digit), then ``>`` and the final answer::

    12,13,04>432        7+5+0 = 12, 4+8+1 = 13, 3+0+1 = 04, so 347 + 85 = 432

Why this format: a tiny character-level transformer learns it in seconds on a CPU. Fixed
width puts every digit a step needs at a fixed distance from it, the carry the next column
needs is the character written three positions earlier, and the whole example is about
20 characters. The final answer is ordinary decimal, so the verifier checks it with
integer arithmetic on any prompt of this shape, not only on known examples.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from distillmeter.tasks.types import Example

# Every character a prompt or a target uses.
ALPHABET = "0123456789+=,>"
_ANSWER_MARK = ">"
_STEP_SEP = ","


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
        return f"{a:0{self.width}d}+{b:0{self.width}d}="

    def parse_prompt(self, prompt: str) -> tuple[int, int]:
        """The two operands of a prompt; ValueError naming the prompt if it is not one."""
        a, b, _ = _parse(prompt)
        return a, b

    def solve(self, prompt: str) -> str:
        """The reference target (worked steps + final answer) for any well-formed prompt."""
        a, b, width = _parse(prompt)
        steps, carry = [], 0
        for col in range(width):
            s = (a // 10**col) % 10 + (b // 10**col) % 10 + carry
            steps.append(f"{s:02d}")
            carry = s // 10
        return _STEP_SEP.join(steps) + _ANSWER_MARK + str(a + b)

    def example(self, a: int, b: int) -> Example:
        """The labelled example for ``a + b``."""
        prompt = self.prompt_for(a, b)
        return Example(prompt=prompt, target=self.solve(prompt))

    # -- verifier ---------------------------------------------------------------------
    def final_answer(self, completion: str) -> str | None:
        """The final answer a completion states, or None if it states none.

        Strict: the completion must end with ``>`` followed by digits and nothing else
        (surrounding whitespace aside), so a model that keeps writing after its answer
        does not get credit for it."""
        text = completion.strip()
        idx = text.find(_ANSWER_MARK)
        if idx < 0:
            return None
        answer = text[idx + 1 :]
        if not answer or not answer.isdigit() or not answer.isascii():
            return None
        return answer

    def check(self, example_or_prompt: Example | str, completion: str) -> bool:
        """True if ``completion``'s final answer is the correct sum for the prompt.

        Checked arithmetically (works on any prompt of this task's shape, seen or not);
        the worked steps are not graded, only the final answer."""
        prompt = (
            example_or_prompt.prompt if isinstance(example_or_prompt, Example)
            else example_or_prompt
        )
        a, b = self.parse_prompt(prompt)
        answer = self.final_answer(completion)
        return answer is not None and int(answer) == a + b

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
        lo = 0 if self.min_digits == 1 else 10 ** (self.min_digits - 1)
        n = 10**self.width - lo
        return n * n

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
    """(a, b, number of columns) of a prompt like '347+085='."""
    m = re.fullmatch(r"([0-9]+)\+([0-9]+)=", prompt)
    if m is None:
        raise ValueError(f"not an arithmetic prompt (expected like '347+085='): {prompt!r}")
    return int(m.group(1)), int(m.group(2)), max(len(m.group(1)), len(m.group(2)))
