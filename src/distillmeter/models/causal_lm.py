"""Loading Hugging Face causal LMs from local files, and checking teacher/student pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from distillmeter.errors import UserError

_DTYPES = {
    "auto": "auto",
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


# a saved tokenizer has at least one of these (fast: tokenizer.json; slow: its vocabulary)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json",
                   "vocab.txt", "spiece.model")


def _dtype(dtype: str | torch.dtype) -> Any:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise UserError(
            f"unknown dtype {dtype!r}; use one of {', '.join(_DTYPES)}"
        ) from None


def load_causal_lm(
    path_or_id: str | Path,
    *,
    dtype: str | torch.dtype = "auto",
    device: str = "cpu",
    device_map: str | dict | None = None,
) -> tuple[Any, PreTrainedTokenizerBase]:
    """(model, tokenizer) from a local directory or a hub id already in the local cache.

    Never downloads (``local_files_only=True``). A missing model is a UserError that says
    what to fetch. The model is returned in eval mode on ``device``; a tokenizer without a
    pad token gets its EOS token as pad (batched generation needs one). ``device_map``
    (e.g. ``"auto"``, needs accelerate) places the model itself, and ``device`` is then
    not used."""
    torch_dtype = _dtype(dtype)
    target = str(path_or_id)
    path = Path(target).expanduser()
    looks_like_path = path.exists() or target.startswith((".", "/", "~")) or target.count("/") > 1
    if looks_like_path and not path.is_dir():
        raise UserError(f"model directory {target!r} does not exist (or is not a directory)")
    if looks_like_path and not (path / "config.json").is_file():
        raise UserError(
            f"{target!r} has no config.json: not a Hugging Face model directory "
            "(save one with model.save_pretrained(dir) and tokenizer.save_pretrained(dir))"
        )
    if looks_like_path and not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise UserError(
            f"cannot load a causal LM from {target!r}: no tokenizer files in it (one of "
            f"{', '.join(TOKENIZER_FILES)}; save one with tokenizer.save_pretrained(dir))")
    source = str(path) if looks_like_path else target
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        placement = {} if device_map is None else {"device_map": device_map}
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=torch_dtype, local_files_only=True, **placement
        )
    except ImportError as e:  # a library the checkpoint's files need (protobuf, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load a causal LM from {source!r}: a library it needs is "
                        f"missing: {first}") from e
    except (OSError, ValueError) as e:
        if looks_like_path:
            raise UserError(f"cannot load a causal LM from {source!r}: {e}") from e
        raise UserError(
            f"model {source!r} is not in the local Hugging Face cache and distillmeter never "
            f"downloads; fetch it first with `huggingface-cli download {source}` "
            f"(or pass a local directory: there is no directory {source!r} here). "
            f"Loader said: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from e
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if device_map is None:
        model.to(device)
    model.eval()
    return model, tokenizer


_PROBE = "The quick brown fox: 347 + 85 = 432.\n  def f(x):\treturn x**2  # ok?"


def check_tokenizers_compatible(
    teacher_tok: PreTrainedTokenizerBase,
    student_tok: PreTrainedTokenizerBase,
    teacher_vocab: int,
    student_vocab: int,
) -> int:
    """The vocabulary size to slice both models' logits to for logit distillation.

    Teacher and student must share a vocabulary: the same token for every id (the models'
    embedding matrices may be padded past it with unused rows, which is why the answer can
    be smaller than ``teacher_vocab``/``student_vocab``, the models' logit widths). Raises
    UserError naming the first differing tokens otherwise."""
    t_vocab, s_vocab = teacher_tok.get_vocab(), student_tok.get_vocab()
    t_by_id = {i: tok for tok, i in t_vocab.items()}
    s_by_id = {i: tok for tok, i in s_vocab.items()}
    diffs = []
    for i in sorted(set(t_by_id) | set(s_by_id)):
        if t_by_id.get(i) != s_by_id.get(i):
            diffs.append(f"id {i}: teacher {t_by_id.get(i)!r} vs student {s_by_id.get(i)!r}")
            if len(diffs) == 5:
                break
    if diffs:
        raise UserError(
            f"teacher and student tokenizers differ ({len(t_vocab)} vs {len(s_vocab)} tokens); "
            "logit distillation needs a shared vocabulary. First differences: "
            + "; ".join(diffs)
        )
    t_ids = teacher_tok(_PROBE, add_special_tokens=True)["input_ids"]
    s_ids = student_tok(_PROBE, add_special_tokens=True)["input_ids"]
    if list(t_ids) != list(s_ids):
        raise UserError(
            "teacher and student tokenizers share a vocabulary but split text differently "
            f"(probe {_PROBE[:30]!r}...: teacher {list(t_ids)[:12]} vs student "
            f"{list(s_ids)[:12]}); use the same tokenizer for both"
        )
    shared = max(t_by_id) + 1 if t_by_id else 0
    for who, width in (("teacher", teacher_vocab), ("student", student_vocab)):
        if width < shared:
            raise UserError(
                f"the {who} model's vocabulary ({width} logits) is smaller than its "
                f"tokenizer's ({shared} ids); the checkpoint and tokenizer do not match"
            )
    return shared


def count_params(model: torch.nn.Module, *, exclude_embeddings: bool = False) -> int:
    """Number of parameters (tied weights counted once). With ``exclude_embeddings``, the
    input embedding (and a tied output head) are left out."""
    total = sum(p.numel() for p in model.parameters())
    if exclude_embeddings and hasattr(model, "get_input_embeddings"):
        total -= model.get_input_embeddings().weight.numel()
        out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if out is not None and out.weight is not model.get_input_embeddings().weight:
            total -= out.weight.numel()
    return total
