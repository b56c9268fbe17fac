"""Helpers for the real-model tests: two tiny Llama "checkpoints" saved with save_pretrained
(the student's embedding padded past the vocabulary, as real checkpoints often are), a
character tokenizer with a chat template, a small math data set in JSONL, and a config
naming them."""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
import yaml

ALPHABET = string.ascii_letters + string.digits + string.punctuation + " \n"
# a chat template in the tokenizer's own characters (Jinja, as real tokenizers carry)
CHAT_TEMPLATE = ("{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}[assistant]{% endif %}")
SPEC = {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64, "max_len": 96}


def tokenizer(alphabet: str = ALPHABET, chat_template: str | None = CHAT_TEMPLATE):
    from distillmeter.models import build_char_tokenizer

    tok = build_char_tokenizer(alphabet)
    if chat_template is not None:
        tok.chat_template = chat_template
    return tok


def save_checkpoint(folder: Path, tok, *, seed: int, pad_rows: int = 0, **spec) -> Path:
    """A tiny LlamaForCausalLM and its tokenizer in ``folder``; ``pad_rows`` extra rows in
    the embedding past the tokenizer's ids."""
    from transformers import LlamaForCausalLM

    from distillmeter.models import TinyModelSpec, llama_config

    config = llama_config(TinyModelSpec(**{**SPEC, **spec}), tok)
    config.vocab_size = len(tok) + pad_rows
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def math_records(n: int, start: int = 0) -> list[dict]:
    """GSM8K-shaped records (distinct questions): a question and an answer ending in
    '#### <number>'."""
    out = []
    for i in range(start, start + n):
        a, b = i + 1, (i * 7) % 13 + 2
        out.append({"question": f"Tom has {a} apples and gets {b} more. How many?",
                    "answer": f"{a}+{b}={a + b}\n#### {a + b}"})
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def pair(root: Path, *, student_alphabet: str = ALPHABET) -> tuple[Path, Path]:
    """Teacher (no padding) and student (8 padding rows) checkpoints under ``root``."""
    teacher = save_checkpoint(root / "teacher", tokenizer(), seed=0, d_model=48, d_ff=96)
    student = save_checkpoint(root / "student", tokenizer(student_alphabet), seed=1,
                              pad_rows=8)
    return teacher, student


def data(root: Path) -> dict[str, str]:
    train = write_jsonl(root / "train.jsonl", math_records(40))
    test = write_jsonl(root / "test.jsonl", math_records(6, start=100))
    return {"labelled": str(train), "pool": str(train), "test": str(test)}


def config(teacher: Path | str, student: Path | str, files: dict, **overrides) -> dict:
    """A run config (plain data) naming the checkpoints; tiny budgets (seconds)."""
    cfg = {
        "task": {"name": "sums", "n_labelled": 12, "n_pool": 16, "n_test": 6,
                 "files": {**files, "fields": {"prompt": "question", "answer": "answer"},
                           "verifier": "numeric_final_answer"}},
        "teacher": {"model": {"path": str(teacher)}, "train": False},
        "student": {"model": {"path": str(student)}},
        "methods": [{"name": "synthetic", "data": ["labelled", "synthetic"]},
                    {"name": "kd", "data": ["labelled", "synthetic"], "loss": "kd"},
                    {"name": "kd-online", "data": ["labelled"], "loss": "kd",
                     "teacher_mode": "online"}],
        "training": {"token_budget": 600, "batch_size": 4, "grad_accum": 2, "lr": 1e-3},
        "logits": {"top_k": 8},
        "generation": {"max_new_tokens": 12, "batch_size": 8, "verify": False},
        "eval": {"max_new_tokens": 12, "batch_size": 8},
        "meter": {"idle_seconds": 0.0},
        "seeds": 1, "device": "cpu", "threads": 1,
    }
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def to_hub_cache(checkpoint: Path, cache: Path, repo_id: str,
                 commit: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    """Lay a checkpoint out as the Hugging Face hub cache does (models--org--name with a
    snapshot and refs/main), so that a hub id resolves offline."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in checkpoint.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snap
