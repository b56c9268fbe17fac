"""Grouping runs into configurations and comparable groups, and their statistics over seeds.

- A *configuration* is the runs that share a config (``config_id``; else method and labels)
  but not a seed.
- A *group* is the runs on one task and one kind of hardware: energies and qualities are
  only compared within a group, so runs from different tasks or machines in one
  directory are kept apart and the summary says so.
- A *teacher run* is a run directory without student stages that some other run names as
  its upstream: its energy reaches the analysis through the students that use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from distillmeter.analysis.energy_interval import combine
from distillmeter.analysis.quality import quality_summary
from distillmeter.analysis.runs import SIDE_ORDER, RunFigures, is_carried
from distillmeter.analysis.stats import SeedStats, summarize


@dataclass
class ConfigStats:
    """One configuration's statistics over its seeds (energies in J, amortised as asked)."""

    config: str
    group: str
    method: str | None
    task: str | None
    hardware: str
    runs: list[RunFigures]
    energy_j: SeedStats  # seeds and measurement uncertainty (analysis/energy_interval.py)
    by_side: dict[str, SeedStats]
    marginal_j: SeedStats  # per-student energy without shared (upstream) teacher work
    co2e_g: SeedStats
    quality: SeedStats
    q: SeedStats
    stage_j: dict[str, SeedStats]
    metric: str | None
    estimated: bool
    upstream_stages: list[str]
    active_j: SeedStats | None = None  # energy above idle, with the idle baseline's error
    per_student_teacher_stages: list[str] = field(default_factory=list)
    # filled by the Pareto analysis
    pareto: bool = False
    dominated_by: str | None = None  # on the means (Pareto)
    dominated_separably: bool = False  # ... and separable on both axes
    not_separable_from: list[str] = field(default_factory=list)
    label: str = ""  # what tables and sentences call it (set by group_runs)
    # why its totals are lower bounds (a run's upstream teacher work cannot be read): such
    # a configuration is shown as incomplete, kept off the Pareto frontier, the rules and
    # break-even, and never picked by the planner
    incomplete: list[str] = field(default_factory=list)
    meter_overhead_j: SeedStats | None = None  # the meter's own idle measurement, per run

    @property
    def n_seeds(self) -> int:
        return len(self.runs)

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]

    def side_mean(self, side: str) -> float:
        s = self.by_side.get(side)
        return 0.0 if s is None or s.mean is None else s.mean


@dataclass
class Group:
    """Runs comparable with one another: one task, one kind of hardware."""

    id: str
    task: str | None
    hardware: str
    configs: list[str] = field(default_factory=list)
    teacher_runs: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return f"task {self.task or '(unlabelled)'} on {self.hardware}"


@dataclass
class Grouping:
    groups: list[Group]
    configs: list[ConfigStats]
    teacher_runs: list[RunFigures]
    notes: list[str]


def is_teacher_run(run: RunFigures, referenced: set[str]) -> bool:
    """A run without student stages whose run_id another run names as upstream, or that
    a pipeline labelled as its teacher's (``role: teacher``): with only label-trained
    students nothing names it, and it is still no configuration to compare."""
    return not run.has_student_stages and (run.run_id in referenced
                                           or run.labels.get("role") == "teacher")


