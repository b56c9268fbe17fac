"""On-policy distillation (GKD; loss ``onpolicy``): in rounds of ``block_prompts`` pool
prompts, the student samples completions (``student.generate``), the teacher scores them,
top-k + tail as in the cache (``teacher.score``), and the student learns
``T^2 * D(teacher, student)`` on them (``student.train``), mixed with off-policy batches of
its ``data`` (``lmbda`` is the on-policy fraction). The rounds' machinery is
``onpolicy_rounds.py``. Its teacher scoring runs in its own run directory, in every round
and per student: it cannot be cached and shared, so it is never upstream."""

from __future__ import annotations

import math
from typing import Any

from distillmeter.pipelines.config import GenerationConfig, LogitsConfig
from distillmeter.pipelines.methods.base import Method, StudentWork, TrainParts, TrainSource
from distillmeter.pipelines.methods.registry import register
from distillmeter.pipelines.stagework import PlannedStage, generate_work, shape_info


def phase_info(student: dict[str, int], teacher: dict[str, int], *, generate_batch: int,
               score_batch: int, top_k: int, train_batch: int) -> dict[str, dict[str, Any]]:
    """What each phase's windows record before they run, and what the forecast plans
    them with: the model's ``model_info``/``shape_info``, its batch size, the backend that
    samples and the top-k the teacher keeps."""
    return {"student.generate": {**student, "batch_size": generate_batch,
                                 "backend": "transformers"},
            "teacher.score": {**teacher, "batch_size": score_batch, "top_k": top_k},
            "student.train": {**student, "batch_size": train_batch}}


@register("onpolicy")
class OnPolicy(Method):
    loss = "onpolicy"
    settings = ("temperature", "divergence", "beta", "lmbda", "block_prompts",
                "sample_temperature", "max_new_tokens")
    defaults = {"divergence": "reverse_kl"}  # the usual choice on the student's own samples
    uses_teacher = True
    live_teacher = True
    samples_pool = True
    one_process = True  # its rounds are not split across ranks
    # its training is rounds of three stages, its own teacher scoring among them, which no
    # upstream entry carries as student work: an interrupted attempt's student is retrained
    retrains_on_resume = True

    def labels(self) -> dict[str, Any]:
        m = self.config
        return {"teacher_mode": None, "divergence": m.divergence, "lmbda": m.lmbda,
                "block_prompts": m.block_prompts}

    def id_parts(self, logits: LogitsConfig, generation: GenerationConfig) -> dict[str, Any]:
        # how the teacher's scores are kept, and the generation batch size (sampled draws
        # depend on it); a key of its own: the other methods' ids stay as they were
        return {"onpolicy": {"logits": logits.model_dump(mode="json"),
                             "generation_batch_size": generation.batch_size}}

    def loss_fn(self, parts: TrainParts):
        from distillmeter.models import build, check_tokenizers_compatible
        from distillmeter.pipelines.methods.onpolicy_rounds import OnPolicyKD

        tok = parts.tokenizer
        return OnPolicyKD(self.config, vocab_size=check_tokenizers_compatible(
            tok, tok, build.vocab_width(parts.teacher.model),
            build.vocab_width(parts.student.model)))

    def windows(self, ui: Any, meter: Any, label: str, training):
        return ui.phases(meter, label, [("student.generate", None, "prompt"),
                                        ("teacher.score", None, "seq"),
                                        ("student.train", training.token_budget, "tok")])

    def train_source(self, bar: Any, parts: TrainParts, loss) -> TrainSource:
        from distillmeter.pipelines.methods.onpolicy_rounds import onpolicy_data, score_vocab
        from distillmeter.pipelines.stagework import model_info

        teacher = parts.teacher.model
        info = phase_info(model_info(parts.student.model), model_info(teacher),
                          generate_batch=parts.generation.batch_size,
                          score_batch=parts.logits.batch_size,
                          top_k=min(parts.logits.top_k, score_vocab(loss, teacher)),
                          train_batch=parts.training.batch_size)
        for phase, values in info.items():
            bar.annotate(phase, **values)
        rounds = onpolicy_data(self.config, bar, parts, loss)

        def finish(result: Any) -> dict:
            rounds.close()
            return {"onpolicy": rounds.log.as_dict()}

        return TrainSource(rounds, None, finish)  # rounds count their own tokens

    def planned_stages(self, work: StudentWork) -> list[PlannedStage]:
        """Its rounds (``onpolicy_rounds.py``), added up by phase: each round samples
        ``block_prompts`` completions (``student.generate``), the teacher scores them with
        the round's off-policy sequences, ``(1 - lmbda) / lmbda`` batches of them per
        on-policy batch (``teacher.score``), and the loop trains on those batches
        (``student.train``) until the token budget is used. Samples are taken at the
        reference answer's length; their windows' fixed costs are counted once per
        phase."""
        m, t, pool, off = self.config, work.training, work.pool, work.sequences
        b = t.batch_size
        new = [min(m.max_new_tokens, a + 1) for a in pool.answer] or [m.max_new_tokens]
        on_len = sum(p + n for p, n in zip(pool.prompt, new, strict=False)) / max(len(new), 1)
        off_len = sum(off) / len(off) if off else 0.0
        off_batches = m.block_prompts / b * (1 - m.lmbda) / m.lmbda if off else 0.0
        micro_round = math.ceil(m.block_prompts / b) + off_batches
        tokens_round = m.block_prompts * on_len + off_batches * b * off_len
        seqs_round = m.block_prompts + off_batches * b
        steps = math.ceil(t.token_budget / (t.grad_accum * tokens_round / micro_round))
        micro = steps * t.grad_accum
        rounds = math.ceil(micro / micro_round)
        g_batch, s_batch = work.generation.batch_size, work.logits.batch_size
        per_round, _, _ = generate_work(pool.prompt[:m.block_prompts] or [1],
                                        pool.answer[:m.block_prompts] or [0],
                                        g_batch, m.max_new_tokens)
        gen = {k: v * rounds for k, v in per_round.items() if k != "work_range"}
        gen["work_range"] = {k: [v * rounds for v in r]
                             for k, r in per_round["work_range"].items()}
        n_gen = rounds * m.block_prompts
        note = (f"{rounds} rounds (one window of each phase per round; their fixed costs "
                "counted once); samples taken at the reference answer's length")
        score = {"score_batches": rounds * math.ceil(seqs_round / s_batch),
                 "scored_tokens": round(rounds * tokens_round)}
        info = phase_info(shape_info(work.student), shape_info(work.teacher),
                          generate_batch=g_batch, score_batch=s_batch,
                          top_k=work.logits.top_k, train_batch=b)
        return [
            PlannedStage("student.generate", gen["prompt_tokens"] + gen["new_tokens"], n_gen,
                         {**info["student.generate"], **gen}, [note]),
            PlannedStage("teacher.score", score["scored_tokens"], round(rounds * seqs_round),
                         {**info["teacher.score"], **score}, [note]),
            PlannedStage("student.train", round(micro * tokens_round / micro_round),
                         round(micro * seqs_round / micro_round),
                         {**info["student.train"], "steps": steps, "micro_batches": micro},
                         [note])]
