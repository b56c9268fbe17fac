"""Security guarantees, checked on the source and end to end.

- Nothing is read back with pickle: no module imports a pickle-based serializer, torch.load
  only ever with weights_only=True, YAML only through the safe loader, no eval/exec, no
  remote code in model loading, no shell. A run writes no pickle-format file.
- No secret reaches any file distillmeter writes: real `distillmeter run` and
  `distillmeter measure` processes with tokens and keys in their environment and on the
  command line; every byte of every file under their output directories is searched, and
  their console output too.
"""

from __future__ import annotations

import ast
import inspect
import json
import random
import string
import sys
from pathlib import Path

import pytest
from reliability_support import ROOT, TINY_RUN, cli_run, write_config

from key_alphabets import AWS_DOC_EXAMPLE, keys, shapes

SOURCES = sorted((ROOT / "src" / "distillmeter").rglob("*.py"))
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "shelve", "marshal", "joblib",
                  "cloudpickle", "jsonpickle"}
UNSAFE_YAML = {"load", "unsafe_load", "full_load", "load_all", "unsafe_load_all",
               "full_load_all"}
UNSAFE_LOADERS = {"Loader", "FullLoader", "UnsafeLoader", "CLoader", "CFullLoader",
                  "CUnsafeLoader"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_uses(path: Path) -> list[str]:
    """Every use in one source file of something that can run code from data."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    rel = path.relative_to(ROOT)
    bad = []
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            bad += [f"{where}: import {a.name}" for a in node.names
                    if a.name.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] \
                in PICKLE_MODULES:
            bad.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            last = name.rsplit(".", 1)[-1]
            if name in ("eval", "exec", "compile", "__import__"):
                bad.append(f"{where}: {name}()")
            elif name.endswith("torch.load"):
                if not _is_true(_kw(node, "weights_only")):
                    bad.append(f"{where}: {name}() without weights_only=True")
            elif name.startswith("yaml.") and last in UNSAFE_YAML:
                bad.append(f"{where}: {name}() (use yaml.safe_load)")
            elif name.startswith(("np.load", "numpy.load")) and \
                    _is_true(_kw(node, "allow_pickle")):
                bad.append(f"{where}: {name}(allow_pickle=True)")
            if _is_true(_kw(node, "trust_remote_code")):
                bad.append(f"{where}: {name}(trust_remote_code=True)")
            if _is_true(_kw(node, "shell")):
                bad.append(f"{where}: {name}(shell=True)")
            loader = _kw(node, "Loader")
            if loader is not None and _dotted(loader).rsplit(".", 1)[-1] in UNSAFE_LOADERS:
                bad.append(f"{where}: {name}(Loader={_dotted(loader)})")
    return bad


def test_the_scanner_finds_what_it_looks_for(tmp_path):
    """The static check itself, on a file with every forbidden pattern (so it cannot pass
    by finding nothing)."""
    sample = ROOT / "src" / "distillmeter" / "_scanner_sample_for_test.py"
    sample.write_text(
        "import pickle\nfrom dill import loads\nimport torch, yaml, numpy as np\n"
        "torch.load('x')\ntorch.load('x', weights_only=False)\nyaml.load(s)\n"
        "yaml.full_load(s)\nyaml.compose(s, Loader=yaml.Loader)\neval('1')\nexec('x=1')\n"
        "np.load('a', allow_pickle=True)\nf(trust_remote_code=True)\ng(shell=True)\n"
        "torch.load('ok', weights_only=True)\nyaml.safe_load(s)\nmodel.eval()\n")
    try:
        found = unsafe_uses(sample)
    finally:
        sample.unlink()
    assert len(found) == 12, found


def test_no_module_can_run_code_from_what_it_reads():
    assert SOURCES
    found = [u for path in SOURCES for u in unsafe_uses(path)]
    assert not found, "unsafe deserialization or code execution:\n" + "\n".join(found)


def test_checkpoints_load_through_transformers_without_pickle():
    """Our checkpoints are safetensors; a user's .bin-only checkpoint goes through
    transformers, whose loader must use torch.load(weights_only=True)."""
    from transformers import modeling_utils

    sig = inspect.signature(modeling_utils.load_state_dict)
    assert sig.parameters["weights_only"].default is True
    from distillmeter.models import build

    save = inspect.getsource(build.save_checkpoint)
    assert "safe_serialization=True" in save


# --------------------------------------------------------------------------- secrets
# Every secret here is drawn from a fixed seed: the same keys every run (a test that drew
# fresh keys failed at random when the redaction missed a few of them).
ALNUM = string.ascii_letters + string.digits
SEED = 20261128
N_KEYS = 1000  # random keys of each alphabet (tests/key_alphabets.py), on the command line
# and in the environment of each process


def _token(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


class KeyIndex:
    """Finds any 12 consecutive characters of any of many secrets in a file's bytes (a
    redaction that kept part of a key still leaks it). Every 8 bytes of every secret are
    indexed; the data is probed at every 4th offset, which meets each 12-byte match."""

    WINDOW = 12

    def __init__(self, secrets_: list[str]):
        # a JWT's header (and the start of its payload) is the same in every token: its
        # signature is what must not leak
        secrets_ = [s.rsplit(".", 1)[1] if s.startswith("eyJ") and s.count(".") == 2 else s
                    for s in secrets_]
        self.secrets = [s.encode() for s in secrets_ if len(s) >= self.WINDOW]
        self.short = [s.encode() for s in secrets_ if len(s) < self.WINDOW]
        self.grams: dict[bytes, set[int]] = {}
        for i, s in enumerate(self.secrets):
            for j in range(len(s) - 7):
                self.grams.setdefault(s[j:j + 8], set()).add(i)

    def found_in(self, data: bytes) -> set[bytes]:
        found = {s for s in self.short if s in data}
        grams = self.grams
        for pos in range(0, len(data) - 7, 4):
            ids = grams.get(data[pos:pos + 8])
            if not ids:
                continue
            region = data[max(0, pos - self.WINDOW):pos + 8 + self.WINDOW]
            for i in ids:
                s = self.secrets[i]
                if any(s[k:k + self.WINDOW] in region for k in range(len(s) - self.WINDOW + 1)):
                    found.add(s)
        return found


def _leaks(root: Path, index: KeyIndex) -> list[str]:
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        for s in sorted(index.found_in(path.read_bytes())):
            out.append(f"{path.relative_to(root)} holds {s[:6].decode()}...")
    return out


def test_the_leak_finder_finds_a_piece_of_a_key_anywhere(tmp_path):
    drawn = [k for ks in keys(50, SEED).values() for k in ks]
    index = KeyIndex(drawn)
    for offset in range(9):
        key = index.secrets[offset * 37 % len(index.secrets)]
        data = b"x" * offset + b"prefix " + key[offset:offset + 12] + b" suffix"
        assert index.found_in(data) == {key}, (offset, key)
    assert not index.found_in(b"<redacted> " * 100)


@pytest.fixture(scope="module")
def secret_env() -> dict[str, str]:
    """Realistic secrets (never real ones), the same every run: named ones, and
    N_KEYS random keys of each alphabet under names that do not look secret (only their
    values can give them away) in variables that environment.json keeps."""
    rng = random.Random(SEED)
    env = {
        "HF_TOKEN": "hf_" + _token(rng, ALNUM, 34),
        "HUGGING_FACE_HUB_TOKEN": "hf_" + _token(rng, ALNUM, 34),
        "WANDB_API_KEY": _token(rng, "0123456789abcdef", 40),
        "OPENAI_API_KEY": "sk-proj-" + _token(rng, ALNUM, 48),
        "AWS_ACCESS_KEY_ID": "AKIA" + _token(rng, string.ascii_uppercase + string.digits, 16),
        "AWS_SECRET_ACCESS_KEY": AWS_DOC_EXAMPLE,
        "GITHUB_TOKEN": "ghp_" + _token(rng, ALNUM, 36),
        "MLFLOW_TRACKING_PASSWORD": "hunter2-" + _token(rng, string.ascii_lowercase, 6),
        # a relevant variable whose value carries a password
        "HF_ENDPOINT": f"https://me:{_token(rng, ALNUM, 20)}@hub.internal.example",
    }
    for alphabet, drawn in keys(N_KEYS, SEED + 1).items():
        for i, key in enumerate(drawn):
            env[f"DISTILLMETER_NOTE_{alphabet.upper()}_{i}"] = key
    # secrets told by their shape (tests/key_alphabets.py): HF_MIRROR_PW, and the texts
    # (a redis URL, Authorization headers, an ASIA key id, a PEM block, ...) as values of
    # variables environment.json keeps
    for name, shape in shapes(SEED + 5).items():
        env.update(shape.env or {})
        if shape.text is not None:
            env[f"DISTILLMETER_NOTE_{name.upper().replace('-', '_')}"] = shape.text
    return env


def _shape_secrets(seed: int) -> list[str]:
    return [s for shape in shapes(seed).values() for s in shape.secrets]


def _secret_values(env: dict[str, str]) -> list[str]:
    """The secrets in ``secret_env``: whole values, the password of HF_ENDPOINT, and the
    secret parts of the shapes' texts (their other words are no secret)."""
    texts = {s.text for s in shapes(SEED + 5).values() if s.text is not None}
    return [v.split("://me:", 1)[1].split("@")[0] if "://me:" in v else v
            for v in env.values() if v not in texts] + _shape_secrets(SEED + 5)


