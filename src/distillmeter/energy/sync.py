"""Device synchronisation before a boundary reading.

Work queued on a GPU runs after the call that queued it returns; a boundary reading taken
before it finishes puts its energy in the next stage. So before each reading the meter
waits for every GPU it meters that this process uses: with ``device_map="auto"`` (a model
spread over several GPUs) or one process metering every GPU of its node, that is more than
the current device.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any


def devices_to_sync(torch: Any, metered: Sequence[int], cuda_order: Sequence[int] | None
                    ) -> list[int]:
    """CUDA ordinals to synchronize: the current device, and every device this process
    has a CUDA context on whose NVML index is in ``metered``. ``cuda_order[j]`` is the NVML
    index of CUDA ordinal ``j`` (None: the same numbers, as without CUDA_VISIBLE_DEVICES).
    A device without a context is never touched (synchronizing it would create one); where
    torch cannot tell, only the current device is synchronized."""
    cuda = torch.cuda
    ordinals = {int(cuda.current_device())}
    has_context = getattr(getattr(torch, "_C", None), "_cuda_hasPrimaryContext", None)
    if has_context is None or not metered:
        return sorted(ordinals)
    wanted = set(metered)
    for j in range(int(cuda.device_count())):
        nvml_index = cuda_order[j] if cuda_order is not None and j < len(cuda_order) else j
        if nvml_index in wanted and has_context(j):
            ordinals.add(j)
    return sorted(ordinals)


def sync_devices(metered: Sequence[int] = (), cuda_order: Sequence[int] | None = None
                 ) -> str | None:
    """Wait for queued GPU work before a boundary reading, so it lands in its own stage
    (see :func:`devices_to_sync` for which devices). Only when this program already uses
    torch with CUDA: the meter never imports torch. Returns a problem's text, or None."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    try:
        if cuda is not None and cuda.is_available() and cuda.is_initialized():
            for ordinal in devices_to_sync(torch, metered, cuda_order):
                cuda.synchronize(ordinal)
    except Exception as exc:  # a broken CUDA context must not break the bookkeeping
        return f"torch.cuda.synchronize() failed before a boundary reading: {exc}"
    return None
