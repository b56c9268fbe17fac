"""The analysis of one directory of runs as one object: what ``summary.analyse`` assembles
and the rules, the verdict, the planner and the renderers read. It lives apart from the
assembling so that those readers depend on the shape alone, not on the code that fills it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from distillmeter.analysis import pareto
from distillmeter.analysis.breakeven import DEFAULT_MIN_Q
from distillmeter.analysis.grouping import ConfigStats, Grouping
from distillmeter.analysis.runs import RunFigures
from distillmeter.protocol import Report


@dataclass
class Analysis:
    """The whole analysis of one directory of runs."""

    runs: list[RunFigures]
    reports: dict[str, Report]  # by run_id
    grouping: Grouping
    pareto: dict[str, pareto.ParetoResult]  # by group id
    break_even: dict[str, dict[str, Any]]  # by group id
    efficiency: list[dict[str, Any]]
    sensitivity: dict[str, Any] | None
    skipped: list[dict[str, str]]
    amortize: float
    grid: float | None
    pue: float | None
    notes: list[str] = field(default_factory=list)
    min_q: float = DEFAULT_MIN_Q
    verdict: list[dict[str, Any]] = field(default_factory=list)
    rules: dict[str, list[str]] = field(default_factory=dict)  # by group id
    run_paths: dict[str, str] = field(default_factory=dict)  # run_id -> directory, if known
    floors: list[dict[str, Any]] = field(default_factory=list)  # the floors table applied

    @property
    def configs(self) -> list[ConfigStats]:
        return self.grouping.configs

    def config(self, config_id: str, group: str | None = None) -> ConfigStats:
        for c in self.configs:
            if c.config == config_id and (group is None or c.group == group):
                return c
        raise KeyError(config_id)
