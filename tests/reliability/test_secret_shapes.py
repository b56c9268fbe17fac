"""Secrets of every shape issue 18 found leaking, end to end (issue 18, "Redaction covers
the shapes above"): real `distillmeter` processes and the meter's own files, every byte of
every file and stream searched.

- a URL password with an empty user name, ``Authorization: Bearer`` tokens (28
  alphanumerics, 24 hex), ``-pPW``, ``-u user:PW``, ``--pw PW``, ``HF_MIRROR_PW``, an
  ``ASIA`` key id, a PEM private key (whole, whatever line it is split on), in the
  environment and on the measured command's line, through `measure`, `account`, `show`,
  `report` (summary.json, summary.csv, report.html) and MLflow's params;
- a stage name carrying a token (``--stage student.ghp_...``): refused, without echoing it,
  before anything is written;
- ``password`` / ``api_key`` under ``eval.lm_eval.model_args``: config.yaml (and the
  harness's request.json) redact secret-named keys at any depth;
- a 28-character token echoed in a validation error.

The redaction rules themselves, shape by shape over many seeds, are property-tested in
tests/energy/test_environment_redaction.py.
"""

from __future__ import annotations

import json
import random
import string
import sys

import pytest
import yaml
from reliability_support import TINY_RUN, cli_run, write_config
from test_security import KeyIndex, _leaks

from distillmeter.energy import EnergyMeter
from key_alphabets import SHAPE_MAKERS, shapes

SEED = 20261202
ALNUM = string.ascii_letters + string.digits


def _env_and_argv(seed: int) -> tuple[dict[str, str], list[str], list[str]]:
    """The shapes as one environment and one command line, and their secrets."""
    env: dict[str, str] = {}
    argv: list[str] = []
    for name, shape in shapes(seed).items():
        env.update(shape.env or {})
        argv += shape.argv or []
        if shape.text is not None:  # in a variable environment.json keeps, and as an argument
            env[f"DISTILLMETER_X_{name.upper().replace('-', '_')}"] = shape.text
            argv.append(shape.text)
    secrets = [s for shape in shapes(seed).values() for s in shape.secrets]
    return env, argv, secrets


def test_every_shape_through_measure_account_show_report_and_mlflow(tmp_path, monkeypatch):
    env, argv, secrets = _env_and_argv(SEED)
    index = KeyIndex(secrets)
    runs = tmp_path / "runs"
    streams = tmp_path / "streams"
    streams.mkdir()
    run_dir = runs / "m"
    res = cli_run("measure", "--out", str(run_dir), "--idle-seconds", "0", "--sample-hz", "0",
                  "--", sys.executable, "-c", "pass", *argv, env=env)
    assert res.returncode == 0, res.stderr
    outputs = [res.stdout + res.stderr]
    for args in (["account", str(run_dir)], ["show", str(run_dir)],
                 ["show", str(run_dir), "--json"], ["report", str(runs), "--no-sensitivity"]):
        res = cli_run(*args, env=env)
        assert res.returncode == 0, (args, res.stderr)
        outputs.append(res.stdout + res.stderr)
    (streams / "console.log").write_text("\n".join(outputs))
    assert {"summary.json", "summary.csv", "report.html"} <= {p.name for p in runs.iterdir()}
    mlflow = pytest.importorskip("mlflow")
    from distillmeter.integrations.mlflow import log_report, report_params
    from distillmeter.protocol import load_report

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    log_report(run_dir, raw=True)
    (streams / "params.json").write_text(json.dumps(report_params(load_report(run_dir),
                                                                  run_dir)))
    for root in (runs, streams, tmp_path / "mlruns"):
        assert not _leaks(root, index), root
    # what was there is still recorded, redacted
    recorded = json.loads((run_dir / "environment.json").read_text())
    assert recorded["env"]["HF_MIRROR_PW"] == "<redacted>"
    assert recorded["env"]["DISTILLMETER_X_URL_EMPTY_USER"] == \
        "redis://:<redacted>@cache.internal:6379/0"
    assert "https://hub.internal/api" in recorded["command"]["argv"]


@pytest.mark.parametrize("seed", range(3))
def test_a_stage_name_holding_a_token_is_refused_without_echoing_it(tmp_path, seed):
    rng = random.Random(SEED + seed)
    token = "ghp_" + "".join(rng.choice(ALNUM) for _ in range(36))
    out = tmp_path / "m"
    res = cli_run("measure", "--out", str(out), "--idle-seconds", "0", "--sample-hz", "0",
                  "--stage", f"student.{token}", "--", "true")
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("error: --stage: a stage name must not hold a secret")
    assert token[4:16] not in res.stdout + res.stderr
    assert not out.exists()  # refused before any work: no ledger, no report


def test_the_meter_refuses_a_stage_name_holding_a_token(tmp_path):
    token = "hf_" + "".join(random.Random(SEED).choice(ALNUM) for _ in range(34))
    with EnergyMeter(tmp_path / "run", idle_seconds=0, sample_hz=0) as meter:
        with pytest.raises(ValueError) as err:
            meter.stage(f"student.{token}")
        assert token[3:15] not in str(err.value)
        with pytest.raises(ValueError) as err:  # an invalid one is quoted, redacted
            meter.stage(f"student.{token} x")
        assert token[3:15] not in str(err.value) and "invalid stage name" in str(err.value)
        with meter.stage("student.train"):
            pass
    index = KeyIndex([token])
    assert not _leaks(tmp_path, index)


