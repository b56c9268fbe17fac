"""The work a config implies, stage by stage, worked out before anything runs (no model is
loaded, nothing is trained): what ``distillmeter estimate`` forecasts from.

Each planned stage carries the same counts the pipelines record in ``stage_end.info`` when
the stage really runs (so the cost model reads a plan and a measured stage alike):

- every model stage: ``params``, ``batch_size``, ``layers``, ``attn_width`` (query heads x
  head size, for attention's FLOPs);
- training (``teacher.train``, ``student.train``): ``steps`` (optimizer steps) and
  ``micro_batches`` (forward/backward passes); ``kd`` (``cached`` / ``online``) and, online,
  the live teacher's ``teacher_params``, ``teacher_layers``, ``teacher_attn_width``;
- generation (``teacher.generate``, and the decoding half of ``eval.*``): ``gen_batches``,
  ``decode_steps`` (forward passes: each batch decodes until its longest answer ends),
  ``prompt_tokens``, ``new_tokens``, ``backend``;
- scoring (``teacher.logits``, and the loss half of ``eval.*``): ``score_batches``,
  ``scored_tokens``.

Where the plan has to assume something (how many teacher answers the verifier keeps, how
long the models' answers are), the stage's ``notes`` say what; generation also carries the
range of its work (``work_range``: answers of the reference length up to answers that run
to ``max_new_tokens``), which the forecast turns into its interval.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from distillmeter.errors import UserError
from distillmeter.models.params import ModelShape, char_vocab, read_config_json, shape_from_arch
from distillmeter.pipelines.config import MethodConfig, RunConfig, TrainingConfig
from distillmeter.pipelines.plan import plan_students, plan_teacher


@dataclass
class PlannedStage:
    """One stage's work: tokens and samples as the stage would count them, ``info`` as the
    pipelines would record it; ``cannot`` says why its work is unknown before it runs."""

    name: str
    tokens: int = 0
    samples: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    cannot: str | None = None


@dataclass
class PlannedRun:
    """One run directory the config makes: the teacher run, or one method's student runs
    (every seed does the same work; ``seeds`` lists them)."""

    key: str  # "teacher" or the method's name
    name: str  # the run directory (one per seed for students: <method>-s<seed>)
    role: str  # teacher | student
    config_id: str
    stages: list[PlannedStage]
    upstream: list[str] = field(default_factory=list)  # teacher stages a student counts
    seeds: list[int] = field(default_factory=list)
    run_names: list[str] = field(default_factory=list)


@dataclass
class WorkPlan:
    runs: list[PlannedRun]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"runs": [asdict(r) for r in self.runs], "notes": list(self.notes)}


def attention_info(model: Any, prefix: str = "") -> dict[str, int]:
    """``layers`` and ``attn_width`` of a loaded transformers model, for the stage's info."""
    cfg = getattr(model, "config", None)
    if cfg is None:
        return {}
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    try:
        layers = int(text.num_hidden_layers)
        heads = int(text.num_attention_heads)
        head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
    except (AttributeError, TypeError, ValueError):
        return {}
    return {f"{prefix}layers": layers, f"{prefix}attn_width": heads * head_dim}


# --------------------------------------------------------------------------- the data


@dataclass
class _Split:
    """A split's token lengths: ``prompt`` (BOS + prompt) and ``answer`` (target, no EOS)."""

    prompt: list[int]
    answer: list[int]

    def seqs(self) -> list[int]:
        """Training sequence lengths: BOS + prompt + target + EOS."""
        return [p + a + 1 for p, a in zip(self.prompt, self.answer, strict=True)]


@dataclass
class _Data:
    labelled: _Split
    pool: _Split  # answers: the reference answer's length where the task can solve it
    test: _Split
    teacher: _Split
    vocab: int
    pool_answers_known: bool


def _builtin_data(cfg: RunConfig) -> _Data:
    """The built-in task's splits, generated (pure Python, as the runs generate them);
    the character tokenizer makes one token per character, BOS before the prompt."""
    from distillmeter.tasks import load_task

    t = cfg.task
    data = load_task(t.name, seed=t.seed, n_labelled=t.n_labelled, n_pool=t.n_pool,
                     n_test=t.n_test, n_teacher=t.n_teacher, **dict(t.params))

    def split(examples) -> _Split:
        return _Split([1 + len(e.prompt) for e in examples], [len(e.target) for e in examples])

    pool = _Split([1 + len(p) for p in data.pool],
                  [len(data.task.solve(p)) for p in data.pool])
    return _Data(split(data.labelled), pool, split(data.test), split(data.teacher_train),
                 char_vocab(data.task.alphabet), True)


