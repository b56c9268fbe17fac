"""Where a checkpoint comes from (a local directory, or a hub id found in the local Hugging
Face cache; never downloaded at run time), its tokenizer, and the dtype its forward
passes run in."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from distillmeter.errors import UserError
from distillmeter.models.config import ModelConfig
from distillmeter.paths import resolve_path

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, from the environment at call time (``HF_HUB_CACHE``, else
    ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def model_source(mcfg: ModelConfig, role: str) -> Path:
    """The local directory a checkpoint loads from. ``path`` must be a model directory;
    ``hub_id`` must already be in the local cache (a UserError says what to fetch)."""
    if mcfg.path is not None:
        path = resolve_path(mcfg.path)
        if not path.is_dir():
            raise UserError(f"{role}.model.path: {path} is not a directory")
        if not (path / "config.json").is_file():
            raise UserError(f"{role}.model.path: {path} has no config.json (not a Hugging "
                            "Face model directory)")
        return path
    if mcfg.hub_id is None:
        raise ValueError(f"{role} is a built-in model, not a checkpoint")
    from huggingface_hub import snapshot_download

    cache = hub_cache_dir()
    rev = f" --revision {mcfg.revision}" if mcfg.revision else ""
    try:
        folder = Path(snapshot_download(mcfg.hub_id, revision=mcfg.revision, cache_dir=cache,
                                        local_files_only=True))
    except Exception as exc:  # not cached (LocalEntryNotFoundError), a bad id, ...
        raise UserError(
            f"{role}.model.hub_id: {mcfg.hub_id!r} is not in the local Hugging Face cache "
            f"({cache}) and distillmeter never downloads at run time. Fetch it first on a "
            f"machine with network: `hf download {mcfg.hub_id}{rev}` (older huggingface_hub: "
            f"`huggingface-cli download {mcfg.hub_id}{rev}`), then run here with HF_HOME or "
            f"HF_HUB_CACHE pointing at that cache, or give model.path. "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    if not (folder / "config.json").is_file():
        raise UserError(f"{role}.model.hub_id: the cached snapshot {folder} has no config.json "
                        f"(an incomplete download?); fetch it again: hf download {mcfg.hub_id}")
    return folder


def compute_dtype(mcfg: ModelConfig, device: str) -> torch.dtype:
    """The dtype forward passes run in. ``auto``: bfloat16 on a GPU for a checkpoint,
    float32 otherwise (built-in tiny models and CPU runs)."""
    if mcfg.dtype != "auto":
        return _DTYPES[mcfg.dtype]
    if mcfg.is_checkpoint and device.startswith("cuda"):
        return torch.bfloat16
    return torch.float32


def dtype_bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def load_tokenizer(source: Path):
    """A checkpoint's tokenizer from its directory (pad token: EOS when it has none)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise UserError(f"{source}: cannot load its tokenizer ({str(exc).splitlines()[0]})"
                        ) from None
    if tok.pad_token_id is None and tok.eos_token_id is not None:
        tok.pad_token = tok.eos_token
    return tok


def tokenizer_id_space(tokenizer) -> int:
    """How many token ids the tokenizer uses (its largest id + 1)."""
    return max(tokenizer.get_vocab().values()) + 1


def shared_vocab(tokenizer, model: torch.nn.Module) -> int:
    """The logits both models are compared on: the tokenizer's ids, without the padding
    rows a checkpoint's embedding matrix may have past them."""
    width = int(model.get_output_embeddings().weight.shape[0])
    return min(width, tokenizer_id_space(tokenizer))
