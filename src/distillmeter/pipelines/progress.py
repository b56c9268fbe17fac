"""Progress bars per stage (rich) with tokens/s and watts; silent with ``quiet``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from distillmeter.privacy.redact import redact_text
from distillmeter.terminal import get_console, literal


def _short(x: float) -> str:
    """1234 -> 1.2k, 560000 -> 560k, 2.5e6 -> 2.5M: counts that fit an 80-column line."""
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            v = x / div
            return f"{v:.1f}{suffix}" if v < 100 else f"{v:.0f}{suffix}"
    return f"{x:.0f}"


def power_text(watts: float | None, estimated: bool = False) -> str:
    """The bar's power figure: ``611.8 W`` measured; ``~12 W est`` when any of it comes from
    an estimate (a model, not a counter: +-50%, so whole watts, which also keeps the line
    within 80 columns); ``- W`` before the first sample."""
    if watts is None:
        return "- W"
    if estimated:
        return f"~{watts:.0f} W est" if abs(watts) >= 0.95 else f"~{watts:.1f} W est"
    return f"{watts:.1f} W"


class _RateColumn(ProgressColumn):
    """Tokens per second and the meter's latest power reading (marked when estimated)."""

    def render(self, task) -> Text:
        tokens = task.fields.get("tokens", 0)
        elapsed = task.elapsed or 0.0
        rate = f"{_short(tokens / elapsed)} tok/s" if elapsed > 0 and tokens else "- tok/s"
        power = power_text(task.fields.get("watts"), bool(task.fields.get("estimated")))
        return Text(f"{rate:>11} {power:>7}", style="cyan")


class _CountColumn(ProgressColumn):
    """``done/total unit`` (just ``done unit`` when the total is unknown)."""

    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        done = _short(task.completed)
        total = f"/{_short(task.total)}" if task.total is not None else ""
        return Text(f"{done + total:>11} {self.unit:<6}")


class _TaskCountColumn(_CountColumn):
    """``_CountColumn`` with the unit taken from each task (bars of different units)."""

    def __init__(self):
        super().__init__("")

    def render(self, task) -> Text:
        self.unit = task.fields.get("unit", "")
        return super().render(task)


class StageBar:
    """One stage's bar: ``advance(tokens, samples)`` as work completes; the bar moves by
    ``items`` (default: the samples)."""

    def __init__(self, progress: Progress | None, task_id, power: Callable[[], float | None],
                 estimated: Callable[[], bool] | None = None):
        self._progress, self._task, self._power = progress, task_id, power
        self._estimated = estimated or (lambda: False)
        self.tokens = 0
        self.samples = 0

    def advance(self, tokens: int = 0, samples: int = 0, items: int | None = None) -> None:
        self.tokens += tokens
        self.samples += samples
        items = samples if items is None else items
        if self._progress is not None:
            self._progress.update(self._task, advance=items, tokens=self.tokens,
                                  watts=self._power(), estimated=self._estimated())


class StageProgress:
    """Bars for a run's stages. ``label`` prefixes each (the run directory's name)."""

    def __init__(self, console: Console | None = None, *, quiet: bool = False,
                 power: Callable[[], float | None] | None = None,
                 power_estimated: Callable[[], bool] | None = None):
        self.console = console or get_console(stderr=True)
        self.quiet = quiet
        self.power = power or (lambda: None)
        # whether the power figure comes (in part) from an estimate: marked on the bar
        self.power_estimated = power_estimated or (lambda: False)

    @contextmanager
    def stage(self, label: str, name: str, total: int | None, unit: str = "seq"
              ) -> Iterator[StageBar]:
        """A bar for stage ``name`` with ``total`` items (sequences, prompts, tokens).
        ``label`` (the run's name) heads the runs' blocks: see ``note``."""
        if self.quiet:
            yield StageBar(None, None, self.power)
            return
        progress = Progress(
            TextColumn(f"  {literal(name):<16}".replace("{", "{{").replace("}", "}}")),
            BarColumn(bar_width=12),
            _CountColumn(unit),
            _RateColumn(), TimeElapsedColumn(),
            console=self.console, transient=False, refresh_per_second=8)
        with progress:
            task_id = progress.add_task(name, total=total, tokens=0, watts=self.power(),
                                        estimated=self.power_estimated())
            bar = StageBar(progress, task_id, self.power, self.power_estimated)
            yield bar
            if total is not None:
                progress.update(task_id, completed=total)

    @contextmanager
    def metered(self, meter, label: str, name: str, total: int | None, unit: str = "seq"
                ) -> Iterator[StageBar]:
        """``meter.stage(name)`` with a bar: ``advance(tokens, samples, items)`` counts the
        stage's tokens and samples in the ledger and moves the bar."""
        with meter.stage(name) as st, self.stage(label, name, total, unit) as bar:
            counting = _CountingBar(bar, st)
            yield counting

    @contextmanager
    def phases(self, meter, label: str, phases: list[tuple[str, int | None, str]]
               ) -> Iterator[PhaseWindows]:
        """Stage windows that take turns on one meter (an on-policy round's
        ``student.generate``, ``teacher.score``, ``student.train``): ``phases`` lists
        ``(stage name, total items, unit)``. One bar per phase, all in one display, each
        totalling its phase over every window. See ``PhaseWindows``."""
        if self.quiet:
            bars = {name: StageBar(None, None, self.power) for name, _, _ in phases}
            with PhaseWindows(meter, bars) as windows:
                yield windows
            return
        progress = Progress(
            TextColumn("  {task.description:<16}"), BarColumn(bar_width=12),
            _TaskCountColumn(), _RateColumn(), TimeElapsedColumn(),
            console=self.console, transient=False, refresh_per_second=8)
        with progress:
            bars = {}
            for name, total, unit in phases:
                task_id = progress.add_task(name, total=total, tokens=0, unit=unit,
                                            watts=self.power())
                bars[name] = StageBar(progress, task_id, self.power)
            with PhaseWindows(meter, bars) as windows:
                yield windows

    def note(self, message: str) -> None:
        """A line of its own (a run starting, skipped, resumed): rich markup, whose
        callers escape the names and paths they quote (terminal.literal); secrets in it
        are redacted."""
        if not self.quiet:
            self.console.print(redact_text(message), highlight=False)


