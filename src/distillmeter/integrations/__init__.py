"""distillmeter.integrations: the meter inside code people already have.

- ``DistillMeterCallback`` (``hf_trainer``): a transformers ``Trainer`` callback (and so
  TRL's trainers) that meters training and evaluation as stages and writes report.json;
- ``log_report`` (``mlflow``): a run's report as metrics, params and artifacts of an MLflow
  run (extra ``[mlflow]``).

Imports are lazy: ``log_report`` does not pull in transformers, nor the callback mlflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["DistillMeterCallback", "log_report"]

if TYPE_CHECKING:  # pragma: no cover
    from distillmeter.integrations.hf_trainer import DistillMeterCallback
    from distillmeter.integrations.mlflow import log_report


def __getattr__(name: str) -> Any:
    if name == "DistillMeterCallback":
        from distillmeter.integrations.hf_trainer import DistillMeterCallback

        return DistillMeterCallback
    if name == "log_report":
        from distillmeter.integrations.mlflow import log_report

        return log_report
    raise AttributeError(name)
