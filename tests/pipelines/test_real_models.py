"""`distillmeter run` on checkpoints named in the config: tiny Llamas saved with
save_pretrained (the student's embedding padded past the vocabulary), data from a JSONL
file with a chat template applied, end to end through the CLI; and the checks that stop a
run before any work: a hub id not in the local cache, tokenizers that differ, a batch that
cannot fit in memory."""

from __future__ import annotations

import json

import pytest
import yaml

import real_pair
from distillmeter import protocol
from distillmeter.cli import main
from distillmeter.pipelines.config_file import parse_config


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    teacher, student = real_pair.pair(root)
    return {"root": root, "teacher": teacher, "student": student,
            "files": real_pair.data(root)}


@pytest.fixture(scope="module")
def done(tmp_path_factory, ckpts):
    """One finished run on the checkpoint pair (synthetic, cached KD, online KD)."""
    root = tmp_path_factory.mktemp("run")
    cfg = real_pair.write_config(root / "cfg.yaml", real_pair.config(
        ckpts["teacher"], ckpts["student"], ckpts["files"]))
    out = root / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    return out


def _teacher_dir(out):
    return next(p for p in out.iterdir() if p.name.startswith("teacher-"))


def test_a_checkpoint_pair_runs_end_to_end_and_every_report_validates(done):
    names = sorted(p.name for p in done.iterdir() if p.is_dir())
    assert names == sorted(["kd-s0", "kd-online-s0", "synthetic-s0", _teacher_dir(done).name])
    assert (done / "report.html").is_file()  # the run ends with the analysis across its runs
    for name in names:
        report = protocol.load_report(done / name)
        assert report.status == "ok" and report.quality is not None
        assert report.quality.metric == "exact_match"
    stages = [e.stage for e in protocol.read_ledger(_teacher_dir(done)).of("stage_end")]
    # a given teacher is not trained
    assert stages == ["setup.load", "eval.teacher", "teacher.generate", "teacher.logits"]


def test_padding_rows_are_sliced_off_the_logits(done, ckpts):
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ckpts["student"])
    assert AutoConfig.from_pretrained(ckpts["student"]).vocab_size == len(tok) + 8
    cache = next((_teacher_dir(done) / "artifacts").glob("logits-*"))
    info = json.loads((cache / "manifest.json").read_text())["info"]
    assert info["vocab_size"] == len(tok)  # the tokenizer's ids, not the padded width
    train_log = next((done / "kd-s0" / "artifacts").glob("train-*")) / "train.json"
    log = json.loads(train_log.read_text())
    assert log["last_parts"]["kd"] >= 0 and log["steps"] >= 1


def test_data_come_from_the_files_through_the_chat_template(done, ckpts):
    teacher = _teacher_dir(done)
    syn = next((teacher / "artifacts").glob("synthetic-*")) / "data.jsonl"
    prompts = [json.loads(line)["prompt"] for line in syn.read_text().splitlines()]
    assert len(prompts) == 16
    assert all(p.startswith("[user]Tom has ") and p.endswith("\n[assistant]") for p in prompts)
    evals = next((teacher / "artifacts").glob("eval-teacher-*")) / "completions.jsonl"
    rows = [json.loads(line) for line in evals.read_text().splitlines()]
    assert len(rows) == 6
    assert [r["target"] for r in rows] == [r["answer"] for r in real_pair.math_records(6, 100)]
    # the test prompts are held out: none is in the pool
    assert not {r["prompt"] for r in rows} & set(prompts)


def test_gradient_accumulation_counts_micro_batches(done):
    log = json.loads((next((done / "synthetic-s0" / "artifacts").glob("train-*"))
                      / "train.json").read_text())
    # each optimizer step takes 2 micro-batches of 4 sequences
    assert log["samples"] == 8 * log["steps"]


def test_the_resolved_config_loads_back(done):
    cfg_text = (done / "kd-s0" / "config.yaml").read_text()
    cfg = parse_config(yaml.safe_load(cfg_text))
    assert cfg.student.model.path is not None and cfg.training.grad_accum == 2


