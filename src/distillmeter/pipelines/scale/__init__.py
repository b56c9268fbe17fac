"""Running at scale: torchrun/accelerate jobs (``distributed.py``: the process group and
DDP/FSDP for the shared training loop; ``rank_jobs.py`` and ``rank_meter.py``: rank 0
decides, the other ranks follow, each metering its own devices) and sweeps
(``sweep_file.py``: a grid of configs x seeds; ``sweep_jobs.py``, ``sweep_run.py``: run here or
as Ray tasks, ``sweep_ray.py``). See docs/scale.md."""
