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


# --------------------------------------------------------------------------- Qwen2 + BPE

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2's own chat template, cut down to what the tests use (its markers, no system prompt)
QWEN_CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                      "<|im_end|>\n{% endfor %}"
                      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def bpe_tokenizer(texts: list[str], vocab_size: int = 320):
    """A byte-level BPE tokenizer trained with `tokenizers` on ``texts``, shaped like
    Qwen2's: no BOS, ``<|endoftext|>`` as EOS and padding, its chat markers special."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=QWEN_SPECIAL, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>",
                                  additional_special_tokens=QWEN_SPECIAL[1:])
    tok.chat_template = QWEN_CHAT_TEMPLATE
    return tok


def save_qwen2(folder: Path, tok, *, seed: int, hidden: int = 32, layers: int = 1) -> Path:
    """A tiny Qwen2ForCausalLM (grouped-query attention, tied embeddings, as the small
    Qwen2.5 models) and its tokenizer in ``folder``, untrained (weights from ``seed``)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, bos_token_id=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def qwen2_pair(root: Path) -> tuple[Path, Path]:
    """An untrained Qwen2 teacher (hidden 48, 2 layers) and student (hidden 32, 1 layer)
    sharing one BPE tokenizer trained on the math records."""
    texts = [r["question"] + "\n" + r["answer"] for r in math_records(200)]
    tok = bpe_tokenizer(texts)
    return (save_qwen2(root / "qwen-teacher", tok, seed=0, hidden=48, layers=2),
            save_qwen2(root / "qwen-student", tok, seed=1))
