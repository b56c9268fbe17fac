"""environment.json and secret redaction: no token may reach any file the meter writes."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from distillmeter.energy import EnergyMeter
from distillmeter.energy.environment import git_commit, relevant_env, snapshot
from distillmeter.privacy.redact import (
    REDACTED,
    looks_like_key,
    randomness,
    redact_argv,
    redact_env,
    redact_text,
    redact_values,
)
from key_alphabets import AWS_DOC_EXAMPLE, KEY_MAKERS, SHAPE_MAKERS, Shape, keys, pem_key

HF = "hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ012345"
WANDB = "0123456789abcdef0123456789abcdef01234567"  # WandB keys are 40 hex digits
OPENAI = "sk-proj-Zx8Qw2Er4Ty6Ui8Op0As2Df4Gh6Jk8L"
GH = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
B64 = "q8Xv3Lr0Tz9Wm2Kp7Ys5Nc1Bd4Hf6Jg8Qa0Re3Ut5Vi"


def test_redact_env_by_name_and_by_value():
    env = {"HF_TOKEN": HF, "WANDB_API_KEY": WANDB, "DB_PASSWORD": "hunter2",
           "AWS_SECRET_ACCESS_KEY": "abc", "MY_AUTH": "x", "HF_HOME": "/data/hf",
           "CUDA_VISIBLE_DEVICES": "GPU-8f6b3f2a-8b7e-4d2a-9c1f-000000000001,1",
           "TOKENIZERS_PARALLELISM": "false", "SOME_VAR": f"prefix {HF} suffix",
           "HF_ENDPOINT": "https://user:s3cretpw@hub.example.com/api",
           "OMP_NUM_THREADS": "8"}
    out = redact_env(env)
    for k in ("HF_TOKEN", "WANDB_API_KEY", "DB_PASSWORD", "AWS_SECRET_ACCESS_KEY", "MY_AUTH"):
        assert out[k] == REDACTED
    assert out["HF_HOME"] == "/data/hf" and out["OMP_NUM_THREADS"] == "8"
    assert out["CUDA_VISIBLE_DEVICES"] == env["CUDA_VISIBLE_DEVICES"]  # GPU UUIDs are fine
    assert out["TOKENIZERS_PARALLELISM"] == "false"
    assert out["SOME_VAR"] == f"prefix {REDACTED} suffix"
    assert out["HF_ENDPOINT"] == f"https://user:{REDACTED}@hub.example.com/api"


@pytest.mark.parametrize("secret", [HF, WANDB, OPENAI, GH, B64,
                                    "AKIAIOSFODNN7EXAMPLE",
                                    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcDEF123_-x"])
def test_secret_values_are_recognised_anywhere(secret):
    assert secret not in redact_text(f"--header=Bearer {secret} trailing")


@pytest.mark.parametrize("harmless", [
    "/home/user/.cache/huggingface/hub/models--meta-llama--Llama-3.2-1B",
    "GPU-8f6b3f2a-8b7e-4d2a-9c1f-0123456789ab",
    "student_train_max_new_tokens_128_temperature_0.7",
    "runs/sweep-2026-11-27T22-05-03/kd-seed-3",
    "--max-new-tokens=128",
])
def test_ordinary_values_are_kept(harmless):
    assert redact_text(harmless) == harmless


def test_redact_argv():
    argv = ["train.py", "--hf-token", HF, "--api-key=abc123", "--max-new-tokens", "128",
            "--wandb-key", WANDB, "HF_TOKEN=hf_short", "--lr", "3e-4", f"--note={GH}",
            "--password", "pw"]
    assert redact_argv(argv) == [
        "train.py", "--hf-token", REDACTED, f"--api-key={REDACTED}", "--max-new-tokens", "128",
        "--wandb-key", REDACTED, f"HF_TOKEN={REDACTED}", "--lr", "3e-4",
        f"--note={REDACTED}", "--password", REDACTED]


def test_relevant_env_keeps_what_bears_on_a_run():
    env = relevant_env({"CUDA_VISIBLE_DEVICES": "0", "HF_TOKEN": HF, "SLURM_JOB_ID": "7",
                        "LOCAL_RANK": "0", "HOME": "/root", "PATH": "/bin",
                        "WANDB_API_KEY": WANDB, "OMP_NUM_THREADS": "4"})
    assert env == {"CUDA_VISIBLE_DEVICES": "0", "HF_TOKEN": REDACTED, "LOCAL_RANK": "0",
                   "OMP_NUM_THREADS": "4", "SLURM_JOB_ID": "7"}


def test_git_commit_of_a_checkout(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    info = git_commit([tmp_path, repo])  # tmp_path is no checkout: the next path is used
    if info is None:
        pytest.skip("the tests are not running from a git checkout")
    assert len(info["commit"]) == 40 and info["dirty"] in (True, False)
    assert "url" not in json.dumps(info)


def test_snapshot_does_not_import_torch():
    before = "torch" in sys.modules
    env = snapshot()
    assert ("torch" in sys.modules) == before
    assert {"cpu", "memory_bytes", "packages", "command", "git", "env", "python", "os"} <= set(env)


def test_no_secret_reaches_any_file_the_meter_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", HF)
    monkeypatch.setenv("WANDB_API_KEY", WANDB)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(sys, "argv", ["train.py", "--hf-token", HF, f"--wandb-key={WANDB}",
                                      f"--note=token {OPENAI}"])
    with EnergyMeter(tmp_path, idle_seconds=0, sample_hz=20, labels={"who": GH},
                     config={"model": "tiny", "auth": {"header": f"Bearer {HF}"}}) as meter:
        with meter.stage("student.train"):
            pass
        meter.warn(f"something mentioned {HF}")
        meter.record_quality("acc", 1.0, n=1, details={"wandb": WANDB})
        with pytest.raises(RuntimeError):
            with meter.stage("eval.student"):
                raise RuntimeError(f"login failed with {HF}")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {"ledger.jsonl", "trace.csv", "environment.json", "config.yaml"} <= {
        p.name for p in files}
    for p in files:
        text = p.read_text(errors="replace")
        for secret in (HF, WANDB, OPENAI, GH):
            assert secret not in text, f"{secret[:6]}... leaked into {p.name}"
    env = json.loads((tmp_path / "environment.json").read_text())
    assert env["env"]["HF_TOKEN"] == REDACTED and env["env"]["HF_HUB_OFFLINE"] == "1"
    assert env["command"]["argv"][:3] == ["train.py", "--hf-token", REDACTED]


# ------------------------------------------------ random keys of every common alphabet
# Keys come from tests/key_alphabets.py (AWS, GitHub, HF, Slack, JWT, hex, base64url),
# drawn from fixed seeds or from seeds hypothesis chooses: the same keys every run.
FOUND = [
    # AWS's documentation example: two slashes, so the old redaction took it for a path
    AWS_DOC_EXAMPLE,
    # found by the property test below against the old redaction (seed 353 of aws: slashes;
    # seed 4229390 of base64url: no digit, so it was not "mixed" enough)
    "mlWl+Zn9XTA+OkMdSWvs42IG2/ILUr78dxVb/nse",
    "RrdyANLS_oaQVunKmHPzVIFnhdTYLekLqaMNBODKdlw",
    # found by 20,000 seeded keys against the first fix: a known prefix inside a random key
    # ('...7ghs_...', '...dhf_...') was cut there and the key's head kept
    "7RiWLCpFxLSFgwsbi7ghs_4nsUQS06TYcUHwubG51lI",
    "ZaX9Qt9bsmXZT2mdhf_SRf3Djg5KTOVKXcGc3D3bcGo",
]


def survives(key: str, text: str, window: int = 12) -> str | None:
    """The first ``window`` characters of ``key`` found in ``text`` (a redaction that kept
    part of a key still leaks it), or None."""
    for i in range(len(key) - window + 1):
        if key[i:i + window] in text:
            return key[i:i + window]
    return None


def assert_redacted_everywhere(key: str) -> None:
    outputs = {
        "argv": " ".join(redact_argv(["train.py", key, f"--note={key}", f"NOTE={key}"])),
        "text": redact_text(f"Authorization: Bearer {key}, then {key}."),
        "env": json.dumps(redact_env({"SLURM_JOB_COMMENT": key, "HF_ENDPOINT": key})),
        "values": json.dumps(redact_values({"labels": [key, {"note": f"({key})"}]})),
    }
    for where, out in outputs.items():
        assert survives(key, out) is None, f"{key!r} survives in {where}: {out!r}"


@pytest.mark.parametrize("key", FOUND)
def test_keys_found_by_the_property_test(key):
    assert_redacted_everywhere(key)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(alphabet=st.sampled_from(sorted(KEY_MAKERS)), seed=st.integers(0, 2**32 - 1))
@example(alphabet="aws", seed=353).via("found against the old redaction")
@example(alphabet="base64url", seed=4229390).via("found against the old redaction")
def test_random_keys_of_every_alphabet_are_redacted(alphabet, seed):
    """Property: a key drawn by a real random generator, in any of the common formats, is
    redacted wherever it stands (seeds, not characters, are what hypothesis chooses: a
    string of one repeated character is no key)."""
    assert_redacted_everywhere(KEY_MAKERS[alphabet](random.Random(seed)))


def test_a_thousand_seeded_keys_of_each_alphabet():
    for alphabet, drawn in keys(1000, seed=20261128).items():
        for key in drawn:
            out = " ".join(redact_argv([key]))
            assert survives(key, out) is None, f"{alphabet} key {key!r} kept in {out!r}"


@pytest.mark.parametrize("harmless", [
    # paths, hub ids and run names as people write them; none may be redacted
    "/home/user/.cache/huggingface/hub/models--meta-llama--Llama-3.2-1B",
    "/scratch/project_2001234/users/jdoe/checkpoints/run_42/step_12000",
    "s3://my-bucket/experiments/distill/kd-run-0003/ckpt",
    "/data/imagenet/train/n01440764/n01440764_10026.JPEG",
    "/usr/local/cuda-12.4/targets/x86_64-linux/lib",
    "/gpfs/alpine/proj-shared/csc499/xyz/DistillMeterRuns/KDvsSFT/seed0",
    "/Users/JaneDoe/Projects/MyLLMProject/src/trainers/KDTrainer.py",
    "/mnt/lustre/groupA/LLaMA-Factory/saves/Qwen2.5-7B/lora/sft/checkpoint-1500",
    "experiments/2026-11-27/QwenToSmolLM/kd_T2_alpha05_lr3e-4/seed-1",
    "outputs/llama3_8b_instruct_gsm8k_kd_topk64_seed42_bs256_lr2e-5",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
    "Qwen/Qwen2-VL-72B-Instruct-GPTQ-Int4",
    "meta-llama/Meta-Llama-3.1-70B-Instruct-AWQ-INT4",
    "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T",
    "org/model",
    "HuggingFaceTB/SmolLM2-135M-Instruct",  # the example configs' models
    "HuggingFaceTB/SmolLM2-1.7B-Instruct",
    "Qwen/Qwen2.5-1.5B-Instruct",
    "nvidia/Llama-3.1-Nemotron-Nano-8B-v1",
    "unsloth/Llama-3.2-1B-Instruct-bnb-4bit",
    "CUDA_VISIBLE_DEVICES=GPU-8f6b3f2a-8b7e-4d2a-9c1f-0123456789ab,1",
    "/var/lib/kubelet/pods/8f6b3f2a-8b7e-4d2a-9c1f-0123456789ab/volumes",
])
def test_paths_hub_ids_and_run_names_stay_readable(harmless):
    assert redact_text(harmless) == harmless
    assert redact_argv(["train.py", harmless]) == ["train.py", harmless]


def test_randomness_separates_keys_from_written_names():
    hub_id = "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"
    assert randomness(AWS_DOC_EXAMPLE) > 0 > randomness(hub_id)
    for repeated in ("a" * 40, "0" * 40, "ab" * 20, "aB1" * 12):
        assert not looks_like_key(repeated), repeated


# ------------------------------------------- secrets told by their shape (issue 18)
# tests/key_alphabets.py's SHAPE_MAKERS: a URL password with an empty user, header
# credentials, -pPW / -u user:PW / --pw PW, HF_MIRROR_PW, ASIA key ids, PEM blocks split
# every way, secret-named config keys and model_args strings, a 28-character token in an
# error message. Each is redacted by whichever redactor its carrier meets.
def redacted_forms(shape: Shape) -> dict[str, str]:
    """What each redactor that can meet ``shape`` makes of it."""
    if shape.text is not None:
        return {"text": redact_text(shape.text),
                "argv": " ".join(redact_argv(["train.py", shape.text, f"--note={shape.text}"])),
                "env": json.dumps(redact_env({"SLURM_JOB_COMMENT": shape.text})),
                "values": json.dumps(redact_values({"labels": [shape.text],
                                                    "note": shape.text}))}
    if shape.argv is not None:
        return {"argv": json.dumps(redact_argv(shape.argv))}
    if shape.env is not None:
        return {"env": json.dumps(redact_env(shape.env)),
                "relevant": json.dumps(relevant_env(shape.env))}
    return {"values": json.dumps(redact_values(shape.config))}


def assert_shape_redacted(name: str, shape: Shape) -> None:
    for where, out in redacted_forms(shape).items():
        for secret in shape.secrets:
            kept = secret if len(secret) < 12 and secret in out else survives(secret, out)
            assert kept is None, f"{name}: {secret!r} survives in {where}: {out[:300]!r}"


@pytest.mark.parametrize("name", sorted(SHAPE_MAKERS))
def test_every_shape_on_a_fixed_seed(name):
    for seed in range(40):
        assert_shape_redacted(name, SHAPE_MAKERS[name](random.Random(20261202 + seed)))


@settings(max_examples=600, deadline=None, derandomize=True)
@given(name=st.sampled_from(sorted(SHAPE_MAKERS)), seed=st.integers(0, 2**32 - 1))
def test_secrets_of_every_shape_are_redacted(name, seed):
    """Property: a secret of any shape, drawn from any seed, survives no redactor."""
    assert_shape_redacted(name, SHAPE_MAKERS[name](random.Random(seed)))


def test_the_shapes_as_the_issue_found_them():
    pw, tok, hex24 = "Zx9!vQ2$mK", "Ab3dEf6hIj9kLm2nOp5qRs8tUv1w", "0f3a9c1e7b2d4a6c8e0f1a2b"
    assert redact_text(f"redis://:{pw}@host") == f"redis://:{REDACTED}@host"
    assert redact_text(f"Authorization: Bearer {tok}") == f"Authorization: Bearer {REDACTED}"
    assert redact_text(f"Bearer {hex24}") == f"Bearer {REDACTED}"
    assert redact_argv(["mysql", f"-p{pw}", "-u", f"me:{pw}", "--pw", pw]) == [
        "mysql", f"-p{REDACTED}", "-u", f"me:{REDACTED}", "--pw", REDACTED]
    assert redact_env({"HF_MIRROR_PW": pw}) == {"HF_MIRROR_PW": REDACTED}
    assert redact_text("ASIAIOSFODNN7EXAMPLE") == REDACTED
    assert redact_values({"model_args": {"password": pw, "api_key": "abc", "pretrained": "o/m"}}
                         ) == {"model_args": {"password": REDACTED, "api_key": REDACTED,
                                              "pretrained": "o/m"}}
    assert redact_text("pretrained=x,token=abc") == f"pretrained=x,token={REDACTED}"
    assert tok not in redact_text(f"training.lr: not a number (got '{tok}')")


def test_a_pem_block_goes_whole_whatever_line_it_is_split_on():
    block, lines = pem_key(random.Random(7))
    for joined in ("\n", "\r\n", "\\n", " "):
        text = "before " + block.replace("\n", joined) + " after"
        assert redact_text(text) == f"before {REDACTED} after", joined
    # its lines as separate arguments: every one of them, the short last one included
    argv = redact_argv(["cmd", *block.split("\n"), "--next"])
    assert argv == ["cmd"] + [REDACTED] * (len(lines) + 2) + ["--next"]
    # split in two values: the END part alone still goes up to its END line
    head, tail = block.split(lines[2])
    assert lines[-1] not in redact_text(tail) and "-----END" not in redact_text(tail)


@pytest.mark.parametrize("harmless", [
    "max_new_tokens=128", "token_budget: 660000", "pad_token=<pad>", "eos_token: </s>",
    "generation needs an EOS token: the tokenizer and model define none",
    "unknown key: tempreature", "the bearer of bad news", "LlamaForSequenceClassification",
    "HuggingFaceTB/SmolLM2-135M-Instruct", "text_key=question", "passes=3",
    "https://hub.internal:8443/api/models", "redis://cache.internal:6379/0",
    "student_train_max_new_tokens_128_temperature_0.7", "GPU-8f6b3f2a-8b7e-4d2a-9c1f-0123456789ab",
])
def test_ordinary_text_near_the_new_rules_is_kept(harmless):
    assert redact_text(harmless) == harmless
    assert redact_values({"note": harmless}) == {"note": harmless}


def test_config_keys_are_redacted_by_name_at_any_depth():
    cfg = {"training": {"token_budget": 660000, "lr": 3e-4}, "task": {"max_new_tokens": 12},
           "models": {"pad_token": "<pad>", "text_key": "question"},
           "a": {"b": [{"c": {"hf_token": 12345, "apiKey": "x", "DB_PASSWORD": 7.5}}]},
           "auth": {"user": "me", "pass": "x"}, "secret": True}
    assert redact_values(cfg) == {
        "training": {"token_budget": 660000, "lr": 3e-4}, "task": {"max_new_tokens": 12},
        "models": {"pad_token": "<pad>", "text_key": "question"},
        "a": {"b": [{"c": {"hf_token": REDACTED, "apiKey": REDACTED,
                           "DB_PASSWORD": REDACTED}}]},
        "auth": {"user": REDACTED, "pass": REDACTED}, "secret": True}


def test_environment_json_keeps_git_sha_hub_ids_uuids_and_paths(tmp_path):
    env = snapshot(argv=["train.py", "--model", "HuggingFaceTB/SmolLM2-135M-Instruct",
                         "--out", "/scratch/runs/kd-seed-3"],
                   environ={"CUDA_VISIBLE_DEVICES": "GPU-8f6b3f2a-8b7e-4d2a-9c1f-0123456789ab",
                            "HF_HOME": "/data/hf", "HF_MIRROR_PW": "Zx9!vQ2$mK"})
    assert env["command"]["argv"][2:] == ["HuggingFaceTB/SmolLM2-135M-Instruct", "--out",
                                          "/scratch/runs/kd-seed-3"]
    assert env["env"] == {"CUDA_VISIBLE_DEVICES": "GPU-8f6b3f2a-8b7e-4d2a-9c1f-0123456789ab",
                          "HF_HOME": "/data/hf", "HF_MIRROR_PW": REDACTED}
    if env["git"] is not None:  # the tests run from a checkout: its commit, whole
        assert len(env["git"]["commit"]) == 40
