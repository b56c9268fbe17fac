"""Tokenizer, tiny Llama, local loading and tokenizer compatibility, with real objects."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, LlamaForCausalLM, PreTrainedTokenizerFast

from distillmeter.errors import UserError
from distillmeter.models import (
    DEFAULT_STUDENT_SPEC,
    DEFAULT_TEACHER_SPEC,
    TinyModelSpec,
    build_char_tokenizer,
    build_llama,
    check_tokenizers_compatible,
    count_params,
    encode_prompt_completion,
    load_causal_lm,
)
from distillmeter.tasks import ArithmeticTask

ALPHABET = ArithmeticTask().alphabet
SMALL = TinyModelSpec(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=32)


def test_char_tokenizer_roundtrip_and_special_tokens(tmp_path):
    tok = build_char_tokenizer(ALPHABET)
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert len(tok) == 4 + len(ALPHABET)
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    ids = tok("347+085=")["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == 9  # BOS + one id per character
    assert tok.decode(ids, skip_special_tokens=True) == "347+085="
    assert tok.convert_ids_to_tokens(tok("x")["input_ids"]) == ["<s>", "<unk>"]
    batch = tok(["1+1=", "12+345="], padding=True, padding_side="left")
    assert batch["input_ids"][0][:3] == [0, 0, 0]
    assert batch["attention_mask"][0] == [0, 0, 0, 1, 1, 1, 1, 1]

    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again.get_vocab() == tok.get_vocab()
    assert again("cd4>234")["input_ids"] == tok("cd4>234")["input_ids"]
    assert again.decode(tok("9>9")["input_ids"], skip_special_tokens=True) == "9>9"
    assert (again.pad_token, again.eos_token) == ("<pad>", "</s>")


def test_whitespace_is_a_character():
    tok = build_char_tokenizer("ab \n")
    ids = tok("a b\n", add_special_tokens=False)["input_ids"]
    assert len(ids) == 4 and tok.decode(ids) == "a b\n"


def test_encode_prompt_completion():
    tok = build_char_tokenizer(ALPHABET)
    ids, start = encode_prompt_completion(tok, "1+2=", "03>3")
    assert start == 5  # BOS + 4 characters
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.decode(ids[start:-1]) == "03>3"
    assert ids[:start] == tok("1+2=")["input_ids"]


def test_build_llama_is_seeded_and_leaves_global_rng_alone():
    tok = build_char_tokenizer(ALPHABET)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    m1 = build_llama(SMALL, tok, seed=7)
    after = torch.rand(1)
    assert torch.equal(before, after)
    m2 = build_llama(SMALL, tok, seed=7)
    m3 = build_llama(SMALL, tok, seed=8)
    assert isinstance(m1, LlamaForCausalLM)
    p1, p2, p3 = (next(iter(m.model.layers[0].parameters())) for m in (m1, m2, m3))
    assert torch.equal(p1, p2) and not torch.equal(p1, p3)
    out = m1(torch.tensor([tok("12+34=")["input_ids"]]))
    assert out.logits.shape == (1, 7, len(tok))
    assert m1.config.eos_token_id == tok.eos_token_id


def test_spec_validation_and_default_sizes():
    with pytest.raises(ValueError, match="divisible"):
        TinyModelSpec(d_model=30, n_heads=4)
    with pytest.raises(ValueError):
        TinyModelSpec(d_modl=32)
    tok = build_char_tokenizer(ALPHABET)
    n_t = count_params(build_llama(DEFAULT_TEACHER_SPEC, tok, seed=0))
    n_s = count_params(build_llama(DEFAULT_STUDENT_SPEC, tok, seed=0))
    assert n_t >= 3 * n_s  # the student is several times smaller


def test_count_params_counts_tied_weights_once():
    tok = build_char_tokenizer(ALPHABET)
    tied = build_llama(SMALL, tok, seed=0)
    untied = build_llama(SMALL.model_copy(update={"tie_embeddings": False}), tok, seed=0)
    emb = len(tok) * SMALL.d_model
    assert count_params(untied) - count_params(tied) == emb
    assert count_params(tied, exclude_embeddings=True) == count_params(tied) - emb
    assert count_params(untied, exclude_embeddings=True) == count_params(untied) - 2 * emb


def test_load_causal_lm_from_a_saved_directory(tmp_path):
    tok = build_char_tokenizer(ALPHABET)
    model = build_llama(SMALL, tok, seed=0)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, loaded_tok = load_causal_lm(tmp_path, dtype="float32")
    assert not loaded.training
    x = torch.tensor([tok("1+2=")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(loaded(x).logits, model(x).logits, atol=1e-6)
    assert loaded_tok.get_vocab() == tok.get_vocab()
    half, _ = load_causal_lm(str(tmp_path), dtype="bf16")
    assert next(half.parameters()).dtype == torch.bfloat16


def test_load_causal_lm_mistakes(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="huggingface-cli download nobody/no-such-model"):
        load_causal_lm("nobody/no-such-model")
    with pytest.raises(UserError, match="does not exist"):
        load_causal_lm(tmp_path / "missing")
    with pytest.raises(UserError, match="no config.json"):
        load_causal_lm(tmp_path)  # a directory without a model in it
    tok = build_char_tokenizer(ALPHABET)
    build_llama(SMALL, tok, seed=0).save_pretrained(tmp_path / "no-tokenizer")
    with pytest.raises(UserError, match="cannot load .*no tokenizer files"):
        load_causal_lm(tmp_path / "no-tokenizer")  # (transformers 4.57 raised ImportError)
    # a library the files need, missing (protobuf, sentencepiece): one line, no traceback
    tok.save_pretrained(tmp_path / "no-tokenizer")
    import transformers

    def missing(*a, **k):
        raise ImportError("\nrequires the protobuf library but it was not found")
    with monkeypatch.context() as m, pytest.raises(
            UserError, match="a library it needs is missing: requires the protobuf"):
        m.setattr(transformers.AutoTokenizer, "from_pretrained", missing)
        load_causal_lm(tmp_path / "no-tokenizer")
    with pytest.raises(UserError, match="unknown dtype"):
        load_causal_lm(tmp_path, dtype="float8")


def test_tokenizer_compatibility():
    a = build_char_tokenizer(ALPHABET)
    b = build_char_tokenizer(ALPHABET)
    n = len(a)
    assert check_tokenizers_compatible(a, b, n, n) == n
    # models padded past the vocabulary (as real checkpoints often are): slice to it
    assert check_tokenizers_compatible(a, b, n + 6, n + 2) == n
    with pytest.raises(UserError, match=r"id 4: teacher '0' vs student '1'"):
        check_tokenizers_compatible(a, build_char_tokenizer("10" + ALPHABET[2:]), n, n)
    with pytest.raises(UserError, match=f"id {n}: teacher None vs student 'x'"):
        check_tokenizers_compatible(a, build_char_tokenizer(ALPHABET + "x"), n, n + 1)
    with pytest.raises(UserError, match="student model's vocabulary"):
        check_tokenizers_compatible(a, b, n, n - 1)
