"""Log a distillmeter report to MLflow (extra ``[mlflow]``: ``pip install mlflow-skinny``).

    from distillmeter.integrations.mlflow import log_report
    with mlflow.start_run():
        ...                                   # your training, metered
        log_report("runs/my-run", html_path="runs/report.html")

What is logged, into the active MLflow run (when none is active, one is started, named
after the distillmeter run, and ended again after logging):
- metrics ``dm.total.*`` (energy_j, kwh, seconds, unattributed_j, uncertainty_j,
  with_upstream_j, tokens, co2e_g, cost), ``dm.side.<side>_j``, per stage
  ``dm.stage.<name>.{energy_j,active_energy_j,seconds,tokens,j_per_token,uncertainty_j}``
  (windows of the same name summed), ``dm.upstream.<name>.energy_j``, and the quality
  ``dm.quality.<metric>`` with ``dm.quality.n``. Names keep to the characters MLflow allows
  (anything else becomes ``_``);
- params ``dm.method``, ``dm.seed``, ``dm.run_id``, ``dm.config_id``, ``dm.task``,
  ``dm.estimated``, the devices and their sources, the hardware, and the run's config.yaml
  flattened as ``dm.config.<key.path>`` (values cut to 500 characters, MLflow's oldest
  limit; secrets redacted, by key name and by value, as in every file distillmeter writes);
- artifacts under ``distillmeter/``: report.json, the HTML report if given (or the run
  directory's report.html), config.yaml, and with ``raw=True`` the ledger, trace and
  environment too, so the run can be re-accounted from MLflow alone.
Tags: ``distillmeter.run_id`` and ``distillmeter.estimated``.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from distillmeter.errors import UserError
from distillmeter.privacy.redact import redact_values
from distillmeter.protocol import (
    CONFIG_FILE,
    ENVIRONMENT_FILE,
    LEDGER_FILE,
    REPORT_FILE,
    TRACE_FILE,
    Report,
    StageReport,
    load_report,
)

PREFIX = "dm."
ARTIFACT_DIR = "distillmeter"
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")
_MAX_PARAM = 500
_BATCH = 100  # MLflow's limit of params (and metrics) per batch call


def safe_name(name: str) -> str:
    """A metric or param name MLflow accepts: letters, digits, ``_ - . /`` and spaces;
    anything else becomes ``_``."""
    return _UNSAFE.sub("_", name)


def _import_mlflow():
    try:
        import mlflow
    except ImportError:
        raise UserError("MLflow is not installed: pip install 'distillmeter[mlflow]' "
                        "(or mlflow-skinny)") from None
    return mlflow


def _resolve(report_or_run_dir: Report | str | Path) -> tuple[Report, Path | None]:
    """The report, and the run directory it came from (None for a Report object)."""
    if isinstance(report_or_run_dir, Report):
        rd = report_or_run_dir.run_dir
        return report_or_run_dir, Path(rd) if rd and Path(rd).is_dir() else None
    path = Path(report_or_run_dir)
    if path.is_file():
        return load_report(path), path.parent
    if not path.is_dir():
        raise UserError(f"{path}: no such run directory or report.json")
    if (path / REPORT_FILE).exists():
        return load_report(path), path
    if (path / LEDGER_FILE).exists():
        from distillmeter.accounting import account

        return account(path), path  # not written: logging has no side effects on the run
    raise UserError(f"{path}: not a run directory (no {REPORT_FILE} and no {LEDGER_FILE})")


def _by_name(stages: list[StageReport]) -> dict[str, dict[str, float]]:
    """Per stage name, the figures of all its windows summed (J/token recomputed)."""
    out: dict[str, dict[str, float]] = {}
    for st in stages:
        f = out.setdefault(st.name, {"energy_j": 0.0, "active_energy_j": 0.0, "seconds": 0.0,
                                     "tokens": 0.0, "uncertainty_j": 0.0, "windows": 0.0})
        f["energy_j"] += st.energy_j.get("total", 0.0)
        f["active_energy_j"] += st.active_energy_j
        f["seconds"] += st.seconds
        f["tokens"] += st.tokens
        f["uncertainty_j"] += st.uncertainty_j
        f["windows"] += 1
    for f in out.values():
        if f["tokens"] > 0:
            f["j_per_token"] = f["energy_j"] / f["tokens"]
    return out


def report_metrics(report: Report) -> dict[str, float]:
    """The report's figures as ``{metric name: value}`` (finite numbers only)."""
    t = report.totals
    m: dict[str, float | None] = {
        "total.energy_j": t.energy_j, "total.kwh": t.kwh, "total.seconds": t.seconds,
        "total.stages_j": t.stages_j, "total.unattributed_j": t.unattributed_j,
        "total.uncertainty_j": t.uncertainty_j, "total.upstream_j": t.upstream_j,
        "total.with_upstream_j": t.with_upstream_j, "total.tokens": t.tokens,
        "total.co2e_g": report.carbon.co2e_g, "total.cost": report.cost.total,
        "grid_gco2_per_kwh": report.carbon.grid_gco2_per_kwh, "pue": report.carbon.pue,
    }
    for side, j in t.by_side.items():
        m[f"side.{side}_j"] = j
    for name, figs in _by_name(report.stages).items():
        for key, value in figs.items():
            m[f"stage.{name}.{key}"] = value
    for name, figs in _by_name(report.upstream).items():
        m[f"upstream.{name}.energy_j"] = figs["energy_j"]
    if report.quality is not None:
        m[f"quality.{report.quality.metric}"] = report.quality.value
        m["quality.n"] = report.quality.n
    return {safe_name(PREFIX + k): float(v) for k, v in m.items()
            if isinstance(v, (int, float)) and math.isfinite(v)}


