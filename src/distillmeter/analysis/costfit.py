"""The cost model, fitted on the stages measured on one kind of hardware (pure functions
over reports; ``costmodel.json`` is its plain-data form).

**Time.** A stage's seconds are a sum over its operations (``costwork``) of a fixed cost
per pass and a cost per FLOP, plus a fixed cost per stage::

    seconds = stage.fixed
              + train.per_pass x training passes  + train.per_flop x training FLOPs
              + kd.per_pass x cached-KD passes
              + score.per_pass x scoring passes   + decode.per_pass x decode steps
              + forward.per_flop x (scoring + decoding FLOPs)

The per-pass terms are the overhead that dominates small models on CPUs (kernel launches,
Python, the optimizer step); the per-FLOP terms are 1 / throughput. Stage kinds that do
the same operation share its coefficients (``teacher.train`` and ``student.train`` are
both training passes, on models of different size; the logit cache, evaluation and
generation are all forward passes), which is what makes them identifiable from one
configuration's runs. Fitted by non-negative least squares on relative residuals (each
stage's residual divided by its seconds + ``TIME_OFFSET_S``): a 10 s stage and a 40 s one
count alike, while a stage of a tenth of a second, whose time is mostly scheduling noise,
counts less.

**Energy**, per device: ``joules = power_w x seconds + j_per_flop x FLOPs``: a draw while
the stage runs plus a cost per FLOP. A device whose energy is the meter's estimate
(utilisation x TDP for a CPU, W x time for DRAM) has no FLOP term: its energy follows time
by construction, and the model says so.

Each coefficient comes with its standard error; the residual spread (relative) and the
coefficients' covariance make each forecast's interval (``forecast.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import nnls

from distillmeter.analysis.costwork import StageWork, stage_work
from distillmeter.protocol import Report

SCHEMA = "distillmeter.costmodel/1"
# a stage's time is reproducible to a few tenths of a second at best (scheduling, I/O):
# residuals are relative to seconds + this
TIME_OFFSET_S = 0.25
BETWEEN = "(between stages)"  # a run's energy outside its stages, as a pseudo-stage
# what each coefficient means (docs/analysis.md, "Forecasts")
MEANINGS = {
    "stage.fixed": "s per model stage: fixed cost of starting and ending one",
    "train.per_pass": "s per training pass (forward + backward + optimizer step): "
                      "launch, Python and optimizer overhead",
    "train.per_flop": "s per training FLOP (1 / training throughput)",
    "kd.per_pass": "s per training pass for the cached-KD loss (gathering the top-k cache)",
    "score.per_pass": "s per teacher-forced forward pass (a batch of whole sequences)",
    "decode.per_pass": "s per generation step (one token for every row of a batch)",
    "forward.per_flop": "s per forward FLOP, scoring and decoding (1 / forward throughput)",
    "power_w": "W drawn while a stage runs (the device's share of the stage's energy that "
               "follows time)",
    "j_per_flop": "J per FLOP on top of the draw (the share that follows work)",
}


@dataclass
class Observation:
    """One measured stage, as the fit sees it."""

    run_id: str
    run: str  # the run directory's label
    role: str  # teacher | student (the run's role)
    stage: str
    seconds: float
    energy: dict[str, float]  # device -> J
    sources: dict[str, str]
    tokens: float
    samples: float
    info: dict[str, Any]
    work: StageWork | None
    reason: str | None


def run_role(report: Report) -> str:
    """``teacher`` for a teacher run (its labels or method say so), else ``student``."""
    role = report.labels.get("role") if isinstance(report.labels, dict) else None
    if role in ("teacher", "student"):
        return str(role)
    return "teacher" if report.method == "teacher" or not any(
        s.side == "student" for s in report.stages) else "student"


def observations(report: Report, label: str) -> list[Observation]:
    """The run's own finished stages (upstream stages belong to their own run)."""
    out = []
    role = run_role(report)
    for st in report.stages:
        if st.status != "ok" or not st.seconds or st.seconds <= 0:
            continue
        energy = {k: float(v) for k, v in st.energy_j.items() if k != "total" and v is not None}
        info = {**(st.model_extra or {}), **st.info}
        work, reason = stage_work(st.name, st.tokens, st.samples, info, report.labels)
        out.append(Observation(report.run_id, label, role, st.name, float(st.seconds), energy,
                               dict(st.source), float(st.tokens), float(st.samples), info,
                               work, reason))
    return out


def time_features(work: StageWork) -> dict[str, float]:
    """The stage's row of the time model: coefficient name -> its multiplier."""
    x: dict[str, float] = {"stage.fixed": 1.0}
    for op, w in work.ops.items():
        if op == "train":
            x["train.per_pass"] = x.get("train.per_pass", 0.0) + w.passes
            x["train.per_flop"] = x.get("train.per_flop", 0.0) + w.flops
        else:
            x[f"{op}.per_pass"] = x.get(f"{op}.per_pass", 0.0) + w.passes
            x["forward.per_flop"] = x.get("forward.per_flop", 0.0) + w.flops
    return {k: v for k, v in x.items() if v}


# --------------------------------------------------------------------------- the fit


