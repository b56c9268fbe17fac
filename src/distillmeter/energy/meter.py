"""The energy meter: stage windows over synchronized counter readings, plus a trace.

    with EnergyMeter("runs/a") as meter:
        with meter.stage("student.train") as st:
            ...; st.add(tokens=n)

writes ``ledger.jsonl`` (run_start, idle_baseline, stage_start/stage_end, quality,
warning, run_end; flushed and fsynced at every event) and ``trace.csv`` (a sampler thread,
20 Hz by default), plus ``environment.json`` and ``config.yaml``. It computes no report:
``distillmeter.accounting`` does that from these files. ``t`` everywhere is seconds on a
monotonic clock that starts with the meter.
SIGTERM and SIGHUP close the run as Ctrl-C does (``signals.py``); a file that cannot be
written raises ``OutputError`` naming it, the ledger kept valid (``runfiles.MeterFiles``).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from distillmeter.energy import signals
from distillmeter.energy.checks import backwards_counters, contamination_warnings
from distillmeter.energy.idle_baseline import default_max_age_s, write_idle_baseline
from distillmeter.energy.resume import previous_run
from distillmeter.energy.runfiles import MeterFiles, write_config, write_environment
from distillmeter.energy.sampler import Sampler
from distillmeter.energy.sensors.base import Sensor
from distillmeter.energy.sensors.discovery import discover_sensors, parse_device_selection
from distillmeter.energy.stage import Stage
from distillmeter.energy.sync import sync_devices
from distillmeter.errors import writing
from distillmeter.privacy.redact import redact_text, redact_values
from distillmeter.protocol import SCHEMA, SOURCES, UpstreamRef, event_line
from distillmeter.storage.runlock import RunLock


class EnergyMeter:
    """Meters a run into ``run_dir`` (see docs/energy.md; the ledger format: docs/DESIGN.md).

    ``devices``: "auto", or selectors such as ``["gpu", "cpu:0"]``; ``sensors``: use these
    instead of discovering; ``idle_seconds``: measure idle power this long before work (0
    skips); ``idle_cache``: the idle-baseline cache file (None: the default location,
    False: no cache; see energy/idle_baseline.py), reused while younger than ``idle_max_age_s``
    (default 24 h) unless ``idle_refresh``; ``sample_hz``: trace rate (0: no trace);
    ``resume``: continue the run already in ``run_dir`` (same run_id, ``t`` continues from
    its last event, a ``resumed`` warning); ``handle_signals``: SIGTERM and SIGHUP end the
    run as Ctrl-C does (``signals.Terminated``; a program's own handlers are kept)."""

    def __init__(self, run_dir: str | os.PathLike[str], *, devices: str | Iterable[str] = "auto",
                 sample_hz: float = 20.0, idle_seconds: float = 3.0, run_id: str | None = None,
                 method: str | None = None, seed: int | None = None,
                 config_id: str | None = None, task: str | None = None,
                 labels: dict[str, Any] | None = None,
                 upstream: Sequence[dict[str, Any] | UpstreamRef] | None = None,
                 sensors: Sequence[Sensor] | None = None, config: dict[str, Any] | None = None,
                 write_environment: bool = True, resume: bool = False,
                 idle_cache: str | os.PathLike[str] | bool | None = None,
                 idle_max_age_s: float | None = None, idle_refresh: bool = False,
                 handle_signals: bool = True) -> None:
        if not sample_hz >= 0 or not idle_seconds >= 0:
            raise ValueError("sample_hz and idle_seconds must be >= 0")
        self.run_dir = Path(run_dir)
        self.device_selection = parse_device_selection(devices)
        self.sample_hz, self.idle_seconds = float(sample_hz), float(idle_seconds)
        self.run_id = run_id or str(uuid.uuid4())
        self._run_id_given = run_id is not None
        self.labels = {"method": _text(method), "seed": None if seed is None else int(seed),
                       "config_id": config_id, "task": _text(task),
                       "labels": redact_values(dict(labels or {}))}
        self.upstream = [UpstreamRef.model_validate(u if isinstance(u, dict) else u.model_dump())
                         .model_dump() for u in (upstream or [])]
        self._given_sensors = list(sensors) if sensors is not None else None
        self.config, self.write_environment, self.resume = config, write_environment, resume
        self.idle_cache, self.idle_refresh = idle_cache, idle_refresh
        self.idle_cached: dict[str, Any] | None = None  # set when the baseline came cached
        self.idle_max_age_s = default_max_age_s() if idle_max_age_s is None else idle_max_age_s
        self.sensors: list[Sensor] = []
        self.devices: list[str] = []
        self.sources: dict[str, str] = {}
        self.status = "ok"
        self._lock = threading.RLock()       # every sensor call
        self._write_lock = threading.Lock()  # ledger writes
        self._warn_lock = threading.Lock()   # the warning counter (sampler and caller)
        self._stage: Stage | None = None
        self._sync_gpus: list[int] = []
        self._cuda_order: list[int] | None = None
        self._last_energy: dict[str, float] = {}
        self._latest_power: dict[str, float] = {}
        self._idle_collect: dict[str, list[float]] | None = None
        self._warned: Counter[tuple[str, str | None, str | None]] = Counter()
        self._pending: list[tuple[str, str | None, str | None]] = []
        self._foreign: dict[str, set[int]] = {}
        self._sampler: Sampler | None = None
        self._files = MeterFiles(self.run_dir)
        self._runlock: RunLock | None = None
        self.handle_signals = handle_signals
        self._signals_held = False
        self._t0 = time.monotonic()
        self._t_offset = 0.0
        self._state = "new"

    # ------------------------------------------------------------------ lifecycle
    def now(self) -> float:
        """Seconds on the run's clock (the ledger's and the trace's ``t``)."""
        return time.monotonic() - self._t0 + self._t_offset

    def __enter__(self) -> EnergyMeter:
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        self.close("failed" if exc is not None else None)
        return False

    def start(self) -> None:
        """Lock the run directory, find sensors, write run_start, start the trace and
        measure the idle baseline."""
        if self._state != "new":
            raise RuntimeError("this meter was already started; make a new one")
        self._signals_held = self.handle_signals and signals.install()
        try:
            with writing(self.run_dir):
                self.run_dir.mkdir(parents=True, exist_ok=True)
            self._runlock = RunLock(self.run_dir)
            taken = self._runlock.acquire(self.run_id)
            if taken:
                self._pending.append((taken, None, None))
            self._start_locked()
        except BaseException:
            if self._files.ledger is not None:
                self.close("failed")
            else:
                self._release()
            raise

    def _start_locked(self) -> None:
        prior = previous_run(self.run_dir, resume=self.resume,
                             run_id=self.run_id if self._run_id_given else None)
        previous = prior.ledger if prior is not None else None
        if prior is not None:
            self._pending.extend((msg, None, None) for msg in prior.notes)
            self.run_id = prior.run_id
            self._t_offset = prior.t_offset
        if self._given_sensors is not None:
            sensors, notes = self._given_sensors, []
        else:
            sensors, notes = discover_sensors(self.device_selection or "auto")
        self.sensors = list(sensors)
        for s in self.sensors:
            for d in s.devices:
                if d in self.sources:
                    raise ValueError(f"device {d} is read by two sensors")
                if s.sources[d] not in SOURCES:
                    raise ValueError(f"{d}: unknown source {s.sources[d]!r}")
                self.sources[d] = s.sources[d]
        self.devices = list(self.sources)
        self._sync_gpus = [int(d[4:]) for d in self.devices if d.startswith("gpu:")]
        self._cuda_order = next((s.cuda_order for s in self.sensors
                                 if getattr(s, "cuda_order", None) is not None), None)
        self._t0 = time.monotonic()
        for s in self.sensors:
            s.start(self.now)
            if prior is not None:
                s.resume_from(prior.last_readings)
        self._files.open()
        if self.config is not None:
            write_config(self.run_dir, self.config)
        if self.write_environment:
            write_environment(self.run_dir, self.sensors, [n for n, _ in notes])
        for event in prior.closing_events() if prior is not None else []:
            self._write(event)
        t, readings = self._read()
        if previous is None:
            self._write({"event": "run_start", "t": t, "run_id": self.run_id,
                         "wall_time": datetime.now(timezone.utc).isoformat(),
                         "devices": self.devices, "schema": SCHEMA, "readings": readings,
                         "sources": self.sources, "upstream": self.upstream, **self.labels})
        else:
            self._write({"event": "warning", "t": t, "message": (
                "resumed: this session continues the run; t continues from the last event, "
                "and counters may have jumped while no meter was running"),
                "readings": readings, "wall_time": datetime.now(timezone.utc).isoformat()})
        self._state = "running"
        if not self.devices:
            self.warn("no device can be metered here: the run records time only")
        for msg, dev in notes:
            self.warn(msg, device=dev)
        for msg, dev, stage in self._pending:
            self.warn(msg, device=dev, stage=stage)
        self._flush_sensor_warnings()
        self._check_contamination()
        if self.sample_hz > 0 and self.sensors:
            self._sampler = Sampler(self.sensors, self._files.trace, hz=self.sample_hz,
                                    now=self.now, lock=self._lock, on_sample=self._on_sample,
                                    on_death=self._on_sampler_death)
            self._sampler.start()
        if self.idle_seconds > 0 and previous is None and self.devices:
            self._idle_baseline()

    @signals.deferred()  # a signal arriving now waits until the ledger is closed
    def close(self, status: str | None = None) -> None:
        """End the run: close an open stage as failed, stop the trace, write run_end."""
        if self._state != "running":
            self._release()
            return
        if status:
            self.status = status
        try:
            if self._files.ledger_error is not None:  # nothing more can be appended
                return
            if self._stage is not None:
                st = self._stage
                if st.status == "ok":
                    st.fail("the run ended while this stage was still running")
                self.status = "failed"
                self.close_stage(st)
            if self._sampler is not None:
                self._sampler.stop()
            t, readings = self._read()
            for (msg, dev, stage), n in self._warned.items():
                if n > 1:
                    self._write_warning(f"repeated {n} times in all: {msg}", dev, stage)
            self._write({"event": "run_end", "t": t, "readings": readings,
                         "status": self.status})
        finally:
            self._state = "closed"
            self._release()

    def _release(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
        self._files.close()
        for s in self.sensors:
            s.close()
        if self._runlock is not None:
            self._runlock.release()
        if self._signals_held:
            self._signals_held = False
            signals.release()

    # ------------------------------------------------------------------ readings
    def _read(self) -> tuple[float, dict[str, float | None]]:
        """A boundary reading of every device, after a device synchronize. ``t`` is the
        middle of the reading (NVML's counter read takes ~4 ms)."""
        problem = sync_devices(self._sync_gpus, self._cuda_order)
        with self._lock:
            t_a = self.now()
            readings: dict[str, float | None] = {}
            for s in self.sensors:
                readings.update(s.read_energy())
            t = (t_a + self.now()) / 2
            backwards = backwards_counters(self._last_energy, t, readings)
        stage = self._stage.name if self._stage else None
        if problem:
            self.warn(problem, stage=stage)
        for msg, dev in backwards:
            self.warn(msg, device=dev, stage=stage)
        self._flush_sensor_warnings()
        return t, readings

    def _on_sample(self, t: float, rows: dict[str, tuple[float | None, float | None]]) -> None:
        backwards = backwards_counters(self._last_energy, t,
                                       {d: e for d, (e, _) in rows.items()})
        collect = self._idle_collect
        powers = {d: p for d, (_, p) in rows.items() if p is not None}
        # Replaced whole, so latest_power_w() can read it from any thread without a lock.
        self._latest_power = {**self._latest_power, **powers}
        if collect is not None:
            for d, p in powers.items():
                collect.setdefault(d, []).append(p)
        for msg, dev in backwards:  # named with the stage it hit, which it degrades
            self.warn(msg, device=dev, stage=self._stage.name if self._stage else None)
        self._flush_sensor_warnings()

    def _on_sampler_death(self, t: float, exc: BaseException) -> None:
        why = self._files.trace_error(exc) or f"{type(exc).__name__}: {exc}"
        self.warn(f"the trace sampler died at t={t:.3f} ({why}); the run continues with "
                  "boundary readings only", stage=self._stage.name if self._stage else None)

    def _flush_sensor_warnings(self) -> None:
        with self._lock:
            items = [w for s in self.sensors for w in s.pop_warnings()]
        for msg, dev in items:
            self.warn(msg, device=dev, stage=self._stage.name if self._stage else None)

    def _idle_baseline(self) -> None:
        write_idle_baseline(self)

    def _collect_idle(self, start: bool) -> dict[str, list[float]] | None:
        """Start collecting sampled power (for the idle baseline), or stop and return it."""
        if start:
            self._idle_collect = {}
            return None
        collected, self._idle_collect = self._idle_collect, None
        return collected

    def _check_contamination(self, stage: str | None = None) -> None:
        with self._lock:
            found = {d: p for s in self.sensors for d, p in s.foreign_processes().items()}
        for msg, dev in contamination_warnings(found, self._foreign):
            self.warn(msg, device=dev, stage=stage)

    # ------------------------------------------------------------------ ledger
    def _write(self, event: dict[str, Any]) -> None:
        """Append one ledger line (MeterFiles.append), then flush the trace's rows."""
        with signals.deferred(), self._write_lock:
            self._files.append(event_line(event) + "\n")
        if event["event"] != "warning":
            err = self._files.flush_trace()
            if err is not None:  # the ledger is the record; the trace only refines it
                if self._sampler is not None:
                    self._sampler.stop()
                self.warn(f"the trace stopped: {err}; the run continues with boundary "
                          "readings only", stage=self._stage.name if self._stage else None)

    def _write_warning(self, message: str, device: str | None, stage: str | None) -> None:
        ev: dict[str, Any] = {"event": "warning", "t": self.now(), "message": message}
        if device:
            ev["device"] = device
        if stage:
            ev["stage"] = stage
        self._write(ev)

    def warn(self, message: str, device: str | None = None, stage: str | None = None) -> None:
        """Record a warning event. A repeated identical warning is written once (and
        counted in a summary at run_end)."""
        key = (redact_text(message), device, stage)
        if self._state == "new":
            self._pending.append(key)
            return
        if self._state == "closed":
            raise RuntimeError("the meter is closed")
        with self._warn_lock:
            self._warned[key] += 1
            first = self._warned[key] == 1
        if first:
            self._write_warning(*key)

    def record_quality(self, metric: str, value: float, n: int,
                       details: dict[str, Any] | None = None) -> None:
        """A ``quality`` event; the last one in the ledger is the run's quality."""
        self._require_running()
        self._write({"event": "quality", "t": self.now(), "metric": metric,
                     "value": float(value), "n": int(n),
                     "details": redact_values(dict(details or {}))})

    def add_labels(self, *, method: str | None = None, seed: int | None = None,
                   config_id: str | None = None, task: str | None = None,
                   labels: dict[str, Any] | None = None) -> None:
        """Labels learnt after the run started (a ``run_labels`` event; readers apply it to
        run_start): given fields replace the run's, ``labels`` are merged in."""
        self._require_running()
        ev = {"method": _text(method), "seed": None if seed is None else int(seed),
              "config_id": config_id, "task": _text(task)}
        ev = {k: v for k, v in ev.items() if v is not None}
        self.labels.update(ev)
        extra = redact_values(dict(labels or {}))
        self.labels["labels"] = {**self.labels["labels"], **extra}
        self._write({"event": "run_labels", "t": self.now(), **ev, "labels": extra})

    def latest_power_w(self) -> float | None:
        """Sum over devices of the last sampled power, or None before any sample."""
        values = list(self._latest_power.values())
        return sum(values) if values else None

    def stage(self, name: str, *, tokens: int = 0, samples: int = 0) -> Stage:
        """A stage window: ``with meter.stage("eval.student") as st`` or ``@meter.stage(..)``."""
        return Stage(self, name, tokens, samples)

    @property
    def current_stage(self) -> Stage | None:
        """The running stage (e.g. to call ``add`` from a decorated function)."""
        return self._stage

    def begin_window(self, name: str, *, tokens: int = 0, samples: int = 0) -> Stage:
        """Start a stage (Zeus-style); end it with :meth:`end_window`."""
        st = Stage(self, name, tokens, samples)
        self.open_stage(st)
        return st

    def end_window(self, name: str, *, tokens: int = 0, samples: int = 0,
                   status: str = "ok", error: str | None = None) -> Stage:
        """End the running stage ``name``; counts given here are added to the stage's."""
        st = self._stage
        if st is None or st.name != name:
            running = f"the running stage is {st.name!r}" if st else "no stage is running"
            raise ValueError(f"end_window({name!r}): {running}")
        st.add(tokens, samples)
        if status != "ok" or error:
            st.fail(error or status)
        self.close_stage(st)
        return st

    def _require_running(self) -> None:
        if self._state != "running":
            raise RuntimeError("the meter is not running: use `with EnergyMeter(...) as "
                               "meter:` or call meter.start() first")

    @signals.deferred()  # the stage and its stage_start line begin together
    def open_stage(self, st: Stage) -> None:
        """Start ``st`` (a Stage opens itself through this): counters read, stage_start."""
        self._require_running()
        if self._stage is not None:
            raise ValueError(f"cannot start stage {st.name!r} while stage {self._stage.name!r} "
                             f"is running: stages do not nest; end {self._stage.name!r} first")
        t, readings = self._read()
        st.t_start, st.start_readings = t, readings
        self._stage = st
        self._write({"event": "stage_start", "t": t, "stage": st.name, "readings": readings})

    @signals.deferred()  # the stage_end line and the stage's end go together
    def close_stage(self, st: Stage) -> None:
        """End the running stage ``st``: counters read, stage_end written, checks run."""
        if self._stage is not st:
            raise ValueError(f"stage {st.name!r} is not the running stage")
        t, readings = self._read()
        st.t_end, st.end_readings = t, readings
        ev: dict[str, Any] = {"event": "stage_end", "t": t, "stage": st.name,
                              "readings": readings, "tokens": st.tokens,
                              "samples": st.samples, "status": st.status}
        if st.error:
            ev["error"] = redact_text(st.error)
        if st.info:
            ev["info"] = st.info
        try:
            self._write(ev)
        finally:  # a stage_end that could not be written: no second one is attempted
            self._stage = None
        died = self._sampler.died if self._sampler is not None else None
        if died is not None:
            self.warn(f"stage {st.name} degraded: the trace sampler died at t={died[0]:.3f}, "
                      "so this stage has no trace samples (boundary readings only)",
                      stage=st.name)
        self._check_contamination(stage=st.name)


def _text(label: str | None) -> str | None:  # a free-text label as the ledger keeps it
    return None if label is None else redact_text(str(label))
