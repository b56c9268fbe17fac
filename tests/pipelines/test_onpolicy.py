"""On-policy distillation: the rounds (student.generate, teacher.score, student.train, each
a metered window), the mixing of on- and off-policy batches, the teacher's scores lined up
with the batches, the config, and a whole `distillmeter run` through the CLI."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from distillmeter import protocol
from distillmeter.cli import main
from distillmeter.energy import EnergyMeter
from distillmeter.errors import UserError
from distillmeter.pipelines import methods
from distillmeter.pipelines.artifact_plan import plan_teacher
from distillmeter.pipelines.config import MethodConfig, RunConfig, student_config_id
from distillmeter.pipelines.config_file import dump_config, parse_config
from distillmeter.pipelines.data import encode_pairs
from distillmeter.pipelines.losses import completion_mask, kd_loss
from distillmeter.pipelines.methods.onpolicy_rounds import PHASES, OnPolicyData, OnPolicyKD
from distillmeter.pipelines.progress import StageProgress
from distillmeter.pipelines.training import train

ONPOLICY = {"name": "onpolicy", "data": ["labelled"], "loss": "onpolicy", "block_prompts": 8}


def _method(**kw) -> MethodConfig:
    return MethodConfig(**{**ONPOLICY, **kw})


def _source(meter, windows, task_data, tokenizer, tiny_model, method, **kw):
    teacher = tiny_model(seed=7, d_model=32)
    seqs = encode_pairs(tokenizer, [(e.prompt, e.target) for e in task_data.labelled], 32)
    loss = OnPolicyKD(method, vocab_size=len(tokenizer))
    args = dict(method=method, student=tiny_model(seed=1), teacher=teacher,
                tokenizer=tokenizer, prompts=list(task_data.pool), offpolicy=seqs, loss=loss,
                windows=windows, batch_size=4, generate_batch_size=8, score_batch_size=8,
                top_k=64, score_dtype="float16", vocab_size=len(tokenizer), max_len=32,
                seed=0, device="cpu")
    return OnPolicyData(**{**args, **kw}), loss, teacher


def test_rounds_are_metered_windows_and_lmbda_mixes_batches(tmp_path, task_data, tokenizer,
                                                           tiny_model):
    method = _method(lmbda=0.5)
    with EnergyMeter(tmp_path / "run", idle_seconds=0) as meter, \
            StageProgress(quiet=True).phases(meter, "t", [(p, None, "x") for p in PHASES]) \
            as windows:
        data, loss, teacher = _source(meter, windows, task_data, tokenizer, tiny_model, method)
        got = [next(data) for _ in range(9)]  # 2 rounds of 2 on- + 2 off-policy batches
        # each batch's teacher rows are the teacher's log-probs at its learned positions
        batch = got[-1]
        with torch.no_grad():
            t_logits = teacher(input_ids=batch.input_ids,
                               attention_mask=batch.attention_mask).logits
            s_logits = torch.randn(t_logits.shape, generator=torch.Generator().manual_seed(0))
        want = kd_loss(s_logits[:, :-1], t_logits[:, :-1], divergence="reverse_kl",
                       mask=batch.loss_mask)
        assert loss(s_logits, batch)[0].item() == pytest.approx(want.item(), rel=2e-3)
    assert method.divergence == "reverse_kl"  # the on-policy default
    log = data.log
    assert log.rounds == 3 and log.prompts == 24
    assert log.on_batches == 6 and log.off_batches == 6  # lmbda 0.5: one for one
    events = protocol.read_ledger(tmp_path / "run").of("stage_end")
    assert [e.stage for e in events] == list(PHASES) * 3
    for e in events:
        assert e.status == "ok" and e.tokens > 0 and e.samples > 0
    gen = [e for e in events if e.stage == "student.generate"]
    score = [e for e in events if e.stage == "teacher.score"]
    trained = [e for e in events if e.stage == "student.train"]
    assert all(e.samples == 8 for e in gen)  # block_prompts prompts a round
    assert [e.samples for e in score] == [16, 16, 16]  # 8 sampled + 2 off-policy batches of 4
    # the train windows count exactly the batches handed out, each in its own round
    assert sum(e.tokens for e in trained) == sum(b.n_tokens for b in got)
    assert [e.samples for e in trained] == [16, 16, 4]


def test_lmbda_counts_sequences_when_a_block_is_smaller_than_a_batch(
        tmp_path, task_data, tokenizer, tiny_model):
    method = _method(lmbda=0.5, block_prompts=2)  # half a batch of 4 a round
    with EnergyMeter(tmp_path / "run", idle_seconds=0) as meter, \
            StageProgress(quiet=True).phases(meter, "t", [(p, None, "x") for p in PHASES]) \
            as windows:
        data, _, _ = _source(meter, windows, task_data, tokenizer, tiny_model, method)
        got = [next(data) for _ in range(9)]
    on = sum(len(b.index) for b in got if len(b.index) == 2)
    off = sum(len(b.index) for b in got if len(b.index) == 4)
    assert data.log.rounds == 6 and data.log.off_batches == 3  # one every second round
    assert on == 12 and off == 12  # half the sequences on-policy, as lmbda says


def test_onpolicy_batches_learn_the_completion_up_to_eos(tmp_path, task_data, tokenizer,
                                                        tiny_model):
    method = _method(lmbda=1.0, block_prompts=12, max_new_tokens=12)
    with EnergyMeter(tmp_path / "run", idle_seconds=0) as meter, \
            StageProgress(quiet=True).phases(meter, "t", [(p, None, "x") for p in PHASES]) \
            as windows:
        data, _, _ = _source(meter, windows, task_data, tokenizer, tiny_model, method)
        got = [next(data) for _ in range(3)]
    assert data.log.off_batches == 0
    eos = tokenizer.eos_token_id
    for b in got:
        plen = [int(b.loss_mask[r].int().argmax()) + 1 for r in range(len(b.index))]
        assert torch.equal(b.loss_mask, completion_mask(b.input_ids, plen, eos,
                                                        b.attention_mask))
        for r in range(len(b.index)):
            row = b.input_ids[r][b.attention_mask[r].bool()].tolist()
            assert row[0] == tokenizer.bos_token_id
            assert eos not in row[:-1]  # cut at its first EOS (or ran to max_new_tokens)
            assert len(row) - plen[r] <= 12


def test_training_through_rounds_follows_the_budget(tmp_path, task_data, tokenizer,
                                                    tiny_model, tiny_run_config):
    cfg = tiny_run_config().training.model_copy(update={"token_budget": 700,
                                                        "batch_size": 4})
    method = _method(lmbda=0.5, block_prompts=6)
    with EnergyMeter(tmp_path / "run", idle_seconds=0) as meter, \
            StageProgress(quiet=True).phases(meter, "t", [(p, None, "x") for p in PHASES]) \
            as windows:
        data, loss, _ = _source(meter, windows, task_data, tokenizer, tiny_model, method,
                                batch_size=4)
        student = data.backend.model
        result = train(student, data, loss, cfg)
        data.close()
    assert 700 <= result.tokens < 700 + 4 * 32
    ledger = protocol.read_ledger(tmp_path / "run")
    trained = [e for e in ledger.of("stage_end") if e.stage == "student.train"]
    assert sum(e.tokens for e in trained) == result.tokens
    ages = data.log.as_dict()
    # a round of 6 prompts -> 2 on- and 2 off-policy batches: samples at most 3 steps old
    assert ages["max_sample_age_steps"] <= 3 and ages["mean_sample_age_steps"] > 0


def test_prompt_too_long_for_the_models_is_a_user_error(tmp_path, task_data, tokenizer,
                                                        tiny_model):
    with EnergyMeter(tmp_path / "run", idle_seconds=0) as meter, \
            StageProgress(quiet=True).phases(meter, "t", [(p, None, "x") for p in PHASES]) \
            as windows, pytest.raises(UserError, match="lower max_new_tokens"):
        _source(meter, windows, task_data, tokenizer, tiny_model, _method(max_new_tokens=30))


def test_a_failure_inside_a_round_marks_that_window_failed(tmp_path, task_data, tokenizer,
                                                           tiny_model):
    with pytest.raises(RuntimeError, match="boom"):
        with EnergyMeter(tmp_path / "run", idle_seconds=0) as meter, \
                StageProgress(quiet=True).phases(meter, "t",
                                                 [(p, None, "x") for p in PHASES]) as windows:
            data, _, teacher = _source(meter, windows, task_data, tokenizer, tiny_model,
                                       _method())

            def broken(*a, **k):
                raise RuntimeError("boom")

            teacher.forward = broken
            next(data)
    ends = protocol.read_ledger(tmp_path / "run").of("stage_end")
    assert [(e.stage, e.status) for e in ends] == [("student.generate", "ok"),
                                                   ("teacher.score", "failed")]
    assert "boom" in ends[-1].error


# --------------------------------------------------------------------------- config


def test_config_entry_validates_strictly():
    cfg = parse_config({"methods": [{"name": "onpolicy", "loss": "onpolicy",
                                     "data": ["labelled", "synthetic"], "lmbda": 0.5,
                                     "block_prompts": 256}]})
    m = cfg.method("onpolicy")
    kind = methods.get(m)
    assert m.divergence == "reverse_kl" and kind.kind == "onpolicy" and not kind.uses_cache
    assert parse_config(yaml.safe_load(dump_config(cfg))) == cfg  # resolved loads back
    assert parse_config({"methods": [{**ONPOLICY, "divergence": "jsd", "beta": 0.2}]}
                        ).methods[0].divergence == "jsd"
    bad = [({**ONPOLICY, "alpha": 0.3}, "alpha only applies with loss: kd"),
           ({**ONPOLICY, "teacher_mode": "online"}, "teacher_mode only applies with loss: kd"),
           ({"name": "kd", "data": ["labelled"], "loss": "kd", "lmbda": 0.9},
            "lmbda only applies with loss: onpolicy"),
           ({"name": "b", "data": ["labelled"], "block_prompts": 8},
            "block_prompts only applies with loss: onpolicy"),
           ({**ONPOLICY, "lmbda": 0}, r"lmbda: Input should be greater than 0"),
           ({**ONPOLICY, "lmbda": 1.5}, r"lmbda: Input should be less than or equal to 1"),
           ({**ONPOLICY, "block_prompts": 0}, "block_prompts: Input should be greater"),
           ({**ONPOLICY, "lamda": 0.5}, "unknown key 'lamda' \\(did you mean 'lmbda'\\?\\)")]
    for entry, message in bad:
        with pytest.raises(UserError, match=message):
            parse_config({"methods": [entry]}, "x.yaml")
    with pytest.raises(UserError, match="samples from the prompt pool"):
        parse_config({"task": {"n_pool": 0}, "methods": [ONPOLICY]})


def test_packaged_onpolicy_config_is_the_default_with_its_own_methods():
    """`distillmeter run onpolicy`: only the methods and the seed count (two, for its time
    budget) are its own, so it follows the default (task, teacher, student, training)
    wherever the default is re-tuned."""
    from importlib.resources import files

    from distillmeter.pipelines.config_file import load_config

    cfg = load_config("onpolicy")
    default = RunConfig()
    assert [m.name for m in cfg.methods] == ["baseline", "kd", "onpolicy"]
    assert cfg.seeds == 2
    assert cfg.model_copy(update={"methods": default.methods, "seeds": default.seeds}) == default
    assert cfg.method("baseline") == default.method("baseline")
    assert cfg.method("kd") == default.method("kd")
    op = cfg.method("onpolicy")
    assert methods.get(op).samples_pool and op.data == ["labelled", "synthetic"]
    assert op.block_prompts == 256
    text = files("distillmeter").joinpath("configs", "onpolicy.yaml").read_text()
    assert set(yaml.safe_load(text)) == {"methods", "seeds"}


def test_plan_and_config_id():
    cfg = parse_config({"methods": [{"name": "kd", "data": ["labelled", "synthetic"],
                                     "loss": "kd"}, ONPOLICY,
                                    {**ONPOLICY, "name": "op-syn",
                                     "data": ["labelled", "synthetic"]}]})
    plan = plan_teacher(cfg)
    assert [a.stage for a in plan.used_by(cfg.method("onpolicy"))] == ["teacher.train",
                                                                        "eval.teacher"]
    assert [a.stage for a in plan.used_by(cfg.method("op-syn"))] == [
        "teacher.train", "eval.teacher", "teacher.generate"]
    assert "onpolicy" not in plan.caches  # it scores live, no cache
    # an onpolicy student depends on how scores are kept; other methods' ids do not move
    base = RunConfig()
    k8 = parse_config({"logits": {"top_k": 8}, "methods": [ONPOLICY]})
    assert student_config_id(k8, k8.methods[0]) != student_config_id(
        parse_config({"methods": [ONPOLICY]}), parse_config({"methods": [ONPOLICY]}).methods[0])
    assert student_config_id(base, base.method("baseline")) == student_config_id(
        parse_config({"logits": {"top_k": 8}}), base.method("baseline"))


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def onpolicy_runs(tmp_path_factory, tiny_run_dict):
    cfg = {**tiny_run_dict, "methods": [
        {"name": "kd", "data": ["labelled", "synthetic"], "loss": "kd"},
        {"name": "onpolicy", "data": ["labelled"], "loss": "onpolicy",
         "block_prompts": 8}]}
    path = tmp_path_factory.mktemp("cfg") / "onpolicy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    return out


def test_cli_run_meters_each_phase_of_each_round(onpolicy_runs):
    run = onpolicy_runs / "onpolicy-s0"
    report = protocol.load_report(run)
    names = [s.name for s in report.stages]
    assert names[0] == "setup.load" and names[-1] == "eval.student"
    rounds = names[1:-1]
    assert len(rounds) % 3 == 0 and rounds == list(PHASES) * (len(rounds) // 3)
    assert len(rounds) >= 6  # more than one round
    for st in report.stages:
        assert st.energy_j["total"] > 0 and st.status == "ok"
    # energy is conserved to the joule, every window counted once
    stages = sum(s.energy_j["total"] for s in report.stages)
    assert stages + report.totals.unattributed_j == pytest.approx(report.totals.energy_j,
                                                                  abs=1e-6)
    assert report.totals.by_side["teacher"] == pytest.approx(
        sum(s.energy_j["total"] for s in report.stages if s.side == "teacher")
        + report.totals.upstream_j)
    # tokens per phase: J/token is right for each
    log = json.loads(next((run / "artifacts").glob("train-*/train.json")).read_text())
    trained = sum(s.tokens for s in report.stages if s.name == "student.train")
    assert trained == log["tokens"] >= 800
    generated = [s for s in report.stages if s.name == "student.generate"]
    assert sum(s.samples for s in generated) == log["onpolicy"]["prompts_sampled"]
    assert sum(s.samples for s in report.stages if s.name == "teacher.score") == \
        log["onpolicy"]["scored_sequences"]
    for s in report.stages:
        if s.tokens:
            assert s.j_per_token == pytest.approx(s.energy_j["total"] / s.tokens)
    # upstream: the shared teacher stages only; its own scoring is in its own run
    assert [s.name for s in report.upstream] == ["teacher.train", "eval.teacher"]
    start = protocol.read_ledger(run).run_start
    assert start.labels["loss"] == "onpolicy" and start.labels["lmbda"] == 0.5
    # what each window ran, for the efficiency floors
    first = {s.name: s for s in reversed(report.stages)}
    assert first["teacher.score"].info["top_k"] == 8  # TINY_RUN keeps top-8 + the tail
    assert first["teacher.score"].info["params"] > first["student.generate"].info["params"]
    assert first["student.train"].info["batch_size"] == 8


def test_cli_run_summary_lists_onpolicy_with_its_teacher_side(onpolicy_runs):
    summary = json.loads((onpolicy_runs / "summary.json").read_text())
    row = next(c for c in summary["configs"] if c["method"] == "onpolicy")
    report = protocol.load_report(onpolicy_runs / "onpolicy-s0")
    own_score = sum(s.energy_j["total"] for s in report.stages if s.name == "teacher.score")
    assert own_score > 0
    assert row["teacher_side_j_mean"] == pytest.approx(report.totals.upstream_j + own_score)
    assert row["by_stage_j_mean"]["teacher.score"] == pytest.approx(own_score)
    assert row["by_stage_j_mean"]["student.generate"] == pytest.approx(sum(
        s.energy_j["total"] for s in report.stages if s.name == "student.generate"))


def test_planned_rounds_have_the_recorded_shape(onpolicy_runs):
    # pipelines/work.py adds an onpolicy method's rounds up by phase: per round, the block
    # of prompts sampled, and the teacher scoring them with lmbda's share of off-policy
    # sequences (here 8 sampled + one batch of 8 labelled)
    from distillmeter.pipelines.config_file import load_config
    from distillmeter.pipelines.work import plan_work

    run = onpolicy_runs / "onpolicy-s0"
    report = protocol.load_report(run)
    planned = next(r for r in plan_work(load_config(run / "config.yaml")).runs
                   if r.key == "onpolicy")
    assert [s.name for s in planned.stages] == ["setup.load", *PHASES, "eval.student"]
    stages = {s.name: s for s in planned.stages}
    rounds = stages["student.generate"].samples // 8
    assert stages["teacher.score"].samples == 16 * rounds
    assert stages["teacher.score"].info["score_batches"] == rounds  # 16 <= logits batch 64
    for st in report.stages:
        if st.name == "student.generate":
            assert st.samples == 8
        if st.name == "teacher.score":
            assert st.samples == 16
    train = stages["student.train"].info
    assert train["micro_batches"] == train["steps"] and train["micro_batches"] <= 2 * rounds
