"""The teacher's run: one run directory whose stages make every teacher-side artifact the
methods need, each once.

    setup.load        task data, tokenizer, the teacher (fresh, or a checkpoint found)
    teacher.train     the shared loop on the teacher's privileged labelled set
    eval.teacher      greedy decoding on the test set (the teacher's quality, Q's reference)
    teacher.generate  the teacher answers the prompt pool; the verifier filters
    teacher.logits    top-k log-probs over each cached-KD method's training sequences

With ``resume``, artifacts already made (found by the hash of what produces them, anywhere
under the output directory, and verified by checksum) are not made again; if all are
found, no teacher run happens at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from distillmeter import protocol
from distillmeter.errors import UserError
from distillmeter.models import build, count_params
from distillmeter.pipelines import artifacts, components, methods
from distillmeter.pipelines.artifact_plan import ArtifactSpec, TeacherPlan
from distillmeter.pipelines.context import Context
from distillmeter.pipelines.data import batches, encode_pairs
from distillmeter.pipelines.evaluation import (
    evaluate,
    read_metrics,
    scoring_info,
    write_eval,
)
from distillmeter.pipelines.logit_cache import write_cache
from distillmeter.pipelines.progress import generation_progress
from distillmeter.pipelines.stagework import attention_info
from distillmeter.pipelines.synthetic import generate_synthetic, read_synthetic
from distillmeter.pipelines.training import autocast, ce_loss, train
from distillmeter.terminal import literal


@dataclass
class Located:
    """An artifact on disk and the run that measured the stage which made it."""

    spec: ArtifactSpec
    folder: Path
    run_id: str

    @property
    def run_dir(self) -> Path:
        return artifacts.run_dir_of(self.folder)


@dataclass
class TeacherOutputs:
    plan: TeacherPlan
    located: dict[ArtifactSpec, Located] = field(default_factory=dict)
    run_dir: Path | None = None  # the run made now (None when everything was found)

    def folder(self, spec: ArtifactSpec | None) -> Path | None:
        return self.located[spec].folder if spec is not None else None

    def teacher_metrics(self) -> dict:
        return read_metrics(self.folder(self.plan.eval))

    def synthetic_kept(self) -> int | None:
        """The teacher answers kept in the synthetic data (None: none planned or made)."""
        spec = self.plan.synthetic
        if spec is None or spec not in self.located:
            return None
        return int(artifacts.read_manifest(self.folder(spec)).info.get("n_kept", 0))

    def missing_data(self, method) -> tuple[str, str] | None:
        """Why ``method`` has no teacher data to learn from (a teacher product that came
        out empty) and the way out, or None. A method learning from none would train as
        if it did and pass for a distillation result, so the runner stops on it
        (``check_data``)."""
        spec = self.plan.synthetic
        if methods.get(method).needs_synthetic and spec is not None and spec in self.located:
            info = artifacts.read_manifest(self.folder(spec)).info
            if not info.get("n_kept"):
                n = int(info.get("n_prompts", 0))
                if (info.get("generation") or {}).get("verify", True):
                    return (f"the teacher kept 0 of {n} answers (teacher.generate, verified)",
                            "set generation.verify: false, use a larger pool (task.n_pool) "
                            "or a trained teacher")
                return (f"the teacher's {n} answers were all blank (teacher.generate)",
                        "use a trained teacher or a larger pool (task.n_pool)")
        cache = self.plan.caches.get(method.name)
        if cache is not None:
            info = (artifacts.read_manifest(self.folder(cache)).info
                    if cache in self.located else {})
            if not info.get("n_sequences") or not info.get("n_positions"):
                return ("its logit cache covers no training sequence (teacher.logits)",
                        "give it training data (task.n_labelled, or the teacher's answers)")
        return None

    def check_data(self, methods) -> None:
        """UserError (one line) when any of ``methods`` has no teacher data: naming the
        methods, the count and the way out. Called before any student of the campaign
        trains (docs/pipelines.md)."""
        by_reason: dict[tuple[str, str], list[str]] = {}
        for m in methods:
            why = self.missing_data(m)
            if why is not None and m.name not in by_reason.setdefault(why, []):
                by_reason[why].append(m.name)
        if not by_reason:
            return
        parts = []
        for (why, fix), names in by_reason.items():
            who = (f"method {names[0]} has" if len(names) == 1
                   else f"methods {', '.join(names)} have")
            parts.append(f"{who} no teacher data: {why}; stopped before any student "
                         f"trained (the teacher's run is kept and accounted): {fix}")
        raise UserError("; ".join(parts))

    def upstream_for(self, method, student_dir: Path) -> list[dict]:
        """``run_start.upstream`` for a student of ``method``: the runs that measured the
        teacher stages it uses, with paths relative to the student's run directory."""
        by_run: dict[Path, dict] = {}
        for spec in self.plan.used_by(method):
            loc = self.located[spec]
            ref = by_run.setdefault(loc.run_dir, {
                "run_id": loc.run_id,
                "run_dir": os.path.relpath(loc.run_dir, student_dir),
                "stages": []})
            # an lm-eval teacher evaluation loaded its model and tasks in a stage of its own
            load = artifacts.read_manifest(loc.folder).info.get("load_stage")
            for stage in [load, spec.stage] if load else [spec.stage]:
                if stage not in ref["stages"]:
                    ref["stages"].append(stage)
        return list(by_run.values())


