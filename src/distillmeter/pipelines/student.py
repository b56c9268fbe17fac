"""A student's run: one method, one seed, one run directory.

    setup.load     task data, tokenizer, a fresh student (from the seed), its training data
                   (labelled and/or the teacher's synthetic answers), the logit cache or
                   the live teacher for KD and on-policy
    student.train  the shared loop (``training.train``): the method (``methods/``) gives
                   its data, loss, windows and batches; an onpolicy student's loop runs in
                   rounds, each a student.generate, teacher.score and student.train
                   window (``methods/on_policy.py``)
    eval.student   greedy decoding on the test set; quality recorded with the teacher's
                   score and Q = student / teacher

The run's ``run_start.upstream`` names the teacher stages this method used (see artifact_plan.py).
The trained student is saved (checkpoint and manifest with checksums) at the end of
student.train, as that stage's product: a resumed run whose earlier attempt got that far
evaluates the saved student instead of training again, and names that attempt's
student.train as upstream (``locate_trained``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from distillmeter import protocol
from distillmeter.errors import writing
from distillmeter.models import build, count_params
from distillmeter.pipelines import artifacts, components, methods
from distillmeter.pipelines.artifact_plan import StudentRun
from distillmeter.pipelines.artifacts import ArtifactManifest
from distillmeter.pipelines.context import Context
from distillmeter.pipelines.data import encode_pairs
from distillmeter.pipelines.evaluation import evaluate, scoring_info, write_eval
from distillmeter.pipelines.methods import TrainParts
from distillmeter.pipelines.progress import generation_progress
from distillmeter.pipelines.stagework import attention_info
from distillmeter.pipelines.synthetic import read_synthetic
from distillmeter.pipelines.teacher import TeacherOutputs
from distillmeter.pipelines.training import autocast, train

STUDENT_CKPT = "student"
STUDENT_EVAL = "eval"
TRAIN_LOG = "train"


@dataclass
class TrainedStudent:
    """A student an earlier attempt at the same run (same config_id) trained and saved:
    its verified checkpoint, the run that measured its ``student.train``, and what that
    training did (from its train log, when that verifies too)."""

    folder: Path
    run_id: str
    steps: int = 0
    tokens: int = 0

    @property
    def run_dir(self) -> Path:
        return artifacts.run_dir_of(self.folder)

    def upstream_ref(self, student_dir: Path) -> dict:
        """``run_start.upstream`` entry naming that attempt's training (path relative to
        the new run directory, as teacher runs are named)."""
        return {"run_id": self.run_id, "run_dir": os.path.relpath(self.run_dir, student_dir),
                "stages": ["student.train"]}

    def train_log(self) -> SimpleNamespace:
        return SimpleNamespace(steps=self.steps, tokens=self.tokens)


def locate_trained(search_dir: Path, run: StudentRun, warn=None) -> TrainedStudent | None:
    """The newest student checkpoint of ``run`` (kind ``student``, its config_id) in a run
    directory right under ``search_dir`` whose manifest's checksums all match, as teacher
    artifacts are found (``teacher.locate_existing``); corrupted ones are reported through
    ``warn`` and skipped. The manifest is written after the whole checkpoint, at the end of
    ``student.train``: a folder without one (a crash or a full disk mid-save) is not a
    checkpoint. A method with ``retrains_on_resume`` (on-policy: its training is rounds of
    three stages, its own teacher scoring among them, which no upstream entry carries as
    student work) is trained again."""
    if methods.get(run.method).retrains_on_resume:
        return None
    folder = _own_checkpoint(search_dir, run, warn)
    if folder is None:
        return None
    manifest = artifacts.read_manifest(folder)
    run_id = manifest.run_id or protocol.read_ledger(artifacts.run_dir_of(folder)
                                                     ).run_start.run_id
    log = artifacts.artifact_dir(artifacts.run_dir_of(folder), TRAIN_LOG, run.config_id)
    steps = tokens = 0
    try:
        artifacts.load_verified(log)
        done = json.loads((log / "train.json").read_text(encoding="utf-8"))
        steps, tokens = int(done["steps"]), int(done["tokens"])
    except (artifacts.ArtifactError, OSError, ValueError, KeyError, TypeError):
        pass  # the checkpoint is what matters; the counts are only reported
    return TrainedStudent(folder, run_id, steps, tokens)


def _own_checkpoint(search_dir: Path, run: StudentRun, warn=None) -> Path | None:
    """The newest verified checkpoint that ``run`` itself trained: in its own run directory
    or an interrupted attempt at it (``<name>.failed-N``), for its seed. The config id alone
    is shared by every seed of a configuration, so without this a missing seed would be
    evaluated on another seed's student (a resume that adds seeds would report seed 0's
    quality three times)."""
    for folder in artifacts.find(search_dir, STUDENT_CKPT, run.config_id):
        owner = artifacts.run_dir_of(folder).name
        if owner != run.name and not owner.startswith(f"{run.name}.failed-"):
            continue
        try:
            manifest = artifacts.load_verified(folder)
        except artifacts.ArtifactError as exc:
            if warn is not None:
                warn(f"ignoring corrupted artifact: {exc}")
            continue
        if manifest.info.get("seed", run.seed) != run.seed:
            continue
        return folder
    return None


@dataclass
class StudentResult:
    exact_match: float
    loss: float
    teacher_exact_match: float
    train_steps: int
    train_tokens: int

    @property
    def q(self) -> float | None:
        return self.exact_match / self.teacher_exact_match if self.teacher_exact_match else None


def run_student(ctx: Context, run: StudentRun, teacher: TeacherOutputs,
                run_dir: Path, trained: TrainedStudent | None = None,
                start: TrainedStudent | None = None) -> StudentResult | None:
    """Train and evaluate one student in ``run_dir``, metered. Under torchrun every rank
    calls it (docs/scale.md); ranks other than 0 return None. ``trained``: this student as
    an interrupted attempt at the run already trained it (:func:`locate_trained`): it is
    loaded and evaluated, not trained again, and the attempt's ``student.train`` is named
    as upstream, its energy counted where it was measured (docs/reliability.md).
    ``start``: the trained student this one starts from (``Method.starts_from``), named
    as upstream likewise."""
    cfg, ui, label = ctx.cfg, ctx.ui, run_dir.name
    method, seed = run.method, run.seed
    main = ctx.dist is None or ctx.dist.is_main  # rank 0 (or the only process)
    teacher.check_data([method])  # before its run directory exists (the runner checks first)
    t_metrics = teacher.teacher_metrics()
    # how many of the teacher's answers it trains on, so the analysis can tell (0: none)
    kind = methods.get(method)
    answers = {"synthetic_examples": teacher.synthetic_kept()} if kind.needs_synthetic else {}
    upstream = teacher.upstream_for(method, run_dir)
    for earlier in (start, trained):
        if earlier is not None:
            upstream.append(earlier.upstream_ref(run_dir))
    meter = ctx.open_meter(run_dir, method=method.name, seed=seed, config_id=run.config_id,
                           upstream=upstream,
                           labels={"role": "student", "data": list(method.data), **answers,
                                   "loss": method.loss,
                                   "token_budget": run.training.token_budget,
                                   **({"starts_from": kind.starts_from()}
                                      if kind.starts_from() else {}),
                                   **kind.labels()})
    device = ctx.device  # used by the evaluation below
    with meter:
        if trained is not None:
            data, tok, model, max_len, mixed, result = _load_trained(ctx, meter, label, seed,
                                                                     trained, main)
        else:
            data, tok, model, max_len, mixed, result = _train(ctx, meter, run, teacher,
                                                              run_dir, main, start)
        if not main:
            # rank 0 alone evaluates; this rank's devices wait inside the stage, metered
            with meter.stage("eval.student"):
                return None

        from distillmeter.pipelines.evaluation import metric_value

        t_em = metric_value(t_metrics)
        if cfg.eval.backend == "lm_eval":  # eval.load, then eval.student: evaluation only
            from distillmeter.models.checkpoints import compute_dtype
            from distillmeter.pipelines.evaluation import lm_eval_stages

            ckpt = (trained.folder if trained is not None
                    else artifacts.artifact_dir(run_dir, STUDENT_CKPT, run.config_id))
            le = lm_eval_stages(
                ui, meter, label, "eval.student", ckpt, cfg.eval,
                device=device, dtype=compute_dtype(cfg.student.model, device),
                folder=artifacts.artifact_dir(run_dir, STUDENT_EVAL, run.config_id),
                kind=STUDENT_EVAL, key_hash=run.config_id)
            q = le.quality
            meter.record_quality(q.metric, q.value, n=q.n, details={
                **q.details, "teacher_value": t_em, "teacher_metric": t_metrics.get("metric"),
                "q": q.value / t_em if t_em else None})
            return StudentResult(q.value, float("nan"), t_em, result.steps, result.tokens)
        with ui.metered(meter, label, "eval.student", len(data.test)) as bar, \
                autocast(device, mixed):
            bar.annotate(params=count_params(model), batch_size=cfg.eval.batch_size,
                         **attention_info(model))
            res = evaluate(model, tok, data.task, data.test, cfg.eval, device=device,
                           max_len=max_len, on_batch=generation_progress(bar))
            bar.advance(res.loss_tokens, 0, 0)
            bar.annotate(**scoring_info(res, cfg.eval.batch_size))
            folder = artifacts.artifact_dir(run_dir, STUDENT_EVAL, run.config_id)
            write_eval(folder, res, kind=STUDENT_EVAL, key_hash=run.config_id,
                       stage="eval.student", run_id=meter.run_id)
        meter.record_quality("exact_match", res.exact_match, n=res.n, details={
            "loss": res.loss, "teacher_value": t_em, "teacher_loss": t_metrics.get("loss"),
            "q": res.exact_match / t_em if t_em else None})
    return StudentResult(res.exact_match, res.loss, t_em, result.steps, result.tokens)


def _train(ctx: Context, meter, run: StudentRun, teacher: TeacherOutputs, run_dir: Path,
           main: bool, start: TrainedStudent | None = None) -> tuple:
    """setup.load and student.train, as the run's method says (``methods/``): its data,
    its live teacher if any, its loss, its training windows and batches. The trained
    student is saved (checkpoint, manifest with checksums) at the end of student.train,
    as that stage's product."""
    cfg, ui, device, label = ctx.cfg, ctx.ui, ctx.device, run_dir.name
    method, seed, plan = run.method, run.seed, teacher.plan
    kind = methods.get(method)
    with ui.metered(meter, label, "setup.load", None):
        components.seed_everything(seed)
        data, tok = components.load_data_and_tokenizer(cfg)
        loaded_t = None  # a live teacher: online KD, on-policy
        if kind.live_teacher:
            if plan.checkpoint is not None:
                loaded_t = build.load_checkpoint(teacher.folder(plan.checkpoint), device,
                                                 cfg.teacher.model)
            else:
                loaded_t = build.build_model(cfg.teacher.model, tok, seed=0,
                                             device=device, role="teacher",
                                             trainable=False)
        student = (build.build_model(cfg.student.model, tok, seed=seed, device=device)
                   if start is None else
                   build.load_checkpoint(start.folder, device, cfg.student.model))
        model, max_len, mixed = student.model, student.max_len, student.autocast
        synthetic = (read_synthetic(teacher.folder(plan.synthetic))
                     if kind.needs_synthetic else None)
        pairs = kind.train_on([(e.prompt, e.target) for e in data.labelled], synthetic)
        seqs = encode_pairs(tok, pairs, max_len)
        from distillmeter.models.checkpoints import shared_vocab

        # logits compared on the tokenizer's ids (padding rows past them sliced off)
        parts = TrainParts(tokenizer=tok, student=student, teacher=loaded_t, sequences=seqs,
                           data=data, cache_folder=teacher.folder(plan.caches.get(method.name)),
                           vocab=shared_vocab(tok, model), device=device, seed=seed,
                           training=run.training, generation=cfg.generation,
                           logits=cfg.logits, world_size=ctx.world_size)
        loss_fn = kind.loss_fn(parts)

    tcfg = run.training
    with kind.windows(ui, meter, label, tcfg) as bar:
        # under torchrun every rank trains its shard of each batch (DDP/FSDP); the
        # stage counts this rank's tokens, the bar all ranks'
        world = ctx.world_size
        source = kind.train_source(bar, parts, loss_fn)
        result = train(model, source.batches, loss_fn, tcfg, device=device,
                       on_step=source.on_step, autocast_dtype=mixed, dist=ctx.dist)
        extra = source.finish(result)
        if main:  # rank 0 writes; FSDP gathered the trained model there
            model = result.model
            folder = artifacts.artifact_dir(run_dir, STUDENT_CKPT, run.config_id)
            build.save_checkpoint(model, tok, folder)
            artifacts.write_manifest(folder, ArtifactManifest(
                kind=STUDENT_CKPT, hash=run.config_id, stage="student.train",
                run_id=meter.run_id, info={"method": method.name, "seed": seed,
                                           "world_size": world}))
            log = artifacts.artifact_dir(run_dir, TRAIN_LOG, run.config_id)
            with writing(log):
                log.mkdir(parents=True, exist_ok=True)
                (log / "train.json").write_text(json.dumps({
                    "steps": result.steps, "tokens": result.tokens,
                    "samples": result.samples, "examples": len(seqs),
                    "epochs": result.samples / max(1, len(seqs)),
                    "final_loss": result.final_loss, "last_parts": result.last_parts,
                    "losses": result.losses, "world_size": world, **extra}, indent=1))
            artifacts.write_manifest(log, ArtifactManifest(
                kind=TRAIN_LOG, hash=run.config_id, stage="student.train",
                run_id=meter.run_id))
    return data, tok, model, max_len, mixed, result


def _load_trained(ctx: Context, meter, label: str, seed: int, trained: TrainedStudent,
                  main: bool) -> tuple:
    """setup.load for a student trained by an earlier attempt: its checkpoint (verified
    when it was located) instead of a fresh model and a training stage."""
    cfg, device = ctx.cfg, ctx.device
    model = max_len = mixed = None
    with ctx.ui.metered(meter, label, "setup.load", None) as bar:
        components.seed_everything(seed)
        data, tok = components.load_data_and_tokenizer(cfg)
        if main:  # rank 0 alone evaluates
            loaded = build.load_checkpoint(trained.folder, device, cfg.student.model)
            model, max_len, mixed = loaded.model, loaded.max_len, loaded.autocast
        bar.annotate(trained_in=trained.run_dir.name)
    return data, tok, model, max_len, mixed, trained.train_log()

