"""The idle-baseline cache (energy/idle_baseline.py): a host's idle power measured once, reused
while fresh for the same host and devices, measured again when stale, when the devices
change or on request; the ledger says when a baseline came from the cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distillmeter.accounting import account
from distillmeter.energy import EnergyMeter
from distillmeter.energy.idle_baseline import CACHE_SCHEMA, IdleCache, default_cache_path
from distillmeter.protocol import read_ledger

IDLE_S = 0.3  # long enough for the sampler (20 Hz) to see the idle stretch


def _run(run_dir: Path, cache: Path | bool | None, **kw) -> list:
    with EnergyMeter(run_dir, idle_seconds=IDLE_S, idle_cache=cache, **kw) as meter:
        with meter.stage("student.train"):
            sum(i * i for i in range(20000))
    return read_ledger(run_dir / "ledger.jsonl").of("idle_baseline")


def test_measured_once_then_reused_from_the_cache(tmp_path):
    cache = tmp_path / "idle.json"
    first = _run(tmp_path / "a", cache)
    assert first and all(ev.cached is None for ev in first)
    assert all(ev.seconds >= IDLE_S for ev in first)
    data = json.loads(cache.read_text())
    assert data["schema"] == CACHE_SCHEMA and len(data["entries"]) == 1
    entry = next(iter(data["entries"].values()))
    assert set(entry["power_w"]) == {ev.device for ev in first}

    second = _run(tmp_path / "b", cache)
    assert [ev.device for ev in second] == [ev.device for ev in first]
    for got, measured in zip(second, first, strict=True):
        assert got.power_w == measured.power_w and got.seconds == measured.seconds
        assert got.cached["path"] == str(cache) and got.cached["age_s"] >= 0
        assert got.cached["measured_at"] == entry["measured_at"]
    # the accounting says where the baseline came from
    report = account(tmp_path / "b")
    assert any("reused from the meter's cache" in w for w in report.warnings)
    assert not any("cache" in w for w in account(tmp_path / "a").warnings)


def test_stale_changed_devices_and_refresh_measure_again(tmp_path):
    cache = tmp_path / "idle.json"
    _run(tmp_path / "a", cache)
    # on request
    assert all(ev.cached is None for ev in _run(tmp_path / "b", cache, idle_refresh=True))
    # stale: older than the allowed age
    assert all(ev.cached is None for ev in _run(tmp_path / "c", cache, idle_max_age_s=0))
    # another device set is another entry
    only_cpu = _run(tmp_path / "d", cache, devices=["cpu"])
    assert [ev.device for ev in only_cpu] == ["cpu:0"] and only_cpu[0].cached is None
    assert len(json.loads(cache.read_text())["entries"]) == 2
    assert _run(tmp_path / "e", cache, devices=["cpu"])[0].cached is not None


def test_a_cache_from_another_host_or_gpu_is_not_used(tmp_path):
    cache = tmp_path / "idle.json"
    _run(tmp_path / "a", cache)
    data = json.loads(cache.read_text())
    for entry in data["entries"].values():
        entry["identity"]["host"] = "another-host"  # same key, other identity: refused
    cache.write_text(json.dumps(data))
    assert all(ev.cached is None for ev in _run(tmp_path / "b", cache))


@pytest.mark.parametrize("content", ["", "{not json", '{"schema": "other"}',
                                     json.dumps({"schema": CACHE_SCHEMA, "entries": []})])
def test_a_broken_cache_is_measured_over(tmp_path, content):
    cache = tmp_path / "idle.json"
    cache.write_text(content)
    assert all(ev.cached is None for ev in _run(tmp_path / "a", cache))
    assert json.loads(cache.read_text())["schema"] == CACHE_SCHEMA  # rewritten whole


def test_an_unwritable_cache_is_a_warning_not_a_failure(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    _run(tmp_path / "a", blocker / "idle.json")
    ledger = read_ledger(tmp_path / "a" / "ledger.jsonl")
    assert ledger.run_end.status == "ok"
    assert any("could not write the idle-baseline cache" in w.message
               for w in ledger.of("warning"))


def test_off_keeps_no_cache(tmp_path):
    _run(tmp_path / "a", False)
    assert not list(tmp_path.glob("*.json"))


def test_where_the_cache_lives(tmp_path, monkeypatch):
    monkeypatch.delenv("DISTILLMETER_IDLE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path() == tmp_path / "xdg" / "distillmeter" / "idle.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_path() == tmp_path / "home" / ".cache" / "distillmeter" / "idle.json"
    monkeypatch.setenv("DISTILLMETER_IDLE_CACHE", str(tmp_path / "mine.json"))
    assert default_cache_path() == tmp_path / "mine.json"
    monkeypatch.setenv("DISTILLMETER_IDLE_CACHE", "off")
    assert default_cache_path() is None
    # the default location is what a meter with idle_cache=None uses
    monkeypatch.setenv("DISTILLMETER_IDLE_CACHE", str(tmp_path / "mine.json"))
    _run(tmp_path / "a", None)
    assert (tmp_path / "mine.json").exists()


def test_lookup_needs_every_device_and_a_sane_age(tmp_path):
    cache = IdleCache(tmp_path / "idle.json", max_age_s=3600)
    identity = {"host": "h", "devices": {"cpu:0": "estimate", "dram:0": "estimate"}}
    assert cache.store(identity, {"cpu:0": 1.0}, 3.0) is None
    assert cache.lookup(identity) is None  # dram:0 missing
    assert cache.store(identity, {"cpu:0": 1.0, "dram:0": 2.0}, 3.0) is None
    hit = cache.lookup(identity)
    assert hit is not None and hit.power_w == {"cpu:0": 1.0, "dram:0": 2.0}
    entry = json.loads(cache.path.read_text())["entries"]
    measured = next(iter(entry.values()))["measured_unix"]
    assert cache.lookup(identity, now=measured - 60) is None  # measured "in the future"
    assert cache.lookup(identity, now=measured + 7200) is None  # older than an hour
