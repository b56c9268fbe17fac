"""RaplSensor on a real powercap-shaped directory tree whose counters change."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from distillmeter.energy.sensors.discovery import discover_sensors
from distillmeter.energy.sensors.rapl import RaplSensor

MAX_UJ = 262143328850


def zone(root: Path, name: str, label: str, energy_uj: int, max_uj: int = MAX_UJ) -> Path:
    z = root / name
    z.mkdir(parents=True)
    (z / "name").write_text(label + "\n")
    (z / "energy_uj").write_text(f"{energy_uj}\n")
    (z / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return z


def set_counter(z: Path, energy_uj: int) -> None:
    (z / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """Two packages with DRAM on socket 0, plus zones the protocol does not name."""
    root = tmp_path / "powercap"
    zones = {
        "cpu:0": zone(root, "intel-rapl:0", "package-0", 1_000_000),
        "dram:0": zone(root, "intel-rapl:0:0", "dram", 500_000),
        "cpu:1": zone(root, "intel-rapl:1", "package-1", 7_000_000),
    }
    zone(root, "intel-rapl:0:1", "core", 10)
    zone(root, "intel-rapl:2", "psys", 10)
    return {"root": root, **zones}


def test_zones_become_protocol_devices(tree):
    s = RaplSensor(root=tree["root"])
    assert s.devices == ["cpu:0", "cpu:1", "dram:0"]
    assert set(s.sources.values()) == {"rapl"}
    assert s.read_energy() == {"cpu:0": 1.0, "cpu:1": 7.0, "dram:0": 0.5}


def test_cumulative_energy_follows_the_counter_and_unwraps(tree):
    z = tree["cpu:0"]
    (z / "max_energy_range_uj").write_text("2000000\n")
    s = RaplSensor(root=tree["root"])
    assert s.read_energy()["cpu:0"] == pytest.approx(1.0)
    set_counter(z, 1_900_000)
    assert s.read_energy()["cpu:0"] == pytest.approx(1.9)
    set_counter(z, 300_000)  # wrapped at 2 J: 0.1 J to the top, then 0.3 J
    assert s.read_energy()["cpu:0"] == pytest.approx(2.3)
    set_counter(z, 400_000)
    assert s.read_energy()["cpu:0"] == pytest.approx(2.4)
    assert s.describe()["zones"]["cpu:0"]["wraps"] == 1


def test_sample_gives_energy_and_mean_power_over_the_interval(tree):
    s = RaplSensor(root=tree["root"])
    e, p = s.sample(True)["cpu:0"]
    assert e == pytest.approx(1.0) and p is None  # no interval yet
    set_counter(tree["cpu:0"], 3_000_000)
    e, p = s.sample(True)["cpu:0"]
    assert e == pytest.approx(3.0) and p is not None and p > 0


def test_a_counter_that_disappears_mid_run_reads_none_with_a_warning(tree):
    s = RaplSensor(root=tree["root"])
    (tree["dram:0"] / "energy_uj").unlink()
    readings = s.read_energy()
    assert readings["dram:0"] is None and readings["cpu:0"] == pytest.approx(1.0)
    assert [dev for _, dev in s.pop_warnings()] == ["dram:0"]


def test_no_rapl_falls_back_to_a_named_estimate(tmp_path):
    sensors, notes = discover_sensors(["cpu", "dram"], powercap_root=tmp_path / "absent")
    sources = {d: s.sources[d] for s in sensors for d in s.devices}
    assert sources and set(sources.values()) == {"estimate"}
    assert {dev for _, dev in notes} == set(sources)
    assert all("no RAPL" in msg and "estimate" in msg for msg, _ in notes)


def test_rapl_without_dram_zone_estimates_only_dram(tree):
    shutil.rmtree(tree["dram:0"])
    sensors, notes = discover_sensors(["cpu:0", "dram:0"], powercap_root=tree["root"])
    sources = {d: s.sources[d] for s in sensors for d in s.devices}
    assert sources == {"cpu:0": "rapl", "dram:0": "estimate"}
    assert [dev for _, dev in notes] == ["dram:0"]


_DISCOVER = """
import json, sys
from distillmeter.energy.sensors.discovery import discover_sensors
sensors, notes = discover_sensors(["cpu", "dram"], powercap_root=sys.argv[1])
print(json.dumps({"sources": {d: s.sources[d] for s in sensors for d in s.devices},
                  "notes": [m for m, _ in notes]}))
"""


def _run_unprivileged(root: Path) -> dict:
    """Run discovery in a process that, like a normal user, cannot read mode-000 files.
    As root that means dropping the capabilities that bypass file permissions."""
    cmd = [sys.executable, "-c", _DISCOVER, str(root)]
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot make a file unreadable")
        drop = "-dac_override,-dac_read_search"
        cmd = ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def test_unreadable_rapl_falls_back_loudly(tree):
    for key in ("cpu:0", "cpu:1", "dram:0"):
        (tree[key] / "energy_uj").chmod(0)
    result = _run_unprivileged(tree["root"])
    assert set(result["sources"].values()) == {"estimate"}
    assert {"cpu:0", "cpu:1", "dram:0", "dram:1"} <= set(result["sources"])
    assert all("permission denied" in n for n in result["notes"])
    assert any("intel-rapl:0/energy_uj" in n for n in result["notes"])
