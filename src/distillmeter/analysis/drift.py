"""The machine's run-to-run drift, estimated from what the runs hold (pure functions over
reports): identical work measured more than once.

Which work is identical:

- **seeds**: the runs of one configuration (one ``config_id``) do the same work per stage
  (``setup.load``, ``student.train``, ``eval.student``; a seed only changes the numbers,
  not their count). Where a seed changes the work slightly (the synthetic data's batches
  hold a few tokens more or less), each measurement is first divided by the cost model's
  prediction for its own work relative to the group's (``predict``), so only the machine's
  part is left;
- **teacher**: the teacher run of one config (one ``teacher-<hash>``) measured in repeated
  campaigns (a runs directory holding two campaigns of the same config);
- **idle**: every run's idle window (``setup.idle``): the same wait, so its energy is the
  machine's idle draw measured again. Its duration is set by the meter, not by the work,
  so it counts for the energy only, and only where no work was repeated: the idle draw
  moves far less than the work's energy (0.5% against 9.1% over seeds in the recorded
  campaign of ``benchmarks/forecast_error.py --quick``), so it is a floor for the drift,
  stated apart in ``by_kind``, never pooled with the work's.

A stage counts only where its group's mean lasts at least ``DRIFT_MIN_S`` seconds (the
idle window excepted): a stage of a few hundredths of a second varies by its scheduling
noise (tens of percent), which the forecast's absolute floor already carries, and would
swamp the drift of the long stages it is meant for.

The figure is the pooled standard deviation of log(seconds), and of log(energy), within
groups: sqrt(sum over groups of sum (x - group mean)^2 / sum (n - 1)), the relative
spread of one run's measurement of the same work, with its degrees of freedom. Few runs
give few degrees of freedom, so the interval uses its 95% upper confidence bound
(chi-square: sd x sqrt(dof / chi2.ppf(0.05, dof))), the cautious reading of a spread
measured on 2-10 repeats. With no identical work measured twice there is no figure (None)
and the forecast says so: it never makes one up.

What it cannot see: drift on a time scale longer than the runs it is given. The seeds of
one campaign are minutes apart; a campaign an hour later on a machine whose neighbours
changed can move further (one 2-core VM: the same ``teacher.train`` took 26.3 s in one
campaign and 18.4 s in the next). Only repeated campaigns in the runs directory show that.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from scipy import stats

from distillmeter.analysis.costfit import Observation, observations, run_role
from distillmeter.protocol import Report

DRIFT_MIN_S = 1.0
IDLE = "setup.idle"
UPPER_P = 0.95  # the one-sided confidence of the stated upper bound
KINDS = {"seeds": "seeds of one configuration", "teacher": "a repeated teacher run",
         "idle": "the idle windows"}


def _upper(sd: float, dof: int) -> float:
    """The one-sided 95% upper confidence bound of a standard deviation ``sd`` measured
    with ``dof`` degrees of freedom (chi-square)."""
    return sd * math.sqrt(dof / float(stats.chi2.ppf(1.0 - UPPER_P, dof)))


def _pooled(groups: list[list[float]]) -> dict[str, Any] | None:
    """Pooled within-group sd of the values (logs), its dof and upper bound; None without
    a group of two or more."""
    ss, dof, used, n = 0.0, 0, 0, 0
    for xs in groups:
        if len(xs) < 2:
            continue
        m = math.fsum(xs) / len(xs)
        ss += math.fsum((x - m) ** 2 for x in xs)
        dof += len(xs) - 1
        used += 1
        n += len(xs)
    if dof == 0:
        return None
    sd = math.sqrt(ss / dof)
    return {"rel_sd": sd, "upper95": _upper(sd, dof), "dof": dof, "groups": used, "n": n}


def _energy(o: Observation) -> float:
    return math.fsum(o.energy.values())


def identical_work(reports: list[tuple[str, Report]],
                   predict: Callable[[Observation], float | None] | None = None
                   ) -> list[dict[str, Any]]:
    """Groups of identical work, each ``{"kind", "stage", "identity", "runs", "seconds",
    "energy_j", "factor"}``: one entry per run (its windows of the stage added up),
    ``factor`` each run's predicted work over the group's mean (1 where ``predict`` is not
    given or has nothing to say). Groups of one are kept (they show what was not
    repeated)."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for label, rep in reports:
        if rep.status != "ok":
            continue
        role = run_role(rep)
        identity = rep.config_id or label
        per_stage: dict[str, list[Observation]] = {}
        for o in observations(rep, label):
            per_stage.setdefault(o.stage, []).append(o)
        for stage, obs in per_stage.items():
            if stage == IDLE:  # the same wait in every run
                kind, key = "idle", (IDLE, "every run", f"{sum(o.seconds for o in obs):.1f}")
            else:
                kind = "teacher" if role == "teacher" else "seeds"
                key = (stage, role, identity)
            g = groups.setdefault(key, {"kind": kind, "stage": stage, "identity": key[2],
                                        "runs": [], "seconds": [], "energy_j": [],
                                        "work": []})
            g["runs"].append(label)
            g["seconds"].append(math.fsum(o.seconds for o in obs))
            g["energy_j"].append(math.fsum(_energy(o) for o in obs))
            w = [predict(o) for o in obs] if predict is not None else [None]
            g["work"].append(math.fsum(w) if all(x and x > 0 for x in w) else None)
    out = []
    for g in groups.values():
        work = g.pop("work")
        if all(w is not None for w in work):
            mean = math.fsum(work) / len(work)
            g["factor"] = [w / mean for w in work]
        else:
            g["factor"] = [1.0] * len(work)
        out.append(g)
    return out


