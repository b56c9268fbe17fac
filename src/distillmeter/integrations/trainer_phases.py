"""A distillation Trainer's phases as stage windows of their own: TRL's ``GKDTrainer`` (and
trainers built like it: a ``teacher_model`` attribute, the student's ``generate`` called
during training).

Where the work happens in one GKD training step (TRL 1.x, ``trl.experimental.gkd``):
``training_step`` first, with probability ``lmbda``, has the student ``generate``
completions for the batch's prompts (or, with ``seq_kd``, the teacher generates them);
then ``compute_loss`` runs the student's forward pass and, under no-grad, the teacher's
forward pass over the same sequences; then the loss's backward pass and, at the end of the
step, the optimizer. Without these hooks all of it lands in ``student.train``.

What the hooks do: for the duration of training, ``DistillMeterCallback`` wraps the
teacher's ``forward`` and ``generate`` and the student's ``generate`` (instance attributes
set on the very models the trainer calls, removed when training ends). A wrapped call made
while the callback's training window is open ends that window, runs in a window of its own
(``teacher.score``, ``teacher.generate``, ``student.generate``), and training's window
resumes after it. Calls made at other times (the teacher's forward in an evaluation,
the forward passes inside a ``generate``) run as they are, in whatever window is open.

Source and uncertainty: each window is a real one (``meter.begin_window`` /
``end_window``): the devices are synchronized and every counter read at both edges, so a
phase's energy is a counter delta like every other stage's (``nvml_counter`` on an NVIDIA
GPU; RAPL, or the labelled estimate, on a CPU), not a share of a larger window. The price
is precision per window: a GKD step's phases last milliseconds on tiny models and tens to
hundreds of milliseconds on real ones, shorter than the counters' ~100 ms update period,
so each window carries up to 0.1 s x power of boundary uncertainty at each edge (the
report's ``uncertainty_j`` per window, summed per phase in the stage table, and a
``short stage`` note). The errors move energy between neighbouring windows of one step,
not out of the run: the run's total is exact, and the phase totals over many steps are
the figures to read. Each boundary costs about 1 ms (a CPU reading) to 5 ms (NVML's
counter read and a device synchronize), up to eight a step. Each window records what was
metered and how (``info``: ``metered``, ``params``, ``calls``).

Tokens: ``teacher.score`` counts the tokens the teacher read (the attention mask's sum);
``student.generate`` and ``teacher.generate`` count prompt tokens plus generated tokens up
to and including each row's first EOS. ``student.train`` keeps the Trainer's count,
``state.num_input_tokens_seen``: transformers 5.x takes it after each training step, from
the batch as GKD left it, so on an on-policy step it counts the generated sequences the
student learned (versions that count before the step count the dataset's sequences).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

# A phase runner: ``phase(name, info)`` is a context manager that yields the window (an
# energy.Stage, to count tokens into) or None when the call is not to be metered apart.
PhaseRunner = Callable[[str, dict[str, Any]], AbstractContextManager[Any]]
_NONE = object()


def find_trainer(callback: Any, depth: int = 64) -> Any | None:
    """The Trainer whose event is being handled: the nearest caller's ``self`` whose
    ``callback_handler`` holds ``callback`` (Trainer events are always called from the
    Trainer's own methods). None when there is none (the callback called by hand)."""
    frame = sys._getframe(1)
    for _ in range(depth):
        if frame is None:
            return None
        obj = frame.f_locals.get("self")
        handler = getattr(obj, "callback_handler", None)
        if handler is not None and any(cb is callback for cb in
                                       getattr(handler, "callbacks", ())):
            return obj
        frame = frame.f_back
    return None


def _param_count(model: Any) -> int | None:
    try:
        return int(sum(p.numel() for p in model.parameters()))
    except Exception:  # not a torch module
        return None


def _arg(args: tuple, kwargs: dict, name: str, position: int = 0) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else None


def read_tokens(args: tuple, kwargs: dict) -> tuple[int, int]:
    """(tokens, rows) a forward pass read: the attention mask's sum, else every id."""
    ids = _arg(args, kwargs, "input_ids")
    mask = kwargs.get("attention_mask")
    if mask is not None and hasattr(mask, "sum"):
        return int(mask.sum()), int(mask.shape[0])
    if ids is not None and hasattr(ids, "numel"):
        return int(ids.numel()), int(ids.shape[0]) if ids.dim() > 1 else 1
    return 0, 0


def generated_tokens(output: Any, prompt_width: int, eos_ids: list[int]) -> int:
    """New tokens in a ``generate`` result (a tensor or an output with ``sequences``),
    each row counted up to and including its first EOS (all of it when it has none)."""
    import torch

    seqs = getattr(output, "sequences", output)
    if not isinstance(seqs, torch.Tensor) or seqs.dim() != 2:
        return 0
    new = seqs[:, prompt_width:]
    if new.numel() == 0:
        return 0
    if not eos_ids:
        return int(new.numel())
    is_eos = torch.isin(new, torch.tensor(eos_ids, device=new.device))
    width = new.shape[1]
    pos = torch.arange(width, device=new.device).expand_as(new)
    first = torch.where(is_eos, pos, torch.full_like(pos, width)).min(dim=1).values
    return int(torch.clamp(first + 1, max=width).sum())


def _eos_ids(model: Any, kwargs: dict) -> list[int]:
    for cfg in (kwargs.get("generation_config"), getattr(model, "generation_config", None)):
        eos = getattr(cfg, "eos_token_id", None)
        if eos is not None:
            return [int(e) for e in eos] if isinstance(eos, (list, tuple)) else [int(eos)]
    eos = kwargs.get("eos_token_id")
    if eos is not None:
        return [int(e) for e in eos] if isinstance(eos, (list, tuple)) else [int(eos)]
    return []


class PhaseHooks:
    """The wrapped calls of one training run (see the module docstring); ``remove()`` puts
    the models' own methods back."""

    def __init__(self, phase: PhaseRunner):
        self.phase = phase
        # (model, attribute, the instance attribute it had before, or _NONE)
        self._wrapped: list[tuple[Any, str, Any]] = []
        self.installed: set[str] = set()
        self.calls: dict[str, int] = {}

    def _wrap(self, model: Any, attr: str, name: str, info: dict[str, Any],
              count: Callable[[tuple, dict, Any], tuple[int, int]]) -> None:
        if model is None or any(m is model and a == attr for m, a, _ in self._wrapped):
            return
        original = getattr(model, attr, None)
        if not callable(original):
            return
        # what the instance itself held (accelerate's mixed-precision forward, say): the
        # wrapper calls it, and remove() puts it back
        before = vars(model).get(attr, _NONE) if hasattr(model, "__dict__") else _NONE

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name, {**info, "calls": 1}) as window:
                out = original(*args, **kwargs)
                if window is not None:
                    tokens, rows = count(args, kwargs, out)
                    window.add(tokens=tokens, samples=rows)
                    self.calls[name] = self.calls.get(name, 0) + 1
                return out

        setattr(model, attr, wrapped)
        self._wrapped.append((model, attr, before))
        self.installed.add(name)

    def install(self, trainer: Any) -> list[str]:
        """Wrap what ``trainer`` has: its ``teacher_model`` (forward -> ``teacher.score``,
        generate -> ``teacher.generate``) and its student (generate ->
        ``student.generate``). Returns the phases installed (none for a plain Trainer)."""
        teacher = getattr(trainer, "teacher_model", None)
        if teacher is None:
            return []
        student = getattr(trainer, "model", None)
        unwrap = getattr(getattr(trainer, "accelerator", None), "unwrap_model", None)
        students = [student]
        if unwrap is not None and student is not None:
            students.append(unwrap(student))
        teachers = [teacher] + ([unwrap(teacher)] if unwrap is not None else [])

        def score_count(args: tuple, kwargs: dict, out: Any) -> tuple[int, int]:
            return read_tokens(args, kwargs)

        def gen_count(model: Any) -> Callable[[tuple, dict, Any], tuple[int, int]]:
            def count(args: tuple, kwargs: dict, out: Any) -> tuple[int, int]:
                prompt_tokens, rows = read_tokens(args, kwargs)
                ids = _arg(args, kwargs, "input_ids")
                width = int(ids.shape[-1]) if ids is not None and hasattr(ids, "shape") else 0
                return prompt_tokens + generated_tokens(out, width, _eos_ids(model, kwargs)), rows
            return count

        t_info = {"metered": "per call: the teacher's forward, wrapped",
                  "params": _param_count(teacher)}
        s_info = {"metered": "per call: the student's generate, wrapped",
                  "params": _param_count(student)}
        for t in teachers:
            self._wrap(t, "forward", "teacher.score", t_info, score_count)
            self._wrap(t, "generate", "teacher.generate",
                       {**t_info, "metered": "per call: the teacher's generate, wrapped"},
                       gen_count(t))
        for s in students:
            self._wrap(s, "generate", "student.generate", s_info, gen_count(s))
        return sorted(self.installed)

    def remove(self) -> None:
        """Put back what each wrapped attribute was."""
        for model, attr, before in reversed(self._wrapped):
            if before is _NONE:
                vars(model).pop(attr, None)
            else:
                setattr(model, attr, before)
        self._wrapped.clear()
