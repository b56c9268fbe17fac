"""The memory-fit estimate (its formulas, real model shapes counted on the meta device)
and the packaged example configs: they validate without their files, load by name, and
resolve checkpoints from the local hub cache and data from the current directory."""

from __future__ import annotations

import json
from importlib.resources import files

import pytest
import torch
import yaml

import real_pair
from distillmeter.errors import UserError
from distillmeter.models import memory
from distillmeter.models.memory import model_shape
from distillmeter.models.params import ModelShape
from distillmeter.pipelines.config import ModelConfig
from distillmeter.pipelines.config_file import load_config, parse_config
from distillmeter.pipelines.preflight import preflight

GIB = memory.GIB
# the built-in task's configs (no checkpoints)
BUILTIN = ("default.yaml", "onpolicy.yaml", "preference.yaml")
EXAMPLES = sorted(p.name for p in files("distillmeter").joinpath("configs").iterdir()
                  if p.name.endswith(".yaml") and p.name not in BUILTIN)

# Qwen2.5-0.5B-Instruct's config.json (the fields the estimate reads)
QWEN_05B = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896,
            "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
            "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True,
            "max_position_embeddings": 32768}


def test_training_estimate_adds_up_its_parts():
    shape = ModelShape(vocab=10, hidden=8, layers=2, heads=1, kv_heads=1, head_dim=4, ffn=16,
                       counted_params=1000)
    e = memory.training("student.train", shape, batch=3, seq=5, compute_bytes=2)
    block = 8 * 8 + 2 * 4 + 4 * 16  # 136 elements a token a layer
    assert e.parts == {"weights": 4000, "gradients": 4000, "optimizer": 8000,
                       "activations": 15 * 2 * block * 2, "logits": 15 * 10 * (4 + 16)}
    ckpt = memory.training("x", shape, batch=3, seq=5, compute_bytes=2,
                           gradient_checkpointing=True)
    assert ckpt.parts["activations"] == 15 * (2 * 8 + block) * 2
    inf = memory.inference("eval", shape, batch=3, seq=5, weight_bytes=2, compute_bytes=2)
    assert inf.parts == {"weights": 2000, "kv_cache": 2 * 15 * 2 * 4 * 2,
                         "activations": 15 * 24 * 4, "logits": 15 * 10 * 6}
    gen = memory.inference("gen", shape, batch=3, seq=5, weight_bytes=2, compute_bytes=2,
                           all_positions=False)
    assert gen.parts["logits"] == 3 * 10 * 6  # generation: the next token's logits only
    assert e.total == sum(e.parts.values())


def test_check_fit_names_the_phases_over_and_the_headroom():
    shape = ModelShape(vocab=32000, hidden=2048, layers=24, heads=16, kv_heads=2, head_dim=128,
                       ffn=5632, counted_params=10**9)
    small = memory.inference("eval.teacher", shape, batch=1, seq=8, weight_bytes=2,
                             compute_bytes=2)
    big = memory.training("student.train", shape, batch=64, seq=2048, compute_bytes=2,
                          hint="lower training.batch_size")
    memory.check_fit([small], 40 * GIB, "GPU")  # fits: no error
    with pytest.raises(UserError) as exc:
        memory.check_fit([small, big], 40 * GIB, "GPU cuda:0")
    msg = str(exc.value)
    assert "GPU cuda:0 has 40.00 GiB free" in msg and "90%" in msg
    assert "student.train: estimated" in msg and "eval.teacher" not in msg
    assert "lower training.batch_size" in msg and "(batch 64 x 2048 tokens)" in msg


@pytest.fixture
def qwen_cache(tmp_path, monkeypatch):
    """A hub cache holding only Qwen2.5-0.5B-Instruct's config.json."""
    cache = tmp_path / "hub"
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(json.dumps(QWEN_05B))
    real_pair.to_hub_cache(src, cache, "Qwen/Qwen2.5-0.5B-Instruct")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_a_real_shape_is_counted_exactly_on_the_meta_device(qwen_cache):
    mcfg = ModelConfig(hub_id="Qwen/Qwen2.5-0.5B-Instruct", max_len=1024)
    shape, limit = model_shape(mcfg, "student", None)
    assert shape.params == 494_032_768  # Qwen2.5-0.5B's published parameter count
    assert (shape.layers, shape.hidden, shape.kv_width, shape.vocab) == (24, 896, 128, 151936)
    assert limit == 1024
    e = memory.training("student.train", shape, batch=8, seq=1024, compute_bytes=2)
    # weights + gradients + AdamW: 16 bytes a parameter
    assert e.parts["weights"] + e.parts["gradients"] + e.parts["optimizer"] == pytest.approx(
        7.36 * GIB, rel=0.01)
    assert e.parts["activations"] == pytest.approx(9.84 * GIB, rel=0.01)
    assert e.parts["logits"] == pytest.approx(23.18 * GIB, rel=0.01)  # 151,936 logits a token


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_configs_validate_without_their_files(name):
    assert len(EXAMPLES) >= 2
    cfg = load_config(name.removesuffix(".yaml"))  # a packaged config, by name
    text = files("distillmeter").joinpath("configs", name).read_text()
    assert parse_config(yaml.safe_load(text)) == cfg
    assert cfg.teacher.model.hub_id and cfg.student.model.hub_id and not cfg.teacher.train
    assert cfg.task.files is not None and cfg.task.files.verifier == "numeric_final_answer"
    assert cfg.task.files.labelled.path.startswith("data/")


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_configs_resolve_from_the_cache_and_the_current_directory(
        name, tmp_path, monkeypatch):
    """Tiny stand-ins cached under the real hub ids, GSM8K-shaped files in data/: the
    preflight finds them all, offline; without the models it names what to fetch."""
    cfg = load_config(name.removesuffix(".yaml"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(UserError, match=f"hf download {cfg.teacher.model.hub_id}"):
        preflight(cfg, "cpu")
    tok = real_pair.tokenizer()
    for i, hub_id in enumerate((cfg.teacher.model.hub_id, cfg.student.model.hub_id)):
        ckpt = real_pair.save_checkpoint(tmp_path / f"m{i}", tok, seed=i)
        real_pair.to_hub_cache(ckpt, tmp_path / "hub", hub_id)
    (tmp_path / "data" / "gsm8k").mkdir(parents=True)
    real_pair.write_jsonl(tmp_path / "data/gsm8k/train.jsonl", real_pair.math_records(3100))
    real_pair.write_jsonl(tmp_path / "data/gsm8k/test.jsonl", real_pair.math_records(600, 5000))
    torch.manual_seed(0)
    checked = preflight(cfg, "cpu")
    assert "data: 1000 labelled, 2000 pool prompts, 500 test" in checked.lines
    assert checked.shared_vocab == len(tok)
    assert {e.phase for e in checked.estimates} >= {"teacher.generate", "teacher.logits",
                                                    "student.train", "eval.student"}
