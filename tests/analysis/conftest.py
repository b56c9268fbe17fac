"""Run directories built from the recorded H100 run (see runbuilder)."""

from __future__ import annotations

from pathlib import Path

import pytest
from runbuilder import build_campaign


@pytest.fixture
def campaign_dir(tmp_path: Path) -> Path:
    """A fresh runs/ directory: a teacher run and kd, sft_synth and baseline students over
    three seeds, none accounted yet."""
    return build_campaign(tmp_path / "runs")
