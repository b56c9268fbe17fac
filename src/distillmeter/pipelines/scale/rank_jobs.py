"""``distillmeter run`` under torchrun: rank 0 decides, the other ranks follow.

Rank 0 does everything a single process does (the OUT lock, resume decisions, teacher-side
work, accounting, the summary). The other ranks wait for its messages (on a gloo group with
a long timeout, ``distributed.wait_timeout_s``):

- ``("follow", run_dir, meter kwargs)``: rank 0 runs a teacher run alone (one GPU; teacher
  work is not distributed). Each other rank meters its own devices in that run directory
  too, mirroring rank 0's stage boundaries as rank 0 announces them, so the GPUs the job
  holds idle are counted in the teacher stages rather than nowhere.
- ``("student", run, teacher outputs, run_dir, trained)``: a student run, collective: every
  rank runs it (DDP/FSDP in ``student.train``; rank 0 alone saves and evaluates while the
  others wait inside ``eval.student``; ``trained``: a student an interrupted attempt saved,
  so there is no training), every stage boundary behind a barrier.
- ``("done",)``, or ``("abort", reason)`` when rank 0 fails while the others are listening.

Every run directory made under torchrun holds ``ranks/rank<k>/`` and the merged files
(see ``energy/ranks.py`` and ``energy/merge.py``). The meters each rank opens are in
``rank_meter.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from distillmeter.pipelines.scale.rank_meter import RankAborted, follow


def serve(ctx: Any, run_student: Callable[..., Any]) -> None:
    """The other ranks' loop: do what rank 0 says until it is done (``run_student`` is
    ``pipelines.student.run_student``, passed in: the student recipe imports this layer's
    meter helpers, not the other way round)."""
    while True:
        msg = ctx.dist.broadcast()
        kind = msg[0]
        if kind == "follow":
            follow(ctx, Path(msg[1]), msg[2])
        elif kind == "student":
            run_student(ctx, *msg[1:])
        elif kind == "done":
            return
        else:
            raise RankAborted(f"rank 0 stopped: {msg[1]}")


class Leader:
    """Rank 0's side: what the other ranks do next. A no-op for one process."""

    def __init__(self, ctx: Any):
        self.ctx = ctx
        self.active = ctx.dist is not None and ctx.dist.active
        self.listening = True  # the others wait for a message (not inside a collective run)

    @contextmanager
    def solo(self):
        """Rank 0 alone does the work inside (teacher runs); the others meter along."""
        self.ctx.solo = self.active
        try:
            yield
        finally:
            self.ctx.solo = False

    @contextmanager
    def student(self, run: Any, teacher: Any, path: Path, trained: Any = None,
                start: Any = None):
        """A student run every rank runs together (``trained``: a student an earlier
        attempt saved, evaluated instead of trained; see ``student.locate_trained``;
        ``start``: the trained student it starts from)."""
        if self.active:
            self.ctx.dist.broadcast(("student", run, teacher, path, trained, start))
            self.listening = False
        yield
        self.listening = True

    def done(self) -> None:
        if self.active:
            self.ctx.dist.broadcast(("done",))

    def abort(self, exc: BaseException) -> None:
        """Tell the others to stop, when they can hear it. Inside a collective run they
        cannot: rank 0's exit then makes the launcher stop them."""
        if self.active and self.listening:
            self.ctx.dist.broadcast(("abort", f"{type(exc).__name__}: {exc}"))
