"""The one training loop every method shares (and the teacher's training too).

Same optimizer (AdamW), same schedule (linear warmup, then cosine to ``min_lr_ratio``), same
token budget and stopping rule for every method: only the loss function and the batches
differ. The whole step is in ``train`` below, top to bottom.

Losses are small callables ``loss_fn(logits, batch) -> (loss, parts)``:
- ``ce_loss``: cross-entropy on the learned positions (SFT, baseline and synthetic);
- ``CachedKD``: ``alpha * CE + (1 - alpha) * T^2 * D`` against the teacher's top-k cache;
- ``OnlineKD``: the same against a live teacher's full logits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from distillmeter.pipelines.config import MethodConfig, TrainingConfig
from distillmeter.pipelines.data import Batch
from distillmeter.pipelines.scale.distributed import Distributed

LossFn = Callable[[torch.Tensor, Batch], "tuple[torch.Tensor, dict[str, float]]"]


def lr_at(progress: float, cfg: TrainingConfig) -> float:
    """Learning rate at ``progress`` (fraction of the token budget used, 0..1)."""
    if cfg.warmup_frac > 0 and progress < cfg.warmup_frac:
        return cfg.lr * (progress + 1e-3) / cfg.warmup_frac
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(1e-9, 1.0 - cfg.warmup_frac)
    x = min(1.0, (progress - cfg.warmup_frac) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1.0 + math.cos(math.pi * x))


def ce_loss(logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean cross-entropy of the learned tokens (target + EOS) given what precedes them."""
    pred = logits[:, :-1][batch.loss_mask].float()
    gold = batch.targets()[batch.loss_mask]
    loss = F.cross_entropy(pred, gold)
    return loss, {"ce": float(loss.detach())}


def topk_rows_kd(logits: torch.Tensor, batch: Batch, rows, method: MethodConfig,
                 vocab_size: int | None = None) -> torch.Tensor:
    """The KD term of a batch against teacher top-k rows held apart from the model (a logit
    cache, an on-policy round's scores): ``rows.gather`` lines them up with the batch's
    learned positions; the student's logits are cut to the teacher's vocabulary."""
    from distillmeter.pipelines.losses import topk_kd_loss

    values, indices = rows.gather(batch.index, device=logits.device)
    student = logits[:, :-1][batch.loss_mask]
    if vocab_size is not None:
        student = student[..., :vocab_size]
    return topk_kd_loss(student, values.float(), indices.long(), tail=True,
                        divergence=method.divergence, temperature=method.temperature,
                        beta=method.beta)


