"""SIGTERM and SIGHUP end a metered run as Ctrl-C does.

Python's default for SIGTERM (``kill``, a scheduler's stop, ``docker stop``) and SIGHUP (a
closed terminal or SSH session) is to die at once: no ``finally`` runs, so an open stage
gets no ``stage_end``, the run no ``run_end``, and lock files stay behind. While a meter
runs (and for the whole of a ``distillmeter`` command) these two signals raise
:class:`Terminated` in the main thread instead, as SIGINT raises ``KeyboardInterrupt``:
``with`` blocks unwind, the running stage ends ``failed``, ``run_end`` is written and the
locks are released. ``Terminated`` is a ``SystemExit`` whose code is 128 + the signal
number, so a program that does not catch it exits quietly with the status a shell reports
for a process that signal killed (143 for SIGTERM, 129 for SIGHUP), after the cleanup.

A library must not take over the program's own signal handling, so:

- handlers are installed only from the main thread (Python allows no other) and only
  while something needs them; users are counted, so overlapping meters share one
  installation, and when the last one is done the previous handlers are put back (unless
  the program replaced ours in the meantime: then its own stays);
- a signal the program ignores (``SIG_IGN``, e.g. under ``nohup``) stays ignored, and one
  whose handler was not set from Python is left alone;
- a handler the program set itself is called instead of raising: it decides what the
  signal means (e.g. "finish this step, then stop"); the meter closes normally when the
  program leaves its block.

The meter's own bookkeeping (a ledger line and the state it records) runs inside
:func:`deferred`: a signal arriving there is raised when that section ends, so a
``stage_end`` is never half recorded.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SIGNALS: tuple[int, ...] = tuple(int(s) for s in (getattr(signal, "SIGTERM", None),
                                                  getattr(signal, "SIGHUP", None))
                                 if s is not None)


class Terminated(SystemExit):
    """Raised in the main thread when SIGTERM or SIGHUP arrives while distillmeter handles
    them. ``signum``: the signal; ``code`` (SystemExit's): 128 + ``signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum
        self.name = signal.Signals(signum).name

    def __str__(self) -> str:
        return f"received {self.name}"


_users = 0
_previous: dict[int, Any] = {}
_deferred = 0
_pending: int | None = None


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _handler(signum: int, frame: Any) -> None:
    global _pending
    prev = _previous.get(signum)
    if _users == 0:  # left installed by a release outside the main thread: act as before
        signal.signal(signum, prev if prev is not None else signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    if callable(prev):  # the program's own handler decides what the signal means
        prev(signum, frame)
        return
    if _deferred:
        _pending = _pending or signum
        return
    raise Terminated(signum)


def install() -> bool:
    """Handle SIGTERM and SIGHUP as described above until :func:`release`. Returns False
    (and does nothing) outside the main thread; call :func:`release` once per True."""
    global _users
    if not _in_main_thread():
        return False
    if _users == 0:
        _previous.clear()
        for s in SIGNALS:
            current = signal.getsignal(s)
            if current is None or current == signal.SIG_IGN or current is _handler:
                continue  # not set from Python, or ignored on purpose: left as it is
            _previous[s] = current
            signal.signal(s, _handler)
    _users += 1
    return True


def release() -> None:
    """One user of :func:`install` is done; the last one puts the previous handlers back."""
    global _users, _pending
    if _users == 0:
        return
    _users -= 1
    if _users or not _in_main_thread():
        return
    for s, prev in _previous.items():
        if signal.getsignal(s) is _handler:
            signal.signal(s, prev)
    _previous.clear()
    _pending = None


@contextmanager
def deferred() -> Iterator[None]:
    """A section the signals must not cut: one that arrives inside is raised as
    :class:`Terminated` when the outermost such section ends. Other threads never get the
    signal, so their sections defer nothing."""
    global _deferred, _pending
    if not _in_main_thread():
        yield
        return
    _deferred += 1
    try:
        yield
    finally:
        _deferred -= 1
        if _deferred == 0 and _pending is not None:
            signum, _pending = _pending, None
            raise Terminated(signum)
