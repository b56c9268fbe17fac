"""Errors that mean "the user's input is wrong": the CLI prints them without a traceback."""

from __future__ import annotations

from distillmeter.protocol import ProtocolError


class UserError(ValueError):
    """A mistake in what the user gave us (a config, a path, an option). The message says
    what is wrong and, where it can, how to fix it."""


USER_ERRORS: tuple[type[BaseException], ...] = (UserError, ProtocolError)