def _run_id_of(folder: Path, manifest) -> str:
    if manifest.run_id:
        return manifest.run_id
    return protocol.read_ledger(artifacts.run_dir_of(folder)).run_start.run_id


def locate_existing(ctx: Context, plan: TeacherPlan) -> dict[ArtifactSpec, Located]:
    """Teacher artifacts already under the output directory, verified by checksum."""
    found = {}
    for spec in plan.artifacts():
        folder = artifacts.find_verified(ctx.out_dir, spec.kind, spec.hash,
                                          warn=lambda m: ctx.ui.note(literal(m)))
        if folder is not None:
            found[spec] = Located(spec, folder, _run_id_of(folder, artifacts.read_manifest(folder)))
    return found


def _partial(ctx: Context, spec: ArtifactSpec) -> Path | None:
    """The most advanced unfinished attempt at an artifact (a logit cache resumes from it)."""
    best, best_n = None, 0
    for m in ctx.out_dir.glob(f"*/{protocol.ARTIFACTS_DIR}/{spec.kind}-{spec.hash}/"
                              f"{artifacts.MANIFEST}"):
        try:
            n = len(artifacts.read_manifest(m.parent).info.get("shards", []))
        except artifacts.ArtifactError:
            continue
        if n > best_n:
            best, best_n = m.parent, n
    return best


def _caches_without_answers(cfg, plan: TeacherPlan) -> set[ArtifactSpec]:
    """The logit caches of methods that learn from the teacher's answers."""
    return {plan.caches[m.name] for m in cfg.methods
            if m.name in plan.caches and methods.get(m).needs_synthetic}


