"""Real checkpoints in a run: where a model comes from (a local directory, or a hub id found
in the local Hugging Face cache; never downloaded), its dtype, and the checks made before
any work (``preflight``): the sources exist, teacher and student tokenizers agree, the data
files read, and every phase fits in memory at the configured batch sizes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from distillmeter.errors import UserError
from distillmeter.pipelines import memory
from distillmeter.pipelines.config import ModelConfig, RunConfig
from distillmeter.pipelines.file_data import resolve_path

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, from the environment at call time (``HF_HUB_CACHE``, else
    ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def model_source(mcfg: ModelConfig, role: str) -> Path:
    """The local directory a checkpoint loads from. ``path`` must be a model directory;
    ``hub_id`` must already be in the local cache (a UserError says what to fetch)."""
    if mcfg.path is not None:
        path = resolve_path(mcfg.path)
        if not path.is_dir():
            raise UserError(f"{role}.model.path: {path} is not a directory")
        if not (path / "config.json").is_file():
            raise UserError(f"{role}.model.path: {path} has no config.json (not a Hugging "
                            "Face model directory)")
        return path
    if mcfg.hub_id is None:
        raise ValueError(f"{role} is a built-in model, not a checkpoint")
    from huggingface_hub import snapshot_download

    cache = hub_cache_dir()
    rev = f" --revision {mcfg.revision}" if mcfg.revision else ""
    try:
        folder = Path(snapshot_download(mcfg.hub_id, revision=mcfg.revision, cache_dir=cache,
                                        local_files_only=True))
    except Exception as exc:  # not cached (LocalEntryNotFoundError), a bad id, ...
        raise UserError(
            f"{role}.model.hub_id: {mcfg.hub_id!r} is not in the local Hugging Face cache "
            f"({cache}) and distillmeter never downloads at run time. Fetch it first on a "
            f"machine with network: `hf download {mcfg.hub_id}{rev}` (older huggingface_hub: "
            f"`huggingface-cli download {mcfg.hub_id}{rev}`), then run here with HF_HOME or "
            f"HF_HUB_CACHE pointing at that cache, or give model.path. "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    if not (folder / "config.json").is_file():
        raise UserError(f"{role}.model.hub_id: the cached snapshot {folder} has no config.json "
                        f"(an incomplete download?); fetch it again: hf download {mcfg.hub_id}")
    return folder


def compute_dtype(mcfg: ModelConfig, device: str) -> torch.dtype:
    """The dtype forward passes run in. ``auto``: bfloat16 on a GPU for a checkpoint,
    float32 otherwise (built-in tiny models and CPU runs)."""
    if mcfg.dtype != "auto":
        return _DTYPES[mcfg.dtype]
    if mcfg.is_checkpoint and device.startswith("cuda"):
        return torch.bfloat16
    return torch.float32


def dtype_bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def load_tokenizer(source: Path):
    """A checkpoint's tokenizer from its directory (pad token: EOS when it has none)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise UserError(f"{source}: cannot load its tokenizer ({str(exc).splitlines()[0]})"
                        ) from None
    if tok.pad_token_id is None and tok.eos_token_id is not None:
        tok.pad_token = tok.eos_token
    return tok


def run_tokenizer_model(cfg: RunConfig) -> tuple[str, ModelConfig] | None:
    """The checkpoint whose tokenizer the run uses (the teacher's, else the student's);
    None when both models are built in (then the task's character tokenizer)."""
    for role, mcfg in (("teacher", cfg.teacher.model), ("student", cfg.student.model)):
        if mcfg.is_checkpoint:
            return role, mcfg
    return None


def tokenizer_id_space(tokenizer) -> int:
    """How many token ids the tokenizer uses (its largest id + 1)."""
    return max(tokenizer.get_vocab().values()) + 1


def shared_vocab(tokenizer, model: torch.nn.Module) -> int:
    """The logits both models are compared on: the tokenizer's ids, without the padding
    rows a checkpoint's embedding matrix may have past them."""
    width = int(model.get_output_embeddings().weight.shape[0])
    return min(width, tokenizer_id_space(tokenizer))


def _hf_config(mcfg: ModelConfig, role: str, tokenizer):
    if mcfg.is_checkpoint:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(str(model_source(mcfg, role)), local_files_only=True)
    from distillmeter.models import TinyModelSpec, llama_config

    return llama_config(TinyModelSpec(**mcfg.arch.model_dump()), tokenizer)


def model_shape(mcfg: ModelConfig, role: str, tokenizer) -> tuple[memory.ModelShape, int]:
    """The model's shape for the memory estimate, and its position limit (``max_len``).
    Parameters are counted on a meta-device build (no memory), or by formula if that fails."""
    config = _hf_config(mcfg, role, tokenizer)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = int(text.hidden_size)
    layers = int(text.num_hidden_layers)
    heads = int(getattr(text, "num_attention_heads", 1) or 1)
    ffn = int(getattr(text, "intermediate_size", None) or 4 * hidden)
    head_dim = int(getattr(text, "head_dim", None) or hidden // heads)
    kv = int(getattr(text, "num_key_value_heads", None) or heads) * head_dim
    vocab = int(text.vocab_size)
    try:
        from transformers import AutoModelForCausalLM

        from distillmeter.models import count_params

        with torch.device("meta"):
            params = count_params(AutoModelForCausalLM.from_config(config))
    except Exception:  # an architecture that cannot be built on meta: a Llama-like formula
        tied = bool(getattr(text, "tie_word_embeddings", True))
        params = vocab * hidden * (1 if tied else 2) + layers * (
            2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * ffn + 2 * hidden) + hidden
    max_pos = int(getattr(text, "max_position_embeddings", 0) or 0)
    limit = mcfg.max_len or (mcfg.arch.max_len if mcfg.arch is not None else max_pos or 4096)
    return memory.ModelShape(params, layers, hidden, ffn, kv, vocab), limit


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
    from distillmeter.pipelines import components

    out = Preflight()
    if cfg.eval.backend == "lm_eval":
        from distillmeter.pipelines.lm_eval_backend import available

        if not available():
            raise UserError("eval.backend: lm_eval needs lm-evaluation-harness: pip install "
                            "'distillmeter[eval]'")
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
        note(f"[dim]preflight: {line}[/]")
    return out


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
    if any(m.loss == "kd" and m.teacher_mode == "online" for m in cfg.methods):
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