def test_planned_work_of_a_checkpoint_pair_equals_what_the_run_recorded(done):
    # parameter counts from the checkpoints' config.json (the padded embedding included),
    # lengths from the data files through the tokenizer and chat template, and the online
    # teacher's size: no model loaded
    from distillmeter.pipelines.config_file import load_config
    from distillmeter.pipelines.work import plan_work

    cfg = load_config(done / "kd-online-s0" / "config.yaml")
    same = {"eval.teacher": ("params", "layers", "attn_width", "score_batches",
                             "scored_tokens", "prompt_tokens", "gen_batches"),
            "teacher.generate": ("params", "prompt_tokens", "gen_batches"),
            "teacher.logits": ("params", "score_batches"),
            "student.train": ("params", "layers", "attn_width", "micro_batches")}
    same["eval.student"] = same["eval.teacher"]
    checked = 0
    for run in plan_work(cfg).runs:
        rep = protocol.load_report(done / run.run_names[0])
        measured = {s.name: s.info for s in rep.stages}
        for st in run.stages:
            keys = same.get(st.name, ())
            if run.key == "kd-online" and st.name == "student.train":
                keys += ("teacher_params", "teacher_layers", "teacher_attn_width", "steps")
            for key in keys:
                assert st.info[key] == measured[st.name][key], (run.key, st.name, key)
                checked += 1
    assert checked > 40
    online = next(r for r in plan_work(cfg).runs if r.key == "kd-online").stages[1].info
    assert online["kd"] == "online" and online["teacher_params"] > online["params"]


# --------------------------------------------------------------------- hub ids


def test_a_hub_id_resolves_from_the_local_cache_only(tmp_path, ckpts, monkeypatch):
    from distillmeter.models.checkpoints import model_source
    from distillmeter.pipelines.config import ModelConfig

    cache = tmp_path / "hub"
    snap = real_pair.to_hub_cache(ckpts["student"], cache, "tiny-org/student")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # belt and braces: no network either way
    assert model_source(ModelConfig(hub_id="tiny-org/student"), "student") == snap


