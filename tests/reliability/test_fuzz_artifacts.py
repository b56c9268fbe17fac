"""Fuzzing what a run reads back from disk besides the ledger: config YAML, the logit
cache (shard bytes and manifest), the synthetic data, and the run lock file. The property:
a valid result or the module's documented error (UserError for configs, ArtifactError for
artifacts, UserError for a lock it cannot take), never another exception; and a corrupted
artifact is never used."""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

import torch
import yaml
from hypothesis import event, example, given
from hypothesis import strategies as st
from reliability_support import TINY_RUN, fuzz_settings

from distillmeter.errors import UserError
from distillmeter.pipelines import artifacts
from distillmeter.pipelines.artifacts import ArtifactError
from distillmeter.pipelines.config import RunConfig
from distillmeter.pipelines.config_file import load_config
from distillmeter.storage.runlock import LOCK_FILE, RunLock

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**65), 2**65),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=10))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)


def _clear(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> None:
    event(f"error {type(exc).__name__}")
    assert isinstance(exc, kinds), f"{type(exc).__name__}: {exc}"
    assert str(exc).strip()


def _mutate(draw, data):
    """Replace, delete or add a value somewhere inside nested dicts/lists."""
    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(1, 3))):
        node = data
        for _ in range(draw(st.integers(0, 4))):
            keys = (sorted(node, key=str) if isinstance(node, dict) else list(range(len(node)))
                    if isinstance(node, list) else [])
            if not keys:
                break
            k = draw(st.sampled_from(keys))
            if not isinstance(node[k], (dict, list)):
                break
            node = node[k]
        if isinstance(node, dict):
            keys = sorted(node, key=str)
            action = draw(st.integers(0, 2))
            if action == 0 and keys:
                del node[draw(st.sampled_from(keys))]
            elif action == 1 and keys:
                node[draw(st.sampled_from(keys))] = draw(json_values)
            else:
                node[draw(st.text(max_size=8))] = draw(json_values)
        elif isinstance(node, list) and node:
            node[draw(st.integers(0, len(node) - 1))] = draw(json_values)
    return data


# --------------------------------------------------------------------------- config YAML
_BASE = [RunConfig().resolved(), copy.deepcopy(TINY_RUN)]
HOSTILE_YAML = [
    "!!python/object/apply:os.system ['echo pwned']",
    "task: !!python/name:os.system",
    "a: &a [1, 2]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b]\n"
    "d: &d [*c, *c, *c, *c, *c, *c, *c]\nmethods: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
    "seeds: 1e999", "seeds: .nan", "threads: -1", "\t: x", "methods: {}", "- 1\n- 2",
    "task:\n  name: arithmetic\n  name: other\n", "\ufeffseeds: 2", "seeds: 0x10",
]


@st.composite
def config_text(draw) -> str:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.text(max_size=200))
    if kind == 1:
        return draw(st.sampled_from(HOSTILE_YAML))
    data = _mutate(draw, draw(st.sampled_from(_BASE)))
    return yaml.safe_dump(data, allow_unicode=True)


@fuzz_settings(250)
@given(config_text())
@example(HOSTILE_YAML[0])
@example(HOSTILE_YAML[2])
def test_config_yaml_loads_or_fails_clearly(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            cfg = load_config(path)
        except Exception as exc:  # noqa: BLE001 - the property is about the exception type
            _clear(exc, (UserError,))
            return
        event("valid config")
        assert isinstance(cfg, RunConfig)
        assert RunConfig.model_validate(cfg.resolved()) == cfg  # round-trips


@fuzz_settings(150)
@given(st.binary(max_size=300))
def test_config_bytes(blob):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_bytes(blob)
        try:
            load_config(path)
        except Exception as exc:  # noqa: BLE001
            _clear(exc, (UserError,))


# --------------------------------------------------------------------------- logit cache
@functools.lru_cache(maxsize=1)
def _real_cache() -> tuple[Path, object]:
    """A logit cache written by the real writer with a tiny model (3 shards), and the
    sequences it was built over."""
    from distillmeter.models import build_char_tokenizer
    from distillmeter.models.build import build_model
    from distillmeter.pipelines.config import ArchConfig, ModelConfig
    from distillmeter.pipelines.data import encode_pairs
    from distillmeter.pipelines.logit_cache import write_cache
    from distillmeter.tasks import load_task

    data = load_task("arithmetic", seed=0, n_labelled=10, n_pool=4, n_test=2, n_teacher=4)
    tok = build_char_tokenizer(data.task.alphabet)
    arch = ArchConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=32)
    model = build_model(ModelConfig(arch=arch), tok, seed=0, device="cpu").model
    seqs = encode_pairs(tok, [(e.prompt, e.target) for e in data.labelled], 32)
    folder = Path(tempfile.mkdtemp(prefix="fuzz-cache-")) / "logits-abc"
    write_cache(folder, model, seqs, key_hash="abc", top_k=4, vocab_size=len(tok),
                pad_id=tok.pad_token_id, batch_size=4, shard_sequences=4)
    return folder, seqs


def _copy_cache(tmp: str) -> Path:
    src, _ = _real_cache()
    dst = Path(tmp) / src.name
    shutil.copytree(src, dst)
    return dst


def _use(folder: Path, *, verify: bool = True) -> None:
    """Load the cache as a student does and gather every sequence's rows."""
    from distillmeter.pipelines.logit_cache import LogitCache

    _, seqs = _real_cache()
    cache = LogitCache(folder, expect_sequences=seqs, verify=verify)
    for i in range(len(seqs)):
        v, idx = cache.gather([i])
        assert v.shape == idx.shape and v.shape[0] == seqs.n_loss_positions(i)
        assert int(idx.min()) >= 0 and int(idx.max()) < cache.manifest.info["vocab_size"]