def _flatten(data: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(data, Mapping):
        for k, v in data.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, data


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _MAX_PARAM else text[: _MAX_PARAM - 1] + "…"


def report_params(report: Report, run_dir: Path | None) -> dict[str, str]:
    """Labels, devices, hardware and the flattened config.yaml as MLflow params."""
    p: dict[str, Any] = {"method": report.method, "seed": report.seed,
                         "run_id": report.run_id, "config_id": report.config_id,
                         "task": report.task, "estimated": report.estimated,
                         "status": report.status, "devices": ",".join(report.devices)}
    for dev, src in report.sources.items():
        p[f"source.{dev}"] = src
    for key, value in _flatten(report.hardware, "hardware"):
        p[key] = value
    for key, value in _flatten(report.labels, "label"):
        p[key] = value
    config_path = run_dir / CONFIG_FILE if run_dir is not None else None
    if config_path is not None and config_path.exists():
        try:
            config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise UserError(f"{config_path}: not valid YAML ({exc})") from None
        for key, value in _flatten(config or {}, "config"):
            p[key] = value
    # config.yaml and the labels were redacted when written; a config.yaml from elsewhere
    # (or an older version) was not: every param is redacted again, by name and by value
    p = redact_values({k: v for k, v in p.items() if v is not None})
    return {safe_name(PREFIX + k): _param(v) for k, v in p.items()}


def _chunks(d: dict[str, Any]) -> Iterator[dict[str, Any]]:
    items = list(d.items())
    for i in range(0, len(items), _BATCH):
        yield dict(items[i : i + _BATCH])


def log_report(report_or_run_dir: Report | str | Path, html_path: str | Path | None = None,
               *, raw: bool = False, step: int | None = None) -> str:
    """Log a run's report into the active MLflow run (see the module docstring); returns
    the MLflow run id. ``report_or_run_dir``: a run directory (accounted now if it has no
    report.json yet), a report.json path, or a ``Report``."""
    mlflow = _import_mlflow()
    report, run_dir = _resolve(report_or_run_dir)
    html = Path(html_path) if html_path is not None else None
    if html is None and run_dir is not None and (run_dir / "report.html").exists():
        html = run_dir / "report.html"
    if html is not None and not html.is_file():
        raise UserError(f"{html}: no such HTML report")
    started = mlflow.active_run() is None
    run = mlflow.start_run(run_name=f"distillmeter-{report.method or 'run'}-"
                                    f"{report.run_id[:8]}") if started else mlflow.active_run()
    try:
        for chunk in _chunks(report_params(report, run_dir)):
            mlflow.log_params(chunk)
        for chunk in _chunks(report_metrics(report)):
            mlflow.log_metrics(chunk, step=step)
        mlflow.set_tags({"distillmeter.run_id": report.run_id,
                         "distillmeter.estimated": str(report.estimated).lower()})
        with tempfile.TemporaryDirectory() as tmp:
            report_file = Path(tmp) / REPORT_FILE
            report_file.write_text(report.to_json() + "\n", encoding="utf-8")
            mlflow.log_artifact(str(report_file), artifact_path=ARTIFACT_DIR)
        if html is not None:
            mlflow.log_artifact(str(html), artifact_path=ARTIFACT_DIR)
        names = [CONFIG_FILE] + ([LEDGER_FILE, TRACE_FILE, ENVIRONMENT_FILE] if raw else [])
        for name in names:
            if run_dir is not None and (run_dir / name).is_file():
                mlflow.log_artifact(str(run_dir / name), artifact_path=ARTIFACT_DIR)
    except BaseException:
        if started:
            mlflow.end_run(status="FAILED")
        raise
    if started:
        mlflow.end_run()
    return run.info.run_id
