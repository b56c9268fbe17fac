"""The teacher's top-k logit cache (stage ``teacher.logits``).

The teacher runs once over a method's training sequences; for every learned position (the
positions the student's loss uses, see ``data.py``) it stores the top-k log-probabilities
(fp16 or bf16) and their token ids (int32). The tail mass, ``1 - sum(exp(values))``, is
recomputed by the loss, so it costs nothing to store.

On disk, ``artifacts/logits-<hash>/``::

    shard-00000.safetensors   values [P, k], indices [P, k] int32, offsets [n+1] int64
    shard-00001.safetensors   (one shard per ``shard_sequences`` sequences)
    manifest.json             sha256 of every shard, bytes per token, the sequences' hash

The manifest is rewritten after every shard (``complete: false`` until the last), so a
crashed cache resumes from its last verified shard instead of starting over.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from distillmeter.errors import writing
from distillmeter.pipelines import artifacts
from distillmeter.pipelines.artifacts import ArtifactError, ArtifactManifest
from distillmeter.pipelines.data import Sequences, collate
from distillmeter.storage.atomic import write_atomic

KIND = "logits"
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def _shard_name(i: int) -> str:
    return f"shard-{i:05d}.safetensors"


def cache_info(seqs: Sequences, *, top_k: int, vocab_size: int, dtype: str,
               shard_sequences: int) -> dict:
    """The manifest's description of a cache over ``seqs`` (``top_k`` capped at the
    vocabulary), before any shard is written."""
    return {"requested_top_k": top_k, "top_k": min(top_k, vocab_size),
            "vocab_size": vocab_size, "dtype": dtype, "temperature": 1.0,
            "positions": "learned (target tokens + EOS)", "n_sequences": len(seqs),
            "sequences_sha256": seqs.fingerprint(), "shard_sequences": shard_sequences,
            "shards": []}


def write_shard(folder: Path, name: str, values: torch.Tensor, indices: torch.Tensor,
                offsets: torch.Tensor, first: int, count: int) -> dict:
    """Write one cache shard atomically (tmp + rename) and return its manifest entry
    (sequence range, positions, size and sha256)."""
    write_atomic(folder / name, lambda tmp: save_file(
        {"values": values, "indices": indices, "offsets": offsets}, str(tmp),
        metadata={"first_sequence": str(first), "n_sequences": str(count)}), fsync=False)
    return {"file": name, "first": first, "count": count, "positions": int(offsets[-1]),
            **artifacts.file_entry(folder / name).model_dump()}


@torch.no_grad()
def topk_rows(teacher: torch.nn.Module, seqs: Sequences, index: list[int], *, k: int,
              vocab_size: int, batch_size: int, pad_id: int, dtype: torch.dtype,
              device: str | torch.device, on_batch: Callable[[int, int], None] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The teacher's top-k log-probs (T = 1) at the learned positions of sequences
    ``index``, in batches: ``(values [P, k] dtype, indices [P, k] int32, offsets [n+1])``,
    sequence j's rows being ``offsets[j]:offsets[j+1]``. What a cache shard holds, and what
    an on-policy round's ``teacher.score`` keeps. ``on_batch(tokens, sequences)`` after each
    batch."""
    from distillmeter.pipelines.losses import topk_logprobs

    values, indices, counts = [], [], []
    for start in range(0, len(index), batch_size):
        batch = collate(seqs, index[start : start + batch_size], pad_id).to(device)
        logits = teacher(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        learned = logits[:, :-1][batch.loss_mask][..., :vocab_size].float()
        v, i = topk_logprobs(learned, k)
        values.append(v.to(dtype).cpu())
        indices.append(i.to(torch.int32).cpu())
        counts.extend(int(n) for n in batch.loss_mask.sum(dim=1))
        if on_batch is not None:
            on_batch(batch.n_tokens, len(batch.index))
    offsets = torch.zeros(len(counts) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.tensor(counts, dtype=torch.int64), 0)
    return torch.cat(values), torch.cat(indices), offsets


def write_cache(folder: Path, teacher: torch.nn.Module, seqs: Sequences, *, key_hash: str,
                top_k: int, vocab_size: int, pad_id: int, dtype: str = "float16",
                batch_size: int = 64, shard_sequences: int = 1024,
                device: str | torch.device = "cpu", stage: str = "teacher.logits",
                run_id: str | None = None, resume_from: Path | None = None,
                on_batch: Callable[[int, int], None] | None = None) -> ArtifactManifest:
    """Write (or finish) the cache for ``seqs`` into ``folder``.

    Shards already in ``folder`` (or in ``resume_from``, an interrupted attempt's folder,
    copied over) whose sha256 matches their manifest entry are kept; the rest are computed.
    Returns the complete manifest. ``top_k`` is capped at ``vocab_size``."""
    info = cache_info(seqs, top_k=top_k, vocab_size=vocab_size, dtype=dtype,
                      shard_sequences=shard_sequences)
    teacher.eval()

    def shard(index: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return topk_rows(teacher, seqs, index, k=info["top_k"], vocab_size=vocab_size,
                         batch_size=batch_size, pad_id=pad_id, dtype=DTYPES[dtype],
                         device=device, on_batch=on_batch)

    return _write_shards(folder, seqs, info, shard, key_hash=key_hash, stage=stage,
                         run_id=run_id, resume_from=resume_from, on_batch=on_batch)


def _write_shards(folder: Path, seqs: Sequences, info: dict,
                  shard: Callable[[list[int]], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                  *, key_hash: str, stage: str, run_id: str | None, resume_from: Path | None,
                  on_batch: Callable[[int, int], None] | None) -> ArtifactManifest:
    """The shard loop both writers share: reusable shards kept, the others computed by
    ``shard(index) -> (values, indices, offsets)``, the manifest rewritten after each."""
    folder = Path(folder)
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
    shard_sequences = info["shard_sequences"]
    done = _reusable_shards(folder, resume_from, info)
    n_shards = (len(seqs) + shard_sequences - 1) // shard_sequences
    shards = []
    for s in range(n_shards):
        first = s * shard_sequences
        index = list(range(first, min(first + shard_sequences, len(seqs))))
        name = _shard_name(s)
        if name in done:
            shards.append(done[name])
            if on_batch is not None:
                on_batch(0, len(index))
        else:
            values, idx, offsets = shard(index)
            shards.append(write_shard(folder, name, values, idx, offsets, first, len(index)))
        info["shards"] = shards
        _write_manifest(folder, key_hash, stage, run_id, info, complete=s == n_shards - 1)
    if n_shards == 0:
        _write_manifest(folder, key_hash, stage, run_id, info, complete=True)
    return artifacts.read_manifest(folder)


def _write_manifest(folder: Path, key_hash: str, stage: str, run_id: str | None, info: dict,
                    complete: bool) -> None:
    positions = sum(s["positions"] for s in info["shards"])
    nbytes = sum(s["bytes"] for s in info["shards"])
    info["n_positions"] = positions
    info["bytes"] = nbytes
    # bytes per learned token: what the cache costs for each token the student learns from
    info["bytes_per_token"] = nbytes / positions if positions else None
    files = {s["file"]: {"sha256": s["sha256"], "bytes": s["bytes"]} for s in info["shards"]}
    manifest = ArtifactManifest(kind=KIND, hash=key_hash, complete=complete, stage=stage,
                                run_id=run_id, files=files, info=info)
    artifacts.write_atomic(folder / artifacts.MANIFEST, manifest.model_dump_json(indent=2))


def _reusable_shards(folder: Path, resume_from: Path | None, info: dict) -> dict[str, dict]:
    """Shards from an earlier attempt that belong to this very cache and verify."""
    done: dict[str, dict] = {}
    for source in [folder, resume_from]:
        if source is None or not (Path(source) / artifacts.MANIFEST).exists():
            continue
        try:
            old = artifacts.read_manifest(source)
        except ArtifactError:
            continue
        same = all(old.info.get(f) == info[f] for f in
                   ("top_k", "dtype", "sequences_sha256", "shard_sequences", "vocab_size"))
        if not same:
            continue
        for shard in old.info.get("shards", []):
            name, path = shard["file"], Path(source) / shard["file"]
            if name in done or not path.is_file():
                continue
            if artifacts.sha256_file(path) != shard["sha256"]:
                continue
            if Path(source) != folder:
                with writing(folder / name):
                    shutil.copy2(path, folder / name)
            done[name] = shard
    return done


class LogitCache:
    """A verified cache, loaded for training: ``gather(batch.index)`` returns the rows of a
    batch's learned positions in the order ``logits[:, :-1][batch.loss_mask]`` has them."""

    def __init__(self, folder: Path, *, expect_sequences: Sequences | None = None,
                 verify: bool = True):
        self.folder = Path(folder)
        self.manifest = (artifacts.load_verified(self.folder) if verify
                         else artifacts.read_manifest(self.folder))
        info = self.manifest.info
        if expect_sequences is not None and \
                info.get("sequences_sha256") != expect_sequences.fingerprint():
            raise ArtifactError(f"{self.folder}: the cache was built over other sequences "
                                "than this run trains on")
        try:
            shards, k, vocab = list(info["shards"]), int(info["top_k"]), int(info["vocab_size"])
            files = [str(sh["file"]) for sh in shards]
            counts = [int(sh["count"]) for sh in shards]
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{self.folder / artifacts.MANIFEST}: malformed shard list "
                                f"({type(exc).__name__}: {exc})") from None
        values, indices, starts = [], [], []
        base = 0
        for name, count in zip(files, counts, strict=True):
            if Path(name).name != name or name in ("", ".", ".."):
                raise ArtifactError(f"{self.folder / artifacts.MANIFEST}: shard file {name!r} "
                                    "is not a file name in the cache folder")
            path = self.folder / name
            try:
                t = load_file(str(path))
                v, i, off = t["values"], t["indices"], t["offsets"]
            except Exception as exc:  # safetensors raises several kinds on a bad file
                raise ArtifactError(f"{path}: unreadable shard ({exc})") from None
            _check_shard(path, v, i, off, count=count, k=k, vocab=vocab)
            values.append(v)
            indices.append(i)
            starts.append(off[:-1] + base)
            base += v.shape[0]
        self.values = torch.cat(values) if values else torch.zeros(0, 0)
        self.indices = torch.cat(indices) if indices else torch.zeros(0, 0, dtype=torch.int32)
        self.starts = torch.cat(starts) if starts else torch.zeros(0, dtype=torch.int64)
        self.ends = torch.cat([self.starts[1:], torch.tensor([base])]) if base else self.starts
        if expect_sequences is not None:
            # the rows must fit the sequences one to one, or training would misalign them
            want = torch.tensor([expect_sequences.n_loss_positions(j)
                                 for j in range(len(expect_sequences))], dtype=torch.int64)
            got = self.ends - self.starts
            if got.shape != want.shape or not torch.equal(got, want):
                raise ArtifactError(f"{self.folder}: the cache's rows do not match the "
                                    "positions of the sequences it claims to cover")

    @property
    def top_k(self) -> int:
        return int(self.manifest.info["top_k"])

    def __len__(self) -> int:
        return len(self.starts)

    def gather(self, index: list[int], device: str | torch.device = "cpu"):
        """Top-k (values, indices) of the learned positions of sequences ``index``."""
        rows = torch.cat([torch.arange(int(self.starts[i]), int(self.ends[i])) for i in index])
        return self.values[rows].to(device), self.indices[rows].to(device)


def _check_shard(path: Path, v: torch.Tensor, i: torch.Tensor, off: torch.Tensor, *,
                 count: int, k: int, vocab: int) -> None:
    """Refuse a shard whose tensors cannot be what write_cache wrote (a checksum only says
    the bytes are the ones the manifest names, not that they make sense)."""
    problem = None
    if v.dim() != 2 or v.shape != i.shape or v.shape[1] != k:
        problem = f"values {tuple(v.shape)} and indices {tuple(i.shape)} are not [positions, {k}]"
    elif v.dtype not in DTYPES.values() or i.dtype != torch.int32 or off.dtype != torch.int64:
        problem = f"unexpected dtypes ({v.dtype}, {i.dtype}, {off.dtype})"
    elif off.dim() != 1 or len(off) != count + 1 or int(off[0]) != 0 \
            or int(off[-1]) != v.shape[0] or bool((off[1:] < off[:-1]).any()):
        problem = "offsets do not index its positions in order"
    elif v.numel() and (int(i.min()) < 0 or int(i.max()) >= vocab):
        problem = f"token ids outside the vocabulary (0..{vocab - 1})"
    elif v.numel() and (bool(v.isnan().any()) or float(v.max()) > 1e-3):
        problem = "log-probabilities that are NaN or above 0"
    if problem:
        raise ArtifactError(f"{path}: shard tensors do not match their offsets: {problem}")


def write_cache_vllm(folder: Path, backend: Any, seqs: Any, *, key_hash: str,
                     top_k: int, vocab_size: int, dtype: str = "float16", batch_size: int = 64,
                     shard_sequences: int = 1024, stage: str = "teacher.logits",
                     run_id: str | None = None, resume_from: Path | None = None,
                     on_batch: Callable[[int, int], None] | None = None) -> ArtifactManifest:
    """``write_cache`` with vLLM's prompt log-probs (``engines.vllm.VllmBackend``) instead
    of a forward pass in torch: the same shards, manifest and resume rules (``LogitCache``
    reads the result). Returns the complete manifest."""
    info = cache_info(seqs, top_k=top_k, vocab_size=vocab_size, dtype=dtype,
                      shard_sequences=shard_sequences)
    info["engine"] = "vllm"

    def shard(index: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        parts = list(backend.topk_logprobs(seqs, index, k=info["top_k"], vocab_size=vocab_size,
                                           batch_size=batch_size, on_batch=on_batch))
        counts = torch.tensor([v.shape[0] for v, _ in parts], dtype=torch.int64)
        offsets = torch.zeros(len(parts) + 1, dtype=torch.int64)
        offsets[1:] = torch.cumsum(counts, 0)
        values = torch.cat([v for v, _ in parts]).to(DTYPES[dtype])
        return values, torch.cat([i for _, i in parts]).to(torch.int32), offsets

    return _write_shards(folder, seqs, info, shard, key_hash=key_hash, stage=stage,
                         run_id=run_id, resume_from=resume_from, on_batch=on_batch)
