"""A stage window: what ``meter.stage(...)`` and ``meter.begin_window(...)`` return."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from distillmeter.energy.signals import Terminated
from distillmeter.privacy.redact import redact_text
from distillmeter.protocol import check_stage_name

F = TypeVar("F", bound=Callable[..., Any])


class StageHost(Protocol):
    """What a stage needs from its meter: the two boundaries (``EnergyMeter`` and the rank
    meter answer it). A stage opens and closes itself through this seam alone, so the
    stage does not depend on the meter that holds it."""

    def open_stage(self, st: Stage) -> None:
        """Read the counters and write ``stage_start``; ``st`` becomes the running stage."""

    def close_stage(self, st: Stage) -> None:
        """Read the counters and write ``stage_end`` for the running stage ``st``."""


def checked_stage_name(name: str) -> str:
    """``name`` if it is a valid stage name holding nothing that looks like a secret, else
    ValueError. A name goes into the ledger, the report and every table, so one that holds
    a token (``student.ghp_...``) is refused rather than redacted (a redacted name would
    no longer say which stage it was); the message does not repeat it."""
    try:
        check_stage_name(name)
    except ValueError as exc:
        raise ValueError(redact_text(str(exc))) from None
    if redact_text(name) != name:
        raise ValueError("a stage name must not hold a secret: this one holds what looks "
                         "like a token or key (not shown); choose a plain name such as "
                         "'student.train'")
    return name


class Stage:
    """A stage window: a context manager, a decorator (each call is one window), or the
    handle :meth:`EnergyMeter.begin_window` returns. After it ends, ``seconds`` and
    ``energy_j`` hold its boundary-reading deltas."""

    def __init__(self, meter: StageHost, name: str, tokens: int = 0, samples: int = 0):
        self.meter = meter
        self.name = checked_stage_name(name)
        self.tokens, self.samples = int(tokens), int(samples)
        self.status, self.error = "ok", None
        self.t_start: float | None = None
        self.t_end: float | None = None
        self.start_readings: dict[str, float | None] = {}
        self.end_readings: dict[str, float | None] = {}
        self.info: dict[str, Any] = {}

    def add(self, tokens: int = 0, samples: int = 0) -> None:
        """Count tokens and samples processed in this stage (call as often as you like)."""
        self.tokens += int(tokens)
        self.samples += int(samples)

    def annotate(self, **info: Any) -> None:
        """Say what ran in this stage (``params=``, ``batch_size=``, ``backend=`` ...); written
        into ``stage_end.info`` and copied into the report, where the analysis uses it (for
        example to compute the stage's energy floor). Values must be JSON-serialisable."""
        self.info.update(info)

    def fail(self, error: str) -> None:
        """Mark the stage failed without raising (e.g. a subprocess's exit code)."""
        self.status, self.error = "failed", error

    @property
    def seconds(self) -> float | None:
        if self.t_start is None or self.t_end is None:
            return None
        return self.t_end - self.t_start

    @property
    def energy_j(self) -> dict[str, float | None]:
        """Counter delta per device (None where a reading is missing)."""
        out = {}
        for d, a in self.start_readings.items():
            b = self.end_readings.get(d)
            out[d] = None if a is None or b is None else b - a
        return out

    def __enter__(self) -> Stage:
        try:
            self.meter.open_stage(self)
        except (Terminated, KeyboardInterrupt) as exc:
            # a signal that arrived while the stage opened is raised as its stage_start is
            # written (signals.deferred): the stage has begun, so it ends failed by that
            # signal here, not later as "still running" when the run closes
            if self.t_start is not None and self.t_end is None:
                self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is not None:
            self.fail(f"{exc_type.__name__}: {exc}")
        self.meter.close_stage(self)
        return False

    def __call__(self, func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with Stage(self.meter, self.name, self.tokens, self.samples):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