def estimate_drift(reports: list[tuple[str, Report]],
                   predict: Callable[[Observation], float | None] | None = None,
                   min_s: float = DRIFT_MIN_S) -> dict[str, Any]:
    """The run-to-run drift of the machine the ``reports`` ran on: ``seconds`` and
    ``energy`` (each ``{"rel_sd", "upper95", "dof", "groups", "n"}`` or None when no
    identical work was measured twice), ``by_kind`` (the same per kind: seeds, teacher,
    idle), ``from`` (the kinds the two figures come from), ``groups`` (the repeated work
    used) and ``note`` (how it was made, or why there is no figure)."""
    groups = identical_work(reports, predict)
    secs: dict[str, list[list[float]]] = {}
    joules: dict[str, list[list[float]]] = {}
    used = []
    for g in groups:
        n = len(g["seconds"])
        mean_s = math.fsum(g["seconds"]) / n
        if n < 2 or (g["kind"] != "idle" and mean_s < min_s):
            continue
        if any(s <= 0 for s in g["seconds"]) or any(e <= 0 for e in g["energy_j"]):
            continue
        f = g["factor"]
        if g["kind"] != "idle":
            secs.setdefault(g["kind"], []).append(
                [math.log(s / k) for s, k in zip(g["seconds"], f, strict=True)])
        joules.setdefault(g["kind"], []).append(
            [math.log(e / k) for e, k in zip(g["energy_j"], f, strict=True)])
        xs = [math.log(s / k) for s, k in zip(g["seconds"], f, strict=True)]
        m = math.fsum(xs) / n
        used.append({"kind": g["kind"], "stage": g["stage"], "identity": g["identity"],
                     "n": n, "mean_s": mean_s,
                     "max_log_ratio_s": max(xs) - min(xs) if g["kind"] != "idle" else None,
                     "sd_s": math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (n - 1))
                     if g["kind"] != "idle" else None})
    kinds = sorted(set(secs) | set(joules))
    by_kind = {k: {"seconds": _pooled(secs.get(k, [])), "energy": _pooled(joules.get(k, []))}
               for k in kinds}
    seconds = _pooled([xs for v in secs.values() for xs in v])
    # the work's energy drift; the idle windows' only where no work was repeated: their
    # draw moves far less than the work's (0.5% against 9.1% over seeds on a loaded
    # 2-core VM, energy the meter's estimate), and pooled with it their many degrees of
    # freedom would pull the work's figure down
    energy = _pooled([xs for k, v in joules.items() if k != "idle" for xs in v]) \
        or _pooled(joules.get("idle", []))
    if seconds is None and energy is None:
        note = ("no identical work was measured twice in these runs (seeds of one "
                f"configuration, a repeated teacher, stages of {min_s:g} s or more, or the "
                "idle window): no drift figure; the intervals carry the fit's spread only")
    else:
        note = ("pooled sd of log(seconds) and log(energy) of identical work measured more "
                f"than once (stages of {min_s:g} s or more; for energy, the idle windows "
                "where no work was repeated); "
                "the intervals use its 95% upper bound, combined with the fit's spread in "
                "quadrature on the log scale")
    work_kinds = [k for k in kinds if k != "idle"]
    sources = work_kinds if work_kinds else kinds
    return {"seconds": seconds, "energy": energy, "by_kind": by_kind, "from": sources,
            "groups": used,
            "min_s": min_s, "note": note}


def drift_rel(drift: dict[str, Any] | None, what: str) -> float:
    """The relative drift the intervals carry for ``what`` (``seconds`` | ``energy``): its
    95% upper bound; 0 where there is no figure."""
    part = (drift or {}).get(what)
    return float(part["upper95"]) if part else 0.0


def drift_line(drift: dict[str, Any] | None) -> str:
    """The drift in one line, as the terminal states it."""
    if not drift or (drift.get("seconds") is None and drift.get("energy") is None):
        return ("run-to-run drift: not estimated (no identical work measured twice in these "
                "runs); intervals carry the fit's spread only")
    parts = []
    for what, name in (("seconds", "time"), ("energy", "energy")):
        p = drift.get(what)
        if p:
            parts.append(f"{name} {p['rel_sd']:.1%} (95% upper bound {p['upper95']:.1%}, "
                         f"{p['dof']} dof, {p['groups']} group(s) of repeated work)")
    kinds = ", ".join(KINDS.get(k, k) for k in drift.get("from", drift.get("by_kind", {})))
    return (f"run-to-run drift of this machine: {'; '.join(parts)}, from {kinds}; each "
            "interval adds the upper bound to the fit's spread in quadrature (log scale)")
