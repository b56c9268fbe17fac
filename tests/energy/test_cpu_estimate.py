"""The labelled CPU/DRAM estimate: TDP lookup, the table's provenance, and the model's
behaviour on this machine with real processes."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import pytest

from distillmeter.energy.sensors.cpu_estimate import (
    CpuEstimateSensor,
    _ProcessTreeCpu,
    load_table,
    lookup_tdp,
)
from distillmeter.energy.sensors.hostinfo import CpuInfo, cpu_info, parse_cpuinfo

TABLE = load_table()


def info(model: str, vendor: str | None = None, family: int | None = None,
         model_id: int | None = None, logical: int = 8) -> CpuInfo:
    return CpuInfo(model=model, vendor=vendor, family=family, model_id=model_id, sockets=1,
                   cores=None, logical=logical)


@pytest.mark.parametrize(
    ("model", "matched", "w_per_thread"),
    [
        ("Intel(R) Xeon(R) Platinum 8480+", "Xeon Platinum 8480+", 350 / 112),
        ("Intel(R) Xeon(R) Platinum 8480C", "Xeon Platinum 8480C", 350 / 112),
        ("AMD EPYC 7763 64-Core Processor", "EPYC 7763", 280 / 128),
        ("Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz", "Xeon Gold 6248R", 205 / 48),
        ("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", "Xeon Gold 6248", 150 / 40),
        ("13th Gen Intel(R) Core(TM) i7-13700K", "Core i7-13700K", 125 / 24),
        ("Apple M1 Pro", "Apple M1 Pro", 3.0),
        ("Apple M1", "Apple M1", 2.5),
    ],
)
def test_table_lookup_by_model_name(model, matched, w_per_thread):
    m = lookup_tdp(info(model), TABLE)
    assert (m.how, m.matched) == ("table", matched)
    assert m.w_per_thread == pytest.approx(w_per_thread)


def test_a_near_miss_is_not_a_match():
    # The "F" part is another SKU: it must not borrow the 13900K's row.
    m = lookup_tdp(info("13th Gen Intel(R) Core(TM) i9-13900KF"), TABLE)
    assert m.how == "default"


def test_hidden_sku_is_recognised_by_cpuid_generation():
    m = lookup_tdp(info("AMD EPYC", "AuthenticAMD", 25, 1), TABLE)
    assert (m.how, m.matched) == ("family", "EPYC 7763") and "Milan" in m.source
    m = lookup_tdp(info("Intel(R) Xeon(R) Processor", "GenuineIntel", 6, 143), TABLE)
    assert (m.how, m.matched) == ("family", "Xeon Platinum 8480+")


@pytest.mark.parametrize(("model", "family"), [
    ("AMD EPYC", "EPYC"),                         # a cloud VM's name, cpuid unknown to us
    ("AMD EPYC Processor", "EPYC"),
    ("Intel(R) Xeon(R) CPU @ 2.20GHz", "Xeon"),
    ("Intel(R) Xeon(R) Platinum", "Xeon Platinum"),
])
def test_a_bare_family_name_gets_that_familys_median_with_its_source(model, family):
    # cpuid family 26 is in no row of the table: the name alone decides
    m = lookup_tdp(info(model, "AuthenticAMD", 26, 2), TABLE)
    members = [c for c in TABLE["cpus"] if c["name"].startswith(family + " ")]
    assert members
    assert (m.how, m.matched) == ("family", family)
    assert m.w_per_thread == pytest.approx(
        statistics.median(c["tdp_w"] / c["threads"] for c in members))
    assert f"{len(members)} {family} entries" in m.source
    assert TABLE["sources"][members[0]["source"]] in m.source  # vendor pages, with year


def test_a_name_with_an_unknown_model_number_is_not_a_family_match():
    # "EPYC 9B14" is a part the table lacks: its number says so, so the default applies
    assert lookup_tdp(info("AMD EPYC 9B14 96-Core Processor"), TABLE).how == "default"
    assert lookup_tdp(info("AMD Opteron"), TABLE).how == "default"


def test_unknown_cpu_uses_the_documented_default():
    m = lookup_tdp(info("Mystery RISC-V 9000", None, None, None), TABLE)
    median = statistics.median(c["tdp_w"] / c["threads"] for c in TABLE["cpus"])
    assert m.how == "default" and m.w_per_thread == pytest.approx(median)
    assert "median" in m.source


def test_table_names_a_source_and_year_for_every_figure():
    assert TABLE["sources"]
    for c in TABLE["cpus"]:
        assert c["source"] in TABLE["sources"], c
        assert 2010 < c["year"] <= 2025 and c["tdp_w"] > 0 and c["threads"] >= c["cores"] > 0
    for fam in TABLE["families"]:
        assert fam["like"] in {c["name"] for c in TABLE["cpus"]}
    assert "Teads" in TABLE["idle_fraction"]["source"]
    assert "Green Algorithms" in TABLE["dram_w_per_gib"]["source"]


def test_this_machines_cpu_is_covered_by_the_table_or_its_families():
    assert lookup_tdp(cpu_info(), TABLE).how in ("table", "family")


def test_parse_cpuinfo_two_sockets():
    block = ("processor\t: {p}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
             "model name\t: Intel(R) Xeon(R) Platinum 8480+\nphysical id\t: {s}\n"
             "core id\t\t: {c}\n\n")
    text = "".join(block.format(p=p, s=p // 4, c=p % 4) for p in range(8))
    ci = parse_cpuinfo(text)
    assert (ci.sockets, ci.cores, ci.logical, ci.family, ci.model_id) == (2, 8, 8, 6, 143)


def test_estimate_is_labelled_and_split_over_sockets():
    s = CpuEstimateSensor(info=info("AMD EPYC 7763", logical=4), sockets=2)
    assert s.devices == ["cpu:0", "cpu:1", "dram:0", "dram:1"]
    assert set(s.sources.values()) == {"estimate"}
    s.start(time.monotonic)
    time.sleep(0.05)
    e = s.read_energy()
    assert e["cpu:0"] == pytest.approx(e["cpu:1"]) and e["cpu:0"] > 0
    assert s.describe()["machine_tdp_w"] == pytest.approx(280 / 128 * 4)


def test_idle_process_draws_the_idle_floor():
    s = CpuEstimateSensor(devices=["cpu:0"])
    s.start(time.monotonic)
    t0, e0 = time.monotonic(), s.read_energy()["cpu:0"]
    time.sleep(0.3)
    t1, e1 = time.monotonic(), s.read_energy()["cpu:0"]
    power = (e1 - e0) / (t1 - t0)
    assert s.idle_w <= power < s.idle_w + 0.2 * (s.tdp_w - s.idle_w)


_BURN = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\n"


def test_cpu_time_of_child_processes_counts():
    tree = _ProcessTreeCpu(refresh_s=0.0)
    before = tree.seconds()
    child = subprocess.Popen([sys.executable, "-c", _BURN + "time.sleep(5)"])
    try:
        deadline = time.monotonic() + 20
        while tree.seconds() - before < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)  # the live child's CPU time is visible while it runs
        assert tree.seconds() - before >= 0.3
    finally:
        child.kill()
        child.wait()
    assert tree.seconds() - before >= 0.3  # and stays counted once reaped


def test_busy_work_costs_more_than_idle():
    s = CpuEstimateSensor(devices=["cpu:0"])
    s.start(time.monotonic)
    e0 = s.read_energy()["cpu:0"]
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", _BURN], check=True)
    seconds = time.monotonic() - t0
    spent = s.read_energy()["cpu:0"] - e0
    # 0.3 CPU seconds of the child at (TDP - idle) / logical each, on top of the floor.
    extra = 0.3 * (s.tdp_w - s.idle_w) / s.logical
    assert spent >= s.idle_w * seconds + 0.9 * extra
