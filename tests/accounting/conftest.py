"""Fixtures for the accounting tests: the recorded H100 run (tests/data/h100-run-a) copied
into temp dirs, edited where a test needs a broken or split run, and small synthetic runs
written through the protocol's own writers."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from distillmeter.protocol import TRACE_HEADER, event_line, trace_row

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "h100-run-a"


@pytest.fixture
def fixture_dir() -> Path:
    """The recorded run, read-only: tests that write copy it first."""
    return FIXTURE


@pytest.fixture
def truth() -> dict:
    return json.loads((FIXTURE / "truth.json").read_text())


@pytest.fixture
def ledger_events() -> list[dict]:
    """The recorded ledger as a list of dicts, to edit."""
    return [json.loads(line) for line in (FIXTURE / "ledger.jsonl").read_text().splitlines()]


@pytest.fixture
def run_copy(tmp_path: Path) -> Callable[..., Path]:
    """``run_copy(name="run", events=None, ledger_text=None, trace_text=None)`` copies the
    recorded run into tmp_path/name, replacing the ledger (as events or raw text) and the
    trace (raw text) when given."""

    def make(
        name: str = "run",
        events: list[dict] | None = None,
        ledger_text: str | None = None,
        trace_text: str | None = None,
    ) -> Path:
        d = tmp_path / name
        shutil.copytree(FIXTURE, d)
        (d / "truth.json").unlink()
        (d / "avg_power.csv").unlink()
        if events is not None:
            ledger_text = "".join(event_line(e) + "\n" for e in events)
        if ledger_text is not None:
            (d / "ledger.jsonl").write_text(ledger_text)
        if trace_text is not None:
            (d / "trace.csv").write_text(trace_text)
        return d

    return make


@pytest.fixture
def synthetic_run(tmp_path: Path) -> Callable[..., Path]:
    """``synthetic_run(name, events, rows)`` writes a run dir from ledger events and
    (t, device, energy_j, power_w) trace rows using the protocol's writers."""

    def make(name: str, events: list[dict], rows: list[tuple]) -> Path:
        d = tmp_path / name
        d.mkdir()
        (d / "ledger.jsonl").write_text("".join(event_line(e) + "\n" for e in events))
        (d / "trace.csv").write_text(TRACE_HEADER + "".join(trace_row(*r) for r in rows))
        return d

    return make


@pytest.fixture(autouse=True)
def _no_country_from_the_environment(monkeypatch):
    """Tests expect the default (world) grid unless they set a country themselves."""
    monkeypatch.delenv("DISTILLMETER_COUNTRY", raising=False)
