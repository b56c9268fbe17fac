"""Baseline SFT: the student trained on the ground-truth labels alone (loss ``ce``, data
``labelled``). It learns nothing from the teacher, so its student counts none of the
teacher's stages; it reads the teacher's score only to report Q. Everything it does is the
interface's default (``base.Method``): one ``student.train`` window of the shared loop,
cross-entropy on the learned tokens."""

from __future__ import annotations

from distillmeter.pipelines.methods.base import Method
from distillmeter.pipelines.methods.registry import register


@register("baseline")
class BaselineSFT(Method):
    loss = "ce"

    @classmethod
    def selects(cls, config) -> bool:
        return "synthetic" not in config.data
