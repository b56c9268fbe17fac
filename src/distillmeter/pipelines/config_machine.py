"""The run config's sections about the machine and the accounting: how the meter reads the
hardware, how student training spreads over processes, and what energy turns into (CO2e,
money). Plain pydantic data, assembled into ``RunConfig`` by ``pipelines/config.py``
(which they are imported from)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from distillmeter.configbase import StrictModel as _Strict
from distillmeter.pipelines.config_checks import check_country, check_devices

__all__ = ["CarbonConfig", "DistributedConfig", "MeterConfig"]


class MeterConfig(_Strict):
    """How the EnergyMeter reads the hardware."""

    devices: str | list[str] = "auto"
    sample_hz: float = Field(20.0, gt=0, le=1000)
    # an idle baseline needs seconds; an hour is already far more than it can use
    idle_seconds: float = Field(1.0, ge=0, le=3600)

    @field_validator("devices")
    @classmethod
    def _known_selectors(cls, value: str | list[str]) -> str | list[str]:
        return check_devices(value)


class DistributedConfig(_Strict):
    """Student training across processes, used only when launched by ``torchrun`` /
    ``accelerate launch`` (WORLD_SIZE > 1; docs/scale.md). ``strategy``: ``ddp`` (a replica
    per rank, gradients all-reduced) or ``fsdp`` (FULL_SHARD: parameters, gradients and
    optimizer state sharded per decoder layer with ``torch.distributed.fsdp.fully_shard``,
    for a student too big to replicate). ``backend``: ``auto`` is nccl on CUDA, gloo on CPU.
    ``timeout_s`` bounds each collective; ``wait_timeout_s`` bounds how long the other ranks
    wait while rank 0 alone does teacher-side work. Not part of any config hash: the same
    config distributed or not is the same configuration."""

    strategy: Literal["ddp", "fsdp"] = "ddp"
    backend: Literal["auto", "nccl", "gloo"] = "auto"
    # 30 days: longer than any job waits on one collective (and within timedelta's range)
    timeout_s: float = Field(1800.0, gt=0, le=30 * 86400)
    wait_timeout_s: float = Field(86400.0, gt=0, le=30 * 86400)


class CarbonConfig(_Strict):
    """What accounting turns energy into: CO2e and money (None: accounting's defaults)."""

    # 2000 g/kWh: over twice coal's lifecycle intensity (median 820, range 740-910 g/kWh:
    # IPCC AR5 WGIII Annex III, 2014), the dirtiest source a grid has
    grid_gco2_per_kwh: float | None = Field(None, ge=0, le=2000)
    country: str | None = None
    # 10: several times the worst data centres' (industry average 1.56: Uptime Institute
    # Global Data Center Survey, 2024)
    pue: float | None = Field(None, ge=1, le=10)
    # in any currency's unit: ten million a kWh is past every tariff there is
    price_per_kwh: float | None = Field(None, ge=0, le=1e7)

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str | None) -> str | None:
        return None if value is None else check_country(value)