def _file_data(cfg: RunConfig) -> _Data:
    """Splits read from the task's files and tokenized with the run's tokenizer (no model
    is loaded). The pool's answers are unknown: the teacher writes them."""
    from distillmeter.pipelines.components import load_data_and_tokenizer

    data, tok = load_data_and_tokenizer(cfg)

    def lens(texts: list[str], special: bool) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in tok(texts, add_special_tokens=special)["input_ids"]]

    def split(examples) -> _Split:
        return _Split(lens([e.prompt for e in examples], True),
                      lens([e.target for e in examples], False))

    answers = split(data.labelled).answer
    typical = round(sum(answers) / len(answers)) if answers else cfg.generation.max_new_tokens
    pool = _Split(lens(list(data.pool), True), [typical] * len(data.pool))
    teacher = split(getattr(data, "teacher_train", None) or [])
    return _Data(split(data.labelled), pool, split(data.test), teacher, len(tok), False)


def _shape(cfg: RunConfig, role: str, vocab: int) -> ModelShape:
    mcfg = cfg.teacher.model if role == "teacher" else cfg.student.model
    if mcfg.arch is not None:
        return shape_from_arch(mcfg.arch, vocab)
    if mcfg.path is not None:
        from distillmeter.paths import resolve_path

        folder = resolve_path(mcfg.path)
        if not (folder / "config.json").is_file():
            raise UserError(f"{role}.model.path: {folder} has no config.json")
        return read_config_json(folder)
    from distillmeter.models.checkpoints import model_source  # finds a hub id in the cache

    return read_config_json(model_source(mcfg, role))


def _model_info(shape: ModelShape, prefix: str = "") -> dict[str, int]:
    return {f"{prefix}params": shape.params, f"{prefix}layers": shape.layers,
            f"{prefix}attn_width": shape.attn_width}


# --------------------------------------------------------------------------- the stages


def train_work(seq_lens: list[int], t: TrainingConfig) -> dict[str, int]:
    """Steps, micro-batches, tokens and sequences of the training loop: micro-batches of
    ``batch_size`` sequences (the last of each epoch partial), ``grad_accum`` per step,
    until ``token_budget`` tokens have gone through (``training.train``'s stopping rule).
    Tokens per micro-batch are taken at the data's mean sequence length."""
    if not seq_lens:
        raise UserError("a training stage has no sequences (is its data empty?)")
    n, mean = len(seq_lens), sum(seq_lens) / len(seq_lens)
    sizes = [t.batch_size] * (n // t.batch_size) + ([n % t.batch_size] if n % t.batch_size
                                                     else [])
    per_epoch = len(sizes)
    tokens = samples = steps = micro = 0.0
    while tokens < t.token_budget:
        for _ in range(t.grad_accum):
            size = sizes[int(micro) % per_epoch]
            tokens += size * mean
            samples += size
            micro += 1
        steps += 1
        if steps > 10_000_000:
            raise UserError("training.token_budget implies over 10 million steps")
    return {"steps": int(steps), "micro_batches": int(micro), "tokens": round(tokens),
            "samples": int(samples)}


def generate_work(prompt_lens: list[int], answer_lens: list[int], batch_size: int,
                  max_new_tokens: int) -> tuple[dict[str, Any], int, int]:
    """A generation pass's work: prompts grouped by length into batches (as the backend
    does); each answer is taken at its reference length + EOS (capped at
    ``max_new_tokens``), and a batch decodes until its longest answer ends. ``work_range``
    spans that up to every answer running to ``max_new_tokens``. Returns (info, tokens,
    samples)."""
    order = sorted(range(len(prompt_lens)), key=lambda i: prompt_lens[i])
    batches = decode = 0
    new = [min(max_new_tokens, a + 1) for a in answer_lens]
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batches += 1
        decode += max(new[i] for i in idx)
    info = {"gen_batches": batches, "decode_steps": decode, "prompt_tokens": sum(prompt_lens),
            "new_tokens": sum(new), "work_range": {
                "decode_steps": [decode, batches * max_new_tokens],
                "new_tokens": [sum(new), len(new) * max_new_tokens]}}
    return info, sum(prompt_lens) + sum(new), len(prompt_lens)