@pytest.fixture(scope="module")
def secret_run(tmp_path_factory, secret_env) -> Path:
    """A real `distillmeter run` (teacher + one KD student) with the secrets in its
    environment; its console output kept as a log file in its output directory."""
    tmp = tmp_path_factory.mktemp("secret-run")
    config = write_config(tmp / "tiny.yaml", {**TINY_RUN, "methods": [
        {"name": "kd", "data": ["labelled"], "loss": "kd"}]})
    out = tmp / "runs"
    res = cli_run("run", str(config), "--out", str(out), env=secret_env)
    assert res.returncode == 0, res.stderr
    (out / "console.log").write_text(res.stdout + res.stderr)
    return out


@pytest.mark.slow
def test_no_secret_in_any_file_of_a_run(secret_run, secret_env):
    """`distillmeter run` takes no free arguments (a key on its command line could only be
    a path it was given), so its secrets come through the environment."""
    files = [p for p in secret_run.rglob("*") if p.is_file()]
    assert len(files) > 20  # ledgers, traces, environment, configs, reports, artifacts
    assert not _leaks(secret_run, KeyIndex(_secret_values(secret_env)))
    # the snapshot does record that the variables were there, redacted
    for path in secret_run.glob("*/environment.json"):
        env = json.loads(path.read_text())["env"]
        assert env["HF_TOKEN"] == env["HUGGING_FACE_HUB_TOKEN"] == "<redacted>"
        assert env["HF_ENDPOINT"] == "https://me:<redacted>@hub.internal.example"
        assert env["DISTILLMETER_NOTE_AWS_0"] == "<redacted>"


