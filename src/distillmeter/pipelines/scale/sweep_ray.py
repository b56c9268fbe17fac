"""Sweep jobs as Ray tasks (extra ``[ray]``): ``--ray ADDRESS`` joins a cluster (``auto``,
``ray://head:10001``), ``--ray local`` starts one here for the sweep's duration.

Each task asks for the GPUs its config runs on (``ray.num_gpus`` in the sweep file, else 1
when the config's device is cuda, or auto on a cluster with GPUs; 0 otherwise); Ray sets the
task's ``CUDA_VISIBLE_DEVICES`` and the meter honours it, so every task meters exactly the
GPUs it was given. Teacher-side jobs run one at a time before the fan-out (later plans reuse
earlier plans' artifacts by hash); student jobs then run in parallel. Run directories must
be on a filesystem every node sees.

CPU and DRAM are node-wide: tasks that share a node each meter the whole host, so its
energy is counted once per task running beside another. Set ``meter.devices: gpu`` in the
base config to meter GPUs only, or give each task a whole node.
"""

from __future__ import annotations

from typing import Any

from distillmeter.errors import UserError
from distillmeter.pipelines.config import RunConfig
from distillmeter.pipelines.config_machine import MeterConfig
from distillmeter.pipelines.scale.sweep_file import RaySettings
from distillmeter.pipelines.scale.sweep_jobs import JobRecord, student_job, teacher_job


def import_ray() -> Any:
    """The ``ray`` module, or a UserError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs Ray: pip install 'distillmeter[ray]'") from None
    return ray


def meters_host(meter: MeterConfig) -> bool:
    """True when the meter reads the node's CPU or DRAM (node-wide devices)."""
    devices = meter.devices
    items = devices.split(",") if isinstance(devices, str) else list(devices)
    return any(d.strip() in ("auto", "cpu", "dram") or d.strip().startswith(("cpu:", "dram:"))
               for d in items)


class RayRunner:
    """Teacher jobs one at a time, student jobs in parallel, on Ray."""

    def __init__(self, address: str, settings: RaySettings, quiet: bool):
        self.ray = import_ray()
        self.address, self.settings, self.quiet = address, settings, quiet
        self._started = False
        self.gpus = 0.0
        self.where = f"on Ray ({address})"

    def __enter__(self) -> RayRunner:
        ray = self.ray
        if not ray.is_initialized():
            address = None if self.address == "local" else self.address
            try:
                ray.init(address=address, include_dashboard=False,
                         log_to_driver=not self.quiet)
            except ConnectionError as exc:
                raise UserError(f"--ray {self.address}: cannot connect ({exc})") from None
            self._started = True
        self.gpus = float(ray.cluster_resources().get("GPU", 0.0))
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._started:
            self.ray.shutdown()

    def options(self, device: str) -> dict[str, float]:
        """The resources one task of a config on ``device`` (its ``device:``) asks for."""
        gpus = self.settings.num_gpus
        if gpus is None:
            gpus = 1.0 if device == "cuda" or (device == "auto" and self.gpus) else 0.0
        if device == "cuda" and not gpus:
            raise UserError("device: cuda but the sweep gives each Ray task no GPU "
                            "(ray.num_gpus: 0)")
        if gpus > self.gpus:
            raise UserError(f"each task asks for {gpus:g} GPU(s); the Ray cluster at "
                            f"{self.address} has {self.gpus:g}")
        return {"num_gpus": gpus, "num_cpus": self.settings.num_cpus}

    def _get(self, ref: Any) -> Any:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            raise (cause if isinstance(cause, Exception) else RuntimeError(str(exc))) from None

    def teacher(self, cfg: RunConfig, root: str):
        task = self.ray.remote(teacher_job).options(**self.options(cfg.device))
        return self._get(task.remote(cfg, root, True))

    def students(self, jobs: list[tuple], root: str, resume: bool) -> list[JobRecord]:
        task = self.ray.remote(student_job)
        refs = [(cfg, point, seed, task.options(**self.options(cfg.device)).remote(
                    cfg, point, seed, teacher, root, resume, True))
                for cfg, point, seed, teacher in jobs]
        out: list[JobRecord] = []
        for cfg, point, seed, ref in refs:
            try:
                out += self._get(ref)
            except Exception as exc:  # the task itself failed: every method of it
                out += [JobRecord(point, seed, m.name, "", "failed",
                                  f"{type(exc).__name__}: {exc}") for m in cfg.methods]
        return out
