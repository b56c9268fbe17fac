"""Device synchronisation before a boundary reading."""

from __future__ import annotations

import sys


def sync_devices() -> str | None:
    """Wait for queued GPU work before a boundary reading, so it lands in its own stage.
    Only when this program already uses torch with CUDA: the meter never imports torch."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    try:
        if cuda is not None and cuda.is_available() and cuda.is_initialized():
            cuda.synchronize()
    except Exception as exc:  # a broken CUDA context must not break the bookkeeping
        return f"torch.cuda.synchronize() failed before a boundary reading: {exc}"
    return None
