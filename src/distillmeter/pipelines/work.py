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

from dataclasses import asdict, dataclass, field
from typing import Any

from distillmeter.errors import UserError
from distillmeter.models.params import ModelShape, char_vocab, read_config_json, shape_from_arch
from distillmeter.pipelines import methods
from distillmeter.pipelines.artifact_plan import plan_students, plan_teacher, starting_run
from distillmeter.pipelines.config import EvalConfig, ModelConfig, RunConfig, TaskConfig
from distillmeter.pipelines.methods import StudentWork
from distillmeter.pipelines.stagework import (  # noqa: F401  (their home before stagework.py)
    PlannedStage,
    Split,
    attention_info,
    generate_work,
    score_work,
    shape_info,
    train_work,
)


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
    # the config_id of the student it starts from (Method.starts_from), whose
    # student.train it counts in full, as its measured runs do
    starts_from: str | None = None


@dataclass
class WorkPlan:
    runs: list[PlannedRun]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"runs": [asdict(r) for r in self.runs], "notes": list(self.notes)}


# --------------------------------------------------------------------------- the data


@dataclass
class _Data:
    labelled: Split
    pool: Split  # answers: the reference answer's length where the task can solve it
    test: Split
    teacher: Split
    vocab: int
    pool_answers_known: bool


def _builtin_data(t: TaskConfig) -> _Data:
    """The built-in task's splits, generated (pure Python, as the runs generate them);
    the character tokenizer makes one token per character, BOS before the prompt."""
    from distillmeter.tasks import load_task

    data = load_task(t.name, seed=t.seed, n_labelled=t.n_labelled, n_pool=t.n_pool,
                     n_test=t.n_test, n_teacher=t.n_teacher, **dict(t.params))

    def split(examples) -> Split:
        return Split([1 + len(e.prompt) for e in examples], [len(e.target) for e in examples])

    pool = Split([1 + len(p) for p in data.pool],
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

    def split(examples) -> Split:
        return Split(lens([e.prompt for e in examples], True),
                      lens([e.target for e in examples], False))

    answers = split(data.labelled).answer
    typical = round(sum(answers) / len(answers)) if answers else cfg.generation.max_new_tokens
    pool = Split(lens(list(data.pool), True), [typical] * len(data.pool))
    teacher = split(getattr(data, "teacher_train", None) or [])
    return _Data(split(data.labelled), pool, split(data.test), teacher, len(tok), False)


def _shape(mcfg: ModelConfig, role: str, vocab: int) -> ModelShape:
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


def _eval_stage(name: str, e: EvalConfig, test: Split, shape: ModelShape) -> PlannedStage:
    if e.backend == "lm_eval":
        return PlannedStage(name, cannot="the lm_eval backend's work (its tasks' requests) "
                                         "is not known before it runs")
    gen, gen_tokens, n = generate_work(test.prompt, test.answer, e.batch_size,
                                       e.max_new_tokens)
    score = score_work(test.seqs(), e.batch_size)
    info = {**shape_info(shape), "batch_size": e.batch_size, **gen, **score,
            "backend": "transformers"}
    return PlannedStage(name, gen_tokens + score["scored_tokens"], n, info, [
        "answers taken at the reference length (a model that does not stop decodes up to "
        f"max_new_tokens = {e.max_new_tokens}: the interval's upper end)"])


def plan_work(cfg: RunConfig, *, keep_fraction: float | None = None) -> WorkPlan:
    """Every run the config makes, with each stage's planned work. ``keep_fraction``: the
    share of the teacher's answers the verifier keeps (unknown before generation; None
    assumes all, and says so). A student's training stages are its method's
    (``Method.planned_stages``), counted as its stages count them."""
    data = _builtin_data(cfg.task) if cfg.task.files is None else _file_data(cfg)
    t_shape = _shape(cfg.teacher.model, "teacher", data.vocab)
    s_shape = _shape(cfg.student.model, "student", data.vocab)
    notes: list[str] = []
    tp = plan_teacher(cfg)
    g = cfg.generation
    pool = Split(data.pool.prompt[:g.n_prompts] if g.n_prompts else data.pool.prompt,
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
    synthetic = Split(pool.prompt[:n_kept], pool.answer[:n_kept]).seqs()

    def sequences(method) -> list[int]:  # the lengths of what the method trains on
        return methods.get(method).train_on(data.labelled.seqs(), synthetic)

    # the meter measures the idle baseline in a stage of its own (energy/idle_baseline.py)
    idle = [PlannedStage("setup.idle")] if cfg.meter.idle_seconds > 0 else []
    stages = [*idle, PlannedStage("setup.load")]
    if tp.checkpoint is not None:
        tt = cfg.teacher.training
        w = train_work(data.teacher.seqs(), tt)
        stages.append(PlannedStage("teacher.train", w["tokens"], w["samples"], {
            **shape_info(t_shape), "batch_size": tt.batch_size, "steps": w["steps"],
            "micro_batches": w["micro_batches"]}))
    stages.append(_eval_stage("eval.teacher", cfg.eval, data.test, t_shape))
    if tp.synthetic is not None:
        info, tokens, n = generate_work(pool.prompt, pool.answer, g.batch_size,
                                        g.max_new_tokens)
        info = {**shape_info(t_shape), "batch_size": g.batch_size, **info,
                "backend": g.backend}
        stages.append(PlannedStage("teacher.generate", tokens, n, info, [
            "answers taken at the reference length, each batch decoding until its longest "
            f"ends (at most max_new_tokens = {g.max_new_tokens})"]))
    lc = cfg.logits
    for spec in {s.hash: s for s in tp.caches.values()}.values():
        method = next(m for m in cfg.methods if tp.caches.get(m.name) == spec)
        seqs = sequences(method)
        info = {**shape_info(t_shape), "batch_size": lc.batch_size,
                **score_work(seqs, lc.batch_size, lc.shard_sequences), "top_k": lc.top_k}
        stages.append(PlannedStage(spec.stage, sum(seqs), len(seqs), info))
    runs = [PlannedRun("teacher", tp.run_name, "teacher", tp.teacher_hash, stages,
                       seeds=[cfg.teacher.seed], run_names=[tp.run_name])]
    students = plan_students(cfg)
    for config_id in dict.fromkeys(s.config_id for s in students):  # one per point
        mine = [s for s in students if s.config_id == config_id]
        method = mine[0].method
        start = starting_run(mine[0], students)
        work = methods.get(method).planned_stages(StudentWork(
            sequences(method), data.pool, mine[0].training, s_shape, t_shape, g, lc))
        runs.append(PlannedRun(
            method.name, mine[0].name, "student", mine[0].config_id,
            [*idle, PlannedStage("setup.load"), *work,
             _eval_stage("eval.student", cfg.eval, data.test, s_shape)],
            upstream=[a.stage for a in tp.used_by(method)],
            seeds=[s.seed for s in mine], run_names=[s.name for s in mine],
            starts_from=start.config_id if start is not None else None))
    return WorkPlan(runs, notes)