def config_stats(config: str, group: str, runs: list[RunFigures], *, amortize: float = 1.0,
                 grid: float | None = None, pue: float | None = None) -> ConfigStats:
    """Statistics of one configuration over its runs (seeds)."""
    runs = sorted(runs, key=lambda r: (r.seed is None, r.seed or 0, r.run_id))
    sides = [s for s in SIDE_ORDER if any(s in r.own_by_side or s in r.upstream_by_side
                                          for r in runs)]
    stage_names = sorted({name for r in runs for name in r.stage_j})
    methods = sorted({r.method for r in runs if r.method})
    metrics = sorted({r.metric for r in runs if r.metric})
    metric = metrics[0] if len(metrics) == 1 else None
    quality = quality_summary(metric, [r.quality for r in runs], [r.quality_n for r in runs])
    return ConfigStats(
        config=config,
        group=group,
        method=methods[0] if len(methods) == 1 else ("/".join(methods) or None),
        task=runs[0].task,
        hardware=runs[0].hardware,
        runs=runs,
        energy_j=combine([r.measured_total(amortize) for r in runs]),
        by_side={s: summarize([r.side_j(s, amortize) for r in runs]) for s in sides},
        marginal_j=combine([r.measured_marginal() for r in runs]),
        co2e_g=combine([r.measured_total(amortize).scaled(_co2_per_j(r, grid, pue))
                        for r in runs]),
        quality=quality,
        q=_q_summary(runs, quality),
        stage_j={n: summarize([_stage_share(r, n, amortize) for r in runs])
                 for n in stage_names},
        metric=metrics[0] if len(metrics) == 1 else ("/".join(metrics) or None),
        estimated=any(r.estimated for r in runs),
        upstream_stages=sorted({n for r in runs for n in r.upstream_stage_names}),
        active_j=combine([r.measured_active(amortize) for r in runs]),
        per_student_teacher_stages=sorted({n for r in runs for n in r.own_teacher_stages}),
        incomplete=sorted({m for r in runs for m in r.incomplete}),
        meter_overhead_j=summarize([r.meter_overhead_j for r in runs]),
    )


def _co2_per_j(run: RunFigures, grid: float | None, pue: float | None) -> float:
    g = run.grid_gco2_per_kwh if grid is None else grid
    p = run.pue if pue is None else pue
    return p * g / 3.6e6


def _q_summary(runs: list[RunFigures], quality: SeedStats) -> SeedStats:
    """Q = quality / teacher quality. With one teacher figure for every seed (one teacher)
    Q's interval is the quality interval over it; otherwise the t-interval of the seeds' Q."""
    teachers = {r.teacher_quality for r in runs}
    plain = summarize([r.q for r in runs])
    if len(teachers) != 1 or not next(iter(teachers)) or quality.mean is None:
        return plain
    tq = next(iter(teachers))
    s = quality.scaled(1.0 / tq)
    if s.lo is None or s.hi is None or plain.mean is None:
        return plain
    return SeedStats(s.n, plain.mean, plain.std, min(s.lo, plain.mean), max(s.hi, plain.mean),
                   quality.method)


def _stage_share(run: RunFigures, name: str, amortize: float) -> float:
    # an upstream stage's energy is divided among the students sharing it (not a student's
    # own training carried from an interrupted attempt: no one shares that)
    if is_carried(name):
        return run.stage_j.get(name, 0.0)
    up = sum(e for (_, stage), e in run.upstream_stages.items() if stage == name)
    return run.stage_j.get(name, 0.0) - up + up / amortize


BUDGET_LABEL = "token_budget"  # the run label a student budget axis writes (pipelines)


def budget_of(c: ConfigStats) -> int | None:
    """The student token budget every run of ``c`` was trained at (its ``token_budget``
    label), or None when the runs carry none or disagree."""
    values = {r.labels.get(BUDGET_LABEL) for r in c.runs}
    if len(values) != 1:
        return None
    v = next(iter(values))
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def fmt_budget(tokens: int) -> str:
    """A token budget as labels show it, as the run names do: 240000 -> ``240k``."""
    return f"{tokens // 1000}k" if tokens % 1000 == 0 else str(tokens)


def budget_axis(cs: list[ConfigStats]) -> dict[str, list[ConfigStats]]:
    """The methods of a group whose configurations form a curve along the student's token
    budget: two or more configurations of the method, each with its own budget (a method
    with two configurations at one budget differs in something else: no curve), by
    increasing budget."""
    by_method: dict[str, list[ConfigStats]] = {}
    for c in cs:
        if c.method:
            by_method.setdefault(c.method, []).append(c)
    out: dict[str, list[ConfigStats]] = {}
    for m, members in by_method.items():
        budgets = [budget_of(c) for c in members]
        if len(members) > 1 and None not in budgets and len(set(budgets)) == len(budgets):
            out[m] = sorted(members, key=lambda c: budget_of(c) or 0)
    return out


