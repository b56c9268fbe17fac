"""Preference distillation (loss ``dpo``): the teacher judges the student's own answers and
the student learns by DPO, starting from another method's trained student of the same
campaign (``starts_from``, the baseline unless given), which is also its frozen reference.

Its training is four windows, one each, in this order (``pipelines/preference_parts.py`` holds
the parts as plain functions; this module wraps each in its window):

    student.generate   the starting student samples ``k`` answers to each of the first
                       ``prompts`` pool prompts (``sample_temperature`` > 0)
    teacher.judge      the teacher scores every candidate (``judge``); the best and the
                       worst of each prompt make a pair, ties dropped and counted. It runs
                       in the student's run directory, for this student's samples: it
                       cannot be cached and shared, so it is teacher-side work paid again
                       by every student, never upstream
    student.reference  the starting student's log-probs of every pair, once, before
                       training (the pick measured in ``pipelines/preference_parts.py``)
    student.train      DPO (``beta``) through the shared loop, batches of whole pairs

The starting student's own run is named upstream (its ``student.train``, counted in full).
"""

from __future__ import annotations

from typing import Any

from distillmeter.configbase import error_at
from distillmeter.pipelines.config import GenerationConfig, LogitsConfig, MethodConfig
from distillmeter.pipelines.methods.base import Method, StudentWork, TrainParts, TrainSource
from distillmeter.pipelines.methods.registry import register
from distillmeter.pipelines.stagework import (
    PlannedStage,
    generate_work,
    score_work,
    shape_info,
    train_work,
)

PHASES = ("student.generate", "teacher.judge", "student.reference", "student.train")


