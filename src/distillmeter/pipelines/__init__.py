"""distillmeter.pipelines: the distillation stages and the methods built from them.

    config.py       the run config (strict pydantic, YAML), content hashes
    artifact_plan.py  which teacher artifacts a config needs; which stages a method counts
    runner.py       `distillmeter run`: the lock, the ranks, then the campaign
    campaign.py     the one campaign loop (run and sweep): teacher, students, accounting
    teacher.py      the teacher's run: setup.load, teacher.train, eval.teacher,
                    teacher.generate, teacher.logits
    student.py      a student's run: setup.load, student.train, eval.student
    training.py     the one training loop, and the losses it takes (CE, cached/online KD)
    data.py         sequences and batches
    logit_cache.py  the top-k logit cache (safetensors shards + manifest)
    synthetic.py    the teacher's verified answers as training data
    evaluation.py   greedy decoding, exact match, per-token loss
    artifacts.py    artifact manifests, checksums, lookup by hash
    losses.py       distillation losses (KD, top-k KD, DPO) and sequence log-probs
    preference_parts.py  preference distillation's parts: candidates, the judge, pairs

    methods/        the distillation methods, one module each, behind one interface
    work.py, stagework.py   the forecast's planned work; the stage work counts it shares

See docs/pipelines.md.
"""

# the built-in methods register here, so that every config check sees them
from distillmeter.pipelines import methods as methods  # noqa: E402
