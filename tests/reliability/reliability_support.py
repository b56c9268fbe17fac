"""Helpers for the reliability tests (a plain module, not a conftest, so that importing it
by name never picks another folder's ``conftest``): tiny `distillmeter run` configs (the
pipelines tests' TINY_RUN, with the stages that get killed made long enough to be caught
mid-way), real subprocesses of the CLI, and polling the files they write."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[2]


def load_test_module(name: str, path: Path):
    """Import a helper module of another test folder under its own name (each folder's
    conftest is a module called ``conftest``; importing it by that name would clash)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


from tiny_config import TINY_RUN  # noqa: E402  (tests/ is on sys.path: tests/conftest.py)

# Two students (synthetic, then kd), one seed. The kd student's training (~4 s here) and the
# teacher's logit cache (~3000 sequences at batch 1, ~100 shards: ~3 s) are long enough to be
# killed in the middle; everything else is the tiny run of the pipelines tests.
KILL_RUN = copy.deepcopy(TINY_RUN)
KILL_RUN["task"]["n_labelled"] = 3000
KILL_RUN["training"] = {"token_budget": 150000, "batch_size": 8}
KILL_RUN["logits"] = {"top_k": 8, "shard_sequences": 32, "batch_size": 1}
KILL_RUN["methods"] = [
    {"name": "synthetic", "data": ["labelled", "synthetic"], "loss": "ce"},
    {"name": "kd", "data": ["labelled", "synthetic"], "loss": "kd"},
]


# The fuzz tests' example counts are sized for CI (a few thousand in all, under a minute);
# DISTILLMETER_FUZZ_SCALE=10 runs ten times as many (for a deeper hunt by hand).
FUZZ_SCALE = float(os.environ.get("DISTILLMETER_FUZZ_SCALE", "1"))


def fuzz_settings(examples: int) -> settings:
    """Hypothesis settings for a fuzz test: ``examples`` x FUZZ_SCALE examples, no deadline
    (the machine is shared), derandomized so CI is repeatable unless the scale is raised."""
    return settings(max_examples=max(1, int(examples * FUZZ_SCALE)), deadline=None,
                    derandomize=FUZZ_SCALE == 1,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        stdout=None, stderr=None) -> subprocess.Popen:
    """Start ``distillmeter ARGS`` as a real process (the installed package's CLI)."""
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    return subprocess.Popen([sys.executable, "-m", "distillmeter.cli", *args], env=full_env,
                            cwd=cwd, stdout=stdout if stdout is not None else subprocess.PIPE,
                            stderr=stderr if stderr is not None else subprocess.PIPE,
                            text=True)


def cli_run(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run ``distillmeter ARGS`` to completion; returns rc/stdout/stderr."""
    p = cli(*args, **kw)
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def events(ledger: Path) -> list[dict]:
    """The complete JSON lines of a ledger that may be being written (or cut) right now."""
    try:
        text = ledger.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        try:
            out.append(json.loads(line))
        except ValueError:
            break
    return out


def trace_times(trace: Path) -> list[float]:
    """``t`` of every complete row of a trace.csv being written."""
    try:
        text = trace.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    ts = []
    for line in text.splitlines(keepends=True)[1:]:
        if line.endswith("\n"):
            try:
                ts.append(float(line.split(",", 1)[0]))
            except ValueError:
                pass
    return ts


def stage_started(run_dir: Path, stage: str) -> dict | None:
    """The ``stage_start`` event of ``stage`` in a run directory's ledger, if written."""
    for ev in events(run_dir / "ledger.jsonl"):
        if ev.get("event") == "stage_start" and ev.get("stage") == stage:
            return ev
    return None


def wait_for(what: str, cond: Callable[[], object], proc: subprocess.Popen,
             timeout: float = 240.0, poll: float = 0.01):
    """Poll ``cond`` until it returns something truthy; fail if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(poll)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def kill9(proc: subprocess.Popen) -> None:
    """SIGKILL: no handler, no finally block, no flush runs in the process."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
