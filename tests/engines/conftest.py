"""Engine tests run tiny models: one torch thread (the machine is shared, and tiny models
gain nothing from more)."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs with one torch thread (tests/conftest.py)."""
