"""The vLLM backend without vLLM: request building, result conversion, and the logit-cache
layout, checked against the transformers path on a real tiny Llama.

vLLM cannot run here (no CUDA), so ``StandIn`` plays the engine: it answers the backend's
token-id requests with objects shaped like vLLM's ``RequestOutput`` (``prompt_token_ids``,
``outputs[0].text/token_ids/finish_reason/stop_reason``, ``prompt_logprobs`` as a list of
``{token_id: Logprob(logprob, rank, decoded_token)}``, None first, the top-k plus the actual
token), computed from the real model. The engine itself is tested only where vLLM runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch

from distillmeter.engines import make_generation_backend
from distillmeter.engines.generation import TransformersBackend
from distillmeter.engines.vllm import (
    VllmBackend,
    VllmEngine,
    VllmSettings,
    availability,
    logprobs_kwargs,
    prompt_seed,
    sampling_kwargs,
    to_generation,
    topk_from_prompt_logprobs,
)
from distillmeter.errors import UserError
from distillmeter.models import TinyModelSpec, build_char_tokenizer, build_llama
from distillmeter.pipelines.data import encode_pairs
from distillmeter.pipelines.logit_cache import LogitCache, write_cache, write_cache_vllm

ALPHABET = "0123456789+= "


@dataclass
class Logprob:  # the fields of vllm.logprobs.Logprob
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


class StandIn:
    """Answers requests the way vLLM's LLM.generate does, from a real transformers model."""

    def __init__(self, model, tokenizer):
        self.model, self.tok = model.eval(), tokenizer
        self.calls: list[tuple[list[list[int]], list[dict]]] = []

    @torch.no_grad()
    def run(self, token_ids, params):
        self.calls.append((token_ids, params))
        return [self._one(ids, p) for ids, p in zip(token_ids, params, strict=True)]

    def _one(self, ids, p):
        x = torch.tensor([ids])
        plp = None
        if p.get("prompt_logprobs") is not None:
            logp = torch.log_softmax(self.model(input_ids=x).logits[0].float(), dim=-1)
            plp = [None]
            for j in range(1, len(ids)):
                row = logp[j - 1]
                order = torch.argsort(row, descending=True)
                ranks = {int(t): r + 1 for r, t in enumerate(order.tolist())}
                keep = order[: p["prompt_logprobs"]].tolist()
                if ids[j] not in keep:  # vLLM adds the actual prompt token
                    keep.append(ids[j])
                plp.append({t: Logprob(float(row[t]), ranks[t], self.tok.decode([t]))
                            for t in keep})
        assert p["temperature"] == 0.0, "the stand-in decodes greedily only"
        out = self.model.generate(input_ids=x, attention_mask=torch.ones_like(x),
                                  max_new_tokens=p["max_tokens"], do_sample=False,
                                  pad_token_id=self.tok.pad_token_id,
                                  eos_token_id=self.tok.eos_token_id)
        new = out[0, len(ids):].tolist()
        eos = self.tok.eos_token_id
        if eos in new:
            new = new[: new.index(eos) + 1]  # vLLM stops at EOS and keeps it in token_ids
        finish = "stop" if new and new[-1] == eos else "length"
        text = self.tok.decode(new, skip_special_tokens=True)
        return SimpleNamespace(prompt=None, prompt_token_ids=list(ids), prompt_logprobs=plp,
                               outputs=[SimpleNamespace(text=text, token_ids=new,
                                                        finish_reason=finish,
                                                        stop_reason=None)])


@pytest.fixture(scope="module")
def tiny():
    tok = build_char_tokenizer(ALPHABET)
    model = build_llama(TinyModelSpec(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=48),
                        tok, seed=3)
    return model.eval(), tok


def _seqs(tok, n: int = 7):
    pairs = [(f"{i}+{i * 3}=", f"{i * 4}") for i in range(10, 10 + n)]
    return encode_pairs(tok, pairs, max_len=48)


def test_sampling_requests():
    greedy = sampling_kwargs(max_new_tokens=32, temperature=0.0, top_p=0.9, seed=5)
    assert greedy == dict(n=1, max_tokens=32, min_tokens=0, temperature=0.0,
                          repetition_penalty=1.0, skip_special_tokens=True, top_p=1.0)
    sampled = sampling_kwargs(max_new_tokens=8, temperature=0.7, top_p=0.9, seed=5)
    assert (sampled["temperature"], sampled["top_p"], sampled["seed"]) == (0.7, 0.9, 5)
    assert logprobs_kwargs(64) == dict(n=1, max_tokens=1, temperature=0.0,
                                       prompt_logprobs=64, detokenize=False)
    seeds = [prompt_seed(0, i) for i in range(1000)] + [prompt_seed(1, i) for i in range(1000)]
    assert len(set(seeds)) == 2000 and all(0 <= s < 2**31 for s in seeds)


