"""``DistillMeterCallback``: a stage-wise energy report from a transformers ``Trainer``.

    from distillmeter.integrations import DistillMeterCallback
    meter = DistillMeterCallback("runs/my-sft", method="sft")   # metering starts here
    model, data = load(...)                                     # -> setup.load
    trainer = Trainer(model=model, args=args, ..., callbacks=[meter])
    trainer.train()          # -> runs/my-sft/{ledger.jsonl,trace.csv,report.json}

TRL's ``SFTTrainer`` and ``GKDTrainer`` are ``Trainer`` subclasses, so the same callback
works there. With a trainer that has a ``teacher_model`` (``GKDTrainer``), the teacher's
forward passes and the student's on-policy generations inside the training steps run in
windows of their own, ``teacher.score`` and ``student.generate`` beside ``student.train``
(``trainer_phases.py`` says how, and what that costs in precision; ``phases=False`` keeps
everything in ``student.train``; DPO's precomputed reference: trainer_reference.py).

What is metered, and how (the windows, trainer_windows.py, are one open at a time):
- ``setup_stage`` (``setup.load``): from the callback's creation to ``on_train_begin``:
  the model, tokenizer and dataset preparation done after it was made. The meter starts
  when the callback is made; its idle baseline comes from the per-host cache after the
  first run (energy/idle_baseline.py). A callback made after the model it will see trained was
  loaded says so (a warning in the report and on the console): that loading is not in
  ``setup.load``, which holds what followed.
  ``setup_stage=None`` starts the meter at the first Trainer event instead;
- training runs inside ``train_stage`` (``student.train``), from ``on_train_begin`` to
  ``on_train_end``;
- evaluation runs inside ``eval_stage`` (``eval.student``). ``Trainer`` has no "evaluation
  begins" event, so the callback switches stages where evaluation is known to be next: at
  ``on_step_end``/``on_epoch_end`` when ``control.should_evaluate`` is set (the Trainer runs
  the evaluation right after these events), or failing that at the first
  ``on_prediction_step`` (then one evaluation batch is counted in training). It switches
  back at ``on_evaluate``, but only while training has steps left or still has saving to
  do (a checkpoint, the best model loaded back): no window is opened that would stay
  empty. So ``student.train`` may be several windows; the report lists each and the
  analysis sums them by name;
- training tokens come from ``state.num_input_tokens_seen``: the callback turns on the
  Trainer's own counter (``include_num_input_tokens_seen="non_padding"``: the attention
  mask's sum, gathered over all ranks) when it is off, on every rank alike (the counter is
  a collective: a rank that skipped it would leave the others waiting in its gather).
  Evaluation tokens are counted from the evaluation dataset's ``attention_mask``/
  ``input_ids`` when it has them;
- samples: optimizer steps x the global batch size (an upper bound when an epoch ends on
  a partial batch);
- labels learnt only when training begins (the seed from the TrainingArguments, the
  model's parameter count, how tokens are counted) are written then, as a ``run_labels``
  event; the TrainingArguments become config.yaml;
- ranks (trainer_ranks.py): under a launcher every process meters its own devices and
  rank 0 merges them; the Trainer's counts are global, so only the world's process zero
  records tokens, samples and quality. The callback calls no collective;
- at ``on_train_end`` the meter closes and the run is accounted into ``report.json``
  (``finish_at_train_end=False`` keeps it open for a later ``trainer.evaluate()``; then
  call :meth:`DistillMeterCallback.finish`). If the program ends without that (a crash in
  training), an exit handler closes the run (an open stage is marked failed) and
  accounts it. Phases inside training switch windows in :meth:`_phase` (PhaseHooks).
"""

from __future__ import annotations

