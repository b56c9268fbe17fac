"""What the Trainer callback reads from transformers' objects: token counts of a dataset,
the model's size, the TrainingArguments as plain data, whether the Trainer can count
non-padding tokens. No transformers import at module level."""

from __future__ import annotations

import gc
import json
import sys
import weakref
from collections.abc import Mapping
from typing import Any


def dataset_tokens(dataset: Any) -> int | None:
    """Non-padding tokens in a tokenized dataset (sum of ``attention_mask``, else lengths
    of ``input_ids``), or None when its examples carry neither."""
    if dataset is None:
        return None
    columns = getattr(dataset, "column_names", None)  # a datasets.Dataset: read columns
    if isinstance(columns, list):
        for col in ("attention_mask", "input_ids"):
            if col in columns:
                rows = dataset[col]
                return int(sum(sum(r) if col == "attention_mask" else len(r) for r in rows))
        return None
    try:
        n = len(dataset)
    except TypeError:
        return None  # an iterable dataset: not read twice
    total = 0
    for i in range(n):
        ex = dataset[i]
        if not isinstance(ex, Mapping):
            return None
        mask = ex.get("attention_mask")
        ids = ex.get("input_ids")
        if mask is not None:
            total += int(sum(int(x) for x in _flat(mask)))
        elif ids is not None:
            total += len(_flat(ids))
        else:
            return None
    return total


def _flat(x: Any) -> list:
    if hasattr(x, "tolist"):
        x = x.tolist()
    return list(x) if not (x and isinstance(x[0], list)) else [v for row in x for v in row]


def dataset_len(dataset: Any) -> int:
    """``len(dataset)``, or 0 for an iterable dataset (or none)."""
    try:
        return len(dataset)
    except TypeError:
        return 0


def counts_non_padding() -> bool:
    """Whether this transformers counts non-padding tokens (``"non_padding"``, 4.57+)."""
    import transformers
    from packaging.version import Version

    return Version(transformers.__version__).release >= (4, 57)


def count_params(model: Any) -> int | None:
    """The model's parameter count, or None (no model, or not a torch module)."""
    try:
        return int(sum(p.numel() for p in model.parameters()))
    except Exception:
        return None


def args_config(args: Any) -> dict[str, Any] | None:
    """The TrainingArguments as plain data (tokens are masked by ``to_dict``)."""
    to_dict = getattr(args, "to_dict", None)
    if to_dict is None:
        return None
    return {"trainer": json.loads(json.dumps(to_dict(), default=str))}


def training_done(state: Any) -> bool:
    """Whether the Trainer's loop has run its last step (``max_steps`` reached)."""
    max_steps = int(getattr(state, "max_steps", 0) or 0)
    return max_steps > 0 and int(getattr(state, "global_step", 0) or 0) >= max_steps


def saves_at_end(args: Any) -> bool:
    """Whether ``train()`` still has saving to do after its last step or evaluation (a
    checkpoint on the last step, or loading the best model back)."""
    return (str(getattr(args, "save_strategy", "no")).split(".")[-1].lower() != "no"
            or bool(getattr(args, "load_best_model_at_end", False)))


def modules_in_memory() -> weakref.WeakSet:
    """Every torch module alive in this process now (none when torch is not imported: no
    model can exist then), held weakly: to tell later whether the model a Trainer trains was
    loaded before this moment. A scan of the garbage collector's objects: tens of ms with
    transformers imported."""
    found: weakref.WeakSet = weakref.WeakSet()
    module_type = getattr(getattr(sys.modules.get("torch"), "nn", None), "Module", None)
    if module_type is None:
        return found
    for obj in gc.get_objects():
        # type(), not isinstance: isinstance reads __class__, which some lazy module
        # attributes answer with a deprecation warning
        if issubclass(type(obj), module_type):
            found.add(obj)
    return found


def loaded_before(model: Any, before: weakref.WeakSet) -> bool:
    """Whether ``model``, or a module inside it (the base model a PEFT wrapper holds), was
    among ``before`` (:func:`modules_in_memory`)."""
    if model is None or not before:
        return False
    try:
        return any(m in before for m in model.modules())
    except Exception:  # not a torch module
        return False


# Preferred quality metrics when the caller names none (first present wins); the loss is
# the fallback every evaluation has.
QUALITY_KEYS = ("eval_accuracy", "eval_exact_match", "eval_f1", "eval_loss")


def record_quality(meter: Any, metric: str | None, metrics: dict[str, Any], n: int,
                   state: Any) -> None:
    """Record an evaluation's quality in ``meter``: ``metric`` when named (a warning in the
    run when the evaluation lacks it), else the first of ``QUALITY_KEYS`` reported."""
    keys = [metric] if metric else list(QUALITY_KEYS)
    for key in keys:
        value = metrics.get(key)
        if isinstance(value, (int, float)):
            details = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
            details["global_step"] = int(getattr(state, "global_step", 0) or 0)
            meter.record_quality(key, float(value), n=n, details=details)
            return
    if metric:
        meter.warn(f"quality metric {metric!r} is not among the evaluation metrics "
                   f"({', '.join(sorted(metrics))})")
