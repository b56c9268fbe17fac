"""Small components the recipes (``teacher.py``, ``student.py``) are assembled from: the
device, threads and seeds, the task's data and the run's tokenizer. (Models and
checkpoints: ``distillmeter.models.build``.)"""

from __future__ import annotations

import os
import random

import torch

from distillmeter.errors import UserError
from distillmeter.models.config import ModelConfig
from distillmeter.pipelines.config import RunConfig, TaskConfig


def pick_device(cfg: RunConfig) -> str:
    """``auto``: CUDA when available, else CPU. Asking for CUDA without it is a UserError."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{cfg.where('device')}: cuda, but torch sees no CUDA device (use "
                        "device: auto or cpu)")
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def set_threads(threads: int | None) -> int:
    """CPU threads for torch (``threads``: the config's; None: the default). The default is
    half the usable cores, at least 1, at most 4: tiny models gain little from intra-op
    threads, and lose a lot when the threads compete
    with anything else (OpenMP threads spin waiting for each other). Measured on the 2-core
    development machine with other work running: one training step of the default teacher
    took 0.22 s of CPU with 1 thread and 0.95 s with 2."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    n = threads or max(1, min(4, cores // 2))
    torch.set_num_threads(n)
    return n


def preload() -> None:
    """Import the heavy modules (torch is already in; transformers, the models, generation)
    before any meter starts, so that ``setup.load`` measures loading the run, not Python
    importing libraries once per process."""
    from transformers.utils import logging as hf_logging

    import distillmeter.engines.generation  # noqa: F401
    import distillmeter.models  # noqa: F401
    import distillmeter.pipelines.losses  # noqa: F401

    hf_logging.disable_progress_bar()  # transformers' own bars would tear through ours


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's RNGs (data order and init take their own seeds too)."""
    random.seed(seed)
    torch.manual_seed(seed)


def run_tokenizer_model(cfg: RunConfig) -> tuple[str, ModelConfig] | None:
    """The checkpoint whose tokenizer the run uses (the teacher's, else the student's);
    None when both models are built in (then the task's character tokenizer)."""
    for role, mcfg in (("teacher", cfg.teacher.model), ("student", cfg.student.model)):
        if mcfg.is_checkpoint:
            return role, mcfg
    return None


def load_task_data(t: TaskConfig):
    """The task's splits, deterministic in ``task.seed``."""
    from distillmeter.tasks import load_task

    params = {k: v for k, v in t.params.items()}
    return load_task(t.name, seed=t.seed, n_labelled=t.n_labelled, n_pool=t.n_pool,
                     n_test=t.n_test, n_teacher=t.n_teacher, **params)


def tokenizer_for(cfg: RunConfig, task):
    """The run's tokenizer: a checkpoint's (the teacher's, else the student's; the preflight
    checked that the two agree), else the built-in one (one token per character of the
    task's alphabet; ``task`` None: the built-in task's). Every model of the run shares it,
    so logits line up token for token."""
    from distillmeter.models.checkpoints import load_tokenizer, model_source

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
        data = load_task_data(cfg.task)
        return data, tokenizer_for(cfg, data.task)
    from distillmeter.tasks.files import load_file_task

    verify_pool = cfg.generation.verify and cfg.needs_synthetic()
    if run_tokenizer_model(cfg) is None:
        data = load_file_task(cfg.task, tokenizer=None, verify_pool=verify_pool)
        return data, tokenizer_for(cfg, data.task)
    tok = tokenizer_for(cfg, None)
    return load_file_task(cfg.task, tokenizer=tok, verify_pool=verify_pool), tok