def pairs_per_batch(batch_size: int) -> int:
    """Whole pairs per training batch: ``batch_size`` rows, two a pair (at least one)."""
    return max(1, batch_size // 2)


def phase_info(student: dict[str, int], teacher: dict[str, int], *, k: int, judge: str,
               generate_batch: int, score_batch: int, train_batch: int
               ) -> dict[str, dict[str, Any]]:
    """What each window records before it runs and what the forecast plans it with."""
    return {"student.generate": {**student, "batch_size": generate_batch, "k": k,
                                 "backend": "transformers"},
            "teacher.judge": {**teacher, "batch_size": score_batch, "judge": judge},
            "student.reference": {**student, "batch_size": score_batch},
            "student.train": {**student, "batch_size": 2 * pairs_per_batch(train_batch),
                              "pairs_per_batch": pairs_per_batch(train_batch)}}


@register("preference")
class Preference(Method):
    loss = "dpo"
    settings = ("k", "prompts", "judge", "beta", "sample_temperature", "max_new_tokens",
                "starts_from")
    # beta 0.1: DPO's usual strength (Rafailov et al. 2023, and TRL's default); 4
    # candidates a prompt; prompts unset: the whole pool. The token budget is the
    # campaign's, so fewer prompts mean more epochs over fewer pairs: with 256 of the
    # default pool's prompts (~155 pairs) the default budget made ~125 epochs, the
    # margins ran past 100 nats and exact match fell to 0 (2 seeds, 2-core machine,
    # 2026-12-02)
    defaults = {"k": 4, "judge": "likelihood", "beta": 0.1, "starts_from": "baseline"}
    uses_teacher = True
    live_teacher = True
    samples_pool = True
    one_process = True  # pair batches are not sharded (pipelines/preference_parts.py)
    # its training is four windows, its own teacher judging among them, which no upstream
    # entry carries as student work: an interrupted attempt's student is trained again
    retrains_on_resume = True

    @classmethod
    def check(cls, config: MethodConfig) -> None:
        if not config.sample_temperature > 0:
            raise error_at(("sample_temperature",), "preference samples k different answers "
                           "per prompt: sample_temperature must be > 0 (0 is greedy: k "
                           "equal answers, no pair)", config.sample_temperature)
        if "synthetic" in config.data:
            raise error_at(("data",), "preference learns from its own judged samples, not "
                           "the teacher's answers: data: [labelled]", config.data)

    def starts_from(self) -> str | None:
        return self.config.starts_from

    def labels(self) -> dict[str, Any]:
        m = self.config
        return {"teacher_mode": None, "k": m.k, "judge": m.judge, "beta": m.beta,
                "prompts": m.prompts, "starts_from": m.starts_from}

    def id_parts(self, logits: LogitsConfig, generation: GenerationConfig) -> dict[str, Any]:
        # the batch sizes its samples (seeded draws depend on them) and its judge's
        # scores (float noise decides near-ties) are taken in
        return {"preference": {"generation_batch_size": generation.batch_size,
                               "score_batch_size": logits.batch_size}}

    def train_on(self, labelled: list, synthetic: list | None) -> list:
        return []  # its pairs are made in its run (student.generate, teacher.judge)

    def loss_fn(self, parts: TrainParts):
        import torch

        from distillmeter.pipelines.preference_parts import DPOLoss

        # the reference's log-probs are filled in by student.reference (train_source)
        return DPOLoss(beta=self.config.beta, ref_logps=torch.zeros(0))

    def windows(self, ui: Any, meter: Any, label: str, training):
        return ui.phases(meter, label, [("student.generate", None, "prompt"),
                                        ("teacher.judge", None, "seq"),
                                        ("student.reference", None, "seq"),
                                        ("student.train", training.token_budget, "tok")])

    def train_source(self, bar: Any, parts: TrainParts, loss) -> TrainSource:
        from distillmeter.pipelines import preference_parts as pref
        from distillmeter.pipelines.progress import generation_progress
        from distillmeter.pipelines.stagework import model_info
        from distillmeter.pipelines.training import autocast

        m, t, tok = self.config, parts.training, parts.tokenizer
        student, teacher, device = parts.student, parts.teacher, parts.device
        pad = tok.pad_token_id
        info = phase_info(model_info(student.model), model_info(teacher.model), k=m.k,
                          judge=m.judge, generate_batch=parts.generation.batch_size,
                          score_batch=parts.logits.batch_size, train_batch=t.batch_size)
        for phase, values in info.items():
            bar.annotate(phase, **values)
        prompts = list(parts.data.pool)[:m.prompts]

        bar.enter("student.generate")
        with autocast(device, student.autocast):
            cands = pref.generate_candidates(
                student.model, tok, prompts, k=m.k, temperature=m.sample_temperature,
                max_new_tokens=m.max_new_tokens, seed=parts.seed,
                batch_size=parts.generation.batch_size, device=device,
                on_batch=generation_progress(_Phase(bar, "student.generate")))

        def count(batch) -> None:
            bar.advance(batch.n_tokens, len(batch.index), len(batch.index))

        bar.enter("teacher.judge")
        with autocast(device, teacher.autocast):
            scores = pref.judge(teacher.model, tok, cands, mode=m.judge,
                                task=parts.data.task, batch_size=parts.logits.batch_size,
                                device=device, on_batch=count)
        pairs = pref.build_pairs(scores, cands)
        seqs = pref.pair_sequences(tok, cands, pairs, max_len=student.max_len)
        judged = _judged(m, cands, scores, pairs, parts.data.task)
        bar.annotate("teacher.judge", pairs=len(pairs.pairs), ties=pairs.ties,
                     scored_sequences=sum(len(r) for r in cands))

        bar.enter("student.reference")
        with autocast(device, student.autocast):
            loss.ref_logps = pref.reference_logps(student.model, seqs, pad,
                                                  batch_size=parts.logits.batch_size,
                                                  device=device, on_batch=count)
        bar.annotate("student.reference", pairs=len(pairs.pairs))

        bar.enter("student.train")
        bar.annotate("student.train", pairs=len(pairs.pairs))

        def on_step(n_tok: int, n_seq: int, loss_value: float) -> None:
            bar.advance(n_tok, n_seq, n_tok)

        def finish(result: Any) -> dict:
            bar.annotate("student.train", steps=result.steps,
                         micro_batches=result.steps * t.grad_accum)
            # its examples are the pair sequences (the run's own count sees none)
            return {"preference": judged, "examples": len(seqs),
                    "epochs": result.samples / max(1, len(seqs))}

        return TrainSource(pref.pair_batches(seqs, pairs_per_batch(t.batch_size), pad,
                                             seed=parts.seed), on_step, finish)

    def planned_stages(self, work: StudentWork) -> list[PlannedStage]:
        """Its four windows from the pool's lengths: ``k`` samples of each of the first
        ``prompts`` prompts, taken at the reference answer's length (``generate_work``);
        the teacher reads each (``score_work``); one pair per prompt assumed (ties are
        known only once judged: fewer pairs, less reference and the same training
        budget); the reference reads every pair, the loop trains on them (``train_work``)
        until the token budget is used."""
        m, t, pool = self.config, work.training, work.pool
        n = len(pool.prompt) if m.prompts is None else min(m.prompts, len(pool.prompt))
        plen = [p for p in pool.prompt[:n] for _ in range(m.k)]
        alen = [a for a in pool.answer[:n] for _ in range(m.k)]
        gen, g_tokens, g_samples = generate_work(plen, alen, work.generation.batch_size,
                                                 m.max_new_tokens)
        seqs = [p + min(m.max_new_tokens, a + 1) for p, a in zip(plen, alen, strict=True)]
        s_batch = work.logits.batch_size
        judged = score_work(seqs, s_batch)
        pair_seqs = [s for s in seqs[::m.k] for _ in range(2)]  # a pair per prompt
        ref = score_work(pair_seqs, s_batch)
        rows = 2 * pairs_per_batch(t.batch_size)
        w = train_work(pair_seqs or [1], t.model_copy(update={"batch_size": rows}))
        info = phase_info(shape_info(work.student), shape_info(work.teacher), k=m.k,
                          judge=m.judge, generate_batch=work.generation.batch_size,
                          score_batch=s_batch, train_batch=t.batch_size)
        note = ("samples taken at the reference answer's length; one pair per prompt "
                "assumed (ties, dropped, are known once judged)")
        return [
            PlannedStage("student.generate", g_tokens, g_samples,
                         {**info["student.generate"], **gen}, [note]),
            PlannedStage("teacher.judge", judged["scored_tokens"], len(seqs),
                         {**info["teacher.judge"], **judged, "pairs": n}, [note]),
            PlannedStage("student.reference", ref["scored_tokens"], len(pair_seqs),
                         {**info["student.reference"], **ref, "pairs": n}, [note]),
            PlannedStage("student.train", w["tokens"], w["samples"],
                         {**info["student.train"], "pairs": n, "steps": w["steps"],
                          "micro_batches": w["micro_batches"]}, [note])]


class _Phase:
    """One phase of ``PhaseWindows`` as a bar (``advance``, ``annotate``), for
    ``progress.generation_progress``."""

    def __init__(self, windows: Any, name: str):
        self.windows, self.name = windows, name

    def advance(self, tokens: int = 0, samples: int = 0, items: int | None = None) -> None:
        self.windows.advance(tokens, samples, samples if items is None else items)

    def annotate(self, **info) -> None:
        self.windows.annotate(self.name, **info)


def _judged(m: MethodConfig, cands, scores, pairs, task) -> dict[str, Any]:
    """What the judging made (train.json's ``preference``): prompts, candidates, pairs,
    ties, and how often the verifier calls the chosen and the rejected answer correct
    (read after the fact in either mode: what the judge's pick amounted to)."""
    def correct(p: int, j: int) -> bool:
        c = cands[p][j]
        return bool(task.check(c.prompt, c.completion))

    n = len(pairs.pairs)
    chosen = sum(correct(p, c) for p, c, _ in pairs.pairs)
    rejected = sum(correct(p, r) for p, _, r in pairs.pairs)
    finished = sum(c.finished for row in cands for c in row)
    total = sum(len(row) for row in cands)
    return {"judge": m.judge, "k": m.k, "prompts": len(cands), "candidates": total,
            "pairs": n, "ties": pairs.ties,
            "finished_fraction": finished / total if total else None,
            "chosen_correct_fraction": chosen / n if n else None,
            "rejected_correct_fraction": rejected / n if n else None}