import atexit
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from distillmeter.integrations.trainer_ranks import (
    launch_rank,
    make_meter,
    rank_of,
    reconcile_world,
    trainer_rank,
    world_note,
)
from distillmeter.integrations.trainer_support import (
    args_config,
    count_params,
    counts_non_padding,
    dataset_len,
    dataset_tokens,
    loaded_before,
    modules_in_memory,
    record_quality,
    saves_at_end,
    training_done,
)
from distillmeter.integrations.trainer_windows import Windows, aside
from distillmeter.privacy.redact import redact_text
from distillmeter.protocol import Report, stage_side
from distillmeter.terminal import printable

__all__ = ["DistillMeterCallback", "dataset_tokens"]

class DistillMeterCallback(TrainerCallback):
    """Meters a ``Trainer`` run into ``run_dir`` (see the module docstring).

    ``run_dir``: the run directory (the callback makes its own ``EnergyMeter`` and starts
    it at once, metering what follows as ``setup_stage``), or ``meter``: an
    ``EnergyMeter`` you manage (already started or not; the callback only opens and closes
    stages in it and never closes it). ``method``/``seed``/``labels``/``config`` label the
    run (``seed`` defaults to ``args.seed``; ``config`` to the TrainingArguments).
    ``quality_metric``: the evaluation metric recorded as the run's quality (default:
    accuracy, exact match or F1 when reported, else the loss). ``account``: keyword
    arguments for ``distillmeter.accounting.account`` (grid intensity, PUE, price).
    ``phases``: meter a distillation trainer's teacher forward passes and generations apart
    (``trainer_phases.py``). Other keyword arguments go to ``EnergyMeter`` (``devices``,
    ``sample_hz``, ``idle_seconds``, ``idle_cache``, ``run_id``, ``task``, ``upstream``, ...)."""

    def __init__(self, run_dir: str | Path | None = None, *, meter: Any = None,
                 train_stage: str = "student.train", eval_stage: str = "eval.student",
                 setup_stage: str | None = "setup.load",
                 method: str | None = None, seed: int | None = None,
                 labels: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
                 quality_metric: str | None = None, finish_at_train_end: bool = True,
                 print_report: bool = True, account: dict[str, Any] | None = None,
                 phases: bool = True, **meter_kwargs: Any) -> None:
        if (run_dir is None) == (meter is None):
            raise ValueError("DistillMeterCallback: give either run_dir or meter")
        if meter is not None and (meter_kwargs or method or seed is not None or labels
                                  or config):
            raise ValueError("DistillMeterCallback: with your own meter, label it when you "
                             "make it (method, seed, labels, config go to EnergyMeter)")
        for name in (train_stage, eval_stage, setup_stage):
            if name is not None:
                stage_side(name)  # raises ValueError on a malformed stage name
        self.run_dir = Path(run_dir) if run_dir is not None else Path(
            getattr(meter, "base_dir", meter.run_dir))  # a RankMeter's run, not its rank
        self.meter = meter
        self._owns_meter = meter is None
        self.train_stage, self.eval_stage = train_stage, eval_stage
        self.setup_stage = setup_stage if meter is None else None
        self.method, self.seed = method, seed
        self.labels, self.config = dict(labels or {}), config
        self.quality_metric = quality_metric
        self.finish_at_train_end, self.print_report = finish_at_train_end, print_report
        self.account_kwargs = dict(account or {})
        self.meter_kwargs = meter_kwargs
        self.report: Report | None = None
        self._active: bool | None = None  # whether this process meters (None: not known yet)
        self._lead = True  # world process zero: records the Trainer's (global) counts
        self._world_checked = False
        self._windows: Windows | None = Windows(meter) if meter is not None else None
        self._training = False
        self._labelled = False
        self._tokens_seen = 0
        self._token_counter = "non_padding"
        self._eval_tokens: dict[int, int | None] = {}
        self._finished = False
        self.phases = phases
        self._hooks: Any = None  # trainer_phases.PhaseHooks while training
        self._ref_hooks: Any = None  # trainer_reference.ReferenceHooks, from on_init_end
        self._args: Any = None
        self._state: Any = None
        self._before: Any = None  # the torch modules alive when the callback was made
        if self.setup_stage is not None:
            # every process meters (its own devices, under a launcher); the first reading
            # comes before anything the user loads next
            self._before = modules_in_memory()
            self._active = True
            self._start_meter(launch_rank())
            self._windows.open(self.setup_stage)

    # ------------------------------------------------------------------ plumbing
    def _settle(self, args: Any, state: Any) -> bool:
        """Who records the Trainer's counts (its world process zero), whether this process
        meters (a meter you gave: if a ``RankMeter``, else on process zero), and, once,
        whether launcher and Trainer agree on the world. True if this process meters."""
        self._lead = bool(getattr(state, "is_world_process_zero", True))
        if self._active is None:
            given = self.meter is not None and not self._owns_meter
            self._active = not given or self._lead or rank_of(self.meter) is not None
        if not self._world_checked and self._owns_meter and self.meter is not None:
            self._world_checked = True
            note = reconcile_world(self.meter, args)
            if note is not None:
                self._tell(note)
        return bool(self._active)

    def _tell(self, message: str) -> None:
        """A problem the user must see: console and the run's warnings (once: the lead)."""
        if self._lead:
            print(f"distillmeter: {message}", file=sys.stderr)
            self.meter.warn(message)

    def _start_meter(self, info: Any) -> None:
        labels = {"integration": "transformers.Trainer", **self.labels}
        meter = make_meter(self.run_dir, info, method=self.method, seed=self.seed,
                           labels=labels, config=self.config, **self.meter_kwargs)
        meter.start()
        self.meter, self._windows = meter, Windows(meter)
        self._lead = info.rank == 0
        atexit.register(self._at_exit)
        note = world_note(info)
        if note is not None:
            self._tell(note)

    def _ensure_started(self, args: Any, model: Any) -> bool:
        """Make and start the meter at the first event that needs it (unless it already
        runs), and write what the Trainer tells about the run. False once finished."""
        if self._finished:
            warnings.warn("DistillMeterCallback: the run was already finished; this work "
                          "is not metered (use finish_at_train_end=False to meter a later "
                          "trainer.evaluate())", stacklevel=3)
            return False
        if self.meter is None:  # started at a Trainer event: the Trainer knows the world
            self._start_meter(trainer_rank(args, launch_rank()))
        if self._owns_meter and not self._labelled:
            self._labelled = True
            self._learn_labels(args, model)
        return True

    def _learn_labels(self, args: Any, model: Any) -> None:
        """Labels only the Trainer knows (a ``run_labels`` event) and config.yaml."""
        from distillmeter.energy.runfiles import write_config

        labels: dict[str, Any] = {"tokens_counted": self._token_counter}
        params = count_params(model)
        if params and f"{self._role()}_params" not in self.labels:
            labels[f"{self._role()}_params"] = params
        seed = getattr(args, "seed", None) if self.seed is None else None
        self.meter.add_labels(seed=seed, labels=labels)
        config = self.config if self.config is not None else args_config(args)
        if config is not None:
            write_config(self.meter.run_dir, config)  # a rank's own directory under ranks

    def _role(self) -> str:
        return "teacher" if stage_side(self.train_stage) == "teacher" else "student"

    def _count_train(self, args: Any, state: Any, steps: int = 0) -> None:
        """Add the tokens seen since the last call (and ``steps`` x global batch samples)
        to the open training window."""
        seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        delta, self._tokens_seen = seen - self._tokens_seen, seen
        # the Trainer's token count is gathered over ranks and the global batch spans them:
        # recorded once, by the lead, as the merge adds the ranks' counts up
        if self._lead and self._windows.is_open(self.train_stage):
            global_batch = (int(getattr(args, "train_batch_size", 0) or 0)
                            * int(getattr(args, "gradient_accumulation_steps", 1) or 1)
                            * int(getattr(args, "world_size", 1) or 1))
            self._windows.add(tokens=max(0, delta), samples=steps * global_batch)

    def _to_eval(self, args: Any, state: Any) -> None:
        if self._windows.is_open(self.eval_stage):
            return
        self._count_train(args, state)
        self._windows.switch(self.eval_stage)

    def _end_eval(self, dataloader: Any, args: Any, state: Any) -> int:
        """Close the evaluation window with its token and sample counts (none when
        ``dataloader`` is None: an announced evaluation that did not run); reopen training
        if it has work left. Returns the number of evaluated examples (0 if unknown)."""
        dataset = getattr(dataloader, "dataset", None)
        n = dataset_len(dataset)
        if self._windows.is_open(self.eval_stage) and not self._lead:
            self._windows.close()  # this rank's devices; the dataset is counted by the lead
        elif self._windows.is_open(self.eval_stage):
            tokens = None
            if dataset is not None:
                key = id(dataset)
                if key not in self._eval_tokens:
                    self._eval_tokens[key] = dataset_tokens(dataset)
                tokens = self._eval_tokens[key]
                if tokens is None:
                    self.meter.warn("evaluation tokens unknown: the evaluation dataset has "
                                    "no attention_mask or input_ids", stage=self.eval_stage)
            self._windows.close(tokens=tokens or 0, samples=n)
        if (self._training and not self._windows.is_open()
                and (not training_done(state) or saves_at_end(args))):
            self._windows.open(self.train_stage)
        return n

    # ------------------------------------------------------------------ Trainer events
    def on_init_end(self, args, state, control, **kwargs):
        # TRL's DPOTrainer precomputes the reference's log-probs after this event
        if self.phases and self._ref_hooks is None:
            from distillmeter.integrations.trainer_reference import hook_reference

            self._init = (args, state, kwargs.get("model"))  # for the meter's lazy start
            self._ref_hooks = hook_reference(self, self._aside)

    @contextmanager
    def _aside(self, name: str, info: dict[str, Any]) -> Iterator[Any]:
        """Work outside the training steps (the reference pass) in a window of its own."""
        args, state, model = self._init
        if self._finished or not (self._settle(args, state) and self._ensure_started(args, model)):
            yield None
            return
        with aside(self._windows, name, info, self._leave_train) as window:
            yield window

    def _leave_train(self) -> None:
        if self._windows.is_open(self.train_stage):
            self._count_train(self._args, self._state)

    def on_train_begin(self, args, state, control, **kwargs):
        # The Trainer's own token counter, gathered over ranks: set on every rank alike,
        # before anything that may return, or the ranks that set it wait forever in its
        # gather for those that did not. "no" -> count non-padding (transformers 4.57+;
        # older versions only count every token, padding included).
        if getattr(args, "include_num_input_tokens_seen", "no") in ("no", False, None):
            if counts_non_padding():
                args.include_num_input_tokens_seen = "non_padding"
            else:
                args.include_num_input_tokens_seen = True
                self._token_counter = "all (padding included)"
        else:
            self._token_counter = str(args.include_num_input_tokens_seen)
        if not self._settle(args, state):
            return
        if not self._ensure_started(args, kwargs.get("model")):
            return
        if self._before is not None and loaded_before(kwargs.get("model"), self._before):
            self._tell(f"the model this Trainer trains was loaded before the callback was "
                       f"made: its loading is not in {self.setup_stage}, which holds only what "
                       "came after (make the callback first to count the loading)")
        self._before = None
        self._training = True
        self._tokens_seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        self._windows.switch(self.train_stage)  # closes setup.load
        if self.phases:
            from distillmeter.integrations.trainer_phases import PhaseHooks, find_trainer

            trainer = find_trainer(self)
            if trainer is not None:
                self._args, self._state = args, state
                self._hooks = PhaseHooks(self._phase)
                self._hooks.install(trainer)

    @contextmanager
    def _phase(self, name: str, info: dict[str, Any]) -> Iterator[Any]:
        """A wrapped call (trainer_phases.py) in a window of its own while training's window
        is open; yields that window (None: the call runs in whatever window is open)."""
        if not (self._active and self._training and self._windows.is_open(self.train_stage)):
            yield None
            return
        with aside(self._windows, name, info, self._leave_train) as window:
            yield window

    def on_step_begin(self, args, state, control, **kwargs):
        # An evaluation window still open at the next step means the Trainer skipped the
        # evaluation it had announced: back to training.
        if self._active and self._training and self._windows.is_open(self.eval_stage):
            self._end_eval(None, args, state)

    def on_step_end(self, args, state, control, **kwargs):
        if not (self._active and self._training):
            return
        self._count_train(args, state, steps=1)
        if control.should_evaluate:
            self._to_eval(args, state)

    def on_epoch_end(self, args, state, control, **kwargs):
        if self._active and self._training and control.should_evaluate:
            self._to_eval(args, state)

    def on_prediction_step(self, args, state, control, **kwargs):
        if not self._settle(args, state) or (self._windows and self._windows.is_open(
                self.eval_stage)):
            return
        if not self._ensure_started(args, kwargs.get("model")):
            return
        self._to_eval(args, state)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not self._active or self.meter is None or self._finished:
            return
        n = self._end_eval(kwargs.get("eval_dataloader"), args, state)
        if self._lead:
            record_quality(self.meter, self.quality_metric, metrics or {}, n, state)

    def on_predict(self, args, state, control, metrics=None, **kwargs):
        if not self._active or self.meter is None or self._finished:
            return
        self._end_eval(kwargs.get("test_dataloader") or kwargs.get("eval_dataloader"),
                       args, state)

    def on_train_end(self, args, state, control, **kwargs):
        if not (self._active and self._training):
            return
        self._unhook()
        self._count_train(args, state)
        self._windows.close()
        self._training = False
        if self.finish_at_train_end:
            self.finish()

    # ------------------------------------------------------------------ results
    def finish(self, status: str | None = None) -> Report | None:
        """Close any open window and (if the callback made it) the meter, then account the
        run into ``report.json``. Returns the report (None on other ranks, or when the
        meter is yours: close it and call ``distillmeter.accounting.account`` yourself).
        Under a launcher call it on every rank: rank 0 merges once every rank has ended
        (it waits up to ``merge_wait_s``, 120 s by default, for them)."""
        if self._finished or not self._active or self.meter is None:
            return self.report
        self._unhook()
        if self._ref_hooks is not None:
            self._ref_hooks.remove()
        self._finished = True
        self._windows.close(failed="the run ended while this stage was running"
                            if status == "failed" else None)
        if not self._owns_meter:
            return None
        self.meter.close(status)
        info = rank_of(self.meter)
        if info is not None and info.rank != 0:
            return None  # rank 0 merges and accounts the run
        if info is not None and not self.meter.merged and self.meter.status == "ok":
            print(f"distillmeter: not every rank of {self.run_dir} had ended after "
                  f"{self.meter.merge_wait_s:.0f} s; the report below merges what they wrote "
                  f"so far (`distillmeter account {self.run_dir}` once they end)",
                  file=sys.stderr)
        from distillmeter.accounting import account, write_report

        try:
            self.report = account(self.run_dir, **self.account_kwargs)
            write_report(self.run_dir, self.report)
        except Exception as exc:  # training is done; a report problem must not lose it
            warnings.warn(f"DistillMeterCallback: could not account {self.run_dir}: {exc} "
                          f"(the raw files are there: `distillmeter account {self.run_dir}`)",
                          stacklevel=2)
            return None
        if self.print_report:
            from distillmeter.tables import print_report

            print_report(self.report)
        return self.report

    def _unhook(self) -> None:
        if self._hooks is not None:
            self._hooks.remove()
            self._hooks = None

    def _at_exit(self) -> None:
        if not self._finished and self.meter is not None and self._active:
            try:
                self.finish("failed" if self._windows.is_open() else None)
            except Exception as exc:  # at exit: say what happened, never raise
                print(printable(redact_text(f"distillmeter: could not finish {self.run_dir}: "
                                            f"{exc}")), file=sys.stderr)

    def __enter__(self) -> DistillMeterCallback:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if self._active:
            self.finish("failed" if exc is not None else None)
        return False
