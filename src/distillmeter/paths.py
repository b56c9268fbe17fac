"""Paths as users write them in configs."""

from __future__ import annotations

import os
from pathlib import Path


def resolve_path(raw: str) -> Path:
    """``~`` and ``$VARS`` expanded; relative to the current directory."""
    return Path(os.path.expandvars(os.path.expanduser(raw)))
