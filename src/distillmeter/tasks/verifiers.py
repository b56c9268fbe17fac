"""Verifiers for tasks with checkable answers: the final answer a completion states, in a
canonical form, so that two completions agree when their answers do."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")


def _canonical_number(text: str) -> str | None:
    try:
        value = Decimal(text.replace("$", "").replace(",", ""))
    except InvalidOperation:
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def numeric_final_answer(text: str) -> str | None:
    """The final numeric answer of a completion, canonical (``1,000.00`` -> ``1000``): the
    first number after the last ``####`` (GSM8K's answer marker) if there is one, else the
    last number in the text; None when there is no number."""
    if "####" in text:
        found = _NUMBER.search(text.rsplit("####", 1)[1])
        return _canonical_number(found.group()) if found else None
    numbers = _NUMBER.findall(text)
    return _canonical_number(numbers[-1]) if numbers else None


def exact_answer(text: str) -> str | None:
    """The whole answer with runs of whitespace made one space; None when empty."""
    norm = " ".join(text.split())
    return norm or None


VERIFIERS = {"numeric_final_answer": numeric_final_answer, "exact": exact_answer}