def run_teacher(ctx: Context, plan: TeacherPlan, run_dir: Path) -> TeacherOutputs:
    """Make the artifacts ``plan`` needs that are not already found, in ``run_dir``."""
    out = TeacherOutputs(plan, locate_existing(ctx, plan) if ctx.resume else {})
    # a cache over sequences that should hold the teacher's answers, when it kept none, is
    # not made: that method cannot run (TeacherOutputs.check_data), so no work is spent on it
    skip = _caches_without_answers(ctx.cfg, plan) if out.synthetic_kept() == 0 else set()
    missing = [s for s in plan.artifacts() if s not in out.located and s not in skip]
    if not missing:
        if not skip:
            ctx.ui.note("[dim]teacher: every artifact found and verified; not run again[/]")
        return out
    cfg, ui, device, label = ctx.cfg, ctx.ui, ctx.device, run_dir.name
    ui.note(f"[bold]{literal(label)}[/]: the teacher ({', '.join(s.stage for s in missing)})")
    if out.located:
        ui.note(f"teacher: reusing {', '.join(s.stage for s in out.located)}; "
                f"making {', '.join(s.stage for s in missing)}")
    out.run_dir = run_dir
    meter = ctx.open_meter(run_dir, method="teacher", seed=cfg.teacher.seed,
                           config_id=plan.teacher_hash,
                           labels={"role": "teacher", "makes": [s.stage for s in missing]})

    def made(spec: ArtifactSpec, folder: Path) -> None:
        out.located[spec] = Located(spec, folder, meter.run_id)

    with meter:
        with ui.metered(meter, label, "setup.load", None):
            components.seed_everything(cfg.teacher.seed)
            data, tok = components.load_data_and_tokenizer(cfg)
            if plan.checkpoint in out.located:
                loaded = build.load_checkpoint(out.folder(plan.checkpoint), device,
                                                    cfg.teacher.model)
            else:
                loaded = build.build_model(cfg.teacher.model, tok, seed=cfg.teacher.seed,
                                                device=device, role="teacher",
                                                trainable=cfg.teacher.train)
            model, tok, max_len, mixed = (loaded.model, loaded.tokenizer, loaded.max_len,
                                          loaded.autocast)

        if plan.checkpoint is not None and plan.checkpoint in missing:
            seqs = encode_pairs(tok, [(e.prompt, e.target) for e in data.teacher_train], max_len)
            tcfg = cfg.teacher.training
            with ui.metered(meter, label, "teacher.train", tcfg.token_budget, "tok") as bar:
                bar.annotate(params=count_params(model), batch_size=tcfg.batch_size,
                             **attention_info(model))
                result = train(model, batches(seqs, tcfg.batch_size, tok.pad_token_id,
                                              seed=cfg.teacher.seed), ce_loss, tcfg,
                               device=device, autocast_dtype=mixed,
                               on_step=lambda n_tok, n_seq, loss: bar.advance(n_tok, n_seq,
                                                                              n_tok))
                bar.annotate(steps=result.steps, micro_batches=result.steps * tcfg.grad_accum)
                folder = artifacts.artifact_dir(run_dir, plan.checkpoint.kind,
                                                plan.checkpoint.hash)
                build.save_checkpoint(model, tok, folder)
                artifacts.write_manifest(folder, artifacts.ArtifactManifest(
                    kind=plan.checkpoint.kind, hash=plan.checkpoint.hash,
                    stage="teacher.train", run_id=meter.run_id,
                    info={"examples": len(seqs), "token_budget": tcfg.token_budget}))
            made(plan.checkpoint, folder)

        if plan.eval in missing and cfg.eval.backend == "lm_eval":
            from distillmeter.models.checkpoints import compute_dtype, model_source
            from distillmeter.pipelines.evaluation import lm_eval_stages

            ckpt = (out.folder(plan.checkpoint) if plan.checkpoint is not None
                    else model_source(cfg.teacher.model, "teacher"))
            folder = artifacts.artifact_dir(run_dir, plan.eval.kind, plan.eval.hash)
            le = lm_eval_stages(ui, meter, label, "eval.teacher", ckpt, cfg.eval,
                                device=device, dtype=compute_dtype(cfg.teacher.model, device),
                                folder=folder, kind=plan.eval.kind, key_hash=plan.eval.hash)
            q = le.quality
            meter.record_quality(q.metric, q.value, n=q.n, details={**q.details,
                                                                    "role": "teacher"})
            made(plan.eval, folder)
        elif plan.eval in missing:
            with ui.metered(meter, label, "eval.teacher", len(data.test)) as bar, \
                    autocast(device, mixed):
                bar.annotate(params=count_params(model), batch_size=cfg.eval.batch_size,
                             **attention_info(model))
                res = evaluate(model, tok, data.task, data.test, cfg.eval, device=device,
                               max_len=max_len, on_batch=generation_progress(bar))
                bar.advance(res.loss_tokens, 0, 0)
                bar.annotate(**scoring_info(res, cfg.eval.batch_size))
                folder = artifacts.artifact_dir(run_dir, plan.eval.kind, plan.eval.hash)
                write_eval(folder, res, kind=plan.eval.kind, key_hash=plan.eval.hash,
                           stage="eval.teacher", run_id=meter.run_id)
            meter.record_quality("exact_match", res.exact_match, n=res.n,
                                 details={"loss": res.loss, "role": "teacher"})
            made(plan.eval, folder)

        synthetic = None
        if plan.synthetic is not None and plan.synthetic in missing:
            g = cfg.generation
            n = len(data.pool) if g.n_prompts is None else min(g.n_prompts, len(data.pool))
            with ui.metered(meter, label, "teacher.generate", n, "prompt") as bar, \
                    autocast(device, mixed):
                bar.annotate(params=count_params(model), batch_size=g.batch_size,
                             backend=g.backend, **attention_info(model))
                folder = artifacts.artifact_dir(run_dir, plan.synthetic.kind,
                                                plan.synthetic.hash)
                res = generate_synthetic(folder, model, tok, data.task, list(data.pool), g,
                                         device=device, key_hash=plan.synthetic.hash,
                                         seed=cfg.teacher.seed, run_id=meter.run_id,
                                         on_batch=generation_progress(bar))
                bar.annotate(backend=res.manifest.info.get("backend", g.backend))
            ui.note(f"  teacher.generate kept {res.n_kept}/{res.n_prompts} answers "
                    f"({res.kept_fraction:.1%})" + (" (verified)" if g.verify else ""))
            made(plan.synthetic, folder)
        if plan.synthetic is not None:
            synthetic = read_synthetic(out.folder(plan.synthetic))
            if not synthetic:
                skip = _caches_without_answers(cfg, plan)

        from distillmeter.models.checkpoints import shared_vocab

        vocab = shared_vocab(tok, model)  # padding rows past the tokenizer's ids: never used
        for spec in {s.hash: s for s in plan.caches.values()}.values():
            if spec not in missing or spec in skip:
                continue
            method = next(m for m in cfg.methods if plan.caches.get(m.name) == spec)
            pairs = methods.get(method).train_on([(e.prompt, e.target) for e in data.labelled],
                                                 synthetic)
            seqs = encode_pairs(tok, pairs, max_len)
            lc = cfg.logits
            with ui.metered(meter, label, spec.stage, len(seqs)) as bar, \
                    autocast(device, mixed):
                bar.annotate(params=count_params(model), batch_size=lc.batch_size,
                             top_k=lc.top_k, **attention_info(model))
                scored = {"score_batches": 0, "scored_tokens": 0}

                def on_batch(n_tok: int, n_seq: int, scored=scored) -> None:
                    bar.advance(n_tok, n_seq)
                    if n_tok:  # a computed batch (a reused shard counts no tokens)
                        scored["score_batches"] += 1
                        scored["scored_tokens"] += n_tok
                        bar.annotate(**scored)
                folder = artifacts.artifact_dir(run_dir, spec.kind, spec.hash)
                manifest = write_cache(
                    folder, model, seqs, key_hash=spec.hash, top_k=lc.top_k, vocab_size=vocab,
                    pad_id=tok.pad_token_id, dtype=lc.dtype, batch_size=lc.batch_size,
                    shard_sequences=lc.shard_sequences, device=device, stage=spec.stage,
                    run_id=meter.run_id, resume_from=_partial(ctx, spec), on_batch=on_batch)
            ui.note(f"  {spec.stage}: top-{manifest.info['top_k']} cache, "
                    f"{manifest.info['bytes_per_token']:.0f} bytes/token")
            made(spec, folder)
    return out


