"""TRL's ``DPOTrainer``: the frozen reference's log-probabilities, precomputed, in a window
of their own (``student.reference``) instead of inside whatever window is open.

Where the work happens (TRL 1.x): with ``precompute_ref_log_probs=True`` in ``DPOConfig``,
``DPOTrainer.__init__``, after ``Trainer.__init__`` has fired ``on_init_end``, runs
``_precompute_ref_logps`` once per dataset (train, then each eval split): a no-grad pass of
the reference (``ref_model``, or the starting policy itself) over every (chosen, rejected)
pair, batch by batch through ``compute_ref_log_probs``, stored as dataset columns. Training
then reads them from the batch and never runs the reference. ``evaluate()`` does the same
for a dataset passed to it. Without the hook that pass lands in ``setup.load`` (it runs
between the callback's creation and ``on_train_begin``), so it is counted as loading, and a
report cannot tell a DPO run's reference cost from its setup.

What the hook does: at ``on_init_end`` the callback wraps, on the trainer instance,
``_precompute_ref_logps`` (the window: one per dataset pass, from the call to its return,
the cached columns' write included) and ``compute_ref_log_probs`` (the count: the
attention mask's sum of each batch the reference read, and its rows, two per pair). The
window is a real one (counters read at both edges), on the student side: the reference is
the starting student and its pass is per student, never shared. The window that was open
before (``setup.load``, or an evaluation) is reopened after it. A pass that finds TRL's
cache file for the same data and reference runs no forward pass and counts 0 tokens.

Without ``precompute_ref_log_probs`` the reference runs inside every training step, in
``student.train``, where it belongs: it is then part of each step's cost. Neither method
is TRL API that is promised to stay; when they are missing nothing is wrapped, and the
work stays where it ran (``setup.load``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from distillmeter.integrations.trainer_support import count_params

REFERENCE_STAGE = "student.reference"
_NONE = object()


def batch_tokens(inputs: Any) -> tuple[int, int]:
    """(tokens, rows) of a padded batch: the attention mask's sum, else every input id."""
    get = getattr(inputs, "get", None)
    if get is None:
        return 0, 0
    mask, ids = get("attention_mask"), get("input_ids")
    for x in (mask, ids):
        if x is not None and hasattr(x, "sum") and getattr(x, "dim", lambda: 0)() == 2:
            return (int(x.sum()) if x is mask else int(x.numel())), int(x.shape[0])
    return 0, 0


class ReferenceHooks:
    """The wrapped reference pass of one ``DPOTrainer`` (see the module docstring).

    ``phase(name, info)``: a context manager yielding the window to count into, or None
    when the call is not to be metered apart (the run is over, or this process does not
    meter). ``remove()`` gives the trainer its own methods back."""

    def __init__(self, phase: Callable[[str, dict[str, Any]], AbstractContextManager[Any]]):
        self.phase = phase
        self.window: Any = None  # the reference window while a pass runs
        self.passes = 0
        self._wrapped: list[tuple[Any, str, Any]] = []

    def install(self, trainer: Any) -> bool:
        """Wrap ``trainer``'s reference pass if it precomputes one. True if wrapped."""
        args = getattr(trainer, "args", None)
        if trainer is None or not getattr(args, "precompute_ref_log_probs", False):
            return False
        run_pass = getattr(trainer, "_precompute_ref_logps", None)
        one_batch = getattr(trainer, "compute_ref_log_probs", None)
        if not (callable(run_pass) and callable(one_batch)) or self._wrapped:
            return False
        params = count_params(getattr(trainer, "ref_model", None)
                              or getattr(trainer, "model", None))

        def wrapped_pass(*args: Any, **kwargs: Any) -> Any:
            name = kwargs.get("name", args[1] if len(args) > 1 else None)  # (dataset, name, ..)
            info = {"metered": "per call: DPOTrainer's reference pass, wrapped",
                    "dataset": str(name), "params": params}
            with self.phase(REFERENCE_STAGE, info) as window:
                self.window = window
                try:
                    out = run_pass(*args, **kwargs)
                finally:
                    self.window = None
                if window is not None:
                    self.passes += 1
                    window.annotate(passes=1)
                return out

        def wrapped_batch(model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
            out = one_batch(model, inputs, *args, **kwargs)
            if self.window is not None:
                tokens, rows = batch_tokens(inputs)
                self.window.add(tokens=tokens, samples=rows)
            return out

        for attr, fn in (("_precompute_ref_logps", wrapped_pass),
                         ("compute_ref_log_probs", wrapped_batch)):
            self._wrapped.append((trainer, attr, vars(trainer).get(attr, _NONE)))
            setattr(trainer, attr, fn)
        return True

    def remove(self) -> None:
        """Put back what each wrapped attribute was."""
        for obj, attr, before in reversed(self._wrapped):
            if before is _NONE:
                vars(obj).pop(attr, None)
            else:
                setattr(obj, attr, before)
        self._wrapped.clear()


def hook_reference(callback: Any, phase: Callable[[str, dict[str, Any]],
                                                  AbstractContextManager[Any]]
                   ) -> ReferenceHooks | None:
    """The reference pass of the Trainer whose event ``callback`` is handling, wrapped
    (None when it precomputes none)."""
    from distillmeter.integrations.trainer_phases import find_trainer

    hooks = ReferenceHooks(phase)
    return hooks if hooks.install(find_trainer(callback)) else None