@st.composite
def mutated_bytes(draw, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 3))
        at = draw(st.integers(0, max(0, len(b) - 1)))
        if op == 0 and b:
            b[at] ^= draw(st.integers(1, 255))
        elif op == 1:
            del b[at: at + draw(st.integers(1, 64))]
        elif op == 2:
            b[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            b = b[: at]
    return bytes(b)


@fuzz_settings(150)
@given(st.data())
def test_a_corrupted_shard_is_never_used(data):
    """Any change to a shard's bytes: the checksum catches it before anything reads it."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = _copy_cache(tmp)
        shard = data.draw(st.sampled_from(sorted(folder.glob("shard-*.safetensors"))))
        before = shard.read_bytes()
        after = data.draw(mutated_bytes(before))
        shard.write_bytes(after)
        try:
            _use(folder)
        except Exception as exc:  # noqa: BLE001
            _clear(exc, (ArtifactError,))
            return
        assert after == before, "a corrupted shard was used"


@fuzz_settings(250)
@given(st.data())
def test_shard_bytes_that_match_their_manifest_load_or_fail_clearly(data):
    """A shard whose bytes are wrong but whose manifest was rewritten to match (so the
    checksum passes, as after a buggy writer or a deliberate edit): the reader itself must
    refuse it with ArtifactError, never hand a student rows that do not fit."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = _copy_cache(tmp)
        shard = data.draw(st.sampled_from(sorted(folder.glob("shard-*.safetensors"))))
        shard.write_bytes(data.draw(st.one_of(mutated_bytes(shard.read_bytes()),
                                              st.binary(max_size=64))))
        manifest = json.loads((folder / "manifest.json").read_text())
        entry = artifacts.file_entry(shard).model_dump()
        manifest["files"][shard.name] = entry
        for s in manifest["info"]["shards"]:
            if s["file"] == shard.name:
                s.update(entry)
        (folder / "manifest.json").write_text(json.dumps(manifest))
        try:
            _use(folder)
        except Exception as exc:  # noqa: BLE001
            _clear(exc, (ArtifactError,))


@fuzz_settings(250)
@given(st.data())
@example(None)
def test_a_fuzzed_manifest_loads_or_fails_clearly(data):
    with tempfile.TemporaryDirectory() as tmp:
        folder = _copy_cache(tmp)
        manifest = json.loads((folder / "manifest.json").read_text())
        if data is None:  # a shard path that leaves the artifact folder
            manifest["info"]["shards"][0]["file"] = "../../etc/passwd"
            text = json.dumps(manifest)
        elif data.draw(st.integers(0, 5)):
            text = json.dumps(_mutate(data.draw, manifest))
        else:
            text = data.draw(st.text(max_size=100))
        (folder / "manifest.json").write_text(text)
        for verify in (True, False):
            try:
                _use(folder, verify=verify)
            except Exception as exc:  # noqa: BLE001
                _clear(exc, (ArtifactError,))


@functools.lru_cache(maxsize=1)
def _real_synthetic() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="fuzz-synth-")) / "synthetic-abc"
    folder.mkdir()
    rows = [{"prompt": f"{i}+{i}=", "completion": str(2 * i), "kept": i % 3 > 0,
             "correct": None} for i in range(6)]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    artifacts.write_manifest(folder, artifacts.ArtifactManifest(
        kind="synthetic", hash="abc", stage="teacher.generate", info={"n_prompts": 6}))
    return folder


@fuzz_settings(300)
@given(st.data())
def test_synthetic_data_reads_or_fails_clearly(data):
    """data.jsonl fuzzed, with its manifest kept (checksum fails) or rewritten to match."""
    from distillmeter.pipelines.synthetic import read_synthetic

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "synthetic-abc"
        shutil.copytree(_real_synthetic(), folder)
        path = folder / "data.jsonl"
        before = path.read_bytes()
        after = data.draw(st.one_of(mutated_bytes(before), st.binary(max_size=80),
                                    st.text(max_size=80).map(str.encode)))
        path.write_bytes(after)
        matched = data.draw(st.booleans())
        if matched:
            artifacts.write_manifest(folder, artifacts.read_manifest(folder))
        try:
            pairs = read_synthetic(folder)
        except Exception as exc:  # noqa: BLE001
            _clear(exc, (ArtifactError,))
            return
        assert matched or after == before, "corrupted synthetic data was used"
        assert all(isinstance(p, str) and isinstance(c, str) for p, c in pairs)


# --------------------------------------------------------------------------- the run lock
@fuzz_settings(300)
@given(st.one_of(json_values.map(json.dumps), st.text(max_size=60),
                 st.fixed_dictionaries({"pid": scalars, "host": st.sampled_from(
                     [socket.gethostname(), "elsewhere", ""]), "started": scalars,
                     "started_iso": scalars}).map(json.dumps)))
@example(json.dumps([1, 2]))
@example(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": 1.0}))
def test_a_lock_file_with_any_content_is_taken_over_or_refused_clearly(text):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / LOCK_FILE).write_text(text)
        lock = RunLock(tmp)
        try:
            note = lock.acquire("fuzz")
        except Exception as exc:  # noqa: BLE001
            _clear(exc, (UserError,))
            return
        event("taken over")
        assert note and "stale" in note
        lock.release()
        assert not (Path(tmp) / LOCK_FILE).exists()
        torch.set_num_threads(torch.get_num_threads())  # (keeps torch imported for the cache)