class _CountingBar:
    """A bar whose advances also count tokens and samples in the meter's stage."""

    def __init__(self, bar: StageBar, stage):
        self._bar, self._stage = bar, stage

    @property
    def tokens(self) -> int:
        return self._bar.tokens

    def advance(self, tokens: int = 0, samples: int = 0, items: int | None = None) -> None:
        self._stage.add(tokens=tokens, samples=samples)
        self._bar.advance(tokens, samples, items)

    def annotate(self, **info) -> None:
        """Record what ran in the stage (params, batch size) in its ``stage_end.info``."""
        self._stage.annotate(**info)


def generation_progress(bar):
    """A generation backend's per-batch callback as bar advances (tokens: the batch's
    prompt and new tokens; samples: its prompts). It also records the generation's work in
    the stage's info, for the cost model (docs/analysis.md, "Forecasts"): ``gen_batches``,
    ``decode_steps`` (forward passes: each batch runs until its longest answer ends),
    ``prompt_tokens`` and ``new_tokens``."""
    work = {"gen_batches": 0, "decode_steps": 0, "prompt_tokens": 0, "new_tokens": 0}

    def on_batch(gens) -> None:
        bar.advance(sum(g.prompt_tokens + g.new_tokens for g in gens), len(gens))
        if gens:
            work["gen_batches"] += 1
            work["decode_steps"] += max(g.new_tokens for g in gens)
            work["prompt_tokens"] += sum(g.prompt_tokens for g in gens)
            work["new_tokens"] += sum(g.new_tokens for g in gens)
            annotate = getattr(bar, "annotate", None)
            if annotate is not None:
                annotate(**work)

    return on_batch


class PhaseWindows:
    """Stage windows that take turns on one meter. Stages do not nest, so ``enter(name)``
    ends the running window (if any) and begins one of ``name``; a name may have many
    windows in one run (the accounting and the analysis add them up by name).
    ``advance`` counts tokens and samples into the running window and its phase's bar;
    ``annotate(name, ...)`` sets what each window of ``name`` records in its
    ``stage_end.info``. On leaving the ``with`` block the running window ends, marked
    failed if an exception is on its way out."""

    def __init__(self, meter, bars: dict[str, StageBar]):
        self.meter, self.bars = meter, bars
        self.current = None  # the running window (an energy.Stage)
        self.info: dict[str, dict] = {name: {} for name in bars}
        self.windows: dict[str, int] = dict.fromkeys(bars, 0)

    def __enter__(self) -> PhaseWindows:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.current is not None:
            name, self.current = self.current.name, None
            if exc is not None:
                self.meter.end_window(name, status="failed",
                                      error=f"{exc_type.__name__}: {exc}")
            else:
                self.meter.end_window(name)
        return False

    @property
    def phase(self) -> str | None:
        return self.current.name if self.current is not None else None

    def enter(self, name: str) -> None:
        """End the running window and begin one of ``name``."""
        if name not in self.bars:
            raise ValueError(f"{name!r} is not one of the phases {', '.join(self.bars)}")
        if self.current is not None:
            self.meter.end_window(self.current.name)
            self.current = None
        self.current = self.meter.begin_window(name)
        self.current.annotate(**self.info[name])
        self.windows[name] += 1

    def annotate(self, name: str, **info) -> None:
        """What every window of ``name`` ran (``params``, ``batch_size``, ...)."""
        self.info[name].update(info)
        if self.current is not None and self.current.name == name:
            self.current.annotate(**info)

    def advance(self, tokens: int = 0, samples: int = 0, items: int | None = None) -> None:
        """Count work done in the running window (and move its phase's bar)."""
        if self.current is None:
            raise RuntimeError("no phase window is running: call enter(name) first")
        self.current.add(tokens=tokens, samples=samples)
        self.bars[self.current.name].advance(tokens, samples, items)
