"""Shared by every test folder: pytest puts this directory on sys.path, so the helpers here
(``real_pair``: tiny real checkpoints and data files) import from any of them."""

import os

import pytest

# The meter's idle-baseline cache (energy/idle_baseline.py) is off in the tests, their subprocesses
# included, so that each test measures its own baseline; the cache's own tests pass a file
# under tmp_path.
os.environ["DISTILLMETER_IDLE_CACHE"] = "off"
# Output the tests read is never a terminal, so rich takes its width from $COLUMNS: fixed
# here (subprocesses included), so that no test depends on the width of the terminal that
# runs it. Tests of other widths give their consoles a width, or their CLI runs a COLUMNS.
os.environ["COLUMNS"] = "80"
os.environ.pop("LINES", None)


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test (the machine is shared, and tiny models gain nothing
    from more); the folders of model tests use it for every test."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
