"""The one way the package replaces a file: a temporary file beside it, flushed to disk,
then renamed over it. A reader (or a crash) sees the old file or the new one, never half of
one, and no temporary file is left behind when the write fails.

A write that fails for lack of space or permission raises
:class:`~distillmeter.errors.OutputError` naming the file (one line, exit 2 through the CLI,
like every other write: ``errors.writing``); any other OS error becomes a ``UserError``
naming the file (``errors.cannot_write``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from distillmeter.errors import cannot_write, output_error

# mkstemp makes the temporary file private (0600); a run's files are meant to be shared
MODE = 0o644


def write_atomic(path: str | os.PathLike[str], data: str | bytes | Callable[[Path], None],
                 *, fsync: bool = True) -> Path:
    """Replace ``path`` with ``data`` atomically and return the path. ``data`` is text
    (UTF-8), bytes, or a function that writes the temporary file it is given (for writers
    that take a file name, such as safetensors' ``save_file``). The temporary file is
    ``.<name>.<random>.tmp`` in the same directory (so the rename stays on one file
    system, and two processes writing the same file never share one)."""
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise cannot_write(exc, path) from None
    tmp = Path(name)
    try:
        if callable(data):
            os.close(fd)
            data(tmp)
            if fsync:
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
                if fsync:
                    f.flush()
                    os.fsync(f.fileno())
        os.chmod(tmp, MODE)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise cannot_write(exc, path) from None
        err = output_error(exc, path) if isinstance(exc, Exception) else None
        if err is not None and err is not exc:  # safetensors' error on a full disk
            raise err from exc
        raise
    return path