@dataclass
class LinearFit:
    """Coefficients (>= 0) of a weighted linear fit on relative residuals."""

    names: list[str]
    coef: dict[str, float]
    cov: list[list[float]]  # over ``names`` (the coefficients the fit kept)
    rel_sd: float | None  # residual spread relative to y + offset; None with no dof
    dof: int
    n: int
    dropped: list[str] = field(default_factory=list)  # fitted to 0 (the bound)
    offset: float = 0.0  # residuals are relative to y + offset

    def spread(self, y: float, var: float, prior: float) -> tuple[float, float]:
        """The spread of one new observation around a prediction ``y`` whose coefficients
        contribute variance ``var``: (relative part, absolute part). The residual spread s
        is relative to y + offset, so it splits into s (relative) and s x offset
        (absolute); the coefficients' part is relative."""
        s = self.rel_sd if self.rel_sd is not None else prior
        rel = math.sqrt(s ** 2 + var / y ** 2) if y > 0 else s
        return rel, s * self.offset

    def stderr(self, name: str) -> float | None:
        if name not in self.names:
            return None
        i = self.names.index(name)
        return math.sqrt(max(self.cov[i][i], 0.0))

    def predict(self, x: dict[str, float]) -> tuple[float, float]:
        """(prediction, variance of the prediction from the coefficients' uncertainty)."""
        y = math.fsum(self.coef.get(k, 0.0) * v for k, v in x.items())
        v = np.array([x.get(k, 0.0) for k in self.names])
        var = float(v @ np.array(self.cov) @ v) if self.names else 0.0
        return y, max(var, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"coef": self.coef, "stderr": {k: self.stderr(k) for k in self.names},
                "names": self.names, "cov": self.cov, "rel_sd": self.rel_sd, "dof": self.dof,
                "n": self.n, "dropped": self.dropped, "offset": self.offset}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LinearFit:
        return cls(list(d["names"]), {k: float(v) for k, v in d["coef"].items()},
                   [list(map(float, r)) for r in d["cov"]], d.get("rel_sd"), int(d["dof"]),
                   int(d["n"]), list(d.get("dropped", [])), float(d.get("offset", 0.0)))


def fit_linear(rows: list[dict[str, float]], y: list[float],
               fixed: dict[str, float] | None = None, offset: float = 0.0,
               optional: tuple[str, ...] = ()) -> LinearFit:
    """Fit ``y ~ sum(coef x row)`` with coef >= 0, weighting each residual by
    1 / (y + offset): relative errors, except that values small against ``offset`` (a
    stage of a tenth of a second, whose time is mostly noise) weigh less. ``fixed``
    coefficients are not fitted (their terms are subtracted). ``optional`` coefficients
    are left out (fixed at 0, listed as dropped) when the rows hold no more distinct kinds
    of work than there are coefficients."""
    fixed = fixed or {}
    names = sorted({k for r in rows for k in r if k not in fixed})
    n = len(y)
    if not names or n == 0:
        return LinearFit([], dict(fixed), [], None, 0, n, offset=offset)
    x = np.array([[r.get(k, 0.0) for k in names] for r in rows], dtype=float)
    yy = np.array(y, dtype=float) - np.array(
        [math.fsum(fixed[k] * r.get(k, 0.0) for k in fixed) for r in rows])
    w = 1.0 / np.maximum(np.array(y, dtype=float) + offset, 1e-9)
    a = x * w[:, None]
    scale = np.linalg.norm(a, axis=0)
    scale[scale == 0] = 1.0
    beta = nnls(a / scale, yy * w)[0] / scale  # Lawson-Hanson's active set
    distinct = len({tuple(np.round(r, 9)) for r in (x / np.maximum(np.abs(x).max(axis=0),
                                                                   1e-300))})
    if optional and distinct <= len(names) and any(k in names for k in optional):
        # fewer distinct kinds of work than coefficients: the optional terms (a fixed
        # cost per stage) cannot be told apart from the others; leave them out
        keep = {k: 0.0 for k in optional if k in names}
        rest = fit_linear(rows, y, {**fixed, **keep}, offset)
        rest.coef = {k: v for k, v in rest.coef.items() if k not in keep}
        rest.dropped = sorted(set(rest.dropped) | set(keep))
        return rest
    kept = [i for i, b in enumerate(beta) if b > 0]
    resid = (yy - x @ beta) * w
    dof = n - len(kept)
    rel_sd = float(math.sqrt(float(resid @ resid) / dof)) if dof > 0 else None
    cov = np.zeros((len(kept), len(kept)))
    if kept:  # on the scaled columns (FLOPs and passes differ by 1e9), then unscaled
        ak = a[:, kept] / scale[kept]
        s2 = rel_sd ** 2 if rel_sd is not None else 0.0
        cov = s2 * np.linalg.pinv(ak.T @ ak) / np.outer(scale[kept], scale[kept])
    coef = {names[i]: float(beta[i]) for i in kept}
    coef.update(fixed)
    return LinearFit([names[i] for i in kept], coef, cov.tolist(), rel_sd, dof, n,
                     [names[i] for i in range(len(names)) if i not in kept], offset)
