"""What every recipe shares: the config, the output directory, the UI, the device, and the
meter each run directory gets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillmeter.pipelines.config import RunConfig
from distillmeter.pipelines.progress import StageProgress
from distillmeter.protocol import ESTIMATED_SOURCES


@dataclass
class Context:
    cfg: RunConfig
    out_dir: Path
    ui: StageProgress
    device: str
    resume: bool = False
    # under torchrun: this process's pipelines.distributed.Distributed (None alone), and
    # whether rank 0 is doing the current run alone (pipelines/scale/rank_jobs.py)
    dist: Any = None
    solo: bool = False

    @property
    def world_size(self) -> int:
        return self.dist.world_size if self.dist is not None else 1

    def open_meter(self, run_dir: Path, *, method: str, seed: int, config_id: str,
                   upstream: list[dict] | None = None, labels: dict[str, Any] | None = None):
        """The run directory's EnergyMeter, labelled for analysis across runs; the resolved
        config goes to its config.yaml. Under torchrun, this rank's RankMeter."""
        from distillmeter.energy import EnergyMeter

        m = self.cfg.meter
        # idle_refresh: a pipeline run lasts minutes to hours, so a fresh idle baseline
        # (3 s by default) is cheap next to it; the fresh value also updates the cache.
        kwargs = dict(devices=m.devices, sample_hz=m.sample_hz, idle_seconds=m.idle_seconds,
                      idle_refresh=True,
                      method=method, seed=seed, config_id=config_id, task=self.cfg.task.name,
                      labels=labels or {}, upstream=upstream or [], config=self.cfg.resolved())
        if self.dist is not None and self.dist.active:
            from distillmeter.pipelines.scale.rank_meter import open_rank_meter

            meter = open_rank_meter(self, run_dir, kwargs)
        else:
            meter = EnergyMeter(run_dir, **kwargs)
        self.ui.power = meter.latest_power_w
        self.ui.power_estimated = lambda: any(
            src in ESTIMATED_SOURCES for src in meter.sources.values())
        return meter
