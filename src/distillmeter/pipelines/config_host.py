"""What only the machine that runs a config can tell, checked before any work (the first
of ``preflight``'s checks): the devices ``meter.devices`` names exist here, the country in
$DISTILLMETER_COUNTRY is known, and lm-eval's ``include_path`` is a folder. Each mistake is
one UserError naming the key and, for a config read from a file, its line."""

from __future__ import annotations

import os

from distillmeter.errors import UserError
from distillmeter.pipelines.config import RunConfig
from distillmeter.pipelines.config_checks import check_country


def check_host(cfg: RunConfig) -> None:
    """Every device ``meter.devices`` names exists here (else the run measures 0 J), the
    country in $DISTILLMETER_COUNTRY is known when the config gives none (else every run
    ends in "cannot account"), and lm-eval's ``include_path`` is a folder here (else it
    fails after every student has trained)."""
    from distillmeter.accounting.carbon import COUNTRY_ENV
    from distillmeter.energy.sensors import parse_device_selection

    carbon = cfg.carbon
    env_country = os.environ.get(COUNTRY_ENV)
    if env_country and carbon.country is None and carbon.grid_gco2_per_kwh is None:
        try:
            check_country(env_country)
        except ValueError as exc:
            raise UserError(f"${COUNTRY_ENV}: {exc}") from None
    include = cfg.eval.lm_eval.include_path
    if cfg.eval.backend == "lm_eval" and include is not None:
        from distillmeter.paths import resolve_path

        if not resolve_path(include).is_dir():
            raise UserError(f"{cfg.where('eval', 'lm_eval', 'include_path')}: "
                            f"{resolve_path(include)} is not a directory (a folder of lm-eval "
                            "task YAML files)")
    selectors = parse_device_selection(cfg.meter.devices)
    if selectors is None:
        return
    available, why = devices_here()
    missing = [s for s in selectors
               if not any(d == s or d.split(":", 1)[0] == s for d in available)]
    if missing:
        reason = f" ({'; '.join(why)})" if why and any(s.startswith("gpu") for s in missing) \
            else ""
        raise UserError(f"{cfg.where('meter', 'devices')}: {', '.join(missing)} not found on "
                        f"this machine{reason}; it has: {', '.join(available) or 'none'} "
                        "(meter.devices: auto meters them all)")


def devices_here() -> tuple[list[str], list[str]]:
    """Every device the meter can read on this machine (``gpu:0``, ``cpu:0``, ...), and
    why a kind is missing (NVML absent, ...), by the meter's own discovery."""
    from distillmeter.energy.sensors.discovery import discover_sensors

    sensors, notes = discover_sensors(["gpu", "cpu", "dram"])
    try:
        found = [d for s in sensors for d in s.devices]
    finally:
        for s in sensors:
            s.close()
    return found, [msg for msg, device in notes if device is None]