def score_work(seq_lens: list[int], batch_size: int, shard: int | None = None
               ) -> dict[str, int]:
    """Teacher-forced forward passes over whole sequences, ``batch_size`` at a time (within
    shards of ``shard`` sequences, as the logit cache goes)."""
    n = len(seq_lens)
    shard = shard or max(n, 1)
    batches = sum(math.ceil(min(shard, n - s) / batch_size) for s in range(0, n, shard))
    return {"score_batches": batches, "scored_tokens": sum(seq_lens)}


def _eval_stage(name: str, cfg: RunConfig, test: _Split, shape: ModelShape) -> PlannedStage:
    e = cfg.eval
    if e.backend == "lm_eval":
        return PlannedStage(name, cannot="the lm_eval backend's work (its tasks' requests) "
                                         "is not known before it runs")
    gen, gen_tokens, n = generate_work(test.prompt, test.answer, e.batch_size,
                                       e.max_new_tokens)
    score = score_work(test.seqs(), e.batch_size)
    info = {**_model_info(shape), "batch_size": e.batch_size, **gen, **score,
            "backend": "transformers"}
    return PlannedStage(name, gen_tokens + score["scored_tokens"], n, info, [
        "answers taken at the reference length (a model that does not stop decodes up to "
        f"max_new_tokens = {e.max_new_tokens}: the interval's upper end)"])


def _train_stage(name: str, seqs: list[int], t: TrainingConfig, shape: ModelShape,
                 method: MethodConfig | None = None, teacher: ModelShape | None = None
                 ) -> PlannedStage:
    w = train_work(seqs, t)
    info: dict[str, Any] = {**_model_info(shape), "batch_size": t.batch_size,
                            "steps": w["steps"], "micro_batches": w["micro_batches"]}
    if method is not None and method.loss == "kd":
        info["kd"] = method.teacher_mode
        if method.teacher_mode == "online" and teacher is not None:
            info.update(_model_info(teacher, "teacher_"))
    return PlannedStage(name, w["tokens"], w["samples"], info)


def plan_work(cfg: RunConfig, *, keep_fraction: float | None = None) -> WorkPlan:
    """Every run the config makes, with each stage's planned work. ``keep_fraction``: the
    share of the teacher's answers the verifier keeps (unknown before generation; None
    assumes all, and says so)."""
    data = _builtin_data(cfg) if cfg.task.files is None else _file_data(cfg)
    t_shape, s_shape = _shape(cfg, "teacher", data.vocab), _shape(cfg, "student", data.vocab)
    notes: list[str] = []
    tp = plan_teacher(cfg)
    g = cfg.generation
    pool = _Split(data.pool.prompt[:g.n_prompts] if g.n_prompts else data.pool.prompt,
                  data.pool.answer[:g.n_prompts] if g.n_prompts else data.pool.answer)
    keep = 1.0 if keep_fraction is None or not g.verify else keep_fraction
    if cfg.needs_synthetic():
        if g.verify and keep_fraction is None:
            notes.append("synthetic data: every teacher answer assumed kept by the verifier "
                         "(unknown before generation)")
        elif g.verify:
            notes.append(f"synthetic data: {keep:.1%} of the teacher's answers assumed kept "
                         "(as measured in the reference runs)")
        if not data.pool_answers_known:
            notes.append("the teacher's answers to the pool are taken at the labelled "
                         "answers' mean length")
    n_kept = round(len(pool.prompt) * keep)
    synthetic = _Split(pool.prompt[:n_kept], pool.answer[:n_kept])

    def sequences(method: MethodConfig) -> list[int]:
        out: list[int] = []
        if "labelled" in method.data:
            out += data.labelled.seqs()
        if "synthetic" in method.data:
            out += synthetic.seqs()
        return out

    # the meter measures the idle baseline in a stage of its own (energy/idle_baseline.py)
    idle = [PlannedStage("setup.idle")] if cfg.meter.idle_seconds > 0 else []
    stages = [*idle, PlannedStage("setup.load")]
    if tp.checkpoint is not None:
        stages.append(_train_stage("teacher.train", data.teacher.seqs(), cfg.teacher.training,
                                   t_shape))
    stages.append(_eval_stage("eval.teacher", cfg, data.test, t_shape))
    if tp.synthetic is not None:
        info, tokens, n = generate_work(pool.prompt, pool.answer, g.batch_size,
                                        g.max_new_tokens)
        info = {**_model_info(t_shape), "batch_size": g.batch_size, **info,
                "backend": g.backend}
        stages.append(PlannedStage("teacher.generate", tokens, n, info, [
            "answers taken at the reference length, each batch decoding until its longest "
            f"ends (at most max_new_tokens = {g.max_new_tokens})"]))
    for spec in {s.hash: s for s in tp.caches.values()}.values():
        method = next(m for m in cfg.methods if tp.caches.get(m.name) == spec)
        seqs = sequences(method)
        info = {**_model_info(t_shape), "batch_size": cfg.logits.batch_size,
                **score_work(seqs, cfg.logits.batch_size, cfg.logits.shard_sequences),
                "top_k": cfg.logits.top_k}
        stages.append(PlannedStage(spec.stage, sum(seqs), len(seqs), info))
    runs = [PlannedRun("teacher", tp.run_name, "teacher", tp.teacher_hash, stages,
                       seeds=[cfg.teacher.seed], run_names=[tp.run_name])]
    students = plan_students(cfg)
    for method in cfg.methods:
        mine = [s for s in students if s.method.name == method.name]
        if method.onpolicy:
            work = onpolicy_stages(cfg, method, data.pool, sequences(method), s_shape,
                                   t_shape)
        else:
            work = [_train_stage("student.train", sequences(method), cfg.training, s_shape,
                                 method, t_shape)]
        runs.append(PlannedRun(
            method.name, mine[0].name, "student", mine[0].config_id,
            [*idle, PlannedStage("setup.load"), *work,
             _eval_stage("eval.student", cfg, data.test, s_shape)],
            upstream=[a.stage for a in tp.used_by(method)],
            seeds=[s.seed for s in mine], run_names=[s.name for s in mine]))
    return WorkPlan(runs, notes)


