"""Synthetic data (stage ``teacher.generate``): the teacher answers the prompt pool, an
optional verifier keeps the answers the task can check as correct, and the kept pairs become
training data for the student.

On disk, ``artifacts/synthetic-<hash>/``: ``data.jsonl`` (one line per prompt: prompt,
completion, kept, and the verifier's verdict), ``manifest.json`` with the fraction kept, the
sampling settings and the token counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from distillmeter.errors import writing
from distillmeter.pipelines import artifacts
from distillmeter.pipelines.artifacts import ArtifactError, ArtifactManifest
from distillmeter.pipelines.config import GenerationConfig

KIND = "synthetic"
DATA_FILE = "data.jsonl"


@dataclass
class SyntheticResult:
    n_prompts: int
    n_kept: int
    prompt_tokens: int
    new_tokens: int
    manifest: ArtifactManifest

    @property
    def kept_fraction(self) -> float:
        return self.n_kept / self.n_prompts if self.n_prompts else 0.0


def make_backend(cfg: GenerationConfig, model, tokenizer, device: str):
    """The generation backend named in the config (a small interface: more can come)."""
    from distillmeter.engines.generation import TransformersBackend

    if cfg.backend == "transformers":
        return TransformersBackend(model, tokenizer, device)
    if cfg.backend == "vllm":
        import warnings

        from distillmeter.engines import make_generation_backend

        # vLLM loads the teacher itself, from the directory it was loaded from
        backend, line = make_generation_backend(
            "vllm", model=model, tokenizer=tokenizer, device=device,
            model_path=getattr(model, "name_or_path", None) or None)
        if backend.name != "vllm":
            warnings.warn(line, stacklevel=2)
        return backend
    raise ValueError(f"unknown generation backend {cfg.backend!r}")  # config rejects it first


def generate_synthetic(folder: Path, model, tokenizer, task, prompts: list[str],
                       cfg: GenerationConfig, *, device: str, key_hash: str, seed: int,
                       stage: str = "teacher.generate", run_id: str | None = None,
                       on_batch=None) -> SyntheticResult:
    """Answer ``prompts`` with the teacher, filter with the verifier when ``cfg.verify``,
    and write the artifact."""
    if cfg.n_prompts is not None:
        prompts = prompts[: cfg.n_prompts]
    backend = make_backend(cfg, model, tokenizer, device)
    gens = backend.generate(prompts, max_new_tokens=cfg.max_new_tokens,
                            temperature=cfg.temperature, top_p=cfg.top_p,
                            batch_size=cfg.batch_size, seed=seed, on_batch=on_batch)
    folder = Path(folder)
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
    n_kept = 0
    with writing(folder / DATA_FILE), open(folder / DATA_FILE, "w", encoding="utf-8") as f:
        for g in gens:
            correct = bool(task.check(g.prompt, g.completion)) if cfg.verify else None
            # without a verifier every non-empty answer is kept
            kept = correct if cfg.verify else bool(g.completion.strip())
            n_kept += kept
            f.write(json.dumps({"prompt": g.prompt, "completion": g.completion,
                                "kept": kept, "correct": correct}) + "\n")
    info = {"n_prompts": len(gens), "n_kept": n_kept,
            "kept_fraction": n_kept / len(gens) if gens else 0.0,
            "prompt_tokens": sum(g.prompt_tokens for g in gens),
            "new_tokens": sum(g.new_tokens for g in gens),
            "backend": backend.name, "generation": cfg.model_dump(mode="json")}
    manifest = artifacts.write_manifest(folder, ArtifactManifest(
        kind=KIND, hash=key_hash, stage=stage, run_id=run_id, info=info))
    return SyntheticResult(len(gens), n_kept, info["prompt_tokens"], info["new_tokens"],
                           manifest)


def read_synthetic(folder: Path) -> list[tuple[str, str]]:
    """The kept (prompt, completion) pairs of a verified synthetic-data artifact."""
    artifacts.load_verified(folder)
    pairs = []
    path = Path(folder) / DATA_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable ({exc})") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        try:
            rec = json.loads(line)
            if rec["kept"]:
                pairs.append((str(rec["prompt"]), str(rec["completion"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{path}:{lineno}: bad record ({exc})") from None
    return pairs
