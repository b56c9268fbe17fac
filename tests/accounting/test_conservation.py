"""The independent check of a run's total (counter against trace integral), the split of
the uncertainty by how it behaves across runs, and the idle baseline's error, on the
recorded H100 run (tests/data/h100-run-a) and copies of it altered on purpose."""

from __future__ import annotations

import pytest

from distillmeter.accounting import account
from distillmeter.accounting.conservation import MAX_GAP_S
from distillmeter.accounting.idle import IDLE_DRIFT_REL
from distillmeter.accounting.uncertainty import ESTIMATE_REL


def _scaled_trace(fixture_dir, factor: float) -> str:
    """The recorded trace with every power sample multiplied by ``factor`` (the counter
    column left as read): a power sensor that disagrees with the energy counter."""
    lines = (fixture_dir / "trace.csv").read_text().splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        t, dev, e, p = line.split(",")
        out.append(",".join([t, dev, e, f"{float(p) * factor:.3f}" if p else ""]))
    return "\n".join(out) + "\n"


def test_the_recorded_run_passes_the_check(fixture_dir) -> None:
    r = account(fixture_dir)
    (c,) = r.conservation
    assert c["device"] == "gpu:0" and c["checked"] and c["agrees"]
    # two independent registers of one GPU: the counter and the integral of POWER_INSTANT
    assert c["counter_j"] == pytest.approx(r.totals.energy_j)
    assert abs(c["relative"]) < 0.005  # measured: +0.13%
    assert abs(c["difference_j"]) < c["tolerance_j"]
    assert not any("conservation check" in w for w in r.warnings)


def test_a_disagreeing_trace_is_flagged(fixture_dir, run_copy) -> None:
    d = run_copy(trace_text=_scaled_trace(fixture_dir, 1.10))
    r = account(d)
    (c,) = r.conservation
    assert c["checked"] and not c["agrees"]
    assert c["relative"] == pytest.approx(0.10, abs=0.005)
    assert abs(c["difference_j"]) > c["tolerance_j"]
    warning = next(w for w in r.warnings if "conservation check" in w)
    assert "gpu:0" in warning and "+10." in warning
    # the stages still come from the counter, and still conserve: only the check sees it
    base = account(fixture_dir)
    assert [s.energy_j["total"] for s in r.stages] == \
        pytest.approx([s.energy_j["total"] for s in base.stages])
    assert r.totals.stages_j + r.totals.unattributed_j == pytest.approx(r.totals.energy_j)


def test_a_small_disagreement_within_the_uncertainty_passes(fixture_dir, run_copy) -> None:
    r = account(run_copy(trace_text=_scaled_trace(fixture_dir, 1.02)))
    assert r.conservation[0]["agrees"]  # 2% is inside +-3% integration + boundaries


def test_a_trace_with_a_gap_is_not_checked(fixture_dir, run_copy) -> None:
    lines = (fixture_dir / "trace.csv").read_text().splitlines()
    kept = [lines[0]] + [x for x in lines[1:] if not 30.0 < float(x.split(",")[0]) < 32.0]
    r = account(run_copy(trace_text="\n".join(kept) + "\n"))
    (c,) = r.conservation
    assert not c["checked"] and f"more than {MAX_GAP_S:g} s" in c["reason"]


def test_an_estimate_is_not_checked_against_itself(ledger_events, run_copy) -> None:
    ledger_events[0]["sources"] = {"gpu:0": "estimate"}
    r = account(run_copy(events=ledger_events))
    (c,) = r.conservation
    assert not c["checked"] and "estimate" in c["reason"]


def test_uncertainty_parts_of_a_counter_are_all_random(fixture_dir) -> None:
    r = account(fixture_dir)
    for s in [*r.stages]:
        p = s.uncertainty_parts
        assert p["systematic"] == 0 and p["machine"] == 0
        assert p["random"] == pytest.approx(s.uncertainty_j)
    assert r.totals.uncertainty_parts["random"] == pytest.approx(r.totals.uncertainty_j)


def test_an_estimate_splits_into_work_and_machine_parts(ledger_events, run_copy) -> None:
    """The same measured energy, declared an estimate: +-50% of it on top of the boundary
    term, of which the share on idle power x seconds is the machine's."""
    counter = account(run_copy("counter"))
    ledger_events[0]["sources"] = {"gpu:0": "estimate"}
    est = account(run_copy("estimate", events=ledger_events))
    assert est.estimated
    idle = est.idle_power_w["gpu:0"]
    for c, s in zip(counter.stages, est.stages, strict=True):
        p = s.uncertainty_parts
        e = s.energy_j["total"]
        assert e == pytest.approx(c.energy_j["total"])  # same readings, same energy
        assert p["systematic"] + p["machine"] == pytest.approx(ESTIMATE_REL * e)
        assert p["machine"] == pytest.approx(ESTIMATE_REL * min(e, idle * s.seconds))
        assert sum(p.values()) == pytest.approx(s.uncertainty_j)
        assert s.uncertainty_j > c.uncertainty_j


def test_idle_baseline_error(fixture_dir, ledger_events, run_copy) -> None:
    r = account(fixture_dir)
    idle = r.idle_power_w["gpu:0"]
    # 3 s of NVML at 120 W: quantisation 2 x 0.1 s / 3 s = 6.7%, below the 10% drift floor
    assert r.idle_uncertainty_w["gpu:0"] == pytest.approx(IDLE_DRIFT_REL * idle)
    # a 0.5 s baseline: the quantisation term (40%) is the larger
    short = [dict(e, seconds=0.5) if e["event"] == "idle_baseline" else e
             for e in ledger_events]
    r2 = account(run_copy(events=short))
    assert r2.idle_uncertainty_w["gpu:0"] == pytest.approx(2 * 0.1 / 0.5 * idle)
    # a baseline given by the user gets the floor
    r3 = account(fixture_dir, idle_w=80.0)
    assert r3.idle_uncertainty_w["gpu:0"] == pytest.approx(8.0)


def test_a_cached_idle_baseline_gets_no_spread_from_this_run(ledger_events, run_copy) -> None:
    """A baseline reused from the meter's cache was measured in another session: the
    samples that happen to lie before its event in this run are not its window."""
    def with_idle(**fields):
        return [dict(e, **fields) if e["event"] == "idle_baseline" else e
                for e in ledger_events]

    busy = 17.5  # the event's window would straddle the start of teacher.logits (~500 W)
    fresh = account(run_copy("fresh", events=with_idle(t=busy)))
    cached = account(run_copy("cached", events=with_idle(t=busy, cached={
        "measured_at": "2026-11-28T20:00:00+00:00", "age_s": 3600.0})))
    idle = cached.idle_power_w["gpu:0"]
    assert fresh.idle_uncertainty_w["gpu:0"] > 0.5 * idle  # the busy samples' spread
    assert cached.idle_uncertainty_w["gpu:0"] == pytest.approx(IDLE_DRIFT_REL * idle)