def test_a_hub_id_not_in_the_cache_stops_the_run_naming_what_to_fetch(tmp_path, ckpts,
                                                                      monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-home"))
    cfg = real_pair.config(ckpts["teacher"], ckpts["student"], ckpts["files"])
    cfg["student"] = {"model": {"hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct"}}
    path = real_pair.write_config(tmp_path / "cfg.yaml", cfg)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "student.model.hub_id" in err and "not in the local Hugging Face cache" in err
    assert "hf download HuggingFaceTB/SmolLM2-135M-Instruct" in err
    assert not out.exists()  # stopped before any work


# --------------------------------------------------------------------- checks before work


def test_tokenizers_that_differ_stop_the_run_before_any_work(tmp_path, ckpts, capsys):
    other = real_pair.save_checkpoint(tmp_path / "other", real_pair.tokenizer(
        real_pair.ALPHABET[::-1]), seed=2)
    path = real_pair.write_config(tmp_path / "cfg.yaml", real_pair.config(
        ckpts["teacher"], other, ckpts["files"]))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "tokenizers differ" in err and "First differences: id 4" in err
    assert not out.exists()


def test_a_batch_that_cannot_fit_stops_the_run_with_the_numbers(tmp_path, ckpts, capsys):
    cfg = real_pair.config(ckpts["teacher"], ckpts["student"], ckpts["files"])
    cfg["training"] = {**cfg["training"], "batch_size": 10**9}
    path = real_pair.write_config(tmp_path / "cfg.yaml", cfg)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    err = " ".join(capsys.readouterr().err.split())  # rich may wrap long lines
    assert "does not fit in memory" in err and "host RAM" in err
    assert "student.train: estimated" in err and "batch 1000000000 x" in err
    assert "training.grad_accum" in err and "estimates" in err
    assert not out.exists()


def test_a_missing_data_file_stops_the_run_naming_it(tmp_path, ckpts, capsys):
    files = {**ckpts["files"], "test": str(tmp_path / "nope.jsonl")}
    path = real_pair.write_config(tmp_path / "cfg.yaml", real_pair.config(
        ckpts["teacher"], ckpts["student"], files))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "task.files.test" in err and "nope.jsonl does not exist" in err


def test_lm_eval_backend_without_the_harness_names_the_extra(tmp_path, ckpts, capsys):
    from distillmeter.engines.lm_eval import available

    if available():
        pytest.skip("lm-evaluation-harness is installed here")
    cfg = real_pair.config(ckpts["teacher"], ckpts["student"], ckpts["files"])
    cfg["eval"] = {**cfg["eval"], "backend": "lm_eval", "lm_eval": {"tasks": ["gsm8k"]}}
    path = real_pair.write_config(tmp_path / "cfg.yaml", cfg)
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "pip install 'distillmeter[eval]'" in capsys.readouterr().err


def test_a_built_in_teacher_trained_on_files_and_a_cached_hub_student(tmp_path, ckpts,
                                                                       monkeypatch):
    """The other mix through the same code path: the teacher built here (tiny Llama on the
    run's tokenizer) and trained on task.files.teacher, the student a hub id from the local
    cache (its tokenizer, with the chat template, is the run's)."""
    cache = tmp_path / "hub"
    real_pair.to_hub_cache(ckpts["student"], cache, "tiny-org/student")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    teacher_file = real_pair.write_jsonl(tmp_path / "teacher.jsonl",
                                         real_pair.math_records(30, start=200))
    files = {**ckpts["files"], "teacher": str(teacher_file)}
    cfg = real_pair.config("unused", "unused", files)
    cfg["teacher"] = {"model": {"arch": {"d_model": 32, "n_layers": 1, "n_heads": 2,
                                         "d_ff": 64, "max_len": 96}},
                      "train": True, "training": {"token_budget": 500, "batch_size": 8}}
    cfg["student"] = {"model": {"hub_id": "tiny-org/student"}}
    cfg["methods"] = [{"name": "kd", "data": ["labelled"], "loss": "kd"}]
    path = real_pair.write_config(tmp_path / "cfg.yaml", cfg)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    teacher = _teacher_dir(out)
    stages = [e.stage for e in protocol.read_ledger(teacher).of("stage_end")]
    assert stages == ["setup.load", "teacher.train", "eval.teacher", "teacher.logits"]
    ckpt = next((teacher / "artifacts").glob("teacher-*"))
    tok_cfg = json.loads((ckpt / "tokenizer_config.json").read_text())
    assert tok_cfg.get("chat_template") or (ckpt / "chat_template.jinja").exists()
    report = protocol.load_report(out / "kd-s0")
    assert report.status == "ok" and report.quality.details["teacher_value"] is not None


# --------------------------------------------------------------------- dtypes, checkpointing


def test_dtype_auto_and_mixed_precision(ckpts):
    import torch

    from distillmeter.models.build import build_model
    from distillmeter.models.checkpoints import compute_dtype
    from distillmeter.pipelines.config import ArchConfig, ModelConfig

    ckpt = ModelConfig(path=str(ckpts["student"]))
    arch = ModelConfig(arch=ArchConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32))
    assert compute_dtype(ckpt, "cuda") == torch.bfloat16  # auto: bf16 on a GPU
    assert compute_dtype(ckpt, "cpu") == torch.float32
    assert compute_dtype(arch, "cuda") == torch.float32  # the built-in models stay fp32
    bf16 = ModelConfig(path=str(ckpts["student"]), dtype="bfloat16")
    run_only = build_model(bf16, None, seed=0, device="cpu", trainable=False)
    assert run_only.model.dtype == torch.bfloat16 and run_only.autocast is None
    trained = build_model(bf16, None, seed=0, device="cpu", trainable=True)
    # float32 master weights, forward passes under bf16 autocast
    assert trained.model.dtype == torch.float32 and trained.autocast == torch.bfloat16


def test_mixed_precision_and_gradient_checkpointing_train(ckpts):
    import torch

    from distillmeter.models.build import build_model
    from distillmeter.pipelines.config import ModelConfig, TrainingConfig
    from distillmeter.pipelines.data import batches, encode_pairs
    from distillmeter.pipelines.training import ce_loss, train

    mcfg = ModelConfig(path=str(ckpts["student"]), dtype="bfloat16", gradient_checkpointing=True)
    loaded = build_model(mcfg, None, seed=0, device="cpu")
    name = ("is_activation_checkpointing" if hasattr(type(loaded.model),
                                                    "is_activation_checkpointing")
            else "is_gradient_checkpointing")
    assert getattr(loaded.model, name)
    recs = real_pair.math_records(8)
    seqs = encode_pairs(loaded.tokenizer, [(r["question"], r["answer"]) for r in recs], 96)
    before = loaded.model.model.layers[0].mlp.up_proj.weight.detach().clone()
    result = train(loaded.model, batches(seqs, 4, loaded.tokenizer.pad_token_id, seed=0),
                   ce_loss, TrainingConfig(lr=1e-3, batch_size=4, token_budget=200),
                   autocast_dtype=loaded.autocast)
    after = loaded.model.model.layers[0].mlp.up_proj.weight
    assert result.steps >= 1 and all(torch.isfinite(torch.tensor(result.losses)))
    assert after.dtype == torch.float32 and not torch.equal(before, after)
