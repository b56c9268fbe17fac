"""Each stage writes what it should: the logit cache (shards, manifest with checksums and
bytes per token, resumable, corruption detected), the synthetic data with the fraction
kept, eval outputs, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from distillmeter.models import build
from distillmeter.pipelines import artifacts
from distillmeter.pipelines.artifacts import ArtifactError
from distillmeter.pipelines.config import EvalConfig, GenerationConfig, MethodConfig
from distillmeter.pipelines.data import collate, encode_pairs
from distillmeter.pipelines.evaluation import evaluate, read_metrics, write_eval
from distillmeter.pipelines.logit_cache import LogitCache, write_cache
from distillmeter.pipelines.losses import topk_logprobs
from distillmeter.pipelines.synthetic import generate_synthetic, read_synthetic
from distillmeter.pipelines.training import CachedKD, OnlineKD


@pytest.fixture
def seqs(task_data, tokenizer):
    return encode_pairs(tokenizer, [(e.prompt, e.target) for e in task_data.labelled], 32)


def _cache(folder, model, seqs, tokenizer, **kw):
    args = dict(key_hash="abc", top_k=8, vocab_size=len(tokenizer),
                pad_id=tokenizer.pad_token_id, batch_size=4, shard_sequences=6)
    return write_cache(folder, model, seqs, **{**args, **kw})


def test_logit_cache_shards_manifest_and_contents(tmp_path, tiny_model, seqs, tokenizer):
    teacher = tiny_model(seed=3)
    folder = tmp_path / "logits-abc"
    m = _cache(folder, teacher, seqs, tokenizer, run_id="r1")
    # 16 sequences, 6 per shard -> 3 shards, each checksummed in the manifest
    shards = sorted(p.name for p in folder.glob("shard-*.safetensors"))
    assert shards == ["shard-00000.safetensors", "shard-00001.safetensors",
                      "shard-00002.safetensors"]
    assert m.complete and m.kind == "logits" and m.stage == "teacher.logits"
    for name in shards:
        assert m.files[name].sha256 == artifacts.sha256_file(folder / name)
    positions = sum(seqs.n_loss_positions(i) for i in range(len(seqs)))
    assert m.info["n_positions"] == positions
    assert m.info["bytes"] == sum((folder / n).stat().st_size for n in shards)
    assert m.info["bytes_per_token"] == pytest.approx(m.info["bytes"] / positions)
    # payload: fp16 values + int32 indices = 6 bytes per entry, plus headers and offsets
    assert 6 * 8 <= m.info["bytes_per_token"] < 6 * 8 + 40
    raw = load_file(str(folder / shards[0]))
    assert raw["values"].dtype == torch.float16 and raw["indices"].dtype == torch.int32
    # the cache holds the teacher's top-k at the learned positions, in the batch's order
    cache = LogitCache(folder, expect_sequences=seqs)
    batch = collate(seqs, [5, 0, 9], tokenizer.pad_token_id)
    with torch.no_grad():
        logits = teacher(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    want_v, want_i = topk_logprobs(logits[:, :-1][batch.loss_mask], 8)
    got_v, got_i = cache.gather(batch.index)
    assert torch.equal(got_i.long(), want_i)
    assert torch.allclose(got_v.float(), want_v, atol=2e-3)


def test_top_k_is_capped_at_the_vocabulary(tmp_path, tiny_model, seqs, tokenizer):
    m = _cache(tmp_path / "c", tiny_model(), seqs, tokenizer, top_k=256)
    assert m.info["top_k"] == len(tokenizer) and m.info["requested_top_k"] == 256


def test_corrupted_shard_is_detected(tmp_path, tiny_model, seqs, tokenizer):
    folder = tmp_path / "run" / "artifacts" / "logits-abc"
    _cache(folder, tiny_model(), seqs, tokenizer)
    assert artifacts.find_verified(tmp_path, "logits", "abc") == folder
    shard = folder / "shard-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="shard-00001.safetensors: sha256 does not match"):
        LogitCache(folder)
    warned = []
    assert artifacts.find_verified(tmp_path, "logits", "abc", warn=warned.append) is None
    assert "corrupted" in warned[0]


def test_cache_on_other_sequences_is_refused(tmp_path, tiny_model, seqs, tokenizer):
    folder = tmp_path / "c"
    _cache(folder, tiny_model(), seqs, tokenizer)
    other = type(seqs)(ids=seqs.ids[:-1], prompt_lens=seqs.prompt_lens[:-1])
    with pytest.raises(ArtifactError, match="built over other sequences"):
        LogitCache(folder, expect_sequences=other)


def test_cache_resumes_from_its_last_good_shard(tmp_path, tiny_model, seqs, tokenizer):
    teacher = tiny_model(seed=2)
    first = tmp_path / "run1" / "logits-abc"
    _cache(first, teacher, seqs, tokenizer)
    # an interrupted attempt: the last shard never written, the manifest not complete
    (first / "shard-00002.safetensors").unlink()
    manifest = json.loads((first / "manifest.json").read_text())
    manifest["complete"] = False
    manifest["info"]["shards"] = manifest["info"]["shards"][:2]
    (first / "manifest.json").write_text(json.dumps(manifest))
    computed = []
    second = tmp_path / "run2" / "logits-abc"
    m = _cache(second, teacher, seqs, tokenizer, resume_from=first,
               on_batch=lambda tok, n: computed.append((tok, n)))
    # only the last shard's 4 sequences went through the teacher (one batch of 4)
    assert [n for tok, n in computed if tok] == [4]
    assert m.complete and artifacts.verify(second) == []
    assert LogitCache(second, expect_sequences=seqs).values.shape[0] == m.info["n_positions"]


def test_cached_kd_equals_online_kd_when_k_is_the_vocabulary(tmp_path, tiny_model, seqs,
                                                             tokenizer):
    teacher, student = tiny_model(seed=4), tiny_model(seed=5)
    folder = tmp_path / "c"
    _cache(folder, teacher, seqs, tokenizer, top_k=len(tokenizer), dtype="float16")
    method = MethodConfig(name="kd", data=["labelled"], loss="kd", alpha=0.0)
    batch = collate(seqs, [3, 1, 4, 15], tokenizer.pad_token_id)
    logits = student(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    cached = CachedKD(method, LogitCache(folder))(logits, batch)[1]["kd"]
    online = OnlineKD(method, teacher)(logits, batch)[1]["kd"]
    assert cached == pytest.approx(online, rel=2e-3)  # fp16 rounding of the cache


def test_synthetic_data_records_what_the_verifier_kept(tmp_path, task_data, tokenizer,
                                                       tiny_model):
    model = tiny_model()
    cfg = GenerationConfig(max_new_tokens=14, batch_size=8, n_prompts=20)
    folder = tmp_path / "synthetic-h"
    res = generate_synthetic(folder, model, tokenizer, task_data.task, list(task_data.pool),
                             cfg, device="cpu", key_hash="h", seed=0, run_id="r")
    lines = [json.loads(s) for s in (folder / "data.jsonl").read_text().splitlines()]
    assert len(lines) == 20 == res.n_prompts
    assert [r["prompt"] for r in lines] == task_data.pool[:20]
    for r in lines:
        assert r["correct"] == task_data.task.check(r["prompt"], r["completion"])
        assert r["kept"] == r["correct"]
    m = artifacts.load_verified(folder)
    assert m.info["n_kept"] == sum(r["kept"] for r in lines) == res.n_kept
    assert m.info["kept_fraction"] == res.n_kept / 20
    assert m.info["new_tokens"] > 0 and m.info["generation"]["temperature"] == 0.0
    assert read_synthetic(folder) == [(r["prompt"], r["completion"]) for r in lines if r["kept"]]


def test_synthetic_data_with_the_task_solving_it_is_all_kept(tmp_path, task_data, tokenizer,
                                                              monkeypatch):
    """A teacher that is always right (the task's own solver behind the backend interface)
    has everything kept: the filter keeps exactly what the verifier accepts."""
    from distillmeter.engines.generation import Generation

    class Oracle:
        name = "oracle"

        def generate(self, prompts, **kw):
            return [Generation(p, task_data.task.solve(p), 9, 13) for p in prompts]

    import distillmeter.pipelines.synthetic as synthetic

    monkeypatch.setattr(synthetic, "make_backend", lambda *a, **k: Oracle())
    res = generate_synthetic(tmp_path / "s", None, tokenizer, task_data.task,
                             list(task_data.pool), GenerationConfig(), device="cpu",
                             key_hash="h", seed=0)
    assert res.kept_fraction == 1.0 and res.n_kept == len(task_data.pool)


def test_eval_writes_completions_and_metrics(tmp_path, task_data, tokenizer, tiny_model):
    model = tiny_model()
    res = evaluate(model, tokenizer, task_data.task, task_data.test,
                   EvalConfig(batch_size=4, max_new_tokens=14), device="cpu", max_len=32)
    assert res.n == len(task_data.test) and 0.0 <= res.exact_match <= 1.0
    assert res.loss > 0 and res.new_tokens > 0 and res.loss_tokens > 0
    folder = tmp_path / "eval-h"
    write_eval(folder, res, kind="eval", key_hash="h", stage="eval.student", run_id="r")
    recs = [json.loads(s) for s in (folder / "completions.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in recs] == [e.prompt for e in task_data.test]
    assert sum(r["correct"] for r in recs) / len(recs) == res.exact_match
    assert read_metrics(folder)["exact_match"] == res.exact_match
    assert artifacts.verify(folder) == []


def test_checkpoint_round_trip(tmp_path, tokenizer, tiny_model, seqs):
    model = tiny_model(seed=9)
    build.save_checkpoint(model, tokenizer, tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "model.safetensors").exists()
    loaded = build.load_checkpoint(tmp_path / "ckpt", "cpu")
    batch = collate(seqs, [0, 1], tokenizer.pad_token_id)
    with torch.no_grad():
        a = model(input_ids=batch.input_ids).logits
        b = loaded.model(input_ids=batch.input_ids).logits
    assert torch.equal(a, b)
    assert loaded.tokenizer.get_vocab() == tokenizer.get_vocab()