def test_config_yaml_redacts_secret_named_keys_at_any_depth(tmp_path):
    """The run's resolved config (what `distillmeter run` gives the meter), with
    eval.lm_eval.model_args holding a password, an api_key and a token: config.yaml keeps
    every other value, and the harness's request.json is redacted the same way."""
    from distillmeter.engines.lm_eval import EvalQuality, LmEvalResult, lm_eval_request
    from distillmeter.pipelines.config_file import load_config
    from distillmeter.pipelines.evaluation import write_lm_eval

    secrets: list[str] = []
    (tmp_path / "in").mkdir()
    for seed in range(20):
        rng = random.Random(SEED + seed)
        shape = SHAPE_MAKERS["model-args"](rng)
        model_args = shape.config["eval"]["lm_eval"]["model_args"]
        model_args["token"] = token = "".join(rng.choice(ALNUM) for _ in range(12))
        secrets += [*shape.secrets, token]
        path = write_config(tmp_path / "in" / f"c{seed}.yaml",
                            {**TINY_RUN, "eval": shape.config["eval"]})
        cfg = load_config(path)
        run_dir = tmp_path / "runs" / f"run{seed}"
        with EnergyMeter(run_dir, idle_seconds=0, sample_hz=0, config=cfg.resolved()) as meter:
            with meter.stage("eval.student"):
                request = lm_eval_request(tmp_path / "model", cfg.eval.lm_eval, batch_size=8,
                                          device="cpu", dtype="float32")
                write_lm_eval(run_dir / "artifacts" / "eval", LmEvalResult(
                    EvalQuality("acc", 1.0, 1), request), kind="eval", key_hash="h",
                    stage="eval.student", run_id=meter.run_id)
        written = yaml.safe_load((run_dir / "config.yaml").read_text())
        args = written["eval"]["lm_eval"]["model_args"]
        assert args == {"pretrained": "org/model", "password": "<redacted>",
                        "api_key": "<redacted>", "token": "<redacted>"}
        assert written["training"] == cfg.resolved()["training"]  # the rest as it was
        sent = json.loads((run_dir / "artifacts" / "eval" / "request.json").read_text())
        assert sorted(sent["model_args"].split(",")) == [
            "api_key=<redacted>", "dtype=float32", "password=<redacted>",
            "pretrained=org/model", "token=<redacted>"]
    assert not _leaks(tmp_path / "runs", KeyIndex(secrets))


def test_a_token_echoed_in_a_validation_error_is_redacted(tmp_path):
    """A 28-character token pasted into a field that wants a number: the one-line error
    names the file, line and key, and not the token."""
    rng = random.Random(SEED)
    for i in range(10):
        token = SHAPE_MAKERS["token-28-in-message"](rng).secrets[0]
        path = tmp_path / f"bad{i}.yaml"
        path.write_text(yaml.safe_dump({"training": {"lr": token}}))
        res = cli_run("run", str(path), "--out", str(tmp_path / "runs"))
        assert res.returncode == 2, res.stderr
        assert f"bad{i}.yaml:2: training.lr" in res.stderr, res.stderr
        assert token not in res.stderr and token[:12] not in res.stderr, res.stderr
        if i == 2:  # each process costs a second; the redaction itself is property-tested
            break
    assert not (tmp_path / "runs").exists()


def test_harmless_values_are_kept_beside_the_secrets(tmp_path):
    """What environment.json must keep: hub ids, GPU UUIDs, paths, and its own git SHA."""
    env, argv, _ = _env_and_argv(SEED)
    keep = ["HuggingFaceTB/SmolLM2-135M-Instruct", "/scratch/runs/kd-seed-3/ckpt",
            "GPU-8f6b3f2a-8b7e-4d2a-9c1f-0123456789ab"]
    env["CUDA_VISIBLE_DEVICES"] = keep[2]
    res = cli_run("measure", "--out", str(tmp_path / "m"), "--idle-seconds", "0",
                  "--sample-hz", "0", "--no-report", "--", sys.executable, "-c", "pass",
                  *keep[:2], *argv, env=env)
    assert res.returncode == 0, res.stderr
    recorded = json.loads((tmp_path / "m" / "environment.json").read_text())
    assert recorded["env"]["CUDA_VISIBLE_DEVICES"] == keep[2]
    assert all(k in recorded["command"]["argv"] for k in keep[:2])
    if recorded["git"] is not None:
        assert len(recorded["git"]["commit"]) == 40


def test_every_shape_is_exercised_here():
    """The shapes these tests draw are all the issue's (tests/key_alphabets.py)."""
    found = set(SHAPE_MAKERS)
    assert {"url-empty-user", "bearer-alnum-28", "bearer-hex-24", "mysql-p", "curl-u",
            "flag-pw", "env-mirror-pw", "aws-asia", "pem", "model-args",
            "model-args-string", "token-28-in-message"} == found
    env, argv, secrets = _env_and_argv(SEED)
    assert "HF_MIRROR_PW" in env and any(a.startswith("-p") for a in argv) and len(secrets) > 12