class CachedKD:
    """``alpha * CE + (1 - alpha) * T^2 * D(teacher || student)`` with the teacher's top-k
    log-probs from the cache (``LogitCache.gather`` lines them up with the batch)."""

    def __init__(self, method: MethodConfig, cache, vocab_size: int | None = None):
        self.method, self.cache, self.vocab_size = method, cache, vocab_size

    def __call__(self, logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        ce, parts = ce_loss(logits, batch)
        kd = topk_rows_kd(logits, batch, self.cache, self.method, self.vocab_size)
        parts["kd"] = float(kd.detach())
        return self.method.alpha * ce + (1.0 - self.method.alpha) * kd, parts


class OnlineKD:
    """The same loss against a live teacher: one teacher forward pass per student step (its
    energy falls inside ``student.train``; the cache moves it to ``teacher.logits``)."""

    def __init__(self, method: MethodConfig, teacher: torch.nn.Module,
                 vocab_size: int | None = None):
        self.method, self.teacher, self.vocab_size = method, teacher, vocab_size

    def __call__(self, logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        from distillmeter.pipelines.losses import kd_loss

        ce, parts = ce_loss(logits, batch)
        with torch.no_grad():
            t_logits = self.teacher(input_ids=batch.input_ids,
                                    attention_mask=batch.attention_mask).logits
        v = self.vocab_size or min(logits.shape[-1], t_logits.shape[-1])
        student = logits[:, :-1][batch.loss_mask][..., :v]
        teacher = t_logits[:, :-1][batch.loss_mask][..., :v]
        m = self.method
        kd = kd_loss(student, teacher, divergence=m.divergence, temperature=m.temperature,
                     beta=m.beta)
        parts["kd"] = float(kd.detach())
        return m.alpha * ce + (1.0 - m.alpha) * kd, parts


@dataclass
class TrainResult:
    """What a training run did: steps, tokens seen, the loss curve (one value per step)."""

    steps: int = 0
    tokens: int = 0
    samples: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    last_parts: dict[str, float] = field(default_factory=dict)
    # under torchrun: this rank's share of tokens/samples (the fields above are global),
    # and the trained model as a plain module (None on ranks other than 0 under FSDP)
    rank_tokens: int = 0
    rank_samples: int = 0
    model: torch.nn.Module | None = None

    @property
    def final_loss(self) -> float:
        """Mean loss of the last tenth of the steps (a single step is too noisy)."""
        tail = self.losses[-max(1, len(self.losses) // 10):]
        return sum(tail) / len(tail) if tail else float("nan")


StepCallback = Callable[[int, int, float], None]  # (this rank's tokens, samples; loss)


def autocast(device: str | torch.device, dtype: torch.dtype | None):
    """Mixed precision for forward passes: autocast to ``dtype`` (None: off). The weights
    stay as they are (float32 master weights for a model being trained)."""
    kind = torch.device(device).type
    return torch.autocast(device_type=kind, dtype=dtype or torch.float32,
                          enabled=dtype is not None and dtype != torch.float32)


def train(model: torch.nn.Module, data: Iterator[Batch], loss_fn: LossFn,
          cfg: TrainingConfig, *, device: str | torch.device = "cpu",
          on_step: StepCallback | None = None,
          autocast_dtype: torch.dtype | None = None,
          dist: Distributed | None = None) -> TrainResult:
    """Train ``model`` on ``data`` until ``cfg.token_budget`` tokens have gone through it.

    One optimizer step takes ``cfg.grad_accum`` batches (micro-batches of
    ``cfg.batch_size`` sequences), each micro-batch's mean loss weighted 1/grad_accum; the
    budget is checked between steps. ``autocast_dtype`` runs the forward passes under
    autocast (bf16 mixed precision on a GPU). Under torchrun (``dist``), every rank draws
    the same global batches and trains on its shard of each in DDP or FSDP
    (``pipelines/distributed.py``); the budget and the loss curve are global."""
    dist = dist or Distributed.single()
    net = dist.wrap(model)
    decay = [p for p in net.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in net.parameters() if p.requires_grad and p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=tuple(cfg.betas))
    net.train()
    result = TrainResult()
    t0 = time.perf_counter()
    while result.tokens < cfg.token_budget:
        # the schedule follows the budget, so every method sees the same lr per token
        lr = lr_at(result.tokens / cfg.token_budget, cfg)
        for group in opt.param_groups:
            group["lr"] = lr

        opt.zero_grad(set_to_none=True)
        n_tok = n_seq = my_tok = my_seq = 0
        step_loss = 0.0
        for i in range(cfg.grad_accum):
            batch = next(data)  # the global micro-batch: the same on every rank
            mine, weight = dist.shard(batch)  # this rank's rows; (batch, 1.0) alone
            mine = mine.to(device)
            # the gradient all-reduce happens once per step, on its last micro-batch
            with dist.grad_sync(net, sync=i == cfg.grad_accum - 1):
                with autocast(device, autocast_dtype):
                    logits = net(input_ids=mine.input_ids,
                                 attention_mask=mine.attention_mask).logits
                    loss, parts = loss_fn(logits, mine)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss is {float(loss)} at step {result.steps} "
                                             f"(lr {lr:.2e}); lower training.lr")
                scale = weight / cfg.grad_accum
                (loss * scale if scale != 1.0 else loss).backward()
            n_tok += batch.n_tokens
            n_seq += len(batch.index)
            if weight:
                my_tok += mine.n_tokens
                my_seq += len(mine.index)
            step_loss += float(loss.detach()) * weight / dist.world_size / cfg.grad_accum
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()

        result.steps += 1
        result.tokens += n_tok
        result.samples += n_seq
        result.rank_tokens += my_tok
        result.rank_samples += my_seq
        result.losses.append(step_loss)
        result.last_parts = parts
        if on_step is not None:
            on_step(my_tok, my_seq, step_loss)
    if dist.active:
        # the loss curve is the global batch's (each rank's weighted share, summed), and
        # the ranks' shards must add up to the global batches: a check, once
        *losses, tokens = dist.sum(result.losses + [float(result.rank_tokens)])
        result.losses = losses
        if int(tokens) != result.tokens:
            raise RuntimeError(f"the ranks trained on {int(tokens)} tokens, the global batches "
                               f"held {result.tokens}: the ranks' data differ")
    net.eval()
    result.model = dist.trained_model(net, model)
    result.seconds = time.perf_counter() - t0
    return result


@torch.no_grad()
def mean_token_loss(model: torch.nn.Module, data: Iterator[Batch],
                    device: str | torch.device = "cpu") -> tuple[float, int]:
    """Mean per-token cross-entropy of the learned tokens over ``data`` (teacher forcing),
    and how many tokens it averaged."""
    model.eval()
    total, count = 0.0, 0
    for batch in data:
        batch = batch.to(device)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        pred = logits[:, :-1][batch.loss_mask].float()
        gold = batch.targets()[batch.loss_mask]
        total += float(F.cross_entropy(pred, gold, reduction="sum"))
        count += int(gold.numel())
    return (total / count if count else float("nan")), count
