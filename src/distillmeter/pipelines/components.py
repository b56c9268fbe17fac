"""Small components the recipes (``teacher.py``, ``student.py``) are assembled from: the
device, threads and seeds, the task's data, tokenizer and models, checkpoints."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from distillmeter.errors import UserError
from distillmeter.pipelines.config import ModelConfig, RunConfig


def pick_device(cfg: RunConfig) -> str:
    """``auto``: CUDA when available, else CPU. Asking for CUDA without it is a UserError."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device: cuda, but torch sees no CUDA device (use device: auto or cpu)")
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def set_threads(cfg: RunConfig) -> int:
    """CPU threads for torch. The default is half the usable cores, at least 1, at most 4:
    tiny models gain little from intra-op threads, and lose a lot when the threads compete
    with anything else (OpenMP threads spin waiting for each other). Measured on the 2-core
    development machine with other work running: one training step of the default teacher
    took 0.22 s of CPU with 1 thread and 0.95 s with 2."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    n = cfg.threads or max(1, min(4, cores // 2))
    torch.set_num_threads(n)
    return n


def preload() -> None:
    """Import the heavy modules (torch is already in; transformers, the models, generation)
    before any meter starts, so that ``setup.load`` measures loading the run, not Python
    importing libraries once per process."""
    from transformers.utils import logging as hf_logging

    import distillmeter.models  # noqa: F401
    import distillmeter.pipelines.generation  # noqa: F401
    import distillmeter.pipelines.losses  # noqa: F401

    hf_logging.disable_progress_bar()  # transformers' own bars would tear through ours


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's RNGs (data order and init take their own seeds too)."""
    random.seed(seed)
    torch.manual_seed(seed)


def load_task_data(cfg: RunConfig):
    """The task's splits, deterministic in ``task.seed``."""
    from distillmeter.tasks import load_task

    t = cfg.task
    params = {k: v for k, v in t.params.items()}
    return load_task(t.name, seed=t.seed, n_labelled=t.n_labelled, n_pool=t.n_pool,
                     n_test=t.n_test, n_teacher=t.n_teacher, **params)


def tokenizer_for(cfg: RunConfig, task):
    """The run's tokenizer: a checkpoint's (the teacher's, else the student's; the preflight
    checked that the two agree), else the built-in one (one token per character of the
    task's alphabet; ``task`` None: the built-in task's). Every model of the run shares it,
    so logits line up token for token."""
    from distillmeter.pipelines.real_models import load_tokenizer, model_source, run_tokenizer_model

    source = run_tokenizer_model(cfg)
    if source is not None:
        return load_tokenizer(model_source(source[1], source[0]))
    from distillmeter.models import build_char_tokenizer

    if task is None:
        from distillmeter.tasks.arithmetic import ALPHABET

        return build_char_tokenizer(ALPHABET)
    return build_char_tokenizer(task.alphabet)


def load_data_and_tokenizer(cfg: RunConfig):
    """(task data, the run's tokenizer). Data from files is rendered for the tokenizer
    (its chat template); a character tokenizer is built from the files' alphabet."""
    if cfg.task.files is None:
        data = load_task_data(cfg)
        return data, tokenizer_for(cfg, data.task)
    from distillmeter.pipelines.file_data import load_file_task
    from distillmeter.pipelines.real_models import run_tokenizer_model

    verify_pool = cfg.generation.verify and cfg.needs_synthetic()
    if run_tokenizer_model(cfg) is None:
        data = load_file_task(cfg.task, tokenizer=None, verify_pool=verify_pool)
        return data, tokenizer_for(cfg, data.task)
    tok = tokenizer_for(cfg, None)
    return load_file_task(cfg.task, tokenizer=tok, verify_pool=verify_pool), tok


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    max_len: int
    autocast: torch.dtype | None = None  # forward passes under autocast to this dtype


def build_model(mcfg: ModelConfig, tokenizer, *, seed: int, device: str, role: str = "student",
                trainable: bool = True) -> LoadedModel:
    """A fresh tiny Llama from ``mcfg.arch`` (initialised from ``seed``), or a Hugging Face
    checkpoint (``mcfg.path`` or ``mcfg.hub_id`` from the local cache, with its own
    tokenizer). A model to be ``trainable`` keeps float32 weights and runs under autocast
    to the compute dtype; one only run is loaded in the compute dtype (see real_models)."""
    from distillmeter.models import TinyModelSpec, build_llama, load_causal_lm
    from distillmeter.pipelines.real_models import compute_dtype, model_source

    dtype = compute_dtype(mcfg, device)
    mixed = dtype if trainable and dtype != torch.float32 else None
    if mcfg.is_checkpoint:
        model, tok = load_causal_lm(model_source(mcfg, role),
                                    dtype=torch.float32 if trainable else dtype,
                                    device=device, device_map=mcfg.device_map)
        max_len = mcfg.max_len or int(getattr(model.config, "max_position_embeddings", 2048))
        loaded = LoadedModel(model, tok, max_len, mixed)
    else:
        spec = TinyModelSpec(**mcfg.arch.model_dump())
        model = build_llama(spec, tokenizer, seed=seed).to(device=device,
                                                            dtype=torch.float32 if trainable
                                                            else dtype)
        loaded = LoadedModel(model, tokenizer, spec.max_len, mixed)
    if trainable and mcfg.gradient_checkpointing:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x's name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        model.config.use_cache = False  # the KV cache does nothing in training; HF warns
    return loaded


def save_checkpoint(model: torch.nn.Module, tokenizer, folder: Path) -> None:
    """``save_pretrained`` (safetensors) for the model and its tokenizer."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def load_checkpoint(folder: Path, device: str, mcfg: ModelConfig | None = None) -> LoadedModel:
    """A checkpoint written by ``save_checkpoint`` (safetensors: no pickle is read), float32
    weights, run under autocast to ``mcfg``'s compute dtype; ``max_len`` from ``mcfg``."""
    from distillmeter.models import load_causal_lm

    model, tok = load_causal_lm(Path(folder).resolve(), dtype="float32", device=device)
    max_len = int(model.config.max_position_embeddings)
    mixed = None
    if mcfg is not None:
        from distillmeter.pipelines.real_models import compute_dtype

        max_len = mcfg.max_len or (mcfg.arch.max_len if mcfg.arch is not None else max_len)
        dtype = compute_dtype(mcfg, device)
        mixed = dtype if dtype != torch.float32 else None
    return LoadedModel(model, tok, max_len, mixed)


def vocab_width(model: torch.nn.Module) -> int:
    """The model's number of logits."""
    return int(model.get_output_embeddings().weight.shape[0])
