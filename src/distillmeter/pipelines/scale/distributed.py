"""Student training across processes: the process group, DDP/FSDP, and data shards.

Launched by ``torchrun`` or ``accelerate launch`` (WORLD_SIZE > 1), every rank builds the
same data and the same global batches from the same seeds, and trains on its shard of each
(rows ``rank, rank + world, ...``: deterministic, like ``DistributedSampler`` without
padding). Each rank's loss is weighted by its shard's share of the batch's learned
positions, so the gradient DDP/FSDP average is exactly the single-process batch's: the
method, not the world size, decides what is learned. The token budget counts the global
batch, which every rank knows, so every rank stops at the same step with no extra sync.

``Distributed.single()`` is the one-process no-op that every call site uses otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch

from distillmeter.energy.ranks import RankInfo
from distillmeter.errors import UserError
from distillmeter.pipelines.config import DistributedConfig
from distillmeter.pipelines.data import Batch


@dataclass
class Distributed:
    """This process's place in the job and the collectives the pipelines use."""

    info: RankInfo = field(default_factory=RankInfo)
    strategy: str = "ddp"
    backend: str | None = None
    device: str = "cpu"
    wait_group: Any = None  # gloo, long timeout: rank 0's solo work, object messages

    @classmethod
    def single(cls) -> Distributed:
        return cls()

    @classmethod
    def init(cls, cfg: DistributedConfig, device: str, info: RankInfo | None = None
             ) -> Distributed:
        """Join the job the environment describes (a no-op for one process): set this
        rank's CUDA device, start the process group (nccl on CUDA, gloo on CPU) and a gloo
        group for waiting."""
        info = info or RankInfo.from_env()
        if not info.distributed:
            return cls(info, cfg.strategy, None, device)
        import torch.distributed as dist

        if device.startswith("cuda"):
            n = torch.cuda.device_count()
            if n == 1:
                index = 0  # the launcher pinned this rank to its GPU
            elif info.local_rank < n:
                index = info.local_rank
            else:
                raise UserError(f"rank {info.rank} (local rank {info.local_rank}) sees {n} "
                                "GPUs: fewer than the ranks on its node (set "
                                "CUDA_VISIBLE_DEVICES or --nproc_per_node to match)")
            torch.cuda.set_device(index)
            device = f"cuda:{index}"
        backend = cfg.backend if cfg.backend != "auto" else (
            "nccl" if device.startswith("cuda") else "gloo")
        if not dist.is_initialized():
            dist.init_process_group(backend, timeout=timedelta(seconds=cfg.timeout_s))
        wait = dist.new_group(backend="gloo", timeout=timedelta(seconds=cfg.wait_timeout_s))
        return cls(info, cfg.strategy, backend, device, wait)

    # -- who we are
    @property
    def world_size(self) -> int:
        return self.info.world_size

    @property
    def rank(self) -> int:
        return self.info.rank

    @property
    def is_main(self) -> bool:
        return self.info.rank == 0

    @property
    def active(self) -> bool:
        return self.info.distributed

    # -- waiting and messages (on the gloo group: CPU, long timeout)
    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier(group=self.wait_group)

    def broadcast(self, obj: Any = None) -> Any:
        """Rank 0's ``obj`` on every rank (pickled; small things: jobs, results)."""
        if not self.active:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.wait_group)
        return box[0]

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (float64 on the CPU group)."""
        if not self.active:
            return list(values)
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t, group=self.wait_group)
        return t.tolist()

    def close(self) -> None:
        if self.active:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    # -- training
    def shard(self, batch: Batch) -> tuple[Batch, float]:
        """This rank's rows of a global batch and its loss weight: ``world x`` its share of
        the batch's learned positions (1 alone), so the averaged gradient is the batch's.
        A rank left without rows (a last partial batch smaller than the world) runs one row
        with weight 0, so it still joins the gradient all-reduce."""
        if not self.active:
            return batch, 1.0
        rows = list(range(self.rank, len(batch.index), self.world_size))
        weight = 1.0
        if not rows:
            rows, weight = [0], 0.0
        mine = Batch([batch.index[r] for r in rows], batch.input_ids[rows],
                     batch.attention_mask[rows], batch.loss_mask[rows])
        if weight:
            total = int(batch.loss_mask.sum())
            weight = self.world_size * int(mine.loss_mask.sum()) / max(1, total)
        return mine, weight

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module to train: ``model`` alone, in DDP, or sharded by FSDP (in place)."""
        if not self.active:
            return model
        if self.strategy == "fsdp":
            from torch.distributed.fsdp import fully_shard

            # one unit per decoder layer, then the rest (embeddings, norm, head) at the root
            for layer in _decoder_layers(model):
                fully_shard(layer)
            return fully_shard(model)
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [torch.device(self.device).index] if self.device.startswith("cuda") else None
        return DDP(model, device_ids=ids)

    @contextlib.contextmanager
    def grad_sync(self, net: torch.nn.Module, sync: bool) -> Iterator[None]:
        """Skip the gradient all-reduce on all but the last micro-batch of a step."""
        if not self.active or sync:
            yield
        elif self.strategy == "fsdp":
            net.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                net.set_requires_gradient_sync(True)
        else:
            with net.no_sync():
                yield

    def trained_model(self, net: torch.nn.Module, model: torch.nn.Module
                      ) -> torch.nn.Module | None:
        """The trained model as a plain module for saving and evaluating on rank 0. DDP
        trained ``model`` itself; FSDP's shards are gathered into a fresh copy on rank 0
        (a collective: every rank calls it; the others get None)."""
        if not self.active or self.strategy != "fsdp":
            return model
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
        )

        full = get_model_state_dict(net, options=StateDictOptions(full_state_dict=True,
                                                                  cpu_offload=True))
        if not self.is_main:
            return None
        with torch.device("meta"):
            plain = type(model)(model.config)
        plain = plain.to_empty(device="cpu")
        plain.load_state_dict(full, strict=False)
        if hasattr(plain, "tie_weights"):
            plain.tie_weights()  # to_empty gave the tied tensors separate storage
        missing = set(plain.state_dict()) - set(full)
        tied = {k for k in missing if k.endswith("lm_head.weight")}
        if missing - tied:
            raise RuntimeError(f"FSDP gather lost parameters: {sorted(missing - tied)[:5]}")
        return plain.to(self.device).eval()


def _decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks of a Hugging Face causal LM (``model.model.layers`` for
    Llama/Qwen/Mistral, ``transformer.h`` for GPT-2 style)."""
    for path in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        obj: Any = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.ModuleList):
            return list(obj)
    return []
