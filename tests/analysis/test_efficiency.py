"""Efficiency against hardware floors, and the floors table itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reportfactory import report, stage

from distillmeter.analysis.efficiency import (
    efficiency,
    flops_per_token,
    load_floors,
    match_floor,
    stage_efficiency,
)

FLOORS = load_floors()
DATA = Path(__file__).resolve().parents[1] / "data"


def test_floors_table_is_complete_and_sourced() -> None:
    assert len(FLOORS) >= 10
    kinds = {f["kind"] for f in FLOORS}
    assert kinds == {"gpu", "cpu"}
    for f in FLOORS:
        assert f["pj_per_flop"] > 0 and f["match"] and f["precision"]
        assert f["basis"] in {"measured", "spec-derived"}
        assert len(f["source"]) > 20 and any(y in f["source"] for y in
                                             ("2017", "2019", "2020", "2021", "2022",
                                              "2023", "2024", "2026"))


def test_h100_floor_is_the_measured_one() -> None:
    measured = json.loads((DATA / "h100-floors.json").read_text())
    h100 = match_floor("NVIDIA H100 80GB HBM3", FLOORS, "gpu")
    assert h100["basis"] == "measured"
    assert h100["pj_per_flop"] == pytest.approx(measured["matmul"]["pj_per_flop"], rel=1e-3)
    assert h100["pj_per_byte"] == pytest.approx(measured["copy"]["pj_per_byte"], rel=1e-3)


@pytest.mark.parametrize("name,expected", [
    ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 SXM4 (40GB / 80GB)"),
    ("NVIDIA A100-PCIE-40GB", "NVIDIA A100 40GB PCIe"),
    ("NVIDIA A10", "NVIDIA A10"),
    ("NVIDIA A10G", None),
    ("NVIDIA L4", "NVIDIA L4"),
    ("NVIDIA L40S", "NVIDIA L40S"),
    ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe 80GB"),
    ("NVIDIA H200", "NVIDIA H200 SXM 141GB"),
    ("Tesla T4", "NVIDIA T4"),
    ("NVIDIA GeForce RTX 3090 Ti", None),
    ("AMD EPYC", None),
])
def test_matching_does_not_confuse_similar_names(name: str, expected: str | None) -> None:
    entry = match_floor(name, FLOORS, "gpu" if "EPYC" not in name else "cpu")
    assert (entry["name"] if entry else None) == expected


def test_cpu_entries_match_cpu_names_only() -> None:
    assert match_floor("AMD EPYC 9654 96-Core Processor", FLOORS, "cpu")["basis"] == \
        "spec-derived"
    assert match_floor("AMD EPYC 9654 96-Core Processor", FLOORS, "gpu") is None


def test_flops_per_token() -> None:
    assert flops_per_token("student.train", 1e6) == 6e6
    assert flops_per_token("teacher.train", 1e6) == 6e6
    for name in ("teacher.logits", "teacher.generate", "eval.student", "eval.teacher"):
        assert flops_per_token(name, 1e6) == 2e6


def test_stage_ratio_against_the_floor() -> None:
    # a 1.1B teacher caching logits for 663552 tokens in 3133.859 J (recorded run a)
    rep = report("t", stages={"teacher.logits": (3133.859, 663552)},
                 labels={"teacher_params": 1100048384})
    row = stage_efficiency(rep.stages[0], rep, FLOORS)
    floor = 2 * 1100048384 * 1.030e-12
    assert row["floor_j_per_token"] == pytest.approx(floor)
    assert row["x_floor"] == pytest.approx(3133.859 / 663552 / floor)
    assert row["basis"] == "measured" and row["note"] is None


def test_weight_streaming_floor_for_small_batches() -> None:
    st = stage("teacher.generate", 100.0, 1000, params=1.1e9, batch_size=16)
    rep = report("t", stages={})
    rep.stages.append(st)
    row = stage_efficiency(st, rep, FLOORS)
    mem = 1.1e9 * 2 / 16 * 128.7e-12  # bf16 weights read once per batch step
    assert row["floor_j_per_token"] == pytest.approx(max(mem, 2 * 1.1e9 * 1.030e-12))


def test_unknown_params_and_hardware_are_said() -> None:
    rep = report("s", stages={"student.train": (10.0, 100)})
    row = stage_efficiency(rep.stages[0], rep, FLOORS)
    assert row["x_floor"] is None and "parameter count unknown" in row["note"]
    rep2 = report("s", stages={"student.train": (10.0, 100)}, gpu="Mystery GPU",
                  labels={"params": 1000})
    row2 = stage_efficiency(rep2.stages[0], rep2, FLOORS)
    assert "no floor known for Mystery GPU" in row2["note"]


def test_below_floor_is_flagged() -> None:
    rep = report("s", stages={"eval.student": (1e-6, 100)}, labels={"student_params": 1e9})
    row = stage_efficiency(rep.stages[0], rep, FLOORS)
    assert row["x_floor"] < 1 and "below the floor" in row["note"]


def test_pooled_over_seeds() -> None:
    a = report("a", stages={"student.train": (100.0, 10)}, labels={"params": 1e9})
    b = report("b", stages={"student.train": (300.0, 30)}, labels={"params": 1e9})
    rows = efficiency([("cfg", a), ("cfg", b)], FLOORS)
    assert len(rows) == 1 and rows[0]["runs"] == 2
    assert rows[0]["j_per_token"] == pytest.approx(10.0) and rows[0]["tokens"] == 40


def test_pooled_over_windows_of_a_stage() -> None:
    """An on-policy run has many windows of each phase: one row each, summed, and ``runs``
    counts runs, not windows."""
    from reportfactory import stage

    rows = []
    for rid in ("a", "b"):
        rep = report(rid, labels={"params": 1e9})
        windows = [stage("teacher.score", e, tok) for e, tok in ((10.0, 5), (30.0, 15))]
        rows.append(("cfg", rep.model_copy(update={"stages": windows})))
    got = efficiency(rows, FLOORS)
    assert len(got) == 1
    assert got[0]["runs"] == 2 and got[0]["windows"] == 4
    assert got[0]["tokens"] == 40 and got[0]["j_per_token"] == pytest.approx(2.0)