def label_configs(cs: list[ConfigStats]) -> None:
    """Name each configuration of a group by its method where the method is unique there
    (config ids are often hashes), by method and budget on a budget axis (``kd @240k``),
    else by method and config id."""
    counts: dict[str | None, int] = {}
    for c in cs:
        counts[c.method] = counts.get(c.method, 0) + 1
    axis = {c.config for members in budget_axis(cs).values() for c in members}
    for c in cs:
        if c.method and counts[c.method] == 1:
            c.label = c.method
        elif c.config in axis:
            c.label = f"{c.method} @{fmt_budget(budget_of(c) or 0)}"
        elif c.method and c.method != c.config:
            c.label = f"{c.method} [{c.config}]"
        else:
            c.label = c.config


def group_runs(runs: list[RunFigures], *, amortize: float = 1.0, grid: float | None = None,
               pue: float | None = None) -> Grouping:
    """Split runs into groups (task x hardware), teacher runs and configurations."""
    referenced = {key[0] for r in runs for key in r.upstream_stages}
    teachers = [r for r in runs if is_teacher_run(r, referenced)]
    students = [r for r in runs if not is_teacher_run(r, referenced)]
    group_keys = sorted({(r.task or "", r.hardware) for r in runs})
    groups = {k: Group(id=f"g{i + 1}", task=k[0] or None, hardware=k[1])
              for i, k in enumerate(group_keys)}
    notes: list[str] = []
    by_config: dict[tuple[tuple[str, str], str], list[RunFigures]] = {}
    for r in students:
        by_config.setdefault(((r.task or "", r.hardware), r.config), []).append(r)
    configs: list[ConfigStats] = []
    for (gkey, config), members in sorted(by_config.items()):
        group = groups[gkey]
        group.configs.append(config)
        configs.append(config_stats(config, group.id, members, amortize=amortize,
                                    grid=grid, pue=pue))
        seeds = [r.seed for r in members if r.seed is not None]
        dupes = sorted({s for s in seeds if seeds.count(s) > 1})
        if dupes:
            notes.append(f"configuration {config}: seed(s) {dupes} appear in more than one "
                         "run; each run is counted as a repeat")
        metrics = {r.metric for r in members if r.metric}
        if len(metrics) > 1:
            notes.append(f"configuration {config}: runs report different quality metrics "
                         f"({', '.join(sorted(metrics))})")
    for group in groups.values():
        label_configs([c for c in configs if c.group == group.id])
    # within a group, in name order; groups in their own order
    order = {g.id: i for i, g in enumerate(groups.values())}
    # a method's budget points in budget order (labels would put @1000k before @120k)
    configs.sort(key=lambda c: (order[c.group], c.method or c.label, budget_of(c) or 0,
                                c.label, c.config))
    for group in groups.values():
        group.configs = [c.config for c in configs if c.group == group.id]
    for t in teachers:
        groups[(t.task or "", t.hardware)].teacher_runs.append(t.run_id)
    if len(groups) > 1:
        parts = "; ".join(f"{g.id}: {g.describe()}" for g in groups.values())
        notes.append(f"runs span {len(groups)} different tasks or hardware and are analysed "
                     f"as separate groups ({parts}); configurations are compared only "
                     "within a group")
    for gkey, group in groups.items():
        metrics = {r.metric for r in students if (r.task or "", r.hardware) == gkey
                   and r.metric}
        if len(metrics) > 1:
            notes.append(f"group {group.id} mixes quality metrics ({', '.join(sorted(metrics))})"
                         "; its Pareto frontier compares unlike numbers")
    return Grouping(list(groups.values()), configs, teachers, notes)
