"""``environment.json``: the hardware and software a run measured, with secrets redacted.

Nothing here imports torch or transformers: package versions come from
``importlib.metadata``. Environment variables are kept only where they bear on the run
(CUDA, NCCL, threads, Hugging Face, SLURM, torchrun ranks, ...), and anything that looks
like a secret, by name or by value, becomes ``<redacted>``; the command line is redacted
by the same rules.
"""

from __future__ import annotations

import math
import os
import platform
import re
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from distillmeter.energy.hostinfo import cpu_info, memory_bytes

REDACTED = "<redacted>"
SCHEMA = "distillmeter.environment/1"

# Secret-looking names: env names *containing* one of these (as the brief for issue 2 asks).
SECRET_NAME_PARTS = ("TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "PASS",
                     "AUTH", "COOKIE", "SESSION", "PRIVATE", "SIGNATURE")
# Env names that contain such a part but hold no secret.
HARMLESS_NAMES = frozenset({"TOKENIZERS_PARALLELISM"})
# Command-line flags are split into words: --hf-token is secret, --max-new-tokens is not.
_FLAG_WORD_RE = re.compile(
    r"^(token|key|secret|password|passwd|pass|pwd|credentials?|auth|authorization|apikey|"
    r"cookie|pat|[a-z]*(token|key|secret|password))$")

_PREFIXED_SECRET = re.compile(
    r"(hf_[A-Za-z0-9]{16,}|sk-[A-Za-z0-9_\-]{16,}|sk_(live|test)_[A-Za-z0-9]{16,}|"
    r"gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_\-]{16,}|"
    r"xox[abprs]-[A-Za-z0-9\-]{10,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_\-]{30,}|"
    r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,})")
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]+):"
                              r"(?P<pw>[^@/\s]+)@")
_UUID = re.compile(r"^(GPU-|MIG-)?[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_TOKEN_RUN = re.compile(r"[A-Za-z0-9+/=_\-]{32,}")

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


def _entropy(s: str) -> float:
    counts = Counter(s)
    return -sum(c / len(s) * math.log2(c / len(s)) for c in counts.values())


def _looks_like_key(run: str) -> bool:
    """A long unbroken run that looks random: 32+ hex digits (WandB-style keys), or 32+
    mixed characters with high entropy. UUIDs (GPU ids) and paths are not keys."""
    if _UUID.match(run) or "/" in run.strip("/") and run.count("/") > 1:
        return False
    if re.fullmatch(r"[0-9a-fA-F]{32,}", run):
        return True
    has_digit = any(c.isdigit() for c in run)
    has_alpha = any(c.isalpha() for c in run)
    return has_digit and has_alpha and _entropy(run) >= 4.0


def redact_text(text: str) -> str:
    """``text`` with secret-looking substrings replaced: known token formats (hf_, sk-,
    ghp_, AKIA, JWTs, ...), passwords in URLs, and long random-looking runs."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    text = _PREFIXED_SECRET.sub(REDACTED, text)
    return _TOKEN_RUN.sub(lambda m: REDACTED if _looks_like_key(m.group(0)) else m.group(0),
                          text)


def is_secret_name(name: str) -> bool:
    """An environment variable name that suggests a secret (``HF_TOKEN``, ``WANDB_API_KEY``,
    ``DB_PASSWORD``...)."""
    upper = name.upper()
    return upper not in HARMLESS_NAMES and any(p in upper for p in SECRET_NAME_PARTS)


def redact_env(mapping: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``mapping`` (environment variables) with secrets replaced by
    ``<redacted>``: every value whose name looks secret, and secret-looking parts of the
    other values."""
    return {k: REDACTED if is_secret_name(k) else redact_text(str(v))
            for k, v in mapping.items()}


def _is_secret_flag(flag: str) -> bool:
    words = [w for w in re.split(r"[-_.]+", flag.lstrip("-").lower()) if w]
    return any(_FLAG_WORD_RE.match(w) for w in words)


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line with secrets redacted: the value of a secret-named flag
    (``--hf-token X``, ``--api-key=X``), ``NAME=value`` pairs with a secret name, and
    secret-looking text anywhere."""
    out: list[str] = []
    redact_next = False
    for arg in argv:
        if redact_next:
            out.append(REDACTED)
            redact_next = False
            continue
        if arg.startswith("-") and len(arg) > 1:
            flag, eq, value = arg.partition("=")
            if _is_secret_flag(flag):
                if eq:
                    out.append(f"{flag}={REDACTED}")
                else:
                    out.append(arg)
                    redact_next = True
                continue
        name, eq, value = arg.partition("=")
        if eq and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and is_secret_name(name):
            out.append(f"{name}={REDACTED}")
            continue
        out.append(redact_text(arg))
    return out


def redact_values(obj: Any) -> Any:
    """Redact secret-looking text inside every string of a JSON-like structure (configs and
    labels: keys such as ``max_new_tokens`` are not secrets, so only values are checked)."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, Mapping):
        return {k: redact_values(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_values(v) for v in obj]
    return obj


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
