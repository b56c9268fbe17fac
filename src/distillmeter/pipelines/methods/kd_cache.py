"""Logit KD from the top-k cache (loss ``kd``, ``teacher_mode: cached``): ``teacher.logits``
runs the teacher once over the method's training sequences and keeps the top-k
log-probabilities per position (``logit_cache.py``); ``student.train`` minimises
``alpha * CE + (1 - alpha) * T^2 * D(teacher || student)`` against it (``CachedKD``). The
cache is made in the teacher's run and shared: its student counts that stage in full,
the analysis may amortise it."""

from __future__ import annotations

from typing import Any

from distillmeter.pipelines.methods.base import Method, TrainParts
from distillmeter.pipelines.methods.registry import register

KD_SETTINGS = ("alpha", "temperature", "divergence", "beta", "teacher_mode")


@register("kd")
class CachedKD(Method):
    loss = "kd"
    settings = KD_SETTINGS
    uses_teacher = True
    uses_cache = True

    @classmethod
    def selects(cls, config) -> bool:
        return config.teacher_mode == "cached"

    def labels(self) -> dict[str, Any]:
        return {"teacher_mode": self.config.teacher_mode}

    def extra_train_info(self, teacher: dict[str, int] | None) -> dict[str, Any]:
        return {"kd": self.config.teacher_mode}

    def loss_fn(self, parts: TrainParts):
        from distillmeter.pipelines.logit_cache import LogitCache
        from distillmeter.pipelines.training import CachedKD as Loss

        cache = LogitCache(parts.cache_folder, expect_sequences=parts.sequences)
        return Loss(self.config, cache, vocab_size=parts.vocab)
