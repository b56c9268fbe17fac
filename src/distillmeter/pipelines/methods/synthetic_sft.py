"""Synthetic-data SFT: the student trained by cross-entropy on the teacher's verified
answers to the prompt pool (``teacher.generate``), with the labelled set when ``data``
lists it too (loss ``ce``, data ``synthetic``). Its student counts the teacher's training,
evaluation and generation in full. Its training is the interface's default."""

from __future__ import annotations

from distillmeter.pipelines.methods.base import Method
from distillmeter.pipelines.methods.registry import register


@register("synthetic")
class SyntheticSFT(Method):
    loss = "ce"

    @classmethod
    def selects(cls, config) -> bool:
        return "synthetic" in config.data
