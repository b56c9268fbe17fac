"""Distillation methods as components: one module per method, each a ``Method``
(``base.py``) registered by name (``registry.py``); ``get(method_config)`` gives the one
that answers for a config.

    baseline.py       baseline SFT on the labelled set
    synthetic_sft.py  SFT on the teacher's verified answers (teacher.generate)
    kd_cache.py       logit KD from the top-k cache (teacher.logits)
    kd_online.py      logit KD from a live teacher
    on_policy.py      on-policy distillation (GKD) in rounds
    preference.py     preference distillation: the teacher judges, DPO from the baseline

Importing this package registers them (``distillmeter.pipelines`` imports it, so a
config's check always sees them). See docs/DESIGN.md, "Adding a method".
"""

from __future__ import annotations

from distillmeter.pipelines.methods import (  # noqa: F401  (registers the built-in methods)
    baseline,
    kd_cache,
    kd_online,
    on_policy,
    preference,
    synthetic_sft,
)
from distillmeter.pipelines.methods.base import Method, StudentWork, TrainParts, TrainSource
from distillmeter.pipelines.methods.registry import get, register, registered

__all__ = ["Method", "StudentWork", "TrainParts", "TrainSource", "get", "register",
           "registered"]
