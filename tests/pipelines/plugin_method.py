"""Methods that exist only in the test suite, written as a user adds one (docs/DESIGN.md,
"Adding a method"): a ``Method`` subclass registered by name. ``SmoothCE``: cross-entropy
with label smoothing (0.1) on the labelled set: a loss of its own, the default data,
stages and work. ``FinetuneCE``: a student that starts from the baseline's. Importing this
module registers them; ``tests/pipelines/test_method_plugin.py``
runs it through ``distillmeter run``, the forecast, the verdict and ``distillmeter plan``."""

from __future__ import annotations

from distillmeter.pipelines.methods import Method, TrainParts, register

SMOOTHING = 0.1


def smoothed_ce(logits, batch):
    """Mean label-smoothed cross-entropy of the learned tokens."""
    import torch.nn.functional as F

    pred = logits[:, :-1][batch.loss_mask].float()
    gold = batch.targets()[batch.loss_mask]
    loss = F.cross_entropy(pred, gold, label_smoothing=SMOOTHING)
    return loss, {"ce_smooth": float(loss.detach())}


@register("smooth_ce")
class SmoothCE(Method):
    loss = "ce_smooth"

    def labels(self) -> dict:
        return {"teacher_mode": None, "label_smoothing": SMOOTHING}

    def loss_fn(self, parts: TrainParts):
        return smoothed_ce


@register("finetune_ce")
class FinetuneCE(Method):
    """A student that starts from the campaign's baseline student (``starts_from``) and
    trains it further on the labels: the hook a preference method's starting point uses."""

    loss = "ce_more"

    def starts_from(self) -> str | None:
        return "baseline"
