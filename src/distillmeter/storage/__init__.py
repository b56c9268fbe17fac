"""distillmeter.storage: files on disk written safely, for the whole package.

``atomic``: ``write_atomic``, the one way the package replaces a file (temporary file,
fsync, rename; a full disk or a read-only directory is one line naming the file);
``runlock``: one writer per run directory (a lock file naming its holder, taken over when
that process is gone).
"""