def onpolicy_stages(cfg: RunConfig, method: MethodConfig, pool: _Split, off: list[int],
                    s_shape: ModelShape, t_shape: ModelShape) -> list[PlannedStage]:
    """An onpolicy method's rounds (``pipelines/onpolicy.py``), added up by phase: each
    round samples ``block_prompts`` completions (``student.generate``), the teacher scores
    them with the round's off-policy sequences, ``(1 - lmbda) / lmbda`` batches of them per
    on-policy batch (``teacher.score``), and the loop trains on those batches
    (``student.train``) until the token budget is used. Samples are taken at the reference
    answer's length; their windows' fixed costs are counted once per phase."""
    t, b = cfg.training, cfg.training.batch_size
    new = [min(method.max_new_tokens, a + 1) for a in pool.answer] or [method.max_new_tokens]
    on_len = sum(p + n for p, n in zip(pool.prompt, new, strict=False)) / max(len(new), 1)
    off_len = sum(off) / len(off) if off else 0.0
    off_batches = method.block_prompts / b * (1 - method.lmbda) / method.lmbda if off else 0.0
    micro_round = math.ceil(method.block_prompts / b) + off_batches
    tokens_round = method.block_prompts * on_len + off_batches * b * off_len
    seqs_round = method.block_prompts + off_batches * b
    steps = math.ceil(t.token_budget / (t.grad_accum * tokens_round / micro_round))
    micro = steps * t.grad_accum
    rounds = math.ceil(micro / micro_round)
    per_round, _, _ = generate_work(pool.prompt[:method.block_prompts] or [1],
                                    pool.answer[:method.block_prompts] or [0],
                                    cfg.generation.batch_size, method.max_new_tokens)
    gen = {k: v * rounds for k, v in per_round.items() if k != "work_range"}
    gen["work_range"] = {k: [v * rounds for v in r]
                         for k, r in per_round["work_range"].items()}
    n_gen = rounds * method.block_prompts
    note = (f"{rounds} rounds (one window of each phase per round; their fixed costs "
            "counted once); samples taken at the reference answer's length")
    score = {"score_batches": rounds * math.ceil(seqs_round / cfg.logits.batch_size),
             "scored_tokens": round(rounds * tokens_round)}
    return [
        PlannedStage("student.generate", gen["prompt_tokens"] + gen["new_tokens"], n_gen,
                     {**_model_info(s_shape), "batch_size": cfg.generation.batch_size,
                      **gen, "backend": "transformers"}, [note]),
        PlannedStage("teacher.score", score["scored_tokens"], round(rounds * seqs_round),
                     {**_model_info(t_shape), "batch_size": cfg.logits.batch_size, **score,
                      "top_k": cfg.logits.top_k}, [note]),
        PlannedStage("student.train", round(micro * tokens_round / micro_round),
                     round(micro * seqs_round / micro_round),
                     {**_model_info(s_shape), "batch_size": b, "steps": steps,
                      "micro_batches": micro}, [note])]
