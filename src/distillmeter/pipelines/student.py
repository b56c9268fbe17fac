"""A student's run: one method, one seed, one run directory.

    setup.load     task data, tokenizer, a fresh student (from the seed), its training data
                   (labelled and/or the teacher's synthetic answers), the logit cache or
                   the live teacher for KD and on-policy
    student.train  the shared loop (``training.train``): only the loss and data differ; an
                   onpolicy student's loop runs in rounds, each a student.generate,
                   teacher.score and student.train window (``onpolicy.py``)
    eval.student   greedy decoding on the test set; quality recorded with the teacher's
                   score and Q = student / teacher

The run's ``run_start.upstream`` names the teacher stages this method used (see plan.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from distillmeter.errors import writing
from distillmeter.models import build, count_params
from distillmeter.pipelines import artifacts, components
from distillmeter.pipelines.artifacts import ArtifactManifest
from distillmeter.pipelines.context import Context, training_pairs
from distillmeter.pipelines.data import batches, encode_pairs
from distillmeter.pipelines.evaluation import evaluate, scoring_info, write_eval
from distillmeter.pipelines.logit_cache import LogitCache
from distillmeter.pipelines.onpolicy import OnPolicyKD, onpolicy_data
from distillmeter.pipelines.plan import StudentRun
from distillmeter.pipelines.progress import generation_progress
from distillmeter.pipelines.synthetic import read_synthetic
from distillmeter.pipelines.teacher import TeacherOutputs
from distillmeter.pipelines.training import CachedKD, OnlineKD, autocast, ce_loss, train
from distillmeter.pipelines.work import attention_info

STUDENT_CKPT = "student"
STUDENT_EVAL = "eval"
TRAIN_LOG = "train"


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
                run_dir: Path) -> StudentResult | None:
    """Train and evaluate one student in ``run_dir``, metered. Under torchrun every rank
    calls it (docs/scale.md); ranks other than 0 return None."""
    cfg, ui, device, label = ctx.cfg, ctx.ui, ctx.device, run_dir.name
    method, seed = run.method, run.seed
    main = ctx.dist is None or ctx.dist.is_main  # rank 0 (or the only process)
    plan = teacher.plan
    t_metrics = teacher.teacher_metrics()
    meter = ctx.open_meter(run_dir, method=method.name, seed=seed, config_id=run.config_id,
                           upstream=teacher.upstream_for(method, run_dir),
                           labels={"role": "student", "data": list(method.data),
                                   "loss": method.loss,
                                   "teacher_mode": method.teacher_mode if method.loss == "kd"
                                   else None,
                                   **({"divergence": method.divergence, "lmbda": method.lmbda,
                                       "block_prompts": method.block_prompts}
                                      if method.onpolicy else {})})
    with meter:
        with ui.metered(meter, label, "setup.load", None):
            components.seed_everything(seed)
            data, tok = components.load_data_and_tokenizer(cfg)
            loaded_t = None  # a live teacher: online KD, on-policy
            if (method.loss == "kd" and method.teacher_mode == "online") or method.onpolicy:
                if plan.checkpoint is not None:
                    loaded_t = build.load_checkpoint(teacher.folder(plan.checkpoint), device,
                                                     cfg.teacher.model)
                else:
                    loaded_t = build.build_model(cfg.teacher.model, tok, seed=0,
                                                 device=device, role="teacher",
                                                 trainable=False)
            teacher_model = loaded_t.model if loaded_t is not None else None
            student = build.build_model(cfg.student.model, tok, seed=seed, device=device)
            model, max_len, mixed = student.model, student.max_len, student.autocast
            synthetic = (read_synthetic(teacher.folder(plan.synthetic))
                         if "synthetic" in method.data else None)
            seqs = encode_pairs(tok, training_pairs(method, data, synthetic), max_len)
            from distillmeter.models.checkpoints import shared_vocab

            # logits compared on the tokenizer's ids (padding rows past them sliced off)
            vocab = shared_vocab(tok, model)
            if method.loss == "ce":
                loss_fn = ce_loss
            elif method.onpolicy:
                from distillmeter.models import check_tokenizers_compatible

                loss_fn = OnPolicyKD(method, vocab_size=check_tokenizers_compatible(
                    tok, tok, build.vocab_width(teacher_model), build.vocab_width(model)))
            elif method.teacher_mode == "cached":
                cache = LogitCache(teacher.folder(plan.caches[method.name]),
                                   expect_sequences=seqs)
                loss_fn = CachedKD(method, cache, vocab_size=vocab)
            else:
                from distillmeter.models import check_tokenizers_compatible

                # one tokenizer for both; this checks the models' logit widths against it
                shared = check_tokenizers_compatible(tok, tok, build.vocab_width(
                    teacher_model), build.vocab_width(model))
                loss_fn = OnlineKD(method, teacher_model, vocab_size=shared)

        tcfg = cfg.training
        if method.onpolicy:  # rounds of student.generate, teacher.score, student.train
            windows = ui.phases(meter, label, [("student.generate", None, "prompt"),
                                               ("teacher.score", None, "seq"),
                                               ("student.train", tcfg.token_budget, "tok")])
        else:
            windows = ui.metered(meter, label, "student.train", tcfg.token_budget, "tok")
        rounds = None
        with windows as bar:
            # under torchrun every rank trains its shard of each batch (DDP/FSDP); the
            # stage counts this rank's tokens, the bar all ranks'
            world = ctx.world_size
            if method.onpolicy:
                rounds = onpolicy_data(ctx, method, bar, student, loaded_t, tok,
                                       list(data.pool), seqs, loss_fn, seed)
                source, on_step = rounds, None  # rounds count their own tokens
            else:
                bar.annotate(params=count_params(model), batch_size=tcfg.batch_size,
                             **attention_info(model))
                if method.loss == "kd":
                    bar.annotate(kd=method.teacher_mode)
                if teacher_model is not None:  # online KD: a teacher forward pass per batch
                    bar.annotate(teacher_params=count_params(teacher_model),
                                 **attention_info(teacher_model, "teacher_"))
                source = batches(seqs, tcfg.batch_size, tok.pad_token_id, seed=seed)

                def on_step(n_tok: int, n_seq: int, loss: float) -> None:
                    bar.advance(n_tok, n_seq, n_tok * world)
            result = train(model, source, loss_fn, tcfg, device=device, on_step=on_step,
                           autocast_dtype=mixed, dist=ctx.dist)
            if rounds is not None:
                rounds.close()
            else:
                bar.annotate(steps=result.steps,
                             micro_batches=result.steps * tcfg.grad_accum)
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
                        "losses": result.losses, "world_size": world,
                        **({"onpolicy": rounds.log.as_dict()} if rounds is not None
                           else {})}, indent=1))
                artifacts.write_manifest(log, ArtifactManifest(
                    kind=TRAIN_LOG, hash=run.config_id, stage="student.train",
                    run_id=meter.run_id))
        if not main:
            # rank 0 alone evaluates; this rank's devices wait inside the stage, metered
            with meter.stage("eval.student"):
                return None

        from distillmeter.pipelines.evaluation import metric_value

        t_em = metric_value(t_metrics)
        if cfg.eval.backend == "lm_eval":
            from distillmeter.engines.lm_eval import evaluate_lm_eval
            from distillmeter.models.checkpoints import compute_dtype
            from distillmeter.pipelines.evaluation import write_lm_eval

            ckpt = artifacts.artifact_dir(run_dir, STUDENT_CKPT, run.config_id)
            with ui.metered(meter, label, "eval.student", None) as bar:
                le = evaluate_lm_eval(ckpt, cfg.eval.lm_eval, batch_size=cfg.eval.batch_size,
                                      device=device,
                                      dtype=compute_dtype(cfg.student.model, device))
                bar.advance(0, le.n, 0)
                folder = artifacts.artifact_dir(run_dir, STUDENT_EVAL, run.config_id)
                write_lm_eval(folder, le, kind=STUDENT_EVAL, key_hash=run.config_id,
                              stage="eval.student", run_id=meter.run_id)
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


