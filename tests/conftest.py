"""Shared by every test folder: pytest puts this directory on sys.path, so the helpers here
(``real_pair``: tiny real checkpoints and data files) import from any of them."""

import os

# The meter's idle-baseline cache (energy/idle.py) is off in the tests, their subprocesses
# included, so that each test measures its own baseline; the cache's own tests pass a file
# under tmp_path.
os.environ["DISTILLMETER_IDLE_CACHE"] = "off"