def test_per_prompt_seeds_do_not_depend_on_chunking(tiny):
    model, tok = tiny

    class Recorder:
        def __init__(self):
            self.params = []

        def run(self, token_ids, params):
            self.params += params
            return [SimpleNamespace(prompt_token_ids=ids, outputs=[SimpleNamespace(
                text="", token_ids=[tok.eos_token_id], finish_reason="stop",
                stop_reason=None)]) for ids in token_ids]

    prompts = [f"{i}+1=" for i in range(7)]
    a, b = Recorder(), Recorder()
    VllmBackend(a, tok).generate(prompts, max_new_tokens=4, temperature=1.0, batch_size=2,
                                 seed=9)
    VllmBackend(b, tok).generate(prompts, max_new_tokens=4, temperature=1.0, batch_size=5,
                                 seed=9)
    assert [p["seed"] for p in a.params] == [p["seed"] for p in b.params]
    assert len({p["seed"] for p in a.params}) == 7


def test_result_conversion_counts_eos_once():
    def out(ids, finish, stop=None, text="42"):
        return SimpleNamespace(prompt_token_ids=[1, 5, 6], outputs=[SimpleNamespace(
            text=text, token_ids=ids, finish_reason=finish, stop_reason=stop)])

    g = to_generation("p", out([7, 8, 2], "stop"), eos_ids=[2])  # EOS kept in token_ids
    assert (g.prompt_tokens, g.new_tokens, g.finished, g.completion) == (3, 3, True, "42")
    assert to_generation("p", out([7, 8], "stop"), [2]).new_tokens == 3  # EOS left out
    assert to_generation("p", out([7, 8], "stop", stop="##"), [2]).new_tokens == 2
    g = to_generation("p", out([7, 8, 9], "length"), [2])
    assert (g.new_tokens, g.finished) == (3, False)


def test_topk_from_prompt_logprobs_keeps_shared_vocab_and_order():
    lp = [None,
          {5: Logprob(-0.1, 1), 9: Logprob(-3.0, 3), 7: Logprob(-2.0, 2)},
          {4: Logprob(-0.5, 1), 50: Logprob(-0.6, 2), 3: Logprob(-2.5, 3), 8: Logprob(-9.0, 40)}]
    values, idx = topk_from_prompt_logprobs(lp, prompt_len=1, k=2, vocab_size=20)
    assert idx.tolist() == [[5, 7], [4, 3]]  # 50 is a padding row beyond the shared vocab
    assert values.flatten().tolist() == pytest.approx([-0.1, -2.0, -0.5, -2.5])
    _, idx = topk_from_prompt_logprobs(lp, prompt_len=1, k=3, vocab_size=20)
    assert idx.tolist() == [[5, 7, 9], [4, 3, 8]]  # the actual token's entry fills a place
    with pytest.raises(UserError, match="logprobs_margin"):
        topk_from_prompt_logprobs(lp, prompt_len=1, k=4, vocab_size=20)
    with pytest.raises(UserError, match="no prompt logprobs"):
        topk_from_prompt_logprobs(lp, prompt_len=0, k=1, vocab_size=20)


def test_greedy_generation_matches_the_transformers_backend(tiny):
    model, tok = tiny
    prompts = [f"{i}+{i}=" for i in range(5, 17)]
    vllm_like = VllmBackend(StandIn(model, tok), tok).generate(
        prompts, max_new_tokens=6, batch_size=4)
    ref = TransformersBackend(model, tok, "cpu").generate(prompts, max_new_tokens=6,
                                                          batch_size=4)
    assert vllm_like == ref


def test_logit_cache_matches_the_torch_cache(tiny, tmp_path):
    model, tok = tiny
    seqs = _seqs(tok)
    vocab = len(tok)
    k = 6
    ref = write_cache(tmp_path / "ref", model, seqs, key_hash="h", top_k=k, vocab_size=vocab,
                      pad_id=tok.pad_token_id, dtype="float16", batch_size=3,
                      shard_sequences=3)
    engine = StandIn(model, tok)
    counted = []
    got = write_cache_vllm(tmp_path / "vllm", VllmBackend(engine, tok), seqs, key_hash="h",
                           top_k=k, vocab_size=vocab, dtype="float16", batch_size=2,
                           shard_sequences=3, on_batch=lambda t, s: counted.append((t, s)))
    assert got.complete and got.info["engine"] == "vllm"
    for key in ("top_k", "n_positions", "bytes_per_token", "sequences_sha256", "vocab_size"):
        assert got.info[key] == ref.info[key], key
    a = LogitCache(tmp_path / "ref", expect_sequences=seqs)
    b = LogitCache(tmp_path / "vllm", expect_sequences=seqs)
    assert torch.equal(a.starts, b.starts) and torch.equal(a.ends, b.ends)
    assert torch.equal(a.indices, b.indices)
    assert torch.allclose(a.values.float(), b.values.float(), atol=2e-3)
    assert sum(t for t, _ in counted) == seqs.total_tokens()
    assert sum(s for _, s in counted) == len(seqs)
    assert all(p == logprobs_kwargs(k) for _, ps in engine.calls for p in ps)