@pytest.mark.slow
def test_no_pickle_is_written_by_a_run(secret_run):
    """Everything a run writes is text, JSON, CSV or safetensors: no pickle protocol
    header, no torch.save zip (which holds data.pkl)."""
    files = [p for p in secret_run.rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files)
    for p in files:
        head = p.read_bytes()[:2]
        assert not (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")), p
        assert p.suffix not in (".bin", ".pt", ".pth", ".pkl", ".pickle"), p
        if head == b"PK":
            assert b"data.pkl" not in p.read_bytes(), p


def test_no_secret_in_any_file_of_a_measurement(tmp_path, secret_env):
    """`distillmeter measure` with secrets in the environment and on the measured
    command's line: flag values, NAME=value, and N_KEYS bare keys of each alphabet."""
    run_dir = tmp_path / "m"
    rng = random.Random(SEED + 2)
    argv_secrets = {"hf": "hf_" + _token(rng, ALNUM, 34), "key": _token(rng, ALNUM, 40),
                    "pw": "pw-" + _token(rng, ALNUM, 12), "aws": AWS_DOC_EXAMPLE}
    bare = [k for drawn in keys(N_KEYS, SEED + 3).values() for k in drawn]
    # the shapes' command lines (-pPW, -u user:PW, --pw PW, a PEM block one line an
    # argument) and texts (an Authorization header, a redis URL, ...) as arguments
    shaped = [a for shape in shapes(SEED + 6).values()
              for a in (shape.argv or ([shape.text] if shape.text else []))]
    cmd = [sys.executable, "-c", "import sys; sys.exit(3)",
           "--hf-token", argv_secrets["hf"], f"--api-key={argv_secrets['key']}",
           f"WANDB_API_KEY={secret_env['WANDB_API_KEY']}", "--password", argv_secrets["pw"],
           argv_secrets["aws"], *shaped, *bare]
    res = cli_run("measure", "--out", str(run_dir), "--idle-seconds", "0", "--", *cmd,
                  env=secret_env)
    assert res.returncode == 3, res.stderr  # the command's status, passed through
    (run_dir / "console.log").write_text(res.stdout + res.stderr)
    assert (run_dir / "report.json").exists() and (run_dir / "config.yaml").exists()
    index = KeyIndex(_secret_values(secret_env) + list(argv_secrets.values()) + bare
                     + _shape_secrets(SEED + 6))
    assert not _leaks(run_dir, index)
    config = (run_dir / "config.yaml").read_text()
    assert "--hf-token" in config and "<redacted>" in config  # recorded, redacted
    argv = json.loads((run_dir / "environment.json").read_text())["command"]["argv"]
    assert len(argv) >= len(bare)  # the command line is there, every key redacted


def test_no_secret_echoed_when_run_refuses_its_command_line(tmp_path):
    """`distillmeter run` takes no free arguments; keys pasted after the config are refused,
    and click's message, which quotes what it could not parse, is redacted: N_KEYS keys of
    each alphabet appear in no byte of the console output."""
    config = write_config(tmp_path / "tiny.yaml", TINY_RUN)
    bare = [k for drawn in keys(N_KEYS, SEED + 4).values() for k in drawn]
    # after `--` click quotes them all; without it, a key that starts with "-" is taken
    # for an option, and the refusal quotes that
    dashed = next(k for k in bare if k.startswith("--")) if any(
        k.startswith("--") for k in bare) else "--" + bare[0]
    for args, said in (([ "--", *bare], "unexpected extra argument"),
                       ([dashed, *bare], "No such option")):
        res = cli_run("run", str(config), "--out", str(tmp_path / "runs"), *args)
        assert res.returncode == 2
        assert said in res.stderr and "<redacted>" in res.stderr, res.stderr[:300]
        (tmp_path / "console.log").write_text(res.stdout + res.stderr)
        assert not _leaks(tmp_path, KeyIndex([*bare, dashed])), said
        assert not (tmp_path / "runs").exists()  # refused before any work
