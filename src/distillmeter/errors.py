"""Errors that mean "the user's input is wrong", and "a file cannot be written": the CLI
prints both without a traceback."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from distillmeter.protocol import ProtocolError


class UserError(ValueError):
    """A mistake in what the user gave us (a config, a path, an option). The message says
    what is wrong and, where it can, how to fix it."""


USER_ERRORS: tuple[type[BaseException], ...] = (UserError, ProtocolError)

# What the storage says when a write cannot happen: the disk (or a quota, or a file size
# limit) is full, or the directory is read-only or not ours.
_FULL = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
         errno.EFBIG: "the file size limit is reached"}
_DENIED = {errno.EROFS: "the file system is read-only",
           errno.EACCES: "the directory is read-only or not writable by this user",
           errno.EPERM: "the directory is read-only or not writable by this user"}
STORAGE_ERRNOS = frozenset(_FULL) | frozenset(_DENIED)


class OutputError(OSError):
    """A file distillmeter writes could not be written (disk full, quota or file size
    limit, read-only or foreign directory). ``str()`` is one line naming the path; the CLI
    prints it and exits 2. Not a :class:`UserError`: code that carries on past a bad input
    (a run that cannot be accounted) must not carry on past a full disk."""

    def __init__(self, code: int, path: str | os.PathLike[str]) -> None:
        super().__init__(code, os.strerror(code), str(path))
        self.path = Path(path)
        self.hint = ""

    def __reduce__(self):  # pickled across processes (Ray) with its own arguments
        return _rebuild, (self.errno, str(self.path), self.hint)

    @property
    def full(self) -> bool:
        """The disk (or a quota, or a size limit) is full, rather than not writable."""
        return self.errno in _FULL

    def __str__(self) -> str:
        reason = _FULL.get(self.errno) or _DENIED.get(self.errno, "")
        text = f"cannot write {self.path}: {self.strerror}" + (f" ({reason})" if reason else "")
        return text + (f"; {self.hint}" if self.hint else "")


def _rebuild(code: int, path: str, hint: str) -> OutputError:
    err = OutputError(code, path)
    err.hint = hint
    return err


def storage_errno(exc: BaseException) -> int | None:
    """The errno of a failed write, when ``exc`` is one (an OSError, or safetensors'
    SafetensorError, which carries the OS error only in its text); else None."""
    if isinstance(exc, OSError):
        return exc.errno if exc.errno in STORAGE_ERRNOS else None
    if type(exc).__name__ == "SafetensorError":
        found = re.search(r"os error (\d+)", str(exc))
        if found and int(found.group(1)) in STORAGE_ERRNOS:
            return int(found.group(1))
    return None


def output_error(exc: BaseException, path: str | os.PathLike[str]) -> OutputError | None:
    """``exc`` as an :class:`OutputError` naming the file it failed on (an OSError's own
    ``filename`` where it has one, else ``path``); None when it is not a failed write."""
    if isinstance(exc, OutputError):
        return exc
    code = storage_errno(exc)
    if code is None:
        return None
    named = getattr(exc, "filename", None)
    return OutputError(code, named if isinstance(named, (str, os.PathLike)) else path)


def cannot_write(exc: OSError, path: str | os.PathLike[str]) -> Exception:
    """The error to raise when writing ``path`` failed with ``exc``: an OutputError for a
    full disk or a read-only directory, else a UserError naming the file."""
    code = storage_errno(exc)
    if code is not None:
        return OutputError(code, path)
    return UserError(f"cannot write {path}: {exc.strerror}")


@contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Writes inside that fail for lack of space or permission raise :class:`OutputError`
    naming ``path`` (or the file the OS names); other errors pass through unchanged."""
    try:
        yield
    except Exception as exc:
        err = output_error(exc, path)
        if err is None or err is exc:
            raise
        raise err from exc
