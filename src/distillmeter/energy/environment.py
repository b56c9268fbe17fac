"""``environment.json``: the hardware and software a run measured, with secrets redacted.

Nothing here imports torch or transformers: package versions come from
``importlib.metadata``. Environment variables are kept only where they bear on the run
(CUDA, NCCL, threads, Hugging Face, SLURM, torchrun ranks, ...), and anything that looks
like a secret, by name or by value, becomes ``<redacted>``; the command line is redacted
by the same rules.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from distillmeter.energy.sensors.hostinfo import cpu_info, memory_bytes
from distillmeter.privacy.redact import redact_argv, redact_env

SCHEMA = "distillmeter.environment/1"

RELEVANT_PREFIXES = ("CUDA_", "NVIDIA_", "NCCL_", "CUBLAS_", "CUDNN_", "OMP_", "MKL_",
                     "OPENBLAS_", "HF_", "HUGGING_FACE_", "TRANSFORMERS_", "TOKENIZERS_",
                     "TORCH_", "PYTORCH_", "SLURM_", "ACCELERATE_", "VLLM_", "RAY_",
                     "DISTILLMETER_", "XLA_", "TF_")
RELEVANT_NAMES = frozenset({"WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                            "GROUP_RANK", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT",
                            "PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG"})
PACKAGES = ("distillmeter", "torch", "transformers", "numpy", "safetensors", "accelerate",
            "vllm", "nvidia-ml-py", "psutil", "pydantic", "trl", "datasets", "tokenizers",
            "ray", "mlflow", "lm-eval")


def relevant_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment variables that bear on a run, redacted."""
    environ = os.environ if environ is None else environ
    keep = {k: v for k, v in environ.items()
            if k in RELEVANT_NAMES or k.startswith(RELEVANT_PREFIXES)}
    return dict(sorted(redact_env(keep).items()))


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that matter, without importing them."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit(paths: Iterable[str | os.PathLike[str]]) -> dict[str, Any] | None:
    """The commit (and whether the tree is dirty) of the first git checkout among
    ``paths``. No remote URLs: they can hold credentials."""
    for path in paths:
        path = Path(path)
        if not path.exists():
            continue
        try:
            top = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel",
                                  "HEAD"], capture_output=True, text=True, timeout=5)
            if top.returncode != 0:
                continue
            root, commit = top.stdout.split()[:2]
            status = subprocess.run(["git", "-C", root, "status", "--porcelain",
                                     "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError, ValueError):
            continue
        return {"repo": root, "commit": commit,
                "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}
    return None


def snapshot(sensors: Sequence[Any] = (), *, notes: Sequence[str] = (),
             argv: Sequence[str] | None = None,
             environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The environment.json document: host, GPUs and sensors, software, command, git."""
    cpu = cpu_info()
    described = [s.describe() for s in sensors]
    gpus = [g for d in described for g in d.get("gpus", [])]
    nvml = next((d for d in described if d.get("kind") == "nvml"), {})
    package_dir = Path(__file__).resolve().parent.parent  # the distillmeter package
    return {
        "schema": SCHEMA,
        "wall_time": datetime.now(timezone.utc).isoformat(),
        "host": socket.gethostname(),
        "os": {"system": platform.system(), "release": platform.release(),
               "platform": platform.platform()},
        "python": {"version": platform.python_version(), "implementation":
                   platform.python_implementation(), "executable": sys.executable},
        "cpu": cpu.as_dict(),
        "memory_bytes": memory_bytes(),
        "gpus": gpus,
        "gpu_driver": nvml.get("driver"),
        "nvml_version": nvml.get("nvml_version"),
        "sensors": described,
        "sources": {d: src for s in described for d, src in s.get("sources", {}).items()},
        "notes": list(notes),
        "packages": package_versions(),
        "command": {"argv": redact_argv(sys.argv if argv is None else argv),
                    "cwd": os.getcwd()},
        "git": git_commit([os.getcwd(), package_dir]),
        "env": relevant_env(environ),
    }
