"""Each stage's energy per token against its floor on the hardware it ran on.

Floor per token = FLOPs per token x J/FLOP of the device, with FLOPs per token estimated
from the model's parameter count: 6 x params for training (forward and backward), 2 x
params for inference (generation, logit caching, evaluation). Where a device has a
measured J/byte and the stage names its batch size, the weight-streaming floor of
inference (weight bytes / batch x J/byte) counts too, and the larger floor applies. The
ratio J/token / floor says whether a stage's cost is intrinsic (near 1x) or waste.

Parameter counts come from the stage (a ``params`` key) or the run's labels
(``teacher_params`` / ``student_params`` / ``params``); without one the row says unknown.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

from distillmeter.analysis.runs import cpu_name, gpu_names
from distillmeter.protocol import Report, StageReport


def load_floors() -> list[dict[str, Any]]:
    """The floors table shipped in ``distillmeter/data/hardware_floors.json``."""
    text = resources.files("distillmeter").joinpath("data/hardware_floors.json").read_text(
        encoding="utf-8")
    return list(json.loads(text)["devices"])


def match_floor(model: str | None, floors: list[dict[str, Any]], kind: str
                ) -> dict[str, Any] | None:
    """The first floors entry of ``kind`` whose patterns match the model name."""
    if not model:
        return None
    for entry in floors:
        if entry.get("kind") != kind:
            continue
        if any(re.search(p, model, flags=re.IGNORECASE) for p in entry.get("match", [])):
            return entry
    return None


def flops_per_token(stage_name: str, params: float) -> float:
    """6 x params per token for training stages, 2 x params for inference stages."""
    what = stage_name.split(".", 1)[1] if "." in stage_name else stage_name
    return (6.0 if what.startswith("train") else 2.0) * params


def stage_role(stage_name: str) -> str:
    """Whose model a stage runs: ``teacher`` for teacher-side stages and ``eval.teacher``,
    ``student`` otherwise (how the labels' ``<role>_params`` are keyed)."""
    side, _, what = stage_name.partition(".")
    if side == "eval":
        return "teacher" if what.startswith("teacher") else "student"
    return "teacher" if side == "teacher" else "student"


def _number(x: Any) -> float | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)) and x > 0:
        return float(x)
    if isinstance(x, str):
        try:
            v = float(x)
        except ValueError:
            return None
        return v if v > 0 else None
    return None


def stage_params(stage: StageReport, labels: dict[str, Any]) -> float | None:
    """The parameter count of the model a stage ran: the stage's own ``params`` (from
    ``stage_end.info``), else the run's ``<role>_params`` label, else its ``params`` label."""
    extra = {**(stage.model_extra or {}), **stage.info}
    for v in (extra.get("params"), labels.get(f"{stage_role(stage.name)}_params"),
              labels.get("params")):
        n = _number(v)
        if n is not None:
            return n
    return None


def _stage_setting(stage: StageReport, labels: dict[str, Any], key: str) -> float | None:
    extra = {**(stage.model_extra or {}), **stage.info}
    return _number(extra.get(key)) or _number(labels.get(f"{stage_role(stage.name)}_{key}"))


def stage_efficiency(stage: StageReport, report: Report, floors: list[dict[str, Any]]
                     ) -> dict[str, Any]:
    """One stage's J/token, floor and ratio (fields None with a note where unknown)."""
    row: dict[str, Any] = {"stage": stage.name, "tokens": stage.tokens, "params": None,
                           "device": None, "hardware": None, "j_per_token": None,
                           "floor_j_per_token": None, "x_floor": None, "basis": None,
                           "source": None, "note": None}
    gpu_j = sum(v for k, v in stage.energy_j.items() if k.startswith("gpu:"))
    cpu_j = sum(v for k, v in stage.energy_j.items() if k.startswith("cpu:"))
    gpus = gpu_names(report.hardware)
    if gpu_j > 0 or gpus:
        kind, energy, model = "gpu", gpu_j, (gpus[0] if gpus else None)
    else:
        kind, energy, model = "cpu", cpu_j, cpu_name(report.hardware)
    row.update(device=kind, hardware=model)
    if stage.tokens <= 0:
        row["note"] = "no tokens counted"
        return row
    row["j_per_token"] = energy / stage.tokens
    params = stage_params(stage, report.labels)
    row["params"] = params
    entry = match_floor(model, floors, kind)
    if params is None:
        row["note"] = "parameter count unknown"
    if entry is None:
        row["note"] = (row["note"] + "; " if row["note"] else "") + \
            f"no floor known for {model or 'this ' + kind}"
    if params is None or entry is None:
        return row
    floor = flops_per_token(stage.name, params) * entry["pj_per_flop"] * 1e-12
    batch = _stage_setting(stage, report.labels, "batch_size")
    if entry.get("pj_per_byte") and batch and not stage.name.split(".", 1)[1].startswith(
            "train"):
        bytes_per_param = _stage_setting(stage, report.labels, "bytes_per_param") or 2.0
        floor = max(floor, params * bytes_per_param / batch * entry["pj_per_byte"] * 1e-12)
    row.update(floor_j_per_token=floor, x_floor=row["j_per_token"] / floor,
               basis=entry["basis"], source=entry["source"], floor_device=entry["name"])
    row["note"] = _below_floor_note(row["x_floor"])
    return row


def _below_floor_note(x_floor: float) -> str | None:
    if x_floor >= 1.0:
        return None
    return ("below the floor: the parameter or token count is likely wrong, or the energy "
            "was not all measured")


def efficiency(items: list[tuple[str, Report]], floors: list[dict[str, Any]]
               ) -> list[dict[str, Any]]:
    """Rows of (owner, stage) efficiency for each run's own stages. ``owner`` labels the
    configuration or teacher run the report belongs to; rows of one owner and stage are
    pooled over seeds and over a stage's windows (energy and tokens summed; ``runs``
    counts the runs, ``windows`` the windows)."""
    pooled: dict[tuple[str, str], list[dict[str, Any]]] = {}
    runs: dict[tuple[str, str], set[str]] = {}
    for owner, report in items:
        for stage in report.stages:
            pooled.setdefault((owner, stage.name), []).append(
                stage_efficiency(stage, report, floors))
            runs.setdefault((owner, stage.name), set()).add(report.run_id)
    rows: list[dict[str, Any]] = []
    for (owner, name), rs in sorted(pooled.items()):
        row = dict(rs[0])
        row["owner"] = owner
        row["runs"] = len(runs[(owner, name)])
        row["windows"] = len(rs)
        tok = sum(r["tokens"] for r in rs)
        if all(r["j_per_token"] is not None for r in rs) and tok > 0:
            energy = sum(r["j_per_token"] * r["tokens"] for r in rs)
            row["j_per_token"] = energy / tok
            row["tokens"] = tok
            if row["floor_j_per_token"]:
                row["x_floor"] = row["j_per_token"] / row["floor_j_per_token"]
                row["note"] = _below_floor_note(row["x_floor"])
        rows.append(row)
    return rows
