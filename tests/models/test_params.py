"""Parameter counts without building a model (models/params.py), checked against
``count_params`` of real models: the built-in tiny Llamas (tied and untied) and
transformers' Llama, Qwen2 (q/k/v biases) and Mistral (head size != hidden / heads) built
from small configs, and a checkpoint's config.json read from disk."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from distillmeter.errors import UserError
from distillmeter.models import build_char_tokenizer, count_params
from distillmeter.models.build import build_model
from distillmeter.models.config import ArchConfig, ModelConfig
from distillmeter.models.params import (
    char_vocab,
    read_config_json,
    shape_from_arch,
    shape_from_config,
)
from distillmeter.pipelines.config import RunConfig
from distillmeter.tasks import ArithmeticTask

ALPHABET = ArithmeticTask().alphabet


@pytest.mark.parametrize("arch", [
    RunConfig().teacher.model.arch, RunConfig().student.model.arch,
    ArchConfig(d_model=24, n_layers=3, n_heads=3, d_ff=40, tie_embeddings=False),
])
def test_builtin_llama_count_is_exact(arch):
    tok = build_char_tokenizer(ALPHABET)
    model = build_model(ModelConfig(arch=arch), tok, seed=0, device="cpu").model
    shape = shape_from_arch(arch, char_vocab(ALPHABET))
    assert shape.params == count_params(model)
    assert char_vocab(ALPHABET) == len(tok)


@pytest.mark.parametrize("cls,cfg", [
    (LlamaForCausalLM, LlamaConfig(vocab_size=101, hidden_size=32, intermediate_size=48,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, tie_word_embeddings=False)),
    (Qwen2ForCausalLM, Qwen2Config(vocab_size=101, hidden_size=32, intermediate_size=48,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, tie_word_embeddings=True)),
    (MistralForCausalLM, MistralConfig(vocab_size=101, hidden_size=32, intermediate_size=48,
                                       num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=1, head_dim=16,
                                       tie_word_embeddings=False)),
])
def test_checkpoint_config_count_is_exact(tmp_path, cls, cfg):
    model = cls(cfg)
    model.save_pretrained(tmp_path)
    assert read_config_json(tmp_path).params == count_params(model)
    assert shape_from_config(cfg.to_dict()).params == count_params(model)


def test_bad_config_json_names_the_problem(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        read_config_json(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        read_config_json(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(UserError, match="config.json: cannot read the model's shape"):
        read_config_json(tmp_path)


def test_no_torch_import():
    code = ("import sys; from distillmeter.models.params import shape_from_arch; "
            "from distillmeter.pipelines.work import plan_work; "
            "from distillmeter.pipelines.config import RunConfig; "
            "plan_work(RunConfig()); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
