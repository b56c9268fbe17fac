"""Shared by every test folder: pytest puts this directory on sys.path, so the helpers here
(``real_pair``: tiny real checkpoints and data files) import from any of them."""
