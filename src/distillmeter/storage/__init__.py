"""distillmeter.storage: files on disk written safely, for the whole package.

``runlock``: one writer per run directory (a lock file naming its holder, taken over when
that process is gone).
"""
