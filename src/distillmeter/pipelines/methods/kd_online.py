"""Logit KD from a live teacher (loss ``kd``, ``teacher_mode: online``): the same loss as
the cache's, ``alpha * CE + (1 - alpha) * T^2 * D(teacher || student)``, with one teacher
forward pass per student step (``OnlineKD``): its energy falls inside ``student.train``,
where the cache moves it to ``teacher.logits``. Kept for comparison with the cache."""

from __future__ import annotations

from typing import Any

from distillmeter.pipelines.methods.base import Method, TrainParts
from distillmeter.pipelines.methods.kd_cache import KD_SETTINGS
from distillmeter.pipelines.methods.registry import register


@register("online_kd")
class OnlineKD(Method):
    loss = "kd"
    settings = KD_SETTINGS
    uses_teacher = True
    live_teacher = True
    teacher_in_train_step = True

    @classmethod
    def selects(cls, config) -> bool:
        return config.teacher_mode == "online"

    def labels(self) -> dict[str, Any]:
        return {"teacher_mode": self.config.teacher_mode}

    def extra_train_info(self, teacher: dict[str, int] | None) -> dict[str, Any]:
        # the live teacher's shape: a teacher forward pass per batch (the cost model's)
        return {"kd": self.config.teacher_mode, **(teacher or {})}

    def loss_fn(self, parts: TrainParts):
        from distillmeter.models import build, check_tokenizers_compatible
        from distillmeter.pipelines.training import OnlineKD as Loss

        teacher, tok = parts.teacher.model, parts.tokenizer
        # one tokenizer for both; this checks the models' logit widths against it
        shared = check_tokenizers_compatible(tok, tok, build.vocab_width(teacher),
                                             build.vocab_width(parts.student.model))
        return Loss(self.config, teacher, vocab_size=shared)
