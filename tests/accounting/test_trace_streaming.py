"""The accounting of a trace is the accounting of the in-memory reading it replaced.

``tests/data/streaming-golden.json`` holds the figures the in-memory implementation (the
trace parsed whole into lists, then arrays; commit 3ecdf05) gave for the recorded H100 run
and for each of its variants in ``trace_variants.py``, accounted with the sensitivity
analysis' moved boundaries, a widened window and a user idle figure. Every number must
agree to 1e-9 (relative) and every message exactly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import trace_variants as tv

from distillmeter.accounting import account

GOLDEN = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "streaming-golden.json").read_text())
REL = 1e-9


def assert_same(got: object, want: object, where: str = "") -> None:
    """Equal structures; numbers to REL, everything else exactly."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), where
        for k in want:
            assert_same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(got, bool):
        assert isinstance(got, (int, float)), where
        assert math.isclose(got, want, rel_tol=REL, abs_tol=1e-12), f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def check_variant(name: str, dest: Path) -> None:
    run = tv.build(name, dest)
    for opt, kw in tv.OPTIONS.items():
        assert_same(tv.figures(account(run, **kw), run), GOLDEN[f"{name}/{opt}"],
                    f"{name}/{opt}")


@pytest.mark.parametrize("name", sorted(tv.VARIANTS))
def test_figures_match_the_in_memory_implementation(tmp_path, name):
    check_variant(name, tmp_path / name)


def test_the_golden_file_covers_every_variant():
    assert set(GOLDEN) == {f"{n}/{o}" for n in tv.VARIANTS for o in tv.OPTIONS}
