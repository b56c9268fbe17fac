"""The checks made before any work (``preflight``): the devices to meter exist here, the
checkpoints exist, teacher and student tokenizers agree, the data files read, and every
phase fits in memory at the configured batch sizes. Anything that would fail later fails
here, naming the fix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from distillmeter.errors import UserError
from distillmeter.models import memory
from distillmeter.models.checkpoints import compute_dtype, dtype_bytes, load_tokenizer, model_source
from distillmeter.models.memory import model_shape
from distillmeter.pipelines import components, methods
from distillmeter.pipelines.components import run_tokenizer_model
from distillmeter.pipelines.config import RunConfig
from distillmeter.pipelines.config_host import check_host
from distillmeter.terminal import literal


@dataclass
class Preflight:
    """What the checks found (the runner prints ``lines``)."""

    shared_vocab: int | None = None
    estimates: list[memory.PhaseEstimate] = field(default_factory=list)
    available: float = 0.0
    where: str = ""
    lines: list[str] = field(default_factory=list)


def _lengths(tokenizer, texts: list[str], special: bool) -> int:
    if not texts:
        return 0
    return max(len(ids) for ids in tokenizer(texts, add_special_tokens=special)["input_ids"])


def _data_lengths(cfg: RunConfig, data, tok) -> dict[str, int]:
    """Longest sequence of each kind in the run's data, in tokens (BOS and EOS included)."""
    def pairs(examples) -> int:
        if not examples:
            return 0
        p = tok([e.prompt for e in examples], add_special_tokens=True)["input_ids"]
        t = tok([e.target for e in examples], add_special_tokens=False)["input_ids"]
        return max(len(a) + len(b) + 1 for a, b in zip(p, t, strict=True))

    pool = _lengths(tok, list(data.pool), True) + cfg.generation.max_new_tokens
    test_prompt = _lengths(tok, [e.prompt for e in data.test], True)
    train = pairs(data.labelled)
    if cfg.needs_synthetic():
        train = max(train, pool + 1)
    return {"train": train, "teacher_train": pairs(data.teacher_train), "generate": pool,
            "eval": max(test_prompt + cfg.eval.max_new_tokens, pairs(data.test))}


def preflight(cfg: RunConfig, device: str, note: Callable[[str], None] | None = None
              ) -> Preflight:
    """Every check that can fail before work starts; UserError naming the problem."""
    check_host(cfg)  # the devices to meter exist here (else the run measures 0 J)
    out = Preflight()
    if cfg.eval.backend == "lm_eval":
        from distillmeter.engines.lm_eval import available, preload

        if not available():
            raise UserError("eval.backend: lm_eval needs lm-evaluation-harness: pip install "
                            "'distillmeter[eval]'")
        preload()
    t_m, s_m = cfg.teacher.model, cfg.student.model
    for role, mcfg in (("teacher", t_m), ("student", s_m)):
        if mcfg.is_checkpoint:
            model_source(mcfg, role)  # missing models first: nothing else matters then
    data = None
    if run_tokenizer_model(cfg) is None and cfg.task.files is None:
        tok = components.tokenizer_for(cfg, None)
    else:
        data, tok = components.load_data_and_tokenizer(cfg)
    t_shape, t_limit = model_shape(t_m, "teacher", tok)
    s_shape, s_limit = model_shape(s_m, "student", tok)
    if t_m.is_checkpoint and s_m.is_checkpoint:
        from distillmeter.models import check_tokenizers_compatible

        s_tok = load_tokenizer(model_source(s_m, "student"))
        out.shared_vocab = check_tokenizers_compatible(tok, s_tok, t_shape.vocab, s_shape.vocab)
        out.lines.append(f"tokenizers: teacher and student share {out.shared_vocab:,} ids "
                         f"(logits {t_shape.vocab:,} / {s_shape.vocab:,}: padding rows sliced)")
    if data is None:  # built-in models on the built-in task: their max_len bounds everything
        lengths = dict.fromkeys(("train", "teacher_train", "generate", "eval"),
                                min(t_limit, s_limit))
        lengths["teacher_train"] = t_limit
    else:
        _pool_not_empty(cfg, data)
        lengths = _data_lengths(cfg, data, tok)
        out.lines.append(f"data: {len(data.labelled)} labelled, {len(data.pool)} pool prompts, "
                         f"{len(data.test)} test" + (f", {len(data.teacher_train)} for the "
                                                     "teacher" if cfg.teacher.train else ""))
    out.estimates = _estimates(cfg, device, t_shape, s_shape, lengths, t_limit, s_limit)
    any_map = t_m.device_map is not None or s_m.device_map is not None
    out.available, out.where = memory.available_bytes(device, all_gpus=any_map)
    memory.check_fit(out.estimates, out.available, out.where)
    top = max(out.estimates, key=lambda e: e.total)
    out.lines.append(f"memory (estimate): largest phase {top.phase} {top.total / memory.GIB:.2f}"
                     f" GiB of {out.available / memory.GIB:.2f} GiB free on {out.where}")
    for line in out.lines if note is not None else []:
        note(f"[dim]preflight: {literal(line)}[/]")
    return out


