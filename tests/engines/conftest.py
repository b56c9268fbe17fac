"""Engine tests run tiny models: one torch thread (the machine is shared, and tiny models
gain nothing from more)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
