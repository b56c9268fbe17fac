"""The trace sampler: a daemon thread that reads every sensor at a fixed rate and appends
rows to ``trace.csv``.

Power is read on every tick; each sensor's energy counter only every
``sensor.counter_every`` ticks (NVML's counter call takes ~4 ms). Rows are buffered and
flushed about once a second, never fsynced per row. If the thread dies, the run goes on
with boundary readings only and the meter is told (it writes a warning and marks the
affected stages degraded).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from distillmeter.protocol import trace_row

SampleHook = Callable[[float, dict[str, tuple[float | None, float | None]]], None]


class Sampler(threading.Thread):
    """Samples ``sensors`` at ``hz`` under ``lock`` (shared with boundary readings), on the
    meter's clock ``now``. ``on_sample(t, {device: (energy, power)})`` runs after each
    tick, still under the lock; ``on_death(t, exc)`` if the loop fails."""

    def __init__(self, sensors: Sequence[Any], out: IO[str], *, hz: float, now: Callable[[], float],
                 lock: threading.RLock, on_sample: SampleHook,
                 on_death: Callable[[float, BaseException], None],
                 flush_every_s: float = 1.0) -> None:
        super().__init__(name="distillmeter-sampler", daemon=True)
        self.sensors = list(sensors)
        self.out = out
        self.period = 1.0 / hz
        self.now = now
        self.lock = lock
        self.on_sample = on_sample
        self.on_death = on_death
        self.flush_every_s = flush_every_s
        self.stop_event = threading.Event()
        self.ticks = 0
        self.cpu_seconds = 0.0  # this thread's own CPU time: the sampler's cost
        self.died: tuple[float, str] | None = None

    def tick(self) -> None:
        rows: dict[str, tuple[float | None, float | None]] = {}
        with self.lock:
            t = self.now()
            for s in self.sensors:
                rows.update(s.sample(self.ticks % s.counter_every == 0))
            # Inside the lock, so the meter sees readings in the order they were taken.
            self.on_sample(t, rows)
        lines = [trace_row(t, d, e, p) for d, (e, p) in rows.items()
                 if e is not None or p is not None]
        if lines:
            self.out.write("".join(lines))
        self.ticks += 1

    def run(self) -> None:
        cpu0 = time.thread_time()
        next_at = time.monotonic()
        last_flush = next_at
        try:
            while not self.stop_event.is_set():
                self.tick()
                now = time.monotonic()
                if now - last_flush >= self.flush_every_s:
                    self.out.flush()
                    last_flush = now
                next_at += self.period
                if next_at < now:  # fell behind (a slow read): skip, don't burst
                    next_at = now
                self.stop_event.wait(next_at - now)
        except BaseException as exc:  # any failure: the run must go on without a trace
            t = self.now()
            self.died = (t, f"{type(exc).__name__}: {exc}")
            try:
                self.on_death(t, exc)
            except Exception:  # e.g. the ledger cannot be written either (a full disk): the
                pass  # main thread meets that at its next event and says so
        finally:
            self.cpu_seconds = time.thread_time() - cpu0

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)
