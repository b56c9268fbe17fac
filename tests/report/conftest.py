"""The report tests use the analysis tests' run directories (built from recorded data)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))

from runbuilder import build_campaign  # noqa: E402


@pytest.fixture
def campaign_dir(tmp_path: Path) -> Path:
    return build_campaign(tmp_path / "runs")
