"""A run's models as loaded: a fresh tiny Llama from its ``arch`` (initialised from a seed)
or a Hugging Face checkpoint, float32 weights when trained (forward passes under autocast
to the compute dtype), and checkpoints written and read back as safetensors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from distillmeter.errors import writing
from distillmeter.models.checkpoints import compute_dtype, model_source
from distillmeter.models.config import ModelConfig


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    max_len: int
    autocast: torch.dtype | None = None  # forward passes under autocast to this dtype


def build_model(mcfg: ModelConfig, tokenizer, *, seed: int, device: str, role: str = "student",
                trainable: bool = True) -> LoadedModel:
    """A fresh tiny Llama from ``mcfg.arch`` (initialised from ``seed``), or a Hugging Face
    checkpoint (``mcfg.path`` or ``mcfg.hub_id`` from the local cache, with its own
    tokenizer). A model to be ``trainable`` keeps float32 weights and runs under autocast
    to the compute dtype; one only run is loaded in the compute dtype
    (``checkpoints.compute_dtype``)."""
    from distillmeter.models.causal_lm import load_causal_lm
    from distillmeter.models.tiny import TinyModelSpec, build_llama

    dtype = compute_dtype(mcfg, device)
    mixed = dtype if trainable and dtype != torch.float32 else None
    if mcfg.is_checkpoint:
        model, tok = load_causal_lm(model_source(mcfg, role),
                                    dtype=torch.float32 if trainable else dtype,
                                    device=device, device_map=mcfg.device_map)
        max_len = mcfg.max_len or int(getattr(model.config, "max_position_embeddings", 2048))
        loaded = LoadedModel(model, tok, max_len, mixed)
    else:
        spec = TinyModelSpec(**mcfg.arch.model_dump())
        model = build_llama(spec, tokenizer, seed=seed).to(device=device,
                                                            dtype=torch.float32 if trainable
                                                            else dtype)
        loaded = LoadedModel(model, tokenizer, spec.max_len, mixed)
    if trainable and mcfg.gradient_checkpointing:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x's name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        model.config.use_cache = False  # the KV cache does nothing in training; HF warns
    return loaded


def save_checkpoint(model: torch.nn.Module, tokenizer, folder: Path) -> None:
    """``save_pretrained`` (safetensors) for the model and its tokenizer. A disk that is
    full or read-only raises OutputError naming the folder (a folder left half-written has
    no manifest, so nothing takes it for a checkpoint)."""
    folder = Path(folder)
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)


def load_checkpoint(folder: Path, device: str, mcfg: ModelConfig | None = None) -> LoadedModel:
    """A checkpoint written by ``save_checkpoint`` (safetensors: no pickle is read), float32
    weights, run under autocast to ``mcfg``'s compute dtype; ``max_len`` from ``mcfg``."""
    from distillmeter.models.causal_lm import load_causal_lm

    model, tok = load_causal_lm(Path(folder).resolve(), dtype="float32", device=device)
    max_len = int(model.config.max_position_embeddings)
    mixed = None
    if mcfg is not None:
        max_len = mcfg.max_len or (mcfg.arch.max_len if mcfg.arch is not None else max_len)
        dtype = compute_dtype(mcfg, device)
        mixed = dtype if dtype != torch.float32 else None
    return LoadedModel(model, tok, max_len, mixed)


def vocab_width(model: torch.nn.Module) -> int:
    """The model's number of logits."""
    return int(model.get_output_embeddings().weight.shape[0])