def test_logit_cache_resumes_from_verified_shards(tiny, tmp_path):
    model, tok = tiny
    seqs = _seqs(tok)
    backend = VllmBackend(StandIn(model, tok), tok)
    write_cache_vllm(tmp_path / "c", backend, seqs, key_hash="h", top_k=4,
                     vocab_size=len(tok), shard_sequences=3)
    (tmp_path / "c" / "shard-00002.safetensors").unlink()
    again = StandIn(model, tok)
    m = write_cache_vllm(tmp_path / "c", VllmBackend(again, tok), seqs, key_hash="h",
                         top_k=4, vocab_size=len(tok), shard_sequences=3)
    assert m.complete and len(LogitCache(tmp_path / "c")) == len(seqs)
    assert sum(len(ids) for ids, _ in again.calls) == 1  # only the lost shard's sequence


def test_max_logprobs_is_checked_before_any_request(tiny):
    model, tok = tiny
    engine = StandIn(model, tok)
    backend = VllmBackend(engine, tok, VllmSettings(max_logprobs=20, logprobs_margin=4))
    with pytest.raises(UserError, match="max_logprobs"):
        next(backend.topk_logprobs(_seqs(tok), [0], k=17, vocab_size=len(tok)))
    assert engine.calls == []


def test_engine_arguments():
    kw = VllmSettings(tensor_parallel_size=2, max_model_len=4096,
                      extra={"swap_space": 0}).llm_kwargs("ckpt/t")
    assert kw["model"] == kw["tokenizer"] == "ckpt/t"
    assert (kw["tensor_parallel_size"], kw["max_model_len"], kw["swap_space"]) == (2, 4096, 0)
    assert kw["max_logprobs"] == 128


@pytest.mark.skipif(availability()[0], reason="vLLM is usable here: the fallback is not taken")
def test_falls_back_to_transformers_and_says_so(tiny):
    model, tok = tiny
    notes = []
    backend, line = make_generation_backend("vllm", model=model, tokenizer=tok, device="cpu",
                                            model_path="ckpt", note=notes.append)
    assert backend.name == "transformers" and isinstance(backend, TransformersBackend)
    assert line.startswith("generation backend: transformers (vllm asked for, but ")
    assert notes == [line]
    with pytest.raises(UserError, match="unknown generation backend"):
        make_generation_backend("tgi", model=model, tokenizer=tok)


@pytest.mark.skipif(not availability()[0], reason=f"the vLLM engine itself: {availability()[1]}")
def test_real_vllm_engine_matches_transformers(tiny, tmp_path):  # pragma: no cover - GPU only
    model, tok = tiny
    model.save_pretrained(tmp_path / "ckpt")
    tok.save_pretrained(tmp_path / "ckpt")
    engine = VllmEngine(tmp_path / "ckpt", VllmSettings(dtype="float32", enforce_eager=True,
                                                         gpu_memory_utilization=0.3))
    prompts = [f"{i}+{i}=" for i in range(8)]
    got = VllmBackend(engine, tok).generate(prompts, max_new_tokens=6)
    ref = TransformersBackend(model, tok, "cpu").generate(prompts, max_new_tokens=6)
    assert [g.prompt_tokens for g in got] == [g.prompt_tokens for g in ref]
    assert sum(g.completion == r.completion for g, r in zip(got, ref, strict=True)) >= 6


@pytest.mark.skipif(availability()[0], reason="vLLM is usable here: the fallback is not taken")
def test_config_backend_vllm_falls_back_in_the_pipeline(tiny, tmp_path):
    from distillmeter.pipelines import synthetic
    from distillmeter.pipelines.config_file import parse_config
    from distillmeter.tasks import load_task

    model, tok = tiny
    cfg = parse_config({"generation": {"backend": "vllm", "max_new_tokens": 4}})
    with pytest.warns(UserWarning, match="vllm asked for, but"):
        backend = synthetic.make_backend(cfg.generation, model, tok, "cpu")
    assert backend.name == "transformers"
    task = load_task("arithmetic", seed=0, n_labelled=1, n_pool=3, n_test=1, n_teacher=0).task
    with pytest.warns(UserWarning):
        res = synthetic.generate_synthetic(tmp_path / "syn", model, tok, task, ["1+2="],
                                           cfg.generation, device="cpu", key_hash="h",
                                           seed=0)
    assert res.manifest.info["backend"] == "transformers"  # the backend that ran
    with pytest.raises(UserError, match="generation.backend"):
        parse_config({"generation": {"backend": "tgi"}})
