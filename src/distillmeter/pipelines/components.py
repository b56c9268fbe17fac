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
    """The run's tokenizer: the teacher checkpoint's when the teacher is given by path,
    else the built-in one (one token per character of the task's alphabet). Students share
    it, so logits line up token for token."""
    if cfg.teacher.model.path is not None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(cfg.teacher.model.path, local_files_only=True)
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        return tok
    from distillmeter.models import build_char_tokenizer

    return build_char_tokenizer(task.alphabet)


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    max_len: int


def build_model(mcfg: ModelConfig, tokenizer, *, seed: int, device: str) -> LoadedModel:
    """A fresh tiny Llama from ``mcfg.arch`` (initialised from ``seed``), or a local Hugging
    Face checkpoint from ``mcfg.path`` (with its own tokenizer)."""
    from distillmeter.models import TinyModelSpec, build_llama, load_causal_lm

    if mcfg.path is not None:
        model, tok = load_causal_lm(mcfg.path, dtype="float32", device=device)
        max_len = int(getattr(model.config, "max_position_embeddings", 2048))
        return LoadedModel(model, tok, max_len)
    spec = TinyModelSpec(**mcfg.arch.model_dump())
    model = build_llama(spec, tokenizer, seed=seed).to(device)
    return LoadedModel(model, tokenizer, spec.max_len)


def save_checkpoint(model: torch.nn.Module, tokenizer, folder: Path) -> None:
    """``save_pretrained`` (safetensors) for the model and its tokenizer."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def load_checkpoint(folder: Path, device: str) -> LoadedModel:
    """A checkpoint written by ``save_checkpoint`` (safetensors: no pickle is read)."""
    from distillmeter.models import load_causal_lm

    model, tok = load_causal_lm(Path(folder).resolve(), dtype="float32", device=device)
    return LoadedModel(model, tok, int(model.config.max_position_embeddings))


def vocab_width(model: torch.nn.Module) -> int:
    """The model's number of logits."""
    return int(model.get_output_embeddings().weight.shape[0])