def _pool_not_empty(cfg: RunConfig, data) -> None:
    """A method that learns from the teacher's answers (or samples prompts) with no prompt
    to answer would train on the labelled set alone and pass for a distillation result."""
    needs = [m.name for m in cfg.methods if methods.get(m).needs_pool]
    if needs and not data.pool:
        src = "task.files.pool" if cfg.task.files is not None else "the prompt pool"
        who = f"method {needs[0]} has" if len(needs) == 1 else f"methods {', '.join(needs)} have"
        raise UserError(f"{who} no teacher data: {src} gives 0 usable prompts (after "
                        "removing those in the test and labelled sets); give a larger pool "
                        "(more records, or task.n_pool)")


def _estimates(cfg: RunConfig, device: str, t_shape, s_shape, lengths: dict[str, int],
               t_limit: int, s_limit: int) -> list[memory.PhaseEstimate]:
    t_m, s_m = cfg.teacher.model, cfg.student.model
    t_c = dtype_bytes(compute_dtype(t_m, device))
    s_c = dtype_bytes(compute_dtype(s_m, device))
    # a model being trained keeps float32 weights; one only run is loaded in its dtype
    t_w = 4 if cfg.teacher.train else t_c

    def clip(n: int, limit: int) -> int:
        return max(1, min(n, limit))

    def t_inf(phase: str, batch: int, seq: int, hint: str,
              all_positions: bool = True) -> memory.PhaseEstimate:
        return memory.inference(phase, t_shape, batch=batch, seq=clip(seq, t_limit),
                                weight_bytes=t_w, compute_bytes=t_c,
                                all_positions=all_positions, hint=hint)

    est = []
    if cfg.teacher.train:
        tt = cfg.teacher.training
        est.append(memory.training(
            "teacher.train", t_shape, batch=tt.batch_size,
            seq=clip(lengths["teacher_train"], t_limit), compute_bytes=t_c,
            gradient_checkpointing=t_m.gradient_checkpointing,
            hint="lower teacher.training.batch_size (teacher.training.grad_accum keeps the "
                 "effective batch) or set teacher.model.gradient_checkpointing: true"))
    est.append(t_inf("eval.teacher", cfg.eval.batch_size, lengths["eval"],
                     "lower eval.batch_size"))
    if cfg.needs_synthetic() and cfg.generation.backend == "transformers":
        est.append(t_inf("teacher.generate", cfg.generation.batch_size, lengths["generate"],
                         "lower generation.batch_size or generation.max_new_tokens",
                         all_positions=False))
    if cfg.needs_cache():
        est.append(t_inf("teacher.logits", cfg.logits.batch_size, lengths["train"],
                         "lower logits.batch_size"))
    tr = cfg.training
    student = memory.training(
        "student.train", s_shape, batch=tr.batch_size, seq=clip(lengths["train"], s_limit),
        compute_bytes=s_c, gradient_checkpointing=s_m.gradient_checkpointing,
        hint="lower training.batch_size (training.grad_accum keeps the effective batch), "
             "set student.model.gradient_checkpointing: true, or lower student.model.max_len")
    if any(methods.get(m).teacher_in_train_step for m in cfg.methods):
        live = t_inf("teacher", tr.batch_size, lengths["train"], "")
        student = memory.combine("student.train", memory.PhaseEstimate(
            "student", student.parts, student.batch, student.seq), live, hint=student.hint)
    est.append(student)
    est.append(memory.inference("eval.student", s_shape, batch=cfg.eval.batch_size,
                                seq=clip(lengths["eval"], s_limit), weight_bytes=4,
                                compute_bytes=s_c, hint="lower eval.batch_size"))
    if cfg.eval.backend == "lm_eval":
        # the harness loads its own copy of the model next to the one in memory
        for e in est:
            if e.phase.startswith("eval."):
                shape, c = (t_shape, t_c) if e.phase == "eval.teacher" else (s_shape, s_c)
                e.parts["harness copy"] = float(shape.params) * c
    return est
