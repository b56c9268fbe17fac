"""The Trainer callback's stage windows: one open at a time over one meter.

A Trainer run is a sequence of phases (preparation, training, evaluation, and in TRL's
distillation trainers on-policy generation and teacher scoring), each a stage window.
:class:`Windows` keeps at most one open (stages do not nest) and switches between them:
:meth:`Windows.switch` closes the open window with what it counted and opens the next.
Windows are opened only when work is known to follow, so that none is left empty; the
callback decides when (see hf_trainer.py), this class only keeps the books.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class Windows:
    """The open window of ``meter`` (an ``EnergyMeter``), if any."""

    def __init__(self, meter: Any) -> None:
        self.meter = meter
        self.current: Any = None  # the open distillmeter.energy.Stage

    @property
    def name(self) -> str | None:
        return self.current.name if self.current is not None else None

    def is_open(self, name: str | None = None) -> bool:
        """Whether a window is open (``name``: that window)."""
        return self.current is not None and (name is None or self.current.name == name)

    def open(self, name: str) -> None:
        """Open ``name``; a window still open is closed first (with no extra counts)."""
        self.close()
        self.current = self.meter.begin_window(name)

    def add(self, tokens: int = 0, samples: int = 0) -> None:
        """Count work in the open window (nothing happens when none is open)."""
        if self.current is not None:
            self.current.add(tokens=tokens, samples=samples)

    def close(self, tokens: int = 0, samples: int = 0, *, failed: str | None = None) -> None:
        """Close the open window (if any), adding these counts; ``failed``: the error
        that ended it."""
        if self.current is None:
            return
        st, self.current = self.current, None
        if failed:
            st.fail(failed)
        self.meter.end_window(st.name, tokens=tokens, samples=samples)

    def switch(self, name: str, tokens: int = 0, samples: int = 0) -> None:
        """Close the open window with these counts and open ``name`` (nothing when
        ``name`` is already open)."""
        if self.is_open(name):
            self.add(tokens, samples)
            return
        self.close(tokens, samples)
        self.current = self.meter.begin_window(name)


@contextmanager
def aside(windows: Any, name: str, info: dict[str, Any],
          leave: Callable[[], None] | None = None) -> Iterator[Any]:
    """Run work in window ``name`` of ``windows`` (a trainer_windows.Windows), then reopen
    the window that was open before (none if none was). ``leave`` is called before the
    open window is closed (to count what it did). A failure closes the window as failed."""
    before = windows.name
    if before != name and leave is not None:
        leave()
    windows.switch(name)
    window = windows.current
    window.annotate(**info)
    try:
        yield window
    except BaseException as exc:
        windows.close(failed=f"{type(exc).__name__}: {exc}")
        raise
    if before is None or before == name:
        windows.close()
    else:
        windows.switch(before)
