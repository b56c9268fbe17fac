"""Tiny real pieces for the pipeline tests: the arithmetic task, its char tokenizer and
tiny Llamas (a few thousand parameters, milliseconds per step)."""

from __future__ import annotations

import pytest

from distillmeter.pipelines.config import ArchConfig, ModelConfig
from distillmeter.pipelines.config_file import parse_config
from tiny_config import TINY_ARCH, TINY_RUN


@pytest.fixture(scope="session")
def tiny_run_dict():
    """TINY_RUN (a config as plain data); copy before changing it."""
    return TINY_RUN


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs with one torch thread (tests/conftest.py)."""


@pytest.fixture(scope="session")
def task_data():
    from distillmeter.tasks import load_task

    return load_task("arithmetic", seed=0, n_labelled=16, n_pool=24, n_test=8, n_teacher=64)


@pytest.fixture(scope="session")
def tokenizer(task_data):
    from distillmeter.models import build_char_tokenizer

    return build_char_tokenizer(task_data.task.alphabet)


@pytest.fixture
def tiny_model(tokenizer):
    """``tiny_model(seed=0, **arch)``: a fresh tiny Llama on the char tokenizer."""
    from distillmeter.models.build import build_model

    def make(seed: int = 0, **arch):
        mcfg = ModelConfig(arch=ArchConfig(**{**TINY_ARCH, **arch}))
        return build_model(mcfg, tokenizer, seed=seed, device="cpu").model

    return make


@pytest.fixture
def tiny_run_config():
    """``tiny_run_config(**sections)``: TINY_RUN with top-level sections replaced."""
    return lambda **overrides: parse_config({**TINY_RUN, **overrides}, "tiny")
