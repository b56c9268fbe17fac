"""A small sweep on a local Ray instance started by the test: the teacher job runs first,
then the student jobs as Ray tasks (in Ray's worker processes), into the same layout a
sweep run here makes."""

from __future__ import annotations

import copy
import json
import os

import pytest
import yaml

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'distillmeter[ray]')")

from distillmeter.pipelines.scale.sweep_file import load_sweep  # noqa: E402
from distillmeter.pipelines.scale.sweep_run import run_sweep  # noqa: E402
from distillmeter.protocol import load_report, read_ledger  # noqa: E402

pytestmark = pytest.mark.slow  # starting Ray and its workers (torch imports) takes ~30 s


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_sweep_on_a_local_ray_instance(local_ray, tmp_path, tiny_run_dict):
    base = {**copy.deepcopy(tiny_run_dict),
            "methods": [{"name": "kd", "data": ["labelled"], "loss": "kd"}]}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({
        "base": "tiny.yaml", "grid": {"training.lr": [0.003, 0.01]}, "seeds": 1,
        "ray": {"num_cpus": 1}}))
    sweep = load_sweep(tmp_path / "sweep.yaml")
    runs = tmp_path / "runs"
    records = run_sweep(sweep, runs, ray_address="local", quiet=True)
    assert [r.status for r in records] == ["done", "done"], [r.note for r in records]
    assert len(list((runs / "teachers").iterdir())) == 1  # once, before the fan-out
    for r in records:
        report = load_report(r.run_dir)
        assert report.status == "ok" and report.upstream
        env = json.loads(open(os.path.join(r.run_dir, "environment.json")).read())
        # metered inside a Ray worker process, not in this one
        assert env["command"]["argv"][0].endswith("default_worker.py")
        assert "RAY_RAYLET_PID" in env["env"]
        assert read_ledger(r.run_dir).run_start.devices == ["cpu:0", "dram:0"]
    teacher = next((runs / "teachers").iterdir())
    env = json.loads((teacher / "environment.json").read_text())
    assert env["command"]["argv"][0].endswith("default_worker.py")  # a Ray task too
    # --resume on Ray: every run found done, nothing run again
    again = run_sweep(sweep, runs, ray_address="local", resume=True, quiet=True)
    assert [r.status for r in again] == ["skipped", "skipped"]
    assert ray.is_initialized()  # an instance the caller started is left running


def test_each_task_asks_for_the_gpus_its_config_runs_on(tiny_run_dict):
    from distillmeter.errors import UserError
    from distillmeter.pipelines.config_file import parse_config
    from distillmeter.pipelines.scale.sweep_file import RaySettings
    from distillmeter.pipelines.scale.sweep_ray import RayRunner

    cfg = {d: parse_config({**tiny_run_dict, "device": d}) for d in ("cpu", "auto", "cuda")}
    runner = RayRunner("local", RaySettings(), quiet=True)
    runner.gpus = 8.0  # a cluster with GPUs
    assert runner.options(cfg["cpu"].device)["num_gpus"] == 0
    assert runner.options(cfg["auto"].device)["num_gpus"] == 1
    assert runner.options(cfg["cuda"].device) == {"num_gpus": 1.0, "num_cpus": 1.0}
    runner.gpus = 0.0  # CPU-only: auto runs on CPUs, cuda cannot run
    assert runner.options(cfg["auto"].device)["num_gpus"] == 0
    with pytest.raises(UserError, match="has 0"):
        runner.options(cfg["cuda"].device)
    two = RayRunner("local", RaySettings(num_gpus=2, num_cpus=4), quiet=True)
    two.gpus = 8.0
    assert two.options(cfg["auto"].device) == {"num_gpus": 2.0, "num_cpus": 4.0}
